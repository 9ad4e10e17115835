"""The local usage-event sink: lands events in ``<lake>/raw/usage_events/dt=…/hour=…/`` as Firehose would.

Firehose (with record-format conversion and dynamic partitioning on ``dt``/``hour``) writes one Parquet object per
buffer flush and partition; this writer does the same on a folder or S3 URI, so that the transform reads one
layout whatever delivered the events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from common.constants import RAW_EVENTS
from common.contracts import arrow_schema, quarantine_arrow_schema
from common.lake import Lake
from common.quarantine import write_quarantine_file

STREAM_NAME = "modelmeter-usage"


def _object_name(now: datetime) -> str:
    # Firehose names objects <stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>; we add the .parquet suffix.
    return f"{STREAM_NAME}-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"


class LocalParquetSink:
    """Writes usage events (rows of :func:`common.contracts.arrow_schema`) as hive-partitioned, zstd Parquet."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.schema = arrow_schema()

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Write parsed event rows (see :func:`common.contracts.parse_event`); returns the files written."""
        if not rows:
            return []
        return self.write_table(pa.Table.from_pylist(list(rows), schema=self.schema))

    def write_table(self, table: pa.Table) -> list[str]:
        """Write a table of events, one file per ``dt``/``hour`` partition of its ``event_time`` (UTC)."""
        if table.num_rows == 0:
            return []
        table = table.select(list(self.schema.names)).cast(self.schema)
        # whole hours since 1970 (floor division, as the UTC clock reads): cheaper than formatting every time
        millis = pc.cast(pc.cast(table["event_time"], pa.int64()), pa.float64())
        hour_no = pc.floor(pc.divide(millis, 3_600_000.0))
        now = datetime.now(UTC)
        written = []
        keys = pc.unique(hour_no).to_pylist()
        for key in keys:
            part = table if len(keys) == 1 else table.filter(pc.equal(hour_no, key))  # one hour: no copy
            start = datetime.fromtimestamp(int(key) * 3600, UTC)
            written.append(self.lake.write_parquet(part, RAW_EVENTS, f"dt={start:%Y-%m-%d}", f"hour={start:%H}",
                                                   _object_name(now)))
        return written


@dataclass
class Rejected:
    """One refused input (a line or a row) and why; becomes one quarantine row."""

    reason: str
    stage: str
    raw: str | None = None
    source_file: str | None = None
    source_line: int | None = None
    event_id: str | None = None
    event_time: datetime | None = None
    team_id: str | None = None


def _best_effort_fields(raw: str | None) -> dict[str, Any]:
    """Read event_id, team_id and event_time out of a refused line when they are there, for the quarantine row."""
    out: dict[str, Any] = {}
    try:
        obj = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return out
    if not isinstance(obj, dict):
        return out
    for key in ("event_id", "team_id"):
        if isinstance(obj.get(key), str) and obj[key].encode("utf-8", "replace").decode() == obj[key]:
            out[key] = obj[key]  # a lone surrogate escape ("\ud800") is no text Parquet can hold: left out
    if isinstance(obj.get("event_time"), str):
        try:
            ts = datetime.fromisoformat(obj["event_time"])
            out["event_time"] = ts.astimezone(UTC) if ts.tzinfo else None
        except ValueError:
            pass
    return out


def write_quarantine(lake: Lake, rejected: Iterable[Rejected], *, name: str | None = None) -> list[str]:
    """Write refused inputs to ``quarantine/usage_events/dt=<event date, else today>/``; returns the files.

    Ingest writes files named ``ingest-…``; the transform replaces its own ``transform.parquet`` per day, so a
    re-run of the transform never removes what ingest set aside.
    """
    now = datetime.now(UTC)
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in rejected:
        row = {
            "event_id": r.event_id, "event_time": r.event_time, "team_id": r.team_id, "reason": r.reason,
            "stage": r.stage, "source_file": r.source_file, "source_line": r.source_line, "raw": r.raw,
            "quarantined_at": now,
        }
        for key, value in _best_effort_fields(r.raw).items():
            if row.get(key) is None:
                row[key] = value
        when = row["event_time"] if isinstance(row["event_time"], datetime) else now
        day = when.strftime("%Y-%m-%d")
        by_day.setdefault(day, []).append(row)
    schema = quarantine_arrow_schema()
    written = []
    for day, rows in sorted(by_day.items()):
        file_name = name or f"ingest-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        path = write_quarantine_file(lake, pa.Table.from_pylist(rows, schema=schema), day=day, file_name=file_name)
        if path:
            written.append(path)
    return written

"""The one writer of ``quarantine/usage_events/dt=D/<file>.parquet`` (rows of ``contracts.quarantine_arrow_schema``).

Ingest writes a new ``ingest-….parquet`` per batch and day; the transform replaces its own ``transform.parquet`` per
day (a re-run whose bad rows were fixed removes it), so a transform never removes what ingest set aside.
"""

from __future__ import annotations

import pyarrow as pa

from common.constants import QUARANTINE_EVENTS
from common.contracts import quarantine_arrow_schema
from common.lake import Lake


def write_quarantine_file(lake: Lake, table: pa.Table, *, day: str, file_name: str) -> str | None:
    """Write (or, with no rows, remove) ``dt=day/file_name``; returns the file written, ``None`` when empty."""
    parts = (QUARANTINE_EVENTS, f"dt={day}", file_name)
    if table.num_rows:
        return lake.write_parquet(table.cast(quarantine_arrow_schema()), *parts)
    if lake.exists(*parts):
        lake.delete(lake.path(*parts))
    return None

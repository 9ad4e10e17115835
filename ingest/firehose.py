"""Usage-event delivery to Amazon Data Firehose: the AWS sink behind :class:`ingest.emit.Emitter`.

One event is one record: its JSON, newline-terminated (Firehose concatenates records into an S3 object, and the
newline keeps them apart for the record-format conversion to Parquet). ``PutRecordBatch`` takes at most 500 records
and 4 MiB per call, and may accept part of a batch: its response says ``FailedPutCount`` and, per record in request
order, either a ``RecordId`` or an ``ErrorCode``. Only the failed records are sent again, after an exponential
backoff with full jitter; what still fails after ``max_attempts`` goes back to the emitter, whose spool keeps it for
later. A record is never re-sent once Firehose accepted it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest.emit import Emitter

log = logging.getLogger(__name__)

#: PutRecordBatch limits (Firehose quotas): records per call, bytes per call, bytes per record.
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024

# Our own loop retries (only the failed records); botocore's retries on top would multiply the wait on an outage,
# and a Lambda invocation has a few seconds at most to flush.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=10)

Deliverer = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def encode_record(event: dict[str, Any]) -> bytes:
    """The Firehose record of one event: compact JSON plus a newline."""
    return (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def chunk_records(records: list[bytes], *, max_records: int = MAX_BATCH_RECORDS,
                  max_bytes: int = MAX_BATCH_BYTES) -> list[list[int]]:
    """Split record indexes into PutRecordBatch calls of at most ``max_records`` records and ``max_bytes`` bytes."""
    return chunk_sizes([len(record) for record in records], max_records=max_records, max_bytes=max_bytes)


def chunk_sizes(sizes: list[int], *, max_records: int, max_bytes: int) -> list[list[int]]:
    """Split item indexes into groups of at most ``max_records`` items whose ``sizes`` add up to ``max_bytes``."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, item_size in enumerate(sizes):
        if current and (len(current) >= max_records or size + item_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


def firehose_deliverer(*, stream_name: str, client: Any = None, max_attempts: int = 4, base_delay: float = 0.05,
                       max_delay: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                       latest_start: Callable[[], float | None] | None = None) -> Deliverer:
    """A ``deliver`` function for :class:`ingest.emit.Emitter` that puts events into a Firehose stream.

    Args:
        stream_name: the delivery stream.
        client: a ``firehose`` client (default: a new one from the environment).
        max_attempts: PutRecordBatch attempts per chunk, the first included, before the rest is handed back.
        base_delay: first backoff ceiling in seconds; doubled per attempt, capped at ``max_delay`` (full jitter).
        sleep: how to wait (tests pass a recorder).
        latest_start: the ``time.monotonic()`` instant after which no PutRecordBatch call may begin (``None``: no
            limit); what is not sent by then is handed back. The Lambda bounds its end-of-invocation flush with it.

    Returns:
        ``deliver(events) -> undelivered events`` (``[]`` when every event was accepted).
    """
    firehose = client or boto3.client("firehose", config=_CLIENT_CONFIG)

    def deliver(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records = [encode_record(event) for event in events]
        undelivered: list[dict[str, Any]] = []
        sendable: list[int] = []
        for index, record in enumerate(records):
            if len(record) <= MAX_RECORD_BYTES:
                sendable.append(index)
                continue
            # It would fail the whole call: a gateway bug. Keep it in the spool (and say so) rather than drop it.
            log.error("usage event %s is %d bytes, over Firehose's record limit; kept in the spool",
                      events[index].get("event_id"), len(record))
            undelivered.append(events[index])
        for chunk in chunk_records([records[i] for i in sendable]):
            indexes = [sendable[i] for i in chunk]
            failed = _put_with_retries(firehose, stream_name, records, indexes, max_attempts=max_attempts,
                                       base_delay=base_delay, max_delay=max_delay, sleep=sleep,
                                       latest_start=latest_start)
            undelivered.extend(events[i] for i in failed)
        return undelivered

    return deliver


def _put_with_retries(firehose: Any, stream_name: str, records: list[bytes], indexes: list[int], *,
                      max_attempts: int, base_delay: float, max_delay: float, sleep: Callable[[float], None],
                      latest_start: Callable[[], float | None] | None = None) -> list[int]:
    """PutRecordBatch ``indexes``, re-sending only failed records; returns the indexes still not accepted."""
    pending = indexes
    for attempt in range(1, max_attempts + 1):
        limit = latest_start() if latest_start is not None else None
        if limit is not None and time.monotonic() > limit:
            return pending  # no time left for another call: the caller hands these on
        try:
            response = firehose.put_record_batch(
                DeliveryStreamName=stream_name, Records=[{"Data": records[i]} for i in pending])
        except (ClientError, BotoCoreError) as exc:
            # The whole call failed (throttled, stream unavailable, network): every record is still pending.
            log.warning("PutRecordBatch to %s failed (%s), attempt %d/%d", stream_name, _error_code(exc),
                        attempt, max_attempts)
        else:
            if not response.get("FailedPutCount"):
                return []
            results = response.get("RequestResponses", [])
            # Results come in request order; a result without ErrorCode was accepted and must not be sent again.
            pending = [i for i, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
            codes = sorted({r["ErrorCode"] for r in results if r.get("ErrorCode")})
            log.warning("PutRecordBatch to %s: %d of %d records failed (%s), attempt %d/%d", stream_name,
                        len(pending), len(results), ", ".join(codes), attempt, max_attempts)
            if not pending:
                return []
        if attempt < max_attempts:
            sleep(random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1))))
    return pending


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def firehose_emitter(*, stream_name: str, spool_dir: str | os.PathLike[str], client: Any = None,
                     **emitter_kwargs: Any) -> Emitter:
    """An :class:`ingest.emit.Emitter` with a durable spool in ``spool_dir`` that delivers to Firehose."""
    emitter_kwargs.setdefault("batch_size", MAX_BATCH_RECORDS)
    return Emitter(deliver=firehose_deliverer(stream_name=stream_name, client=client), spool_dir=spool_dir,
                   **emitter_kwargs)

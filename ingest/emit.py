"""Usage-event emission off the request path: a durable local spool and a background deliverer.

``Emitter.emit`` appends the event as one JSON line to the current spool segment (one ``write`` system call, no
fsync: the bytes survive a crash of the process, not of the machine) and returns. A background thread rotates the
segment when it is big or old enough and hands its events to ``deliver`` in batches. ``deliver`` returns the events
it could NOT deliver (a partial failure, e.g. Firehose ``FailedPutCount``); those stay in the spool and are retried
with exponential backoff. A segment is removed once every event in it is confirmed, and a segment that still holds
undelivered events is rewritten atomically without the confirmed ones, so a confirmed event is never sent again.
Segments left over by a previous run or a crash are delivered first on start.

The one window that can repeat an event is a crash between ``deliver`` returning and the spool being updated; the
event's ``event_id`` is the transform's dedupe key, so the curated tables still count it once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest import fastjson
from modelmeter.constants import ENV_SPOOL_DIR

log = logging.getLogger(__name__)

Deliver = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]

_OPEN_SUFFIX = ".open"
_SLICE = 500  # events converted to Arrow at a time by the local emitter
_SEGMENT_SUFFIX = ".jsonl"


class SpoolLockedError(RuntimeError):
    """Another emitter (another process) is using this spool directory."""


class Emitter:
    """Durable, batching usage-event emitter (implements :class:`ingest.ports.EventEmitter`).

    Args:
        deliver: sends a batch to the sink; returns the events that were not delivered (``[]`` when all were).
            Raising counts as "nothing delivered".
        spool_dir: directory of the spool segments (created; locked for this process).
        batch_size: events per ``deliver`` call (Firehose ``PutRecordBatch`` takes at most 500).
        max_segment_events: rotate the current segment once it holds this many events.
        flush_interval: seconds after which a non-empty segment is rotated and delivered anyway.
        max_backoff: ceiling of the retry delay after a failed delivery, in seconds.
        start: start the background thread now (tests may drive delivery with :meth:`flush`).
    """

    def __init__(self, *, deliver: Deliver, spool_dir: str | os.PathLike[str], batch_size: int = 500,
                 max_segment_events: int = 5000, flush_interval: float = 1.0, max_backoff: float = 30.0,
                 start: bool = True):
        self.deliver = deliver
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.max_segment_events = max_segment_events
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.delivered_count = 0
        self._lock_fd: int | None = self._take_spool_lock()
        self._recover_open_segments()
        self._lock = threading.Lock()        # guards the current segment (emit vs rotate)
        self._deliver_lock = threading.Lock()  # one delivery pass at a time (thread vs flush)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fd: int | None = None
        self._segment: Path | None = None
        self._segment_events = 0
        self._segment_started = 0.0
        self._seq = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="modelmeter-emitter", daemon=True)
            self._thread.start()

    # --- the request path ---------------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """Append one event to the spool; returns without waiting for the sink."""
        line = fastjson.dumps(event) + b"\n"
        with self._lock:
            if self._closed:
                raise RuntimeError("emitter is closed")
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None  # opened just above
            os.write(self._fd, line)  # O_APPEND: one atomic append, in the OS page cache once this returns
            self._segment_events += 1
            full = self._segment_events >= self.max_segment_events
        if full:
            self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def flush(self, *, timeout: float = 30.0) -> bool:
        """Deliver everything emitted so far, retrying failures until ``timeout``; ``True`` if the spool is empty.

        Events that could not be delivered in time stay in the spool and go out on the next start.
        """
        self._rotate()
        deadline = time.monotonic() + timeout
        while True:
            self._deliver_pending(ignore_backoff=True)
            if not self.pending_segments():
                return True
            if time.monotonic() >= deadline:
                log.warning("usage events still spooled in %s after %.0f s; they will be delivered on next start",
                            self.spool_dir, timeout)
                return False
            time.sleep(min(0.05 + self._backoff, max(0.0, deadline - time.monotonic())))

    def close(self, *, timeout: float = 30.0) -> bool:
        """Stop the background thread and flush (SIGTERM path); ``True`` if nothing is left in the spool."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        ok = self.flush(timeout=timeout)
        with self._lock:
            self._closed = True
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return ok

    def pending_segments(self) -> list[Path]:
        """Closed segments waiting for delivery, oldest first."""
        return sorted(self.spool_dir.glob(f"*{_SEGMENT_SUFFIX}"))

    def pending_events(self) -> int:
        """Events in the spool not yet confirmed (closed segments and the open one)."""
        total = 0
        for path in [*self.pending_segments(), *self.spool_dir.glob(f"*{_OPEN_SUFFIX}")]:
            with path.open("rb") as src:
                total += sum(1 for line in src if line.strip())
        return total

    # --- spool files --------------------------------------------------------------------------------------------

    def _take_spool_lock(self) -> int:
        fd = os.open(self.spool_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(f"spool {self.spool_dir} is in use by another emitter; give each its own "
                                   f"spool directory") from None
        return fd

    def _recover_open_segments(self) -> None:
        # A segment still open when the previous process died: close it, so it is delivered first.
        for path in sorted(self.spool_dir.glob(f"*{_OPEN_SUFFIX}")):
            os.replace(path, path.with_suffix(_SEGMENT_SUFFIX))

    def _open_segment(self) -> None:
        self._seq += 1
        name = f"seg-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{_OPEN_SUFFIX}"
        self._segment = self.spool_dir / name
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment_events = 0
        self._segment_started = time.monotonic()

    def _rotate(self) -> None:
        """Close the current segment (if it has events) so that it can be delivered."""
        with self._lock:
            if self._fd is None or self._segment is None:
                return
            os.close(self._fd)
            os.replace(self._segment, self._segment.with_suffix(_SEGMENT_SUFFIX))
            self._fd = None
            self._segment = None

    def _segment_due(self) -> bool:
        with self._lock:
            return self._fd is not None and (
                self._segment_events >= self.max_segment_events
                or time.monotonic() - self._segment_started >= self.flush_interval)

    # --- delivery -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.flush_interval, 0.25))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if self._segment_due():
                    self._rotate()
                self._deliver_pending(ignore_backoff=False)
            except Exception:  # the thread must survive anything; events stay spooled
                log.exception("usage-event delivery pass failed; events stay in the spool")

    def _deliver_pending(self, *, ignore_backoff: bool) -> None:
        if not ignore_backoff and time.monotonic() < self._retry_at:
            return
        with self._deliver_lock:
            for path in self.pending_segments():
                if not self._deliver_segment(path):
                    self._backoff = min(self.max_backoff, max(0.1, self._backoff * 2))
                    self._retry_at = time.monotonic() + self._backoff
                    return
            self._backoff = 0.0
            self._retry_at = 0.0

    def _deliver_segment(self, path: Path) -> bool:
        """Deliver one segment; ``True`` when all of it is confirmed (segment removed)."""
        events = _read_segment(path)
        remaining: list[dict[str, Any]] = []
        for start in range(0, len(events), self.batch_size):
            batch = events[start:start + self.batch_size]
            try:
                failed = list(self.deliver(batch) or [])
            except Exception as exc:
                log.warning("usage-event delivery failed (%s: %s); will retry", type(exc).__name__, exc)
                failed = batch
            self.delivered_count += len(batch) - len(failed)
            remaining.extend(failed)
        if not remaining:
            path.unlink()
            return True
        if len(remaining) < len(events):
            _rewrite_segment(path, remaining)  # drop the confirmed ones, atomically
        return False


def _read_segment(path: Path) -> list[dict[str, Any]]:
    events = []
    with path.open("rb") as src:
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            try:
                events.append(fastjson.loads(line))
            except ValueError:
                # Only the last line of a segment cut by a crash can be partial; keep it aside, never drop silently.
                log.error("spool %s line %d is not valid JSON (cut by a crash?); moved to %s.bad",
                          path, number, path.name)
                with open(f"{path}.bad", "ab") as bad:
                    bad.write(line if line.endswith(b"\n") else line + b"\n")
    return events


def _rewrite_segment(path: Path, events: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rewrite-", suffix=".tmp")
    with os.fdopen(fd, "wb") as out:
        for event in events:
            out.write(fastjson.dumps(event) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def default_spool_dir(name: str = "spool") -> Path:
    """``$MODELMETER_SPOOL_DIR``, else ``<tmp>/modelmeter-<name>``."""
    return Path(os.environ.get(ENV_SPOOL_DIR) or Path(tempfile.gettempdir()) / f"modelmeter-{name}")


def local_emitter(*, lake: Any, spool_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Emitter:
    """An emitter that lands events in ``lake``'s ``raw/usage_events`` via :class:`ingest.sink.LocalParquetSink`.

    Like Firehose's buffering, it writes few, larger files: by default a batch is up to 20,000 events or 5 s.
    Events that do not follow schema v1 are set aside in the lake's quarantine with their reason (a gateway bug,
    but never a reason to block the others).
    """
    import pyarrow as pa

    from ingest.sink import LocalParquetSink

    sink = LocalParquetSink(lake)
    fast_schema = _string_time_schema(sink.schema)

    def deliver(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Converted in slices: Arrow holds the GIL while it converts Python objects, and a 20,000-row conversion
        # (~70 ms) would stall the gateway's event loop; a slice is ~2 ms.
        tables, checked = [], []
        for start in range(0, len(batch), _SLICE):
            part = batch[start:start + _SLICE]
            table = _fast_table(part, fast_schema)
            if table is None:
                checked += part
            else:
                tables.append(table)
        if tables:
            sink.write_table(pa.concat_tables(tables))
        if checked:
            _deliver_checked(lake, sink, checked)
        return []

    if spool_dir is None:
        # Beside the lake's data (``_`` keeps it out of every listing), so a restart on the same lake recovers it.
        spool_dir = Path(lake.path("_spool", "gateway")) if lake.is_local else default_spool_dir()
    for name, value in (("batch_size", 20_000), ("max_segment_events", 20_000), ("flush_interval", 5.0)):
        kwargs.setdefault(name, value)
    return Emitter(deliver=deliver, spool_dir=spool_dir, **kwargs)


def _string_time_schema(schema: Any) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string()) if f.name == "event_time" else f for f in schema],
                     metadata=schema.metadata)


def _fast_table(batch: list[dict[str, Any]], schema: Any) -> Any:
    """The batch as a table in one vectorised pass, or ``None`` when any event needs the per-event checks.

    The gateway's own events are valid by construction; this skips ~25 µs of Python per event in the gateway
    process. Anything Arrow cannot type, a missing or empty required field, or a bad time falls back.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from ingest.schema import REQUIRED, SCHEMA_VERSION

    int_fields = [f.name for f in schema if pa.types.is_integer(f.type)]
    for event in batch:  # Arrow would quietly truncate 1.5 (or take True) into an integer column
        for name in int_fields:
            value = event.get(name)
            if value is not None and type(value) is not int:
                return None
    try:
        table = pa.Table.from_pylist(batch, schema=schema)
        for name in REQUIRED:
            column = table[name]
            if column.null_count or (pa.types.is_string(column.type) and pc.any(pc.equal(column, "")).as_py()):
                return None
        if not pc.all(pc.equal(table["schema_version"], SCHEMA_VERSION)).as_py():
            return None
        times = table["event_time"].cast(pa.timestamp("ms", tz="UTC"))
        return table.set_column(table.schema.get_field_index("event_time"), "event_time", times)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


def _deliver_checked(lake: Any, sink: Any, batch: list[dict[str, Any]]) -> None:
    from ingest.schema import EventError, parse_event
    from ingest.sink import Rejected, write_quarantine

    rows, bad = [], []
    for event in batch:
        try:
            rows.append(parse_event(event))
        except EventError as exc:
            bad.append(Rejected(reason=str(exc), stage="ingest", raw=json.dumps(event, default=str),
                                source_file="gateway-spool"))
    sink.write_rows(rows)
    if bad:
        write_quarantine(lake, bad)

"""Usage-event emission off the request path: a durable local spool, a journal of calls in flight, a deliverer.

``Emitter.emit`` appends the event as one JSON line to the current spool segment (one ``write`` system call) and
returns. A background thread fsyncs the spool every ``fsync_interval`` (group commit), rotates the segment when it is
big or old enough and hands its events to ``deliver`` in batches. ``deliver`` returns the events it could NOT deliver
(a partial failure, e.g. Firehose ``FailedPutCount``); those stay in the spool and are retried with exponential
backoff. A segment is removed once every event in it is confirmed; one that still holds undelivered events is
rewritten without the confirmed ones; while a segment cannot be removed or rewritten, its confirmed lines are
remembered, so a confirmed event is never sent again by this process. Segments left by a previous run are delivered
first on start.

Before a model is called, :meth:`Emitter.open_call` writes the call's placeholder event to the journal
(:mod:`ingest.spool`); the call's real event closes it. On start, every call a dead process left open becomes its
placeholder event (``status`` ``unknown``, estimated counts): a call that reached the provider is billed even if the
process was killed.

When the spool cannot be written (permissions, a full disk), events are held in memory, delivered straight to the sink
when it takes them, and written to the spool as soon as it works again. Once ``max_backlog`` events are held,
:meth:`Emitter.admit` refuses new calls with 503 (fail-closed): the gateway never calls a model it could not bill.
The bounds are in docs/gateway.md ("When usage cannot be recorded").

A crash between ``deliver`` returning and the spool being updated can send an event twice; the event's
``event_id`` is the transform's dedupe key, so the curated tables still count it once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from common.constants import ENV_SPOOL_DIR
from common.contracts import EventError, ValueRule, parse_event, value_rules
from common.errors import ServiceUnavailable
from ingest import fastjson
from ingest.sink import LocalParquetSink, Rejected, write_quarantine
from ingest.spool import (
    OPEN_SUFFIX,
    SEGMENT_SUFFIX,
    CallJournal,
    SegmentFile,
    count_lines,
    fsync_and_close,
    read_segment,
    recover_calls,
)

log = logging.getLogger(__name__)

Deliver = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]

_SLICE = 500  # events converted to Arrow at a time by the local emitter
#: Events held in memory while the spool cannot be written; then new calls are refused with 503.
DEFAULT_MAX_BACKLOG = 2_000
#: Group commit: the spool and the journal are fsync'd this often, so a machine crash loses at most this much.
DEFAULT_FSYNC_INTERVAL = 0.2
#: While the spool fails, events of refused calls (no model called) are kept in memory up to this many times
#: ``max_backlog``; model calls are refused (503) at ``max_backlog``, so their events always fit.
REFUSAL_BACKLOG_FACTOR = 4
#: Seconds a client is told to wait (Retry-After) when the gateway refuses calls it could not bill.
UNAVAILABLE_RETRY_AFTER = 5


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
        max_backlog: events held in memory while the spool cannot be written before new calls get 503.
        fsync_interval: seconds between two fsyncs of the spool (the bound on a machine crash's loss).
        start: start the background thread now (tests may drive delivery with :meth:`flush`).
    """

    def __init__(self, *, deliver: Deliver, spool_dir: str | os.PathLike[str], batch_size: int = 500,
                 max_segment_events: int = 5000, flush_interval: float = 1.0, max_backoff: float = 30.0,
                 max_backlog: int = DEFAULT_MAX_BACKLOG, fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
                 start: bool = True):
        self.deliver = deliver
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.max_segment_events = max_segment_events
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.max_backlog = max_backlog
        self.fsync_interval = fsync_interval
        self.delivered_count = 0
        self.recovered_calls = 0
        self.unrecorded_refusals = 0
        self._lock_fd: int | None = self._take_spool_lock()
        self._lock = threading.Lock()          # guards the segment, the journal and the backlog
        self._deliver_lock = threading.Lock()  # one delivery pass at a time (thread vs flush)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._segment = SegmentFile(self.spool_dir)
        self._journal = CallJournal(self.spool_dir)
        self._backlog: deque[tuple[str | None, bytes]] = deque()  # (event_id, line) not in the spool yet
        self._spool_error: str | None = None
        self._rotate_error: str | None = None
        self._confirmed: dict[str, set[int]] = {}  # segment name → its delivered lines, while it cannot be removed
        self._set_aside: set[str] = set()          # segments whose cut lines are already in their .bad file
        self._backoff = 0.0
        self._retry_at = 0.0
        self._direct_retry_at = 0.0
        self._next_sync = 0.0
        self._quiet_until = 0.0
        self._closed = False
        self._recover()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="modelmeter-emitter", daemon=True)
            self._thread.start()

    # --- the request path ---------------------------------------------------------------------------------------

    def admit(self) -> None:
        """Refuse a new call (503) when its usage could not be recorded: shutting down, or the spool failing with
        ``max_backlog`` events already held in memory."""
        if self._closed:
            raise ServiceUnavailable("the gateway is shutting down; retry shortly",
                                     retry_after=UNAVAILABLE_RETRY_AFTER)
        if self._spool_error is not None and len(self._backlog) + len(self._journal.open_calls) >= self.max_backlog:
            raise ServiceUnavailable("the gateway cannot record usage right now, so it calls no model; retry shortly",
                                     retry_after=UNAVAILABLE_RETRY_AFTER)

    def open_call(self, placeholder: dict[str, Any]) -> None:
        """Note a call before it is sent to the provider; its event (same ``event_id``) passed to :meth:`emit`
        closes it. After a crash, the placeholder becomes the call's event."""
        line = fastjson.dumps(placeholder)
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("the gateway is shutting down; retry shortly",
                                         retry_after=UNAVAILABLE_RETRY_AFTER)
            if not self._journal.record_open(str(placeholder["event_id"]), line):
                self._failing("the journal of calls in flight cannot be written")

    def emit(self, event: dict[str, Any]) -> None:
        """Append one event to the spool (or, while it fails, to memory); returns without waiting for the sink."""
        line = fastjson.dumps(event) + b"\n"
        event_id = event.get("event_id")
        with self._lock:
            if self._closed:
                raise RuntimeError("emitter is closed")
            if not self._backlog and self._append(line):
                self._journal.record_done(event_id)
                wake = self._segment.lines >= self.max_segment_events
            elif len(self._backlog) < REFUSAL_BACKLOG_FACTOR * self.max_backlog or event_id in self._journal.open_calls:
                self._backlog.append((event_id, line))
                wake = True
            else:
                self._unrecorded(event)
                wake = True
        if wake:
            self._wake.set()

    def _unrecorded(self, event: dict[str, Any]) -> None:
        """An event of a call that reached no model (a refusal), with memory full and the spool failing: counted
        and logged, the one kind of event that can be lost (it bills nothing; see docs/gateway.md)."""
        if not self.unrecorded_refusals:
            log.error("spool %s failing and %d events in memory: events of refused calls (no model called) are "
                      "counted, not kept, until it recovers", self.spool_dir, len(self._backlog))
        self.unrecorded_refusals += 1
        log.warning("unrecorded usage event of a refused call: team %s, status %s, http %s, request %s",
                    event.get("team_id"), event.get("status"), event.get("http_status"), event.get("request_id"))

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` shows: whether the spool works, and what memory holds."""
        return {"spool": "ok" if self._spool_error is None else "failing", "spool_error": self._spool_error,
                "events_in_memory": len(self._backlog), "calls_in_flight": len(self._journal.open_calls),
                "unrecorded_refusals": self.unrecorded_refusals}

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def flush(self, *, timeout: float = 30.0) -> bool:
        """Deliver everything emitted so far, retrying failures until ``timeout``; ``True`` if nothing is left.

        Events that could not be delivered in time stay in the spool and go out on the next start.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._rotate()
            self._drain_backlog(direct=True)
            self._deliver_pending(ignore_backoff=True)
            if (not self._backlog and not self.pending_segments() and self._rotate_error is None
                    and not self._segment.abandoned):  # nothing left in memory, in a closed or in an unsealed segment
                return True
            if time.monotonic() >= deadline:
                log.warning("usage events still spooled in %s after %.0f s; they will be delivered on next start",
                            self.spool_dir, timeout)
                return False
            time.sleep(min(0.05 + self._backoff, max(0.0, deadline - time.monotonic())))

    def close(self, *, timeout: float = 30.0) -> bool:
        """Stop the background thread and flush (SIGTERM path); ``True`` if nothing is left in the spool.

        ``timeout`` is one budget for both: the thread's pass in flight, then the flush in what is left of it (a
        deliverer whose calls stop at a deadline, as the container's, keeps the last pass inside it too).
        Calls still open now will never finish (the server has stopped): their placeholders become their events.
        Events that neither the spool nor the sink took are written to a rescue file, never dropped.
        """
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        with self._lock:
            unfinished = list(self._journal.open_calls.values())
        for placeholder in unfinished:
            self.emit(fastjson.loads(placeholder))
        ok = self.flush(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            self._journal.close()
            if self._backlog:
                self._rescue()
            self._segment.drop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return ok

    def pending_segments(self) -> list[Path]:
        """Closed segments waiting for delivery, oldest first."""
        return sorted(self.spool_dir.glob(f"*{SEGMENT_SUFFIX}"))

    def pending_events(self) -> int:
        """Events not yet confirmed: in memory, in closed segments and in the open one."""
        total = len(self._backlog)
        # The open segment is listed first: sealed after that listing, it is in the second one (counted once).
        for path in [*self.spool_dir.glob(f"*{OPEN_SUFFIX}"), *self.pending_segments()]:
            lines = count_lines(path)
            if lines is None:
                continue  # the delivery thread renamed (sealed) or removed (delivered) it since the listing
            total += lines - len(self._confirmed.get(path.name, ()))
        return total

    # --- spool files --------------------------------------------------------------------------------------------

    def _take_spool_lock(self) -> int:
        fd = os.open(self.spool_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(f"spool {self.spool_dir} is in use by another emitter (another gateway on the "
                                   f"same lake?); give each its own spool directory") from None
        return fd

    def _recover(self) -> None:
        """A previous process's leftovers: open segments are closed for delivery, open calls become events."""
        for path in sorted(self.spool_dir.glob(f"*{OPEN_SUFFIX}")):
            os.replace(path, path.with_suffix(SEGMENT_SUFFIX))
        for path in self.spool_dir.glob(".rewrite-*.tmp"):  # a rewrite cut by the crash: its segment is intact
            path.unlink()
        placeholders, journals = recover_calls(self.spool_dir)
        if placeholders:
            log.warning("%d model calls were in flight when the previous gateway process stopped; they are billed "
                        "with status unknown and estimated counts", len(placeholders))
            segment = SegmentFile(self.spool_dir)
            for placeholder in placeholders:
                segment.append(fastjson.dumps(placeholder) + b"\n")
            fd = segment.seal()
            if fd is not None:
                fsync_and_close(fd)
            self.recovered_calls = len(placeholders)
        for journal in journals:
            journal.unlink()

    def _append(self, line: bytes) -> bool:
        """Append to the current segment (under ``_lock``); ``False`` when the spool cannot be written."""
        try:
            self._segment.append(line)
        except OSError as exc:
            self._failing(f"{exc.strerror or exc}")
            return False
        if self._spool_error is not None and not self._backlog:
            self._recovered()
        return True

    def _recovered(self) -> None:
        if self._may_log():
            log.warning("spool %s can be written again", self.spool_dir)
        self._spool_error = None

    def _probe(self) -> bool:
        """Whether the spool takes a page of data again (nothing else to write proves it)."""
        probe = self.spool_dir / ".probe"
        try:
            with open(probe, "wb") as out:
                out.write(b"\0" * 4096)
                out.flush()
                os.fsync(out.fileno())
            probe.unlink()
        except OSError:
            return False
        return True

    def _may_log(self) -> bool:
        """At most one fault or recovery message every 10 s: a disk at its last bytes flaps on every call."""
        now = time.monotonic()
        if now < self._quiet_until:
            return False
        self._quiet_until = now + 10.0
        return True

    def _failing(self, reason: str) -> None:
        if self._spool_error is None and self._may_log():
            log.error("spool %s cannot be written (%s): usage events are held in memory and sent to the sink "
                      "directly; new calls are refused with 503 once %d are held", self.spool_dir, reason,
                      self.max_backlog)
        self._spool_error = reason

    def _rotate(self) -> None:
        """Close the current segment (if it has events) so that it can be delivered."""
        with self._lock:
            try:
                self._segment.seal_abandoned()
                fd = self._segment.seal()
            except OSError as exc:
                if self._rotate_error is None:
                    log.error("spool segment %s cannot be closed for delivery (%s); events keep going into it and "
                              "it is retried", self._segment.path, exc.strerror or exc)
                self._rotate_error = str(exc)
                return
            self._rotate_error = None
        if fd is not None:
            fsync_and_close(fd)  # ours alone now: detached from the segment before the close

    def _segment_due(self) -> bool:
        with self._lock:
            segment = self._segment
            return bool(segment.abandoned) or segment.fd is not None and segment.lines > 0 and (
                segment.lines >= self.max_segment_events
                or time.monotonic() - segment.started >= self.flush_interval)

    def _sync(self) -> None:
        """Group commit: fsync what was written since the last time (duplicated descriptors, outside the lock)."""
        now = time.monotonic()
        if now < self._next_sync:
            return
        self._next_sync = now + self.fsync_interval
        with self._lock:
            try:
                fds = [fd for fd in (self._segment.dup_for_sync(), self._journal.file.dup_for_sync()) if fd is not None]
            except OSError:
                return
        if not fds:
            return
        for fd in fds:
            fsync_and_close(fd)
        try:
            fsync_and_close(os.open(self.spool_dir, os.O_RDONLY | os.O_CLOEXEC))  # the files' names
        except OSError:
            pass

    def _drain_backlog(self, *, direct: bool = False) -> None:
        """Write what memory holds to the spool; what the spool refuses goes to the sink directly (with backoff)."""
        with self._deliver_lock:
            with self._lock:
                while self._backlog:
                    event_id, line = self._backlog[0]
                    if not self._append(line):
                        break
                    self._backlog.popleft()
                    self._journal.record_done(event_id)
                stuck = list(self._backlog)
                probe = not stuck and self._spool_error is not None
            if probe and self._probe():  # outside the lock: it fsyncs, and emit() runs on the event loop
                with self._lock:
                    if not self._backlog:
                        self._recovered()
            with self._lock:
                if self._journal.compact_due() and self._spool_error is None:
                    self._journal.compact()
            if stuck and (direct or time.monotonic() >= self._direct_retry_at):
                self._deliver_direct(stuck)

    def _deliver_direct(self, stuck: list[tuple[str | None, bytes]]) -> None:
        events = [fastjson.loads(line) for _, line in stuck]
        failed = {id(e) for e in self._send(events)}
        with self._lock:
            head = [self._backlog.popleft() for _ in range(len(stuck))]  # only this pass pops: the same entries
            keep = [entry for entry, event in zip(head, events, strict=True) if id(event) in failed]
            self._backlog.extendleft(reversed(keep))
            for entry, event in zip(head, events, strict=True):
                if id(event) not in failed:
                    self._journal.record_done(entry[0])
        self.delivered_count += len(stuck) - len(keep)
        if keep:
            self._direct_retry_at = time.monotonic() + max(0.1, self._backoff)

    def _rescue(self) -> None:
        """Last resort at exit when neither the spool nor the sink took the events: a file elsewhere, or the log."""
        lines = b"".join(line for _, line in self._backlog)
        path = Path(tempfile.gettempdir()) / f"modelmeter-rescued-{os.getpid()}-{time.time_ns()}.jsonl"
        try:
            path.write_bytes(lines)
            log.error("%d usage events could not be spooled or delivered; saved to %s: pass it to `modelmeter "
                      "ingest`", len(self._backlog), path)
        except OSError:
            log.error("%d usage events could not be spooled, delivered or saved; here they are, one JSON line "
                      "each, for `modelmeter ingest`:\n%s", len(self._backlog), lines.decode())
        self._backlog.clear()

    # --- delivery -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.flush_interval, self.fsync_interval, 0.25))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._drain_backlog()
                if self._segment_due():
                    self._rotate()
                self._sync()
                self._deliver_pending(ignore_backoff=False)
            except Exception:  # the thread must survive anything; events stay spooled
                log.exception("usage-event delivery pass failed; events stay in the spool")

    def _deliver_pending(self, *, ignore_backoff: bool) -> None:
        if not ignore_backoff and time.monotonic() < self._retry_at:
            return
        with self._deliver_lock:
            # every segment gets its pass: one that cannot complete (a record the sink refuses) holds up no other
            failed = [path for path in self.pending_segments() if not self._deliver_segment(path)]
            if failed:
                self._backoff = min(self.max_backoff, max(0.1, self._backoff * 2))
                self._retry_at = time.monotonic() + self._backoff
                return
            self._backoff = 0.0
            self._retry_at = 0.0

    def _send(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``deliver`` in batches; the events not delivered (all of a batch whose call raised)."""
        failed: list[dict[str, Any]] = []
        for start in range(0, len(events), self.batch_size):
            batch = events[start:start + self.batch_size]
            try:
                failed += list(self.deliver(batch) or [])
            except Exception as exc:
                log.warning("usage-event delivery failed (%s: %s); will retry", type(exc).__name__, exc)
                failed += batch
        return failed

    def _deliver_segment(self, path: Path) -> bool:
        """Deliver one segment; ``True`` when all of it is confirmed and the segment removed."""
        events, bad = read_segment(path)
        kept_aside = not bad or self._keep_aside(path, bad)
        done = self._confirmed.get(path.name, set())
        todo = [i for i in range(len(events)) if i not in done]
        failed = {id(e) for e in self._send([events[i] for i in todo])} if todo else set()
        newly = {i for i in todo if id(events[i]) not in failed}
        self.delivered_count += len(newly)
        done = done | newly
        try:
            if len(done) == len(events) and kept_aside:
                path.unlink(missing_ok=True)
            elif newly or (bad and kept_aside):
                _rewrite_segment(path, [e for i, e in enumerate(events) if i not in done])
                done = set()
            self._confirmed.pop(path.name, None)
            self._set_aside.discard(path.name)
        except OSError as exc:
            # Delivered but not removable: remember what went out, so it is never sent again; back off.
            log.warning("spool segment %s cannot be updated after delivery (%s); its %d delivered events are "
                        "remembered and not sent again", path, exc.strerror or exc, len(done))
            self._confirmed[path.name] = done
            return False
        return len(done) == len(events) and kept_aside

    def _keep_aside(self, path: Path, bad: list[tuple[int, bytes]]) -> bool:
        """Lines cut by a crash go to ``<segment>.bad``, never dropped silently; ``False`` if that cannot be written."""
        if path.name in self._set_aside:
            return True
        try:
            with open(f"{path}.bad", "ab") as out:
                for number, line in bad:
                    log.error("spool %s line %d is not valid JSON (cut by a crash?); kept in %s.bad", path, number,
                              path.name)
                    out.write(line if line.endswith(b"\n") else line + b"\n")
        except OSError as exc:
            log.error("spool %s: cut lines cannot be kept aside (%s); the segment stays", path, exc.strerror or exc)
            return False
        self._set_aside.add(path.name)
        return True


def _rewrite_segment(path: Path, events: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rewrite-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for event in events:
                out.write(fastjson.dumps(event) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_spool_dir(name: str = "spool") -> Path:
    """``$MODELMETER_SPOOL_DIR``, else ``<tmp>/modelmeter-<name>``."""
    return Path(os.environ.get(ENV_SPOOL_DIR) or Path(tempfile.gettempdir()) / f"modelmeter-{name}")


def local_emitter(*, lake: Any, spool_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Emitter:
    """An emitter that lands events in ``lake``'s ``raw/usage_events`` via :class:`ingest.sink.LocalParquetSink`.

    Like Firehose's buffering, it writes few, larger files: by default a batch is up to 20,000 events or 5 s.
    Events that do not follow schema v1 are set aside in the lake's quarantine with their reason (a gateway bug,
    but never a reason to block the others).
    """
    sink = LocalParquetSink(lake)
    fast_schema = _string_time_schema(sink.schema)
    # Arrow imports pandas on its first conversion of Python objects (0.2-0.8 s of CPU, holding the GIL): here, at
    # start-up, rather than in the first delivery, where it stalled the event loop of a serving gateway for as long
    # (bench/gateway.py: the sequential p99 and the CPU per request of the run it fell in).
    pa.Table.from_pylist([], schema=fast_schema)

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

    if spool_dir is None and not os.environ.get(ENV_SPOOL_DIR) and lake.is_local:
        # Beside the lake's data (``_`` keeps it out of every listing), so a restart on the same lake recovers it;
        # $MODELMETER_SPOOL_DIR gives each of several gateways on one lake its own.
        spool_dir = Path(lake.path("_spool", "gateway"))
    elif spool_dir is None:
        spool_dir = default_spool_dir()
    for name, value in (("batch_size", 20_000), ("max_segment_events", 20_000), ("flush_interval", 5.0)):
        kwargs.setdefault(name, value)
    return Emitter(deliver=deliver, spool_dir=spool_dir, **kwargs)


def _string_time_schema(schema: Any) -> Any:
    return pa.schema([pa.field(f.name, pa.string()) if f.name == "event_time" else f for f in schema],
                     metadata=schema.metadata)


def _fast_table(batch: list[dict[str, Any]], schema: Any) -> Any:
    """The batch as a table in one vectorised pass, or ``None`` when any event needs the per-event checks.

    The gateway's own events are valid by construction; this skips ~25 µs of Python per event in the gateway
    process. Anything Arrow cannot type, a missing or empty required field, or a bad time falls back.
    """
    int_fields = [f.name for f in schema if pa.types.is_integer(f.type)]
    for event in batch:  # Arrow would quietly truncate 1.5 (or take True) into an integer column
        for name in int_fields:
            value = event.get(name)
            if value is not None and type(value) is not int:
                return None
    try:
        table = pa.Table.from_pylist(batch, schema=schema)
        if any(_broken(table, rule) for rule in _STRUCTURE_RULES):
            return None
        times = table["event_time"].cast(pa.timestamp("ms", tz="UTC"))
        return table.set_column(table.schema.get_field_index("event_time"), "event_time", times)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


#: The contract's rules on structure (version, required fields present and not empty): the checked path applies
#: them one event at a time (``parse_event``), the fast path as whole columns.
_STRUCTURE_RULES = [r for r in value_rules() if r.check in ("known_version", "present", "not_empty")]


def _broken(table: Any, rule: ValueRule) -> bool:
    """Whether any row of ``table`` breaks one of :data:`_STRUCTURE_RULES`."""
    column = table[rule.column]
    if rule.check == "present":
        return column.null_count > 0
    if rule.check == "not_empty":
        return bool(pc.any(pc.equal(column, "")).as_py())
    return not pc.all(pc.is_in(column, value_set=pa.array(rule.values, type=column.type))).as_py()


def _deliver_checked(lake: Any, sink: Any, batch: list[dict[str, Any]]) -> None:
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

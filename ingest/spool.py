"""The spool's files: segments of usage events, and the journal of model calls in flight.

Both are append-only files in the spool directory, written by one process (the directory is locked, see
:mod:`ingest.emit`) under the emitter's lock. Two rules keep them safe under faults:

- **A descriptor is never kept after it was closed.** A segment is renamed *before* its descriptor is closed, and the
  descriptor is dropped from the object before ``close``; a failed rename leaves the segment open and current. (The
  earlier code closed first: when the rename then failed, later appends went to a descriptor number the process had
  meanwhile reused for a client's socket, and tenants received other teams' events.)
- **A failed append leaves no partial line.** Each line is one ``write``; when it fails or is short (disk full), the
  file is truncated back to its last whole line. If even that fails, the file is abandoned (closed, never written
  again) so that no later line can be glued to the cut one.

The journal records a call *before* it is sent to the provider (``{"open": <placeholder event>}``) and marks it done
once its real event is in a segment (``{"done": "<event_id>"}``). After a crash, :func:`recover_calls` turns every open
call whose event is nowhere in the spool into its placeholder: ``status`` ``unknown``, ``token_source`` ``estimated``,
the same ``event_id`` (so a copy that did land is preferred by the transform's dedupe).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

from ingest import fastjson

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"
SEGMENT_SUFFIX = ".jsonl"
JOURNAL_SUFFIX = ".calls"
#: The journal is rewritten with only the calls still open once it holds this many lines.
JOURNAL_COMPACT_LINES = 20_000


class AppendFile:
    """One append-only file of whole lines, opened on first use; see the module's two rules."""

    def __init__(self, directory: Path, *, prefix: str, suffix: str):
        self.directory, self.prefix, self.suffix = directory, prefix, suffix
        self.fd: int | None = None
        self.path: Path | None = None
        self.size = 0            # bytes of whole lines written
        self.lines = 0
        self.started = 0.0       # monotonic time of the first line
        self.synced_size = 0     # ``size`` at the last fsync
        self.abandoned: list[Path] = []
        self._seq = 0

    def append(self, line: bytes) -> None:
        """Append one whole line; raises ``OSError`` with the file left at its last whole line."""
        if self.fd is None:
            self._open()
        assert self.fd is not None
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write to the spool ({written} of {len(line)} bytes)")
        except OSError:
            self._undo_partial()
            raise
        self.size += len(line)
        self.lines += 1

    def _open(self) -> None:
        self._seq += 1
        path = self.directory / f"{self.prefix}-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{self.suffix}"
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.path, self.size, self.lines, self.synced_size = path, 0, 0, 0
        self.started = time.monotonic()

    def _undo_partial(self) -> None:
        assert self.fd is not None
        try:
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
        except OSError as exc:
            log.error("spool file %s could not be cut back to its last whole line (%s); it is closed and not "
                      "written again", self.path, exc)
            assert self.path is not None
            self.abandoned.append(self.path)
            self.drop()

    def detach(self) -> int | None:
        """Forget the current file and hand its descriptor to the caller (who fsyncs and closes it)."""
        fd, self.fd, self.path = self.fd, None, None
        return fd

    def drop(self) -> None:
        """Forget the current file and close its descriptor."""
        fd = self.detach()
        if fd is not None:
            _close_quietly(fd)

    def dup_for_sync(self) -> int | None:
        """A duplicate of the descriptor when there are unsynced bytes: fsync it outside the lock, then close it."""
        if self.fd is None or self.size == self.synced_size:
            return None
        self.synced_size = self.size
        return os.dup(self.fd)


class SegmentFile(AppendFile):
    """The open segment of usage events (``seg-….open``); sealed into ``seg-….jsonl`` for delivery."""

    def __init__(self, directory: Path):
        super().__init__(directory, prefix="seg", suffix=OPEN_SUFFIX)

    def seal(self) -> int | None:
        """Rename the segment to ``.jsonl`` and hand back its descriptor; on failure it stays open and current."""
        if self.fd is None or self.path is None or self.lines == 0:
            return None
        os.replace(self.path, self.path.with_suffix(SEGMENT_SUFFIX))  # raises: nothing changed
        return self.detach()

    def seal_abandoned(self) -> None:
        """Rename segments abandoned after a failed write (retried until it works; a restart also does it)."""
        for path in list(self.abandoned):
            os.replace(path, path.with_suffix(SEGMENT_SUFFIX))
            self.abandoned.remove(path)


class CallJournal:
    """Calls sent to a provider whose usage event is not spooled yet: on disk for a restart, in memory for this run."""

    def __init__(self, directory: Path):
        self.file = AppendFile(directory, prefix="calls", suffix=JOURNAL_SUFFIX)
        self.open_calls: dict[str, bytes] = {}  # event_id → the placeholder event (JSON)
        self.stale = False  # a "done" could not be written: compact when the disk is back

    def record_open(self, event_id: str, placeholder: bytes) -> bool:
        """Note a call before it is sent; ``False`` when only memory holds it (the spool is failing)."""
        self.open_calls[event_id] = placeholder
        try:
            self.file.append(b'{"open":' + placeholder + b"}\n")
        except OSError:
            self.stale = True  # written to a new journal by the next compaction, once the disk takes it
            return False
        return True

    def record_done(self, event_id: str | None) -> None:
        """The call's event is in a segment (or delivered): the call needs no placeholder any more."""
        if event_id is None or self.open_calls.pop(event_id, None) is None:
            return
        try:
            self.file.append(b'{"done":' + fastjson.dumps(event_id) + b"}\n")
        except OSError:
            self.stale = True

    def compact_due(self) -> bool:
        return self.stale or self.file.lines >= JOURNAL_COMPACT_LINES

    def compact(self) -> None:
        """Start a new journal holding only the open calls, then remove the old one (a crash between: both are read).

        No fsync here (the caller holds the emitter's lock): the group commit syncs the new file within its interval,
        the bound on a machine crash's loss as for everything else in the spool."""
        old_path, old_fd = self.file.path, self.file.detach()
        try:
            for placeholder in self.open_calls.values():
                self.file.append(b'{"open":' + placeholder + b"}\n")
        except OSError:
            self.stale = True
            if old_fd is not None:
                _close_quietly(old_fd)
            return  # the old file stays: recovery reads every journal file
        self.stale = False
        if old_fd is not None:
            _close_quietly(old_fd)
        if old_path is not None:
            _unlink_quietly(old_path)

    def close(self) -> None:
        """Clean shutdown: remove the journal if no call is open (else it stays for the next start)."""
        path = self.file.path
        self.file.drop()
        if path is not None and not self.open_calls:
            _unlink_quietly(path)


def recover_calls(directory: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """Placeholders of the calls left open by a previous process whose event is in no segment; and the journals.

    The caller spools the placeholders durably, then removes the journals (a crash in between only repeats this).
    """
    journals = sorted(directory.glob(f"*{JOURNAL_SUFFIX}"))
    opened: dict[str, bytes] = {}
    done: set[str] = set()
    for path in journals:
        for line in path.read_bytes().splitlines():
            try:
                record = fastjson.loads(line)
            except ValueError:
                continue  # a line cut by the crash: its call was not sent yet, or its "done" was not written
            if isinstance(record, dict) and isinstance(record.get("open"), dict):
                opened[str(record["open"].get("event_id"))] = line
            elif isinstance(record, dict) and isinstance(record.get("done"), str):
                done.add(record["done"])
    candidates = {event_id for event_id in opened if event_id not in done}
    if candidates:
        candidates -= _ids_in_segments(directory, candidates)
    return [fastjson.loads(opened[event_id])["open"] for event_id in sorted(candidates)], journals


def _ids_in_segments(directory: Path, ids: set[str]) -> set[str]:
    """Which of ``ids`` already have a whole event in a segment (a line cut by a crash does not count: its event
    may be in no file at all)."""
    found: set[str] = set()
    for path in [*directory.glob(f"*{SEGMENT_SUFFIX}"), *directory.glob(f"*{OPEN_SUFFIX}")]:
        for line in path.read_bytes().splitlines():
            if not any(event_id.encode() in line for event_id in ids):
                continue
            try:
                event = fastjson.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event_id") in ids:
                found.add(event["event_id"])
    return found


def read_segment(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, bytes]]]:
    """A segment's events and its lines that are not JSON (``(line number, bytes)``: cut by a crash)."""
    events, bad = [], []
    with path.open("rb") as src:
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            try:
                events.append(fastjson.loads(line))
            except ValueError:
                bad.append((number, line))
    return events, bad


def count_lines(path: Path) -> int | None:
    """The non-empty lines of a spool file; ``None`` when it is gone (the emitter's thread sealed or removed it
    between a listing and this read)."""
    try:
        with path.open("rb") as src:
            return sum(1 for line in src if line.strip())
    except FileNotFoundError:
        return None


def fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        log.warning("fsync of a spool file failed (%s)", exc)
    finally:
        _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # the descriptor is released even when close reports an error (Linux)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s (%s)", path, exc)

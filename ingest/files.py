"""``modelmeter ingest FILE.jsonl…``: land JSON Lines events in the raw lake, set bad lines aside with their reason.

Two paths, one outcome. The per-line path (:func:`_parse_line`, ``common.contracts.parse_event``) decides what a
valid line is and quarantines every other one with its file, line and reason. The fast path
(``ingest.files_fast``) reads blocks of the file with pyarrow and lands the lines it can prove valid; every line it
cannot prove goes to the per-line path, so each line is either landed by the fast path or handled by the per-line
path, never both. A refused block is halved until its good halves pass (``_SLOW_BELOW``), so a few bad lines cost
a few re-reads, not the block. The raw files hold the same rows and types either way, in line order in each file.
The fast path's work on a chunk (:func:`_prepare`) runs in parser threads a few chunks ahead; one consumer lands
the chunks in file order (:func:`_land_chunk`), so line numbers, quarantine and row order do not depend on them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.contracts import FIELDS, EventError, arrow_schema, future_problem, parse_event
from common.lake import Lake
from common.progress import ProgressCallback, no_progress
from ingest import files_fast
from ingest.sink import LocalParquetSink, Rejected, write_quarantine

#: Lines parsed before a batch is written by the per-line path: bounds memory on large files.
BATCH_LINES = 100_000
#: Bytes the fast path reads at a time (a very long line makes its chunk longer, by that line only).
CHUNK_BYTES = 8 << 20
#: Parser threads of the fast path (pyarrow's JSON reader and most numpy checks release the GIL), and chunks whose
#: parsing is started before the one being landed: at most ``AHEAD + 1`` chunks in memory.
PARSERS = 2
AHEAD = 2
#: Rows the fast path holds before it writes them: bounds memory (about 300 bytes a row) and keeps files large.
LAND_ROWS = 400_000
#: A refused block of at most this many lines is handled line by line instead of being halved again (a line by
#: line costs about what two more pyarrow reads of a small block cost).
_SLOW_BELOW = 8
_STRING_FIELDS = tuple(f.name for f in FIELDS if f.kind == "string")


@dataclass
class IngestResult:
    """Counts of one ingest run; ``read == landed + quarantined``; ``fast`` of the landed lines took the fast path."""

    read: int = 0
    landed: int = 0
    quarantined: int = 0
    fast: int = 0
    files_written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: reason", for the first few


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield ``(line number, text, decode problem)`` for each non-blank line."""
    with path.open("rb") as src:
        for number, raw in enumerate(src, start=1):
            yield from _decoded(number, raw)


def _decoded(number: int, raw: bytes | bytearray) -> Iterator[tuple[int, str | None, str | None]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield number, raw.decode("utf-8", errors="replace").rstrip("\r\n"), f"not UTF-8 text ({exc.reason})"
        return
    if text.strip():
        yield number, text.rstrip("\r\n"), None


def _parse_line(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError([f"not valid JSON ({exc.msg} at column {exc.colno})"]) from None
    except RecursionError:
        raise EventError(["not valid JSON (nested too deeply)"]) from None
    row = parse_event(obj)
    if problem := future_problem(row):
        raise EventError([problem])
    for name in _STRING_FIELDS:  # a lone surrogate ("\ud800") decodes in Python but is not text Parquet can hold
        value = row[name]
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise EventError([f"{name} holds a lone surrogate escape, not Unicode text"]) from None
    return row


class _Lander:
    """What one run holds before writing: landed rows (tagged with their place in the input) and refused lines."""

    def __init__(self, lake: Lake, result: IngestResult, keep_problems: int):
        self.lake, self.result, self.keep_problems = lake, result, keep_problems
        self.sink = LocalParquetSink(lake)
        self.tables: list[pa.Table] = []
        self.rows: list[dict[str, Any]] = []
        self.order: list[int] = []
        self.bad: list[Rejected] = []
        self.held = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._pending: Future[None] | None = None

    def line(self, path: Path, ordinal: int, number: int, text: str | None, decode_problem: str | None) -> None:
        """One line through the per-line path: landed, or quarantined with its reason."""
        self.result.read += 1
        try:
            if decode_problem:
                raise EventError([decode_problem])
            self.rows.append(_parse_line(text or ""))
            self.order.append(ordinal)
        except EventError as exc:
            reason = "; ".join(exc.problems)
            self.bad.append(Rejected(reason=reason, stage="ingest", raw=text, source_file=str(path),
                                     source_line=number))
            if len(self.result.problems) < self.keep_problems:
                self.result.problems.append(f"{path}:{number}: {reason}")
        self.held += 1

    def fast(self, events: pa.Table, ordinals: np.ndarray) -> None:
        """Rows the fast path proved valid, with their places in the input."""
        self.result.read += events.num_rows
        self.result.fast += events.num_rows
        self.tables.append(events.append_column("_order", pa.array(ordinals, pa.int64())))
        self.held += events.num_rows

    def flush(self) -> None:
        """Hand what is held to the writer thread (after the previous write is done, so at most two batches are in
        memory): one file per ``dt``/``hour`` partition and path, rows in input order; then the refused lines.
        The per-line path's few rows get files of their own, so that the fast rows need no reordering."""
        fast = pa.concat_tables(self.tables) if self.tables else None
        slow = pa.Table.from_pylist(self.rows, schema=arrow_schema()).append_column(
            "_order", pa.array(self.order, pa.int64())) if self.rows else None
        bad = self.bad
        self.tables, self.rows, self.order, self.bad, self.held = [], [], [], [], 0
        self.wait()
        # Parquet encoding and zstd release the GIL: the next chunks are parsed meanwhile
        self._pending = self._writer.submit(self._write_all, fast, slow, bad)

    def wait(self) -> None:
        """Wait for the write in flight; its error, if any, is raised here."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Write what is held and wait for every write."""
        try:
            self.flush()
            self.wait()
        finally:
            self._writer.shutdown(wait=True)

    def _write_all(self, fast: pa.Table | None, slow: pa.Table | None, bad: list[Rejected]) -> None:
        for table in (fast, slow):
            if table is not None:
                self._write(table)
        self.result.files_written += write_quarantine(self.lake, bad)
        self.result.quarantined += len(bad)

    def _write(self, table: pa.Table) -> None:
        hour = pc.cast(table["event_time"], pa.int64()).to_numpy() // 3_600_000
        order = np.lexsort((table["_order"].to_numpy(), hour))
        events = table.drop_columns(["_order"])
        if (np.diff(order) != 1).any():  # input in time order (the usual case) needs no reordering
            events, hour = events.take(pa.array(order)), hour[order]
        bounds = np.concatenate(([0], np.flatnonzero(hour[1:] != hour[:-1]) + 1, [len(hour)]))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            self.result.files_written += self.sink.write_table(events.slice(int(lo), int(hi - lo)))
        self.result.landed += table.num_rows


def _chunks(path: Path, size: int) -> Iterator[tuple[int, bytearray]]:
    """``(bytes read so far, chunk)``: about ``size`` bytes of whole lines (the last perhaps without a newline),
    read into the chunk itself and completed with the rest of its last line: no copy of the chunk."""
    done = 0
    with path.open("rb") as src:
        while True:
            chunk = bytearray(size)
            got = src.readinto(chunk)
            if not got:
                return
            del chunk[got:]
            if chunk[-1] != 0x0A:
                chunk += src.readline()  # the rest of the last line, however long
            done += len(chunk)
            yield done, chunk


@dataclass
class _Prepared:
    """What a parser thread found in one chunk: its line bounds, the proven rows (with their chunk line indices) in
    line order, and the chunk line indices left to the per-line path, sorted."""

    starts: np.ndarray
    ends: np.ndarray
    landed: list[tuple[pa.Table, np.ndarray]]
    slow: np.ndarray


def _prepare(chunk: bytearray, now: datetime) -> _Prepared:
    """The fast path's work on one chunk, in a parser thread: it touches nothing shared (no lander, no line
    numbers), so chunks are prepared ahead while the consumer lands earlier ones in file order."""
    starts, ends = files_fast.line_bounds(chunk)
    empty, fast = files_fast.candidates(chunk, starts, ends)
    slow = np.flatnonzero(~empty & ~fast)
    picked = np.flatnonzero(fast)
    landed: list[tuple[pa.Table, np.ndarray]] = []
    if picked.size:
        block: bytes | bytearray
        if slow.size:  # the fast lines, back to back, so that pyarrow never sees the others
            view = memoryview(chunk)
            block = b"\n".join(view[s:e] for s, e in zip(starts[picked], ends[picked], strict=True))
            lengths = ends[picked] - starts[picked] + 1
            offsets = np.concatenate(([0], np.cumsum(lengths)))
        else:
            block = chunk
            offsets = np.concatenate((starts[picked], [len(chunk)]))
        landed, refused = _fast_lines(block, offsets, picked, now, ascii_checked=chunk.isascii())
        slow = np.sort(np.concatenate((slow, refused)))
    return _Prepared(starts, ends, landed, slow)


def _land_chunk(lander: _Lander, path: Path, base: int, number: int, chunk: bytearray, prepared: _Prepared) -> int:
    """One prepared chunk, by the one consumer in file order: proven rows landed in bulk, every other line through
    the per-line path (empty lines skipped). Returns the number of lines in the chunk (newlines, and the last line
    when it has none)."""
    first = base + number
    for events, lines in prepared.landed:
        lander.fast(events, first + lines)
    starts, ends = prepared.starts, prepared.ends
    for i in prepared.slow:
        raw = chunk[starts[i]:ends[i]]
        for line_no, text, problem in _decoded(number + int(i), raw):
            lander.line(path, first + int(i), line_no, text, problem)
        if lander.held >= BATCH_LINES:  # a chunk of short bad lines is millions of them: bounded as per line
            lander.flush()  # safe mid-chunk: per-line rows get files of their own
    return len(starts)


def _fast_lines(block: bytes | bytearray, offsets: np.ndarray, lines: np.ndarray, now: datetime, *,
                ascii_checked: bool) -> tuple[list[tuple[pa.Table, np.ndarray]], np.ndarray]:
    """The provable lines of ``block`` (line ``k`` spans ``offsets[k]:offsets[k+1]``, is chunk line ``lines[k]``):
    the proven rows with their chunk line indices, in line order, and the chunk line indices left to the per-line
    path."""
    pending, landed, refused = [(0, len(lines))], [], []
    view = memoryview(block)
    while pending:
        lo, hi = pending.pop()  # the lower half first: the proven rows come out in line order
        widest = int(np.diff(offsets[lo:hi + 1]).max())
        table = files_fast.parse_block(view[offsets[lo]:offsets[hi]], hi - lo, widest=widest,
                                       ascii_checked=ascii_checked)
        if table is None:
            if hi - lo <= _SLOW_BELOW:
                refused.append(lines[lo:hi])
            else:
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
            continue
        times = files_fast.event_times(table["event_time"])
        ok = files_fast.accepted(table, times, now=now)
        if ok.any():
            events = files_fast.to_events(table, times)
            landed.append((_rows(events, ok), lines[lo:hi][ok]))
        refused.append(lines[lo:hi][~ok])
    return landed, (np.concatenate(refused) if refused else np.array([], dtype=np.int64))


def _prepared_chunks(path: Path, now: datetime,
                     parsers: ThreadPoolExecutor) -> Iterator[tuple[int, bytearray, Future[_Prepared]]]:
    """``(bytes read so far, chunk, its preparation)`` in file order, each chunk's preparation started ``AHEAD``
    chunks before it is consumed: both cores parse while memory stays at a few chunks."""
    ahead: deque[tuple[int, bytearray, Future[_Prepared]]] = deque()
    for read, chunk in _chunks(path, CHUNK_BYTES):
        ahead.append((read, chunk, parsers.submit(_prepare, chunk, now)))
        if len(ahead) > AHEAD:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()


def _rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of ``table`` where ``keep``: zero-copy slices between the few refused rows, not a filtered copy."""
    if keep.all():
        return table
    edges = np.flatnonzero(np.diff(np.concatenate(([False], keep, [False])).astype(np.int8)))
    return pa.concat_tables([table.slice(int(lo), int(hi - lo)) for lo, hi in zip(edges[::2], edges[1::2],
                                                                                   strict=True)])


def ingest_files(lake: Lake, paths: list[Path], *, keep_problems: int = 20, fast: bool = True,
                 progress: ProgressCallback = no_progress) -> IngestResult:
    """Land every valid event of ``paths``; quarantine every other line with file, line and reason.

    Args:
        fast: read in bulk where lines can be proved valid (the default); ``False`` reads every line one by one
            (the reference the fast path is tested against).
        progress: called with ``(bytes read, total bytes, file name)`` after each chunk.
    """
    result = IngestResult()
    lander = _Lander(lake, result, keep_problems)
    total = sum(p.stat().st_size for p in paths)
    done = 0
    now = datetime.now(UTC)
    parsers = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="ingest-parser")
    try:
        for k, path in enumerate(paths):
            base = k << 40  # input order across files: file index, then line number
            if not fast:
                for number, text, decode_problem in _lines(path):
                    lander.line(path, base + number, number, text, decode_problem)
                    if lander.held >= BATCH_LINES:
                        lander.flush()
            else:
                number = 1
                for read, chunk, prepared in _prepared_chunks(path, now, parsers):
                    number += _land_chunk(lander, path, base, number, chunk, prepared.result())
                    if lander.held >= LAND_ROWS:
                        lander.flush()
                    progress(done + read, total, path.name)
            done += path.stat().st_size
            progress(done, total, path.name)
    finally:
        parsers.shutdown(wait=True, cancel_futures=True)  # chunks prepared ahead of a failure are not landed
        lander.close()  # what was read is written, also when a later line failed the run
    return result

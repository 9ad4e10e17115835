"""The fast path of ``modelmeter ingest``: a block of JSON Lines parsed and checked in bulk with pyarrow.

The per-line path (``ingest.files``, ``common.contracts.parse_event``) is the authority on what a valid line is; this
module only has to be *conservative*: it accepts a line only when it can prove the per-line path would accept it and
produce the same row, and hands every other line back. Why a block may be refused as a whole (then
``ingest.files`` bisects it): pyarrow's JSON reader fails the whole block on one bad line (syntax, a wrong type,
a key given twice, an integer out of range), and it neither checks the UTF-8 of fields it ignores nor limits nesting,
which the per-line path does. Why a row may be refused alone: it parsed, but a rule of ``parse_event`` or
``future_problem`` fails, or it uses a form the bulk checks do not prove (an ``event_time`` offset other than
``Z``/``+00:00``, a required string of only non-ASCII characters).
"""

from __future__ import annotations

import codecs
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from common.contracts import FIELDS, MAX_FUTURE_SKEW, SCHEMA_VERSION, arrow_schema

#: A line with this many opening brackets may be nested deeper than ``json.loads`` accepts (it raises
#: RecursionError near 1,000 levels): such lines go to the per-line path, which refuses or accepts them.
DEEP_BRACKETS = 200

# The ISO-8601 forms proved here (years 1970-2999; 1-6 fraction digits; UTC written as Z or +00:00). Every string it
# matches, `datetime.fromisoformat` reads to the same instant; other forms it accepts go to the per-line path.
_TIME = (r"^(?P<s>(?:19[7-9]\d|2\d{3})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<f>\d{1,6}))?(?:Z|\+00:00)$")


def _read_schema() -> pa.Schema:
    # event_time is read as text: its forms are checked here rather than by pyarrow's lenient timestamp parser
    fields = [pa.field(f.name, pa.string() if f.kind == "timestamp" else arrow_schema().field(f.name).type)
              for f in FIELDS]
    return pa.schema(fields)


_PARSE = pj.ParseOptions(explicit_schema=_read_schema(), unexpected_field_behavior="ignore",
                         newlines_in_values=False)

#: The JSON reader's allocations come from the C library's allocator, not pyarrow's default (mimalloc): its column
#: builders grow by reallocation, block after block, and mimalloc hands fresh huge pages to each block that the
#: kernel must zero first (about a tenth of the parse's CPU time, measured; see docs/ingest.md).
_POOL = pa.system_memory_pool()


def line_bounds(chunk: bytes | bytearray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets (end exclusive, the newline and one trailing CR left out) of every line of ``chunk``."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(data == 0x0A)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(chunk)]))
    if starts[-1] == len(chunk):  # the chunk ends with a newline: no line after it
        starts, ends = starts[:-1], ends[:-1]
    if b"\r" not in chunk:  # the usual case: no CRLF line endings
        return starts, ends
    has_cr = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 0x0D)
    return starts, ends - has_cr


def candidates(chunk: bytes | bytearray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the lines that are empty (skipped, as the per-line path skips them) and of those that may take the
    fast path: one ``{`` … ``}`` object on the line and not deeply nested."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    empty = ends == starts
    filled = ~empty
    first = np.zeros(len(starts), dtype=np.uint8)
    last = np.zeros(len(starts), dtype=np.uint8)
    first[filled] = data[starts[filled]]
    last[filled] = data[ends[filled] - 1]
    fast = filled & (first == ord("{")) & (last == ord("}"))
    # each line holds one "{" at least; more brackets than DEEP_BRACKETS beyond that in the whole chunk is rare.
    # "[" (0x5B) and "{" (0x7B) are the only bytes that OR 0x20 makes "{": one comparison finds both
    brackets = (data | 0x20) == ord("{")
    if np.count_nonzero(brackets) - len(starts) >= DEEP_BRACKETS:
        opening = np.concatenate(([0], np.cumsum(brackets, dtype=np.int64)))
        fast &= (opening[ends] - opening[starts]) < DEEP_BRACKETS
    return empty, fast


def parse_block(block: memoryview, lines: int, *, widest: int, ascii_checked: bool) -> pa.Table | None:
    """``lines`` JSON objects, one per line, read with the contract's types; ``None`` when the block is refused.

    Refused: not UTF-8 (pyarrow would not look inside ignored fields), any parse or type error, or a row count other
    than ``lines`` (two objects on one line).
    """
    if not ascii_checked:
        try:
            codecs.utf_8_decode(block, "strict", True)
        except UnicodeDecodeError:
            return None
    # one thread per block: ``ingest.files`` parses two chunks at once in its parser threads, and pyarrow's own
    # pool would only queue their halves behind each other; a block must hold the widest line whole
    read = pj.ReadOptions(block_size=max(1 << 20, len(block) // 2 + 1, widest + 1), use_threads=False)
    try:
        table = pj.read_json(pa.BufferReader(pa.py_buffer(block)), read_options=read, parse_options=_PARSE,
                             memory_pool=_POOL)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return table if table.num_rows == lines else None


def event_times(text: pa.ChunkedArray) -> pa.Array:
    """``event_time`` strings as ``timestamp[ms, UTC]``, truncated as the per-line path stores them; null where a
    string is not in a form proved here."""
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    ms = _canonical_millis(text)
    if ms is None:
        return _general_times(text)
    known = ~np.isnan(ms)
    if not known.all():  # the few in another form (or not valid): the general reading, for those rows only
        rest = np.flatnonzero(~known)
        ms[rest] = _general_times(text.take(pa.array(rest))).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(ms, pa.float64(), from_pandas=True).cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22])
_PUNCTUATION = {4: b"-", 7: b"-", 10: b"T", 13: b":", 16: b":", 19: b".", 23: b"Z"}


def _canonical_millis(text: pa.StringArray) -> np.ndarray | None:
    """Milliseconds of the canonical form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the gateway's, 24 characters), read from
    the bytes with numpy; NaN where a string is in another form or not a real instant; ``None`` for no such string.
    """
    if text.null_count or len(text) == 0:
        return None
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    lengths = np.diff(offsets)
    if not (lengths == 24).any():
        return None
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    form = lengths == 24
    at = offsets[:-1][form]
    cells = data[at[:, None] + np.arange(24)]  # one row of 24 bytes per canonical string
    digits = cells[:, _DIGITS].astype(np.int64) - ord("0")
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    for position, char in _PUNCTUATION.items():
        ok &= cells[:, position] == ord(char)
    d = digits
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    millis = d[:, 14] * 100 + d[:, 15] * 10 + d[:, 16]
    ok &= (year >= 1970) & (year <= 2999) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    first = (np.where(ok, year, 1970) - 1970).astype("datetime64[Y]").astype("datetime64[M]") + \
        (np.where(ok, month, 1) - 1).astype("timedelta64[M]")
    month_days = ((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(np.int64)
    ok &= day <= month_days
    days = first.astype("datetime64[D]").astype(np.int64) + day - 1
    value = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis
    out = np.full(len(text), np.nan)
    out[np.flatnonzero(form)[ok]] = value[ok]
    return out


def _general_times(text: pa.Array) -> pa.Array:
    """The other proved forms (fewer or more fraction digits, ``+00:00``), read with Arrow's regex and strptime."""
    parts = pc.extract_regex(text, _TIME)
    seconds_text = pc.struct_field(parts, "s")
    seconds = pc.strptime(seconds_text, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    # a round trip proves the calendar date and the clock time were real ones
    same = pc.equal(pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S"), seconds_text)
    millis = pc.cast(pc.utf8_rpad(pc.utf8_slice_codeunits(pc.struct_field(parts, "f"), 0, 3), 3, "0"), pa.int64())
    ms = pc.add(pc.multiply(pc.cast(seconds, pa.int64()), 1000), millis)
    ms = pc.if_else(pc.fill_null(same, False), ms, pa.scalar(None, pa.int64()))
    return pc.cast(ms, pa.timestamp("ms", tz="UTC"))


def accepted(table: pa.Table, times: pa.Array, *, now: datetime) -> np.ndarray:
    """Rows the per-line path would land unchanged: every required field present and sound, integers in the range
    it accepts (it refuses the most negative value of each width), ``event_time`` proved and not a day ahead."""
    ok = pc.and_(pc.equal(table["schema_version"], SCHEMA_VERSION), pc.is_valid(times))
    limit = pa.scalar(int((now.astimezone(UTC) + MAX_FUTURE_SKEW).timestamp() * 1000), pa.int64())
    ok = pc.and_(ok, pc.less_equal(pc.cast(times, pa.int64()), limit))
    for f in FIELDS:
        column = table[f.name]
        if f.required and f.kind == "string":
            ok = pc.and_(ok, pa.array(_starts_printable(column)))
        elif f.kind in ("int", "bigint"):
            lowest = -(2 ** (31 if f.kind == "int" else 63))
            ok = pc.and_(ok, pc.fill_null(pc.not_equal(column, lowest), not f.required))
    return np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), dtype=bool)


def _starts_printable(column: pa.ChunkedArray) -> np.ndarray:
    """True where the string's first character is printable ASCII other than a space, so ``str.strip()`` leaves it
    non-empty (false for null); read from each chunk's offsets and bytes, without copying them (a regex over every
    string costs more than the JSON parse)."""
    parts = [_first_printable(chunk) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _first_printable(text: pa.StringArray) -> np.ndarray:
    if len(text) == 0 or text.buffers()[2] is None:
        return np.zeros(len(text), dtype=bool)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    first = data[np.minimum(offsets[:-1], len(data) - 1)]
    ok = (offsets[1:] > offsets[:-1]) & (first > 0x20) & (first < 0x7F)
    if text.null_count:
        ok &= np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return ok


def to_events(table: pa.Table, times: pa.Array) -> pa.Table:
    """The read table as rows of :func:`common.contracts.arrow_schema`: times converted, defaults filled in."""
    columns = []
    for f in FIELDS:
        column = times if f.kind == "timestamp" else table[f.name]
        if f.default is not None:
            column = pc.fill_null(column, f.default)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=arrow_schema())

"""``modelmeter ingest FILE.jsonl…``: land JSON Lines events in the raw lake, set bad lines aside with their reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.contracts import EventError, future_problem, parse_event
from common.lake import Lake
from ingest.sink import LocalParquetSink, Rejected, write_quarantine

#: Lines parsed before a batch is written: bounds memory on large files.
BATCH_LINES = 100_000


@dataclass
class IngestResult:
    """Counts of one ingest run; ``read == landed + quarantined``."""

    read: int = 0
    landed: int = 0
    quarantined: int = 0
    files_written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: reason", for the first few


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield ``(line number, text, decode problem)`` for each non-blank line."""
    with path.open("rb") as src:
        for number, raw in enumerate(src, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, raw.decode("utf-8", errors="replace").rstrip("\r\n"), f"not UTF-8 text ({exc.reason})"
                continue
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
    return row


def ingest_files(lake: Lake, paths: list[Path], *, keep_problems: int = 20) -> IngestResult:
    """Land every valid event of ``paths``; quarantine every other line with file, line and reason."""
    sink = LocalParquetSink(lake)
    result = IngestResult()
    good: list[dict[str, Any]] = []
    bad: list[Rejected] = []

    def flush() -> None:
        result.files_written += sink.write_rows(good)
        result.files_written += write_quarantine(lake, bad)
        result.landed += len(good)
        result.quarantined += len(bad)
        good.clear()
        bad.clear()

    for path in paths:
        for number, text, decode_problem in _lines(path):
            result.read += 1
            try:
                if decode_problem:
                    raise EventError([decode_problem])
                good.append(_parse_line(text or ""))
            except EventError as exc:
                reason = "; ".join(exc.problems)
                bad.append(Rejected(reason=reason, stage="ingest", raw=text, source_file=str(path),
                                    source_line=number))
                if len(result.problems) < keep_problems:
                    result.problems.append(f"{path}:{number}: {reason}")
            if len(good) + len(bad) >= BATCH_LINES:
                flush()
    flush()
    return result



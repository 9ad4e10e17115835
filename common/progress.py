"""How far long work is: a bar on a terminal, a few plain lines otherwise, always on stderr.

Domain functions take a ``progress=`` callback (:data:`ProgressCallback`: ``(done, total, note)``) and know nothing
of terminals; a command makes a :class:`Progress` and passes its :meth:`Progress.update`. Progress goes to stderr
only, so a command's stdout (a table, CSV, ``--format json``) stays machine-readable; in plain-line mode the number
of lines is bounded (one per tenth of the work, or one per ``interval`` seconds at most), so a log stays short,
and work done within ``quiet_for`` seconds prints nothing at all (a quick command's stderr stays empty).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

#: Seconds from the start during which plain mode prints nothing: quick work leaves stderr empty.
QUIET_FOR = 2.0

#: ``(done, total, note)``: units done so far (not an increment), the total when known, a short note (the file or
#: day being worked on). Domain functions call it; they never print.
ProgressCallback = Callable[[int, "int | None", str], None]


def no_progress(done: int, total: int | None, note: str = "") -> None:
    """The callback of a caller that does not want to know."""


class Progress:
    """One progress report for one piece of work (a command's ingest, transform, import …).

    Args:
        label: what is being done, first on each line (``ingest``).
        total: units of the whole work when known (bytes, days, requests); ``None`` for an open count.
        unit: the unit's name in plain lines (``bytes``, ``days``).
        stream: where to write; stderr by default.
        enabled: ``False`` prints nothing at all (quiet runs).
        interval: least seconds between two plain lines that are not a tenth of the work apart.
        quiet_for: seconds from the start during which plain mode prints nothing (default :data:`QUIET_FOR`).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, label: str, *, total: int | None = None, unit: str = "", stream: IO[str] | None = None,
                 enabled: bool = True, interval: float = 5.0, quiet_for: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.interval, self.clock = enabled, interval, clock
        self.quiet_for = QUIET_FOR if quiet_for is None else quiet_for
        self.done, self.note, self.lines = 0, "", 0
        self._started = self._last_time = clock()
        self._last_tenth = 0
        self._done_at_last_line = -1
        self._bar: RichProgress | None = None
        self._task = None
        if enabled and _is_terminal(self.stream):
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TaskProgressColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                                     console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, note="")

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Record that ``done`` units are done (a :data:`ProgressCallback`)."""
        if total is not None and total != self.total:  # a new phase (files read, then periods written)
            self.total, self._last_tenth = total, 0
        self.done, self.note = done, note or self.note
        if not self.enabled:
            return
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=self.total, note=self.note)
            return
        now = self.clock()
        if now - self._started < self.quiet_for:
            return
        tenth = int(10 * done / self.total) if self.total else 0
        if tenth > self._last_tenth or now - self._last_time >= self.interval:
            self._last_tenth, self._last_time = max(tenth, self._last_tenth), now
            self._line()

    def close(self, *, failed: bool = False) -> None:
        """End the report: the bar stops; plain mode writes one last line when it wrote any and the last one did
        not say it all, unless the work ``failed`` (its error should be what the reader sees next)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.lines and not failed and (self.done != self._done_at_last_line):
            self._line()

    def _line(self) -> None:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            share = f" ({100 * self.done / self.total:.0f} %)"
            text = f"{self.label}: {self.done:,} / {self.total:,}{unit}{share}"
        else:
            text = f"{self.label}: {self.done:,}{unit}"
        print(f"{text}  {self.note}".rstrip(), file=self.stream, flush=True)
        self.lines += 1
        self._done_at_last_line = self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc is not None)


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())

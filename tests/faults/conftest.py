"""The fault suite prints one table of counts at the end of the run: what each case sent, what landed, what leaked."""

from __future__ import annotations

from typing import Any

from .harness import REPORT

COLUMNS = ("case", "calls", "answered", "refused_503", "events", "lost", "duplicated", "leaked", "unknown")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    rows = [[str(row.get(c, "")) for c in COLUMNS] for row in REPORT]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    terminalreporter.section("fault suite: usage events under faults (lost, duplicated and leaked must be 0)")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in rows:
        terminalreporter.write_line("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))

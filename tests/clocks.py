"""A wall clock and a monotonic clock that a test moves together (key caches, expiry and grace edges)."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clocks:
    """``wall()`` and ``monotonic()`` for the code under test; ``advance(seconds)`` moves both."""

    def __init__(self, start: datetime, *, monotonic: float = 0.0) -> None:
        self.now, self.mono = start, monotonic

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

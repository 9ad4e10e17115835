"""Per-team limits, enforced in the gateway process: requests per second (token bucket), tokens per UTC day.

Counters live in memory: each gateway process (or Lambda container) enforces its own share. That is a guard
against runaway clients, not an exact quota; the lake has the exact counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from common.contracts import Limits
from common.errors import Throttled


class LimitTracker:
    """Checks and records usage against each team's :class:`ingest.ports.Limits`.

    Args:
        clock: the gateway's UTC clock (days are counted on it, so a simulated clock gets simulated days).
        monotonic: seconds for the request-rate buckets.
    """

    def __init__(self, *, clock: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}   # team → (tokens, last refill)
        self._daily: dict[str, tuple[str, int]] = {}          # team → (UTC day, tokens used)

    def check(self, team_id: str, limits: Limits) -> None:
        """Take one request from the team's bucket; raise :class:`Throttled` (with ``retry_after``) when over."""
        if limits.daily_tokens is not None:
            now = self._clock()
            day, used = self._daily.get(team_id, ("", 0))
            if day == now.date().isoformat() and used >= limits.daily_tokens:
                midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
                raise Throttled(f"daily token limit of {limits.daily_tokens} reached for team {team_id!r}",
                                retry_after=max(1, math.ceil((midnight - now).total_seconds())),
                                refusal_reason="token_quota")
        rps = limits.requests_per_second
        if rps is None:
            return
        with self._lock:
            t = self._monotonic()
            tokens, last = self._buckets.get(team_id, (max(1.0, rps), t))
            tokens = min(max(1.0, rps), tokens + (t - last) * rps)  # burst of one second's worth
            if tokens < 1.0:
                self._buckets[team_id] = (tokens, t)
                raise Throttled(f"request rate limit of {rps:g}/s exceeded for team {team_id!r}",
                                retry_after=max(1, math.ceil((1.0 - tokens) / rps)), refusal_reason="rate_limit")
            self._buckets[team_id] = (tokens - 1.0, t)

    def record_tokens(self, team_id: str, tokens: int) -> None:
        """Add a finished call's tokens to the team's count for the current UTC day."""
        if tokens <= 0:
            return
        today = self._clock().date().isoformat()
        with self._lock:
            day, used = self._daily.get(team_id, (today, 0))
            self._daily[team_id] = (today, (used if day == today else 0) + tokens)

"""Per-team request rate, enforced in the gateway process: requests per second (token bucket).

The bucket lives in memory, so each gateway process (or Lambda container) allows the team's rate on its own: a
guard against runaway clients at the edge, not a quota (N processes allow up to N× the rate in a burst). The
quotas that must hold fleet-wide, daily tokens and the monthly budget, are counted in the shared spend store
(``ingest/budget.py``, days of the reporting calendar).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from common.contracts import Limits
from common.errors import Throttled


class LimitTracker:
    """Checks each team's :attr:`common.contracts.Limits.requests_per_second`.

    Args:
        clock: the gateway's UTC clock (kept for callers; the rate is measured on ``monotonic``).
        monotonic: seconds for the request-rate buckets.
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}   # team → (tokens, last refill)

    def check(self, team_id: str, limits: Limits) -> None:
        """Take one request from the team's bucket; raise :class:`Throttled` (with ``retry_after``) when over."""
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

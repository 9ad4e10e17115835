"""Budgets at the gateway: refuse a block-mode team's calls once its fiscal month's spend has reached its budget,
count every finished call fleet-wide, raise each alert threshold once, and enforce daily-token limits fleet-wide.

:class:`BudgetGuard` is what :class:`ingest.gateway.Call` uses: :meth:`BudgetGuard.check` before the model is called
(one store read, only for a team in block mode with a budget or with a daily-token limit), :meth:`BudgetGuard.record`
when the call's event is final (one store transaction). The counters are a :class:`ingest.spend.SpendStore`, the
calendar the reporting one (:class:`common.calendar.Calendar`: fiscal months and days in the reporting time zone, as
the ``budget_burn`` view counts them).

**The overshoot bound.** A call is admitted when the spend it reads is under the budget, and its cost is added when
it finishes. So the calls already admitted when the budget is crossed still finish and are billed: the spend of a
period ends below ``budget + (calls in flight at the crossing, the crossing call included) × (largest cost of one
call)``. Nothing else overshoots while the store answers (a failed add is retried with this process's next one and
counted in this process's own checks meanwhile).

**Unpriced usage in block mode** is counted at the catalog's ceiling unit prices (``common.contracts.UNITS``
``max_unit_price_usd``: no price may exceed them), so a block-mode team cannot spend without bound through a model
that has no price: an upper bound of what the call can cost, replaced by the transform's figure only once the
usage has a price. Alert-mode teams count the priced part only, as the transform's ``total_cost`` does.

**The store unreachable:** block-mode teams are refused (503, fail closed), everyone else is served (their
daily-token limit unchecked); both are logged and counted (:meth:`BudgetGuard.status`, in ``/healthz``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from common.calendar import Calendar, Day, Period
from common.contracts import COUNT_FIELDS, UNITS, Team
from common.errors import ServiceUnavailable, Throttled
from ingest.alerts import AlertSink
from ingest.spend import PICO_PER_USD, SpendStore, SpendTotals

log = logging.getLogger(__name__)

#: Unit counts that are tokens (what a daily-token limit counts), in the event's field names.
TOKEN_FIELDS: tuple[str, ...] = tuple(u.count_field for u in UNITS if u.is_tokens)
#: The highest unit price the catalog accepts for each unit, whole pico-dollars (the block-mode estimate).
CEILING_PICO: dict[str, int] = {u.count_field: int(u.max_unit_price_usd * PICO_PER_USD) for u in UNITS}
#: Seconds between two log lines about a failing store (every failure is counted).
LOG_EVERY = 10.0
STORE_RETRY_AFTER = 5


class Pricer(Protocol):
    """What the guard needs of ``ingest.pricing.GatewayPricer``."""

    def priced_pico(self, event: Mapping[str, Any]) -> tuple[int, bool]: ...


def budget_pico(team: Team) -> int | None:
    """The team's monthly budget in whole pico-dollars (None: no budget)."""
    return None if team.monthly_budget_usd is None else int(team.monthly_budget_usd * PICO_PER_USD)


def usd_text(pico: int) -> str:
    """Pico-dollars as plain decimal USD text without trailing zeros (``1500000000`` → ``"0.0015"``)."""
    text = f"{Decimal(pico).scaleb(-12):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ceiling_pico(counts: Mapping[str, Any]) -> int:
    """What an event's units cost at most: each count at the highest unit price the catalog accepts."""
    return sum((counts.get(f) or 0) * CEILING_PICO[f] for f in COUNT_FIELDS)


def event_tokens(event: Mapping[str, Any]) -> int:
    return sum(event.get(f) or 0 for f in TOKEN_FIELDS)


def crossed(team: Team, spend_pico: int) -> tuple[int, ...]:
    """The team's alert thresholds its spend has reached (none without a budget, or with nothing spent)."""
    budget = budget_pico(team)
    if budget is None or spend_pico <= 0:
        return ()
    return tuple(t for t in sorted(team.alert_at) if spend_pico * 100 >= budget * t)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_of(team: Team, *, threshold: int, spend_pico: int, period: Period, calendar: Calendar,
             source: str) -> dict[str, Any]:
    """The JSON of one budget alert (the alert log's line, the webhook's body, the SNS message)."""
    budget = budget_pico(team) or 0
    return {"alert": "budget_threshold_crossed", "team_id": team.team_id, "threshold_pct": threshold,
            "budget_usd": usd_text(budget), "spend_usd": usd_text(spend_pico),
            "budget_mode": team.budget_mode, "cost_center": team.cost_center,
            "period": period.key, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
            "resets_at": _iso(period.resets_at), "calendar": calendar.describe(),
            "raised_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "source": source}


def usage_report(team: Team, *, totals: SpendTotals, alerted: tuple[int, ...], period: Period, day: Day,
                 calendar: Calendar, store: str) -> dict[str, Any]:
    """What ``GET /v1/usage`` and ``modelmeter budget show`` say of a team's period (JSON-ready)."""
    budget = budget_pico(team)
    return {
        "team_id": team.team_id,
        "period": period.key, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
        "resets_at": _iso(period.resets_at), "calendar": calendar.describe(),
        "spend_usd": usd_text(totals.spend_pico),
        "budget_usd": None if budget is None else usd_text(budget),
        "remaining_usd": None if budget is None else usd_text(budget - totals.spend_pico),
        "budget_mode": team.budget_mode, "alert_at": list(team.alert_at),
        "thresholds_crossed": list(crossed(team, totals.spend_pico)), "alerts_raised": list(alerted),
        "requests": totals.period_requests,
        "day": day.day.isoformat(), "daily_tokens_used": totals.day_tokens,
        "daily_tokens_limit": team.limits.daily_tokens, "daily_requests": totals.day_requests,
        "day_resets_at": _iso(day.resets_at),
        # where the counters are: for the operator (`budget show`), never shown to a tenant (/v1/usage)
        **({"spend_store": store} if store else {}),
    }


@dataclass(frozen=True)
class _Now:
    """The period and day of the clock's current instant, valid while ``lo <= instant < hi``."""

    period: Period
    day: Day
    lo: datetime
    hi: datetime


class BudgetGuard:
    """Budget and daily-token checks at call start, spend counting at call end (see the module docstring).

    Args:
        store: the fleet-wide counters.
        calendar: the reporting calendar (budget periods and days).
        clock: the gateway's clock (aware UTC; the demo's is simulated, and so are its periods).
        alerts: where alerts go (None: decided by the store, delivered nowhere but the log).
    """

    def __init__(self, *, store: SpendStore, calendar: Calendar, clock: Callable[[], datetime],
                 alerts: AlertSink | None = None, source: str = "gateway"):
        self.store = store
        self.calendar = calendar
        self.clock = clock
        self.alerts = alerts
        self.source = source
        self.counts = {"store_errors": 0, "refused_store_unreachable": 0, "served_unchecked": 0,
                       "refused_budget": 0, "refused_daily_tokens": 0, "alerts_raised": 0}
        self._now: _Now | None = None
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str], list[int]] = {}   # (team, period, day) → [pico, tokens, requests]
        self._alerted: dict[tuple[str, str], set[int]] = {}          # thresholds this process knows are raised
        self._next_log = 0.0

    # --- the calendar -------------------------------------------------------------------------------------------

    def current(self) -> tuple[Period, Day, datetime]:
        """The budget period and day of the clock's instant (cached until the next boundary)."""
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        cached = self._now
        if cached is None or not cached.lo <= now < cached.hi:
            period, day = self.calendar.period(now), self.calendar.day(now)
            cached = self._now = _Now(period, day, max(period.starts_at, day.starts_at),
                                      min(period.resets_at, day.resets_at))
        return cached.period, cached.day, now

    # --- call start ---------------------------------------------------------------------------------------------

    def check(self, team: Team) -> None:
        """Refuse the call before the model is called: 429 over the budget (block mode) or the daily-token limit;
        503 in block mode when the store cannot be read."""
        blocks = team.budget_mode == "block" and team.monthly_budget_usd is not None
        daily = team.limits.daily_tokens
        if not blocks and daily is None:
            return  # nothing to check: no read
        period, day, now = self.current()
        try:
            totals = self.store.read(team.team_id, period=period.key, day=day.key)
        except Exception as exc:  # noqa: BLE001 - whatever the store's failure, the answer is fail closed/open
            self._store_failed("read", team.team_id, exc)
            if blocks:
                self.counts["refused_store_unreachable"] += 1
                raise ServiceUnavailable(
                    f"the gateway cannot check team {team.team_id!r}'s budget right now (its spend store does not "
                    f"answer), so it calls no model; retry shortly", retry_after=STORE_RETRY_AFTER,
                    refusal_reason="budget") from None
            self.counts["served_unchecked"] += 1
            return
        if blocks and self._unwritten(team.team_id, period.key):
            # this process could not write some of the team's spend: retry now, and while it still cannot, refuse
            # (fail closed): reads that work cannot stand for writes that do not
            self._flush_pending()
            if self._unwritten(team.team_id, period.key):
                self.counts["refused_store_unreachable"] += 1
                raise ServiceUnavailable(
                    f"the gateway cannot record team {team.team_id!r}'s spend right now (its spend store refuses "
                    f"writes), so it calls no model; retry shortly", retry_after=STORE_RETRY_AFTER,
                    refusal_reason="budget")
            try:
                totals = self.store.read(team.team_id, period=period.key, day=day.key)  # with what was written
            except Exception as exc:  # noqa: BLE001 - as above: fail closed
                self._store_failed("read", team.team_id, exc)
                self.counts["refused_store_unreachable"] += 1
                raise ServiceUnavailable(f"the gateway cannot check team {team.team_id!r}'s budget right now",
                                         retry_after=STORE_RETRY_AFTER, refusal_reason="budget") from None
        with self._lock:
            held = [v for (t, p, _d), v in self._pending.items() if t == team.team_id and p == period.key]
            today = self._pending.get((team.team_id, period.key, day.key))
        spend = totals.spend_pico + sum(v[0] for v in held)
        tokens = totals.day_tokens + (today[1] if today else 0)
        if daily is not None and tokens >= daily:
            self.counts["refused_daily_tokens"] += 1
            raise Throttled(f"daily token limit of {daily} reached for team {team.team_id!r} (day {day.key} in "
                            f"{self.calendar.timezone}; {tokens} used)",
                            retry_after=_seconds(now, day.resets_at), refusal_reason="token_quota",
                            details={"daily_tokens_limit": daily, "daily_tokens_used": tokens, "day": day.key,
                                     "resets_at": _iso(day.resets_at)})
        budget = budget_pico(team)
        if blocks and budget is not None and spend >= budget:
            self.counts["refused_budget"] += 1
            raise Throttled(
                f"team {team.team_id!r} has reached its monthly budget of {usd_text(budget)} USD: {usd_text(spend)} "
                f"USD spent in the fiscal month {period.start} to {period.end} ({self.calendar.timezone}); calls are "
                f"refused until the budget resets at {_iso(period.resets_at)}",
                retry_after=_seconds(now, period.resets_at), refusal_reason="budget",
                details={"budget_usd": usd_text(budget), "spend_usd": usd_text(spend), "period": period.key,
                         "resets_at": _iso(period.resets_at)})

    # --- call end -----------------------------------------------------------------------------------------------

    def cost_pico(self, team: Team, event: Mapping[str, Any], pricer: Pricer | None) -> int:
        """What the finished call adds to the team's spend: the priced part (the gateway's pricer, else the event's
        ``cost_usd``); in block mode, usage without a price at the ceiling unit prices."""
        cost = event.get("cost_usd")
        if cost is not None:  # priced in full (the pricer already looked it up for the event)
            pico, fully = int(Decimal(cost) * PICO_PER_USD), True
        elif pricer is not None:  # not fully priced: its priced part
            try:
                pico, fully = pricer.priced_pico(event)
            except Exception:  # noqa: BLE001 - a pricing bug must not fail the call; counted as unpriced
                log.exception("could not price a usage event for the budget; counted as unpriced")
                pico, fully = 0, False
        else:
            pico, fully = 0, False
        if not fully and team.budget_mode == "block":
            ceiling = ceiling_pico(event)
            if ceiling:
                return max(pico, ceiling)
        return pico

    def record(self, team: Team, event: Mapping[str, Any], *, pricer: Pricer | None = None) -> None:
        """Add a finished call (cost, tokens, one request) to the store; raise the alerts it crossed. Never raises:
        a failed add is kept and retried with this process's next one."""
        period, day, _now = self.current()
        key = (team.team_id, period.key, day.key)
        delta = [self.cost_pico(team, event, pricer), event_tokens(event), 1]
        with self._lock:
            held = self._pending.pop(key, None)
        if held:
            delta = [a + b for a, b in zip(delta, held, strict=True)]
        try:
            totals = self.store.add(team.team_id, period=period.key, day=day.key, spend_pico=delta[0],
                                    tokens=delta[1], requests=delta[2])
        except Exception as exc:  # noqa: BLE001 - kept for the next add, counted and logged
            with self._lock:
                kept = self._pending.get(key)
                self._pending[key] = delta if kept is None else [a + b for a, b in zip(delta, kept, strict=True)]
            self._store_failed("update", team.team_id, exc)
            return
        if self._pending:
            self._flush_pending()
        if team.monthly_budget_usd is not None:
            self._raise_alerts(team, period, totals.spend_pico)

    def _unwritten(self, team_id: str, period: str) -> bool:
        with self._lock:
            return any(t == team_id and p == period for t, p, _d in self._pending)

    def _flush_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for (team_id, period, day), (pico, tokens, requests) in pending.items():
            try:
                self.store.add(team_id, period=period, day=day, spend_pico=pico, tokens=tokens, requests=requests)
            except Exception as exc:  # noqa: BLE001
                with self._lock:
                    kept = self._pending.get((team_id, period, day))
                    self._pending[(team_id, period, day)] = [pico, tokens, requests] if kept is None else [
                        a + b for a, b in zip((pico, tokens, requests), kept, strict=True)]
                self._store_failed("update", team_id, exc)
                return

    def _raise_alerts(self, team: Team, period: Period, spend_pico: int) -> None:
        reached = crossed(team, spend_pico)
        if not reached:
            return
        known = self._alerted.setdefault((team.team_id, period.key), set())
        for threshold in reached:
            if threshold in known:
                continue
            try:
                first = self.store.first_alert(team.team_id, period=period.key, threshold=threshold)
            except Exception as exc:  # noqa: BLE001 - tried again with the next call
                self._store_failed("record an alert in", team.team_id, exc)
                return
            known.add(threshold)
            if first:
                self._deliver(alert_of(team, threshold=threshold, spend_pico=spend_pico, period=period,
                                       calendar=self.calendar, source=self.source))

    def _deliver(self, alert: dict[str, Any]) -> None:
        self.counts["alerts_raised"] += 1
        log.info("budget alert: team %s reached %s %% of its %s USD budget (%s USD spent, period %s)",
                    alert["team_id"], alert["threshold_pct"], alert["budget_usd"], alert["spend_usd"],
                    alert["period"])
        if self.alerts is not None:
            try:
                self.alerts.deliver(alert)
            except Exception:  # noqa: BLE001 - an alert sink must not fail a call
                log.exception("could not deliver a budget alert: %s", alert)

    # --- reading ------------------------------------------------------------------------------------------------

    def report(self, team: Team) -> dict[str, Any]:
        """The team's current period as ``GET /v1/usage`` returns it.

        Raises:
            ServiceUnavailable: the store cannot be read.
        """
        period, day, _now = self.current()
        try:
            totals = self.store.read(team.team_id, period=period.key, day=day.key)
            alerted = self.store.alerts(team.team_id, period=period.key)
        except Exception as exc:  # noqa: BLE001
            self._store_failed("read", team.team_id, exc)
            raise ServiceUnavailable("the gateway cannot read the spend counters right now; retry shortly",
                                     retry_after=STORE_RETRY_AFTER) from None
        return usage_report(team, totals=totals, alerted=alerted, period=period, day=day, calendar=self.calendar,
                            store="")

    def status(self) -> dict[str, Any]:
        """Counters for ``/healthz`` and the metrics: store errors, refusals, alerts, adds waiting for the store."""
        out: dict[str, Any] = {**self.counts, "pending_adds": len(self._pending), "store": self.store.location}
        if self.alerts is not None:
            out["alert_delivery"] = self.alerts.status()
        return out

    def _store_failed(self, what: str, team_id: str, exc: BaseException) -> None:
        self.counts["store_errors"] += 1
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY
            log.error("spend store %s: cannot %s the counters of team %s (%s: %s); block-mode teams are refused, "
                      "others served (%d store errors so far)", self.store.location, what, team_id,
                      type(exc).__name__, exc, self.counts["store_errors"])


def _seconds(now: datetime, until: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


# --- the correction after a transform run ----------------------------------------------------------------------

def correct_spend(*, store: SpendStore, calendar: Calendar, period: Period, totals: Mapping[str, int],
                  teams: Iterable[Team], alerts: AlertSink | None = None) -> list[tuple[str, int, int]]:
    """Set each team's spend of ``period`` to the curated figure (``totals``: team → pico-dollars, computed by the
    caller from the curated tables the way :meth:`BudgetGuard.cost_pico` counts a call); a team the store counts
    but the curated tables do not gets 0. Raises the alerts the corrected figures cross (once, as ever).

    Returns:
        ``(team_id, before, after)`` for every team set, pico-dollars.

    Raises:
        SpendStoreError: the store cannot be reached.
    """
    by_id = {t.team_id: t for t in teams}
    changes = []
    for team_id in sorted(set(totals) | set(store.teams(period=period.key))):
        before = store.read(team_id, period=period.key, day=period.start.isoformat()).spend_pico
        after = int(totals.get(team_id, 0))
        store.set_spend(team_id, period=period.key, spend_pico=after)
        changes.append((team_id, before, after))
        team = by_id.get(team_id)
        if team is None:
            continue
        for threshold in crossed(team, after):
            if store.first_alert(team_id, period=period.key, threshold=threshold) and alerts is not None:
                alerts.deliver(alert_of(team, threshold=threshold, spend_pico=after, period=period,
                                        calendar=calendar, source="transform correction"))
    return changes

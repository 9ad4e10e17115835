"""The correction of the gateway's spend counters after a transform run: each team's month-to-date spend set to what
the curated tables say, so a price change or a late event reaches the running figure and the two agree after the run.

One computation for both places a transform runs: ``modelmeter transform`` (the local SQLite store beside the tenant
file, the lake's alert log) and the scheduled transform Lambda (``transforms/lambda_handler.py``: the unit's DynamoDB
counters, SNS and EventBridge). The caller opens the store and the alert sink; :func:`correct_after_run` reads the
curated figures (``usage_local``, fiscal months of the reporting calendar, as ``budget_burn`` counts them) and sets
them with :func:`ingest.budget.correct_spend`.

A fiscal month is corrected only when every UTC day of it up to the last day run that has raw events also has a
transform run: otherwise the curated tables would undercount it (:attr:`PeriodCorrection.missing` says which days).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from common.calendar import Calendar, Period
from common.constants import RAW_EVENTS, RUN_MANIFESTS
from common.contracts import COUNT_FIELDS, Team
from common.lake import Lake
from ingest.alerts import AlertSink
from ingest.budget import CEILING_PICO, correct_spend, usd_text
from ingest.spend import PICO_PER_USD, SpendStore
from sql.config import ReportingConfig
from sql.render import connect


@dataclass(frozen=True)
class PeriodCorrection:
    """What the correction did to one fiscal month.

    Attributes:
        period: the fiscal month.
        changes: ``(team_id, before, after)`` pico-dollars for every team set (empty when not corrected).
        missing: UTC days of the month with raw events but no transform run: the month was left alone.
    """

    period: Period
    changes: tuple[tuple[str, int, int], ...] = ()
    missing: tuple[date, ...] = ()

    @property
    def corrected(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        """One line for a person (the command's stderr, the Lambda's log)."""
        if self.missing:
            return (f"budget counters of fiscal month {self.period.start} not corrected: days {self.missing[0]} … "
                    f"{self.missing[-1]} ({len(self.missing)}) have no transform run yet")
        moved = [f"{t} {usd_text(a)} → {usd_text(b)}" for t, a, b in self.changes if a != b]
        return (f"budget counters of fiscal month {self.period.start} set from the curated tables ("
                f"{len(self.changes)} teams" + (f"; changed: {', '.join(moved)} USD)" if moved else ", none changed)"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the Lambda's result): money as decimal USD text."""
        return {"period": self.period.key, "corrected": self.corrected,
                "missing_days": [d.isoformat() for d in self.missing],
                "teams": {t: {"before_usd": usd_text(a), "after_usd": usd_text(b)} for t, a, b in self.changes}}


def correct_after_run(*, lake: Lake, store: SpendStore, teams: Iterable[Team], days: Iterable[date],
                      config: ReportingConfig, alerts: AlertSink | None = None) -> list[PeriodCorrection]:
    """Set every team's spend in ``store`` to the curated figure, for each fiscal month the transformed ``days``
    (UTC) touch; raise through ``alerts`` the thresholds a corrected figure crosses (once, as ever).

    Raises:
        SpendStoreError: the store cannot be reached (months before the failing one are corrected already).
    """
    days = sorted(set(days))
    if not days:
        return []
    teams = list(teams)
    calendar = config.calendar
    out: list[PeriodCorrection] = []
    for period in periods_touched(calendar, days):
        missing = untransformed_days(lake, period, last=days[-1])
        if missing:
            out.append(PeriodCorrection(period, missing=tuple(missing)))
            continue
        totals = curated_spend(lake=lake, config=config, period=period, teams=teams)
        changes = correct_spend(store=store, calendar=calendar, period=period, totals=totals, teams=teams,
                                alerts=alerts)
        out.append(PeriodCorrection(period, changes=tuple(changes)))
    return out


def periods_touched(calendar: Calendar, days: list[date]) -> list[Period]:
    """The fiscal months holding any local day that overlaps one of the UTC ``days``."""
    periods: dict[str, Period] = {}
    for d in days:
        start = datetime.combine(d, datetime.min.time(), tzinfo=UTC)
        for instant in (start, start + timedelta(days=1) - timedelta(microseconds=1)):
            p = calendar.period(instant)
            periods[p.key] = p
    return [periods[k] for k in sorted(periods)]


def untransformed_days(lake: Lake, period: Period, *, last: date) -> list[date]:
    """The UTC days of the whole period (whatever ``last`` day was transformed: a re-run of an early day must not
    drop later ones) whose raw events have no transform run, or changed after its latest run: the curated tables
    would undercount the period."""
    del last  # kept for callers; every day of the period counts
    first = period.starts_at.date()
    end = (period.resets_at - timedelta(microseconds=1)).date()
    missing, day = [], first
    while day <= end:
        partition = f"dt={day.isoformat()}"
        raw = lake.list_files(RAW_EVENTS, partition)
        if raw:
            runs = lake.list_files(RUN_MANIFESTS, partition, suffix=".json")
            if not runs or _newest(lake, raw) > _newest(lake, runs):
                missing.append(day)
        day += timedelta(days=1)
    return missing


def _newest(lake: Lake, paths: list[str]) -> float:
    """The latest modification time of ``paths`` (seconds; 0 when none reports one)."""
    times = [info.mtime.timestamp() for info in lake.fs.get_file_info(paths) if info.mtime is not None]
    return max(times, default=0.0)


def curated_spend(*, lake: Lake, config: ReportingConfig, period: Period, teams: Iterable[Team]) -> dict[str, int]:
    """Each team's spend of the fiscal month from ``usage_local``, in pico-dollars, counted as the gateway counts a
    call (``ingest.budget.BudgetGuard.cost_pico``): the priced part; for a block-mode team, an event not fully
    priced at the ceiling unit prices instead."""
    block = sorted(t.team_id for t in teams if t.budget_mode == "block")
    ceiling = " + ".join(f"cast(coalesce({f}, 0) as hugeint) * {CEILING_PICO[f]}" for f in COUNT_FIELDS)
    priced = "cast(coalesce(total_cost, 0) as decimal(38, 12))"
    con = connect(lake=lake, config=config)
    try:
        rows = con.execute(f"""
            select team_id,
                   sum({priced}) as priced_usd,
                   sum(case when not priced then greatest({priced} * {PICO_PER_USD}, {ceiling}) else
                       {priced} * {PICO_PER_USD} end) as block_pico
            from usage_local where fiscal_month_start = ? group by team_id""", [period.start]).fetchall()
    finally:
        con.close()
    out: dict[str, int] = {}
    for team_id, priced_usd, block_pico in rows:
        out[team_id] = int(Decimal(block_pico)) if team_id in block else int(Decimal(priced_usd) * PICO_PER_USD)
    return out

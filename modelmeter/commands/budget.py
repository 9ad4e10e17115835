"""``modelmeter budget show [TEAM]``, and the correction of the gateway's spend counters after a transform run.

Both read the gateway's fleet-wide spend store (``ingest/spend.py``): locally the SQLite file beside the tenant
registry (``tenants.spend.sqlite`` beside ``tenants.json``). The correction sets each team's month-to-date spend to
what the curated tables say (``usage_local``, fiscal months of the reporting calendar, as ``budget_burn`` counts
them), so a price change or a late event reaches the running figure, and the two agree after the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.calendar import Calendar, Period
from common.constants import RAW_EVENTS, RUN_MANIFESTS
from common.contracts import COUNT_FIELDS, Team
from common.errors import UserError
from common.lake import Lake
from ingest.alerts import LocalAlerts
from ingest.budget import CEILING_PICO, correct_spend, usage_report, usd_text
from ingest.registry import AdminRegistry, is_dynamodb, open_registry
from ingest.spend import PICO_PER_USD, SpendStore, SpendStoreError, SqliteSpendStore, store_path
from ingest.tenants import registry_path
from sql.config import ReportingConfig
from sql.render import connect

_COLUMNS = ("team_id", "period", "budget_mode", "spend_usd", "budget_usd", "remaining_usd", "alert_at",
            "thresholds_crossed", "alerts_raised", "requests", "daily_tokens_used", "daily_tokens_limit")


def _calendar() -> Calendar:
    try:
        return ReportingConfig.from_env().calendar
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _open_store(registry: AdminRegistry) -> SpendStore:
    if is_dynamodb(registry):
        # The DynamoDB spend table is the deployed unit's (ingest/spend_dynamo.py); this command reads the local one.
        raise UserError(f"budget show reads the local spend store beside a tenant file; {registry.location} is a "
                        f"DynamoDB registry, whose counters are in the unit's spend table")
    return SqliteSpendStore(store_path(Path(registry.location)))


def run_show(args: Any) -> int:
    """``modelmeter budget show [TEAM]``: each team's current fiscal month, as ``GET /v1/usage`` says it."""
    registry = open_registry(tenants=getattr(args, "tenants", None), lake=getattr(args, "lake", None))
    calendar = _calendar()
    store = _open_store(registry)
    teams = {t.team_id: t for t in registry.list_teams()}
    now = datetime.now(UTC)
    period, day = calendar.period(now), calendar.day(now)
    try:
        if args.team:
            if args.team not in teams:
                raise UserError(f"no team {args.team!r} in {registry.location}")
            wanted = [teams[args.team]]
        else:
            counted = set(store.teams(period=period.key))
            wanted = [teams.get(t) or Team(team_id=t) for t in sorted(set(teams) | counted)]
        reports = [usage_report(t, totals=store.read(t.team_id, period=period.key, day=day.key),
                                alerted=store.alerts(t.team_id, period=period.key), period=period, day=day,
                                calendar=calendar, store=store.location) for t in wanted]
    except SpendStoreError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(reports[0] if args.team else reports, indent=2))
        return 0
    resets = f"{period.resets_at:%Y-%m-%d %H:%M}"
    print(f"fiscal month {period.start} to {period.end} in {calendar.timezone} (resets {resets} UTC); spend from "
          f"the gateway's counters in {store.location}", file=sys.stderr)
    print("\t".join(_COLUMNS))
    for r in reports:
        print("\t".join(_cell(r[c]) for c in _COLUMNS))
    return 0


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


# --- the correction after a transform run ----------------------------------------------------------------------

def correct_after_transform(*, lake: Lake, days: Iterable[date]) -> list[str]:
    """Set every team's month-to-date spend in the local spend store to the curated figure, for each fiscal month
    the transformed ``days`` (UTC) touch whose days with events are all transformed up to the last one run; the
    lines to print.

    Nothing to do (``[]``) when the lake is on S3 (the deployed unit's store is DynamoDB) or no gateway has counted
    beside this lake's tenant registry yet.
    """
    days = sorted(set(days))
    if not days or not lake.is_local:
        return []
    try:
        registry_file = registry_path(tenants=None, lake=lake.uri)
    except UserError:
        return []
    store_file = store_path(registry_file)
    if not store_file.exists():
        return []
    registry = open_registry(tenants=str(registry_file), lake=lake.uri)
    calendar, config = _calendar(), ReportingConfig.from_env()
    teams = registry.list_teams()
    lines: list[str] = []
    store = SqliteSpendStore(store_file)
    try:
        for period in _periods_touched(calendar, days):
            missing = _untransformed_days(lake, period, last=days[-1])
            if missing:
                lines.append(f"budget counters of fiscal month {period.start} not corrected: days {missing[0]} … "
                             f"{missing[-1]} ({len(missing)}) have no transform run yet")
                continue
            totals = curated_spend(lake=lake, config=config, period=period, teams=teams)
            changes = correct_spend(store=store, calendar=calendar, period=period, totals=totals, teams=teams,
                                    alerts=LocalAlerts(lake=lake))
            moved = [f"{t} {usd_text(a)} → {usd_text(b)}" for t, a, b in changes if a != b]
            lines.append(f"budget counters of fiscal month {period.start} set from the curated tables ("
                         f"{len(changes)} teams" + (f"; changed: {', '.join(moved)} USD)" if moved else
                                                      ", none changed)"))
    except SpendStoreError as exc:
        lines.append(f"warning: budget counters not corrected: {exc}")
    finally:
        store.close()
    return lines


def _periods_touched(calendar: Calendar, days: list[date]) -> list[Period]:
    """The fiscal months holding any local day that overlaps one of the UTC ``days``."""
    periods: dict[str, Period] = {}
    for d in days:
        start = datetime.combine(d, datetime.min.time(), tzinfo=UTC)
        for instant in (start, start + timedelta(days=1) - timedelta(microseconds=1)):
            p = calendar.period(instant)
            periods[p.key] = p
    return [periods[k] for k in sorted(periods)]


def _untransformed_days(lake: Lake, period: Period, *, last: date) -> list[date]:
    """The UTC days from the period's first instant up to ``last`` (or the period's end) that have raw events but
    no transform run: the curated tables would undercount the period."""
    first = period.starts_at.date()
    end = min(last, (period.resets_at - timedelta(microseconds=1)).date())
    missing, day = [], first
    while day <= end:
        partition = f"dt={day.isoformat()}"
        if lake.list_files(RAW_EVENTS, partition) and not lake.list_files(RUN_MANIFESTS, partition, suffix=".json"):
            missing.append(day)
        day += timedelta(days=1)
    return missing


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

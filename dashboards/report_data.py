"""What the local dashboard shows, read from the SQL views (the same ones Athena and QuickSight use).

Every figure comes from a view created by :func:`sql.render.connect`; this module only filters them to the period
and shapes rows. Money stays ``Decimal`` (DuckDB returns DECIMAL(38,12) as ``Decimal``) until it is formatted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb

from common.constants import ALERTS
from common.lake import Lake
from finance.chargeback import CENT, VersionInfo, versions

ZERO = Decimal(0)


@dataclass(frozen=True)
class Table:
    """A table for the page: column headings and rows of raw values (formatted by the page by column kind)."""

    table_id: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    footer: tuple[tuple[Any, ...], ...] = ()  # totals under the rows (not sorted with them); None: a blank cell


@dataclass(frozen=True)
class ReportData:
    date_from: date | None
    date_to: date | None
    total_spend: Decimal
    invocations: int
    unpriced_invocations: int
    spend_by_team: tuple[tuple[str, Decimal], ...]
    spend_by_model: tuple[tuple[str, Decimal], ...]
    daily: tuple[tuple[date, Decimal], ...]
    burn_month: date | None
    burn: tuple[tuple[str, Decimal, Decimal, Decimal | None], ...]  # team, spend, forecast, budget
    tables: tuple[Table, ...]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def data_range(con: duckdb.DuckDBPyConnection) -> tuple[date | None, date | None]:
    """First and last day (reporting time zone) with usage in the lake; ``(None, None)`` for an empty lake."""
    first, last = _rows(con, "select min(local_date), max(local_date) from usage_local")[0]
    return first, last


def _kpis(con: duckdb.DuckDBPyConnection, period: list[Any]) -> tuple[Decimal, int, int]:
    spend, calls, unpriced = _rows(con, """
        select coalesce(sum(total_cost), 0), coalesce(sum(invocations), 0), coalesce(sum(unpriced_invocations), 0)
        from team_model_daily_local where local_date between ? and ?""", period)[0]
    return Decimal(spend), int(calls), int(unpriced)


def _spend_by(con: duckdb.DuckDBPyConnection, column: str, period: list[Any]) -> tuple[tuple[str, Decimal], ...]:
    # column is one of our own literals, never user input
    rows = _rows(con, f"""
        select {column}, sum(total_cost) as spend from team_model_daily_local
        where local_date between ? and ? group by {column} order by spend desc, {column}""", period)
    return tuple((str(k), Decimal(v)) for k, v in rows)


def _burn(con: duckdb.DuckDBPyConnection, date_to: date) -> tuple[date | None, tuple[Any, ...]]:
    month = _rows(con, "select max(fiscal_month_start) from budget_burn where fiscal_month_start <= ?",
                  [date_to])[0][0]
    if month is None:
        return None, ()
    rows = _rows(con, """
        select team_id, spend_to_date, forecast_month_end, monthly_budget_usd from budget_burn
        where fiscal_month_start = ? order by spend_to_date desc, team_id""", [month])
    return month, tuple(rows)


def alert_log(lake: Lake | None) -> list[dict[str, Any]]:
    """Every budget alert the gateway wrote into the lake (``alerts/``: the ``alerts.jsonl`` log of a folder lake, one
    object per alert on S3; the line format is ``ingest.budget.alert_of``'s), in file order. A line that is not a
    JSON object (a write torn by a crash) is skipped."""
    if lake is None:
        return []
    found: list[dict[str, Any]] = []
    for path in lake.list_files(ALERTS, suffix=""):
        if not path.endswith((".json", ".jsonl")):
            continue
        with lake.fs.open_input_stream(path) as src:
            text = src.read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                alert = json.loads(line)
            except ValueError:
                continue
            if isinstance(alert, dict) and alert.get("team_id"):
                found.append(alert)
    return found


def _used(spend: Decimal | None, budget: Decimal | None) -> str | None:
    if spend is None or not budget:
        return None
    return f"{(Decimal(spend) / Decimal(budget) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def _budget_alerts_table(con: duckdb.DuckDBPyConnection, burn_month: date | None,
                         alerts: list[dict[str, Any]]) -> Table:
    """Each team's alert state in the budget burn's fiscal month: the thresholds the gateway alerted (its alert log),
    the share of the budget the views count as spent, and the calls refused with 429."""
    rows: list[tuple[Any, ...]] = []
    if burn_month is not None:
        burn = {team: (budget, spend) for team, budget, spend in _rows(con, """
            select team_id, monthly_budget_usd, spend_to_date from budget_burn where fiscal_month_start = ?""",
            [burn_month])}
        refused: dict[str, int] = {}
        by_budget: dict[str, int] = {}
        for team, reason, n in _rows(con, """
                select team_id, refusal_reason, count(*) from usage_local
                where fiscal_month_start = ? and status = 'throttled' group by all""", [burn_month]):
            refused[team] = refused.get(team, 0) + int(n)
            if reason == "budget":
                by_budget[team] = int(n)
        raised: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            if alert.get("period") == burn_month.isoformat():
                raised.setdefault(str(alert["team_id"]), []).append(alert)
        teams = {t for t, (budget, _spend) in burn.items() if budget is not None} | set(raised) | set(refused)
        for team in sorted(teams):
            budget, spend = burn.get(team, (None, None))
            mine = sorted(raised.get(team, []), key=lambda a: str(a.get("raised_at") or ""))
            thresholds = sorted({int(a["threshold_pct"]) for a in mine
                                 if isinstance(a.get("threshold_pct"), int | float)})
            last = mine[-1] if mine else {}
            when = str(last.get("raised_at") or "")[:16].replace("T", " ") or None
            rows.append((team, last.get("budget_mode"), budget, spend, _used(spend, budget),
                         ", ".join(f"{t}%" for t in thresholds) or "none", when, refused.get(team, 0),
                         by_budget.get(team, 0)))
    return Table("budget-alerts", "Budget alerts and refused calls",
                 ("team", "budget mode", "budget (USD)", "spent (USD)", "used", "thresholds alerted",
                  "last alert (UTC)", "refused calls (429)", "of them: budget"),
                 tuple(rows),
                 note="The budget burn's fiscal month. Thresholds alerted: the alerts the gateway raised (once per "
                      "team, fiscal month and threshold, whatever the number of gateway processes), from the lake's "
                      "alert log (alerts/); in AWS they go to the unit's SNS topic and EventBridge. Used: the views' "
                      "spend to date over the monthly budget. Refused calls: events with status throttled (HTTP "
                      "429: a block-mode budget reached, a daily token or rate limit, or the provider throttling), "
                      "which still count as invocations at zero cost; \"of them: budget\" those with "
                      "refusal_reason budget.")


def _tables(con: duckdb.DuckDBPyConnection, period: list[Any], burn_month: date | None,
            manifests: dict[str, list[VersionInfo]], alerts: list[dict[str, Any]]) -> tuple[Table, ...]:
    months = [period[0], period[1]]  # fiscal months overlapping the period
    month_filter = "fiscal_month_end >= ? and fiscal_month_start <= ?"
    return (
        Table("chargeback", "Chargeback by fiscal month, cost centre and team",
              ("fiscal month", "cost centre", "team", "invocations", "unpriced", "input tokens", "output tokens",
               "spend (USD)"),
              tuple(_rows(con, f"""select fiscal_month_start, cost_center, team_id, invocations, unpriced_invocations,
                    input_tokens, output_tokens, total_cost from chargeback_monthly where {month_filter}
                    order by fiscal_month_start, cost_center, team_id""", months)),
              note="Whole fiscal months that overlap the period."),
        Table("top-models", "Top models",
              ("model", "invocations", "input tokens", "output tokens", "images", "spend (USD)"),
              tuple(_rows(con, """select model_id, sum(invocations), sum(input_tokens), sum(output_tokens),
                    sum(image_count), sum(total_cost) as spend from team_model_daily_local
                    where local_date between ? and ? group by model_id order by spend desc, model_id""", period))),
        Table("unit-costs", "Effective unit cost per model",
              ("fiscal month", "model", "USD per 1M input tokens", "USD per 1M output tokens",
               "USD per 1M tokens (all)", "USD per image"),
              tuple(_rows(con, f"""select fiscal_month_start, model_id, usd_per_1m_input_tokens,
                    usd_per_1m_output_tokens, usd_per_1m_tokens, usd_per_image from unit_cost_by_model
                    where fiscal_month_start in (select fiscal_month_start from budget_burn where {month_filter})
                    order by fiscal_month_start, model_id""", months)),
              note="Priced usage only."),
        Table("budget", "Budget burn",
              ("team", "cost centre", "budget (USD)", "spent (USD)", "forecast (USD)", "remaining (USD)",
               "days elapsed"),
              tuple(_rows(con, """select team_id, cost_center, monthly_budget_usd, spend_to_date, forecast_month_end,
                    budget_remaining, days_elapsed || ' of ' || days_in_month from budget_burn
                    where fiscal_month_start = ? order by team_id""", [burn_month])),
              note="Linear forecast: spend so far ÷ days elapsed × days in the month."),
        _budget_alerts_table(con, burn_month, alerts),
        Table("growers", "Fastest growers (last 7 days with data against the 7 before)",
              ("rank", "team", "last 7 days (USD)", "prior 7 days (USD)", "growth (USD)"),
              tuple(_rows(con, """select growth_rank, team_id, last_7d_cost, prior_7d_cost, growth_cost
                    from fastest_growers order by growth_rank, team_id"""))),
        Table("unpriced", "Unpriced usage (kept; what had no price is not charged, the rest of the call is)",
              ("team", "provider", "model", "operation", "without a price", "invocations", "input tokens",
               "output tokens"),
              tuple(_rows(con, """select team_id, provider, model_id, operation,
                    case when unpriced_dimensions = '' then '(no price for the model)'
                    else replace(unpriced_dimensions, ',', ', ') end, sum(invocations), sum(input_tokens),
                    sum(output_tokens) from unpriced_usage where local_date between ? and ?
                    group by all order by 6 desc, 1, 3""", period))),
        *_close_tables(con, period, manifests),
        Table("quarantine", "Quarantine summary (rejected events)",
              ("stage", "reason", "rejected rows"),
              tuple(_rows(con, """select stage, reason, sum(rejected_rows) from quarantine_summary
                    where local_date between ? and ? group by all order by 3 desc, 1, 2""", period))),
    )


def _close_tables(con: duckdb.DuckDBPyConnection, period: list[Any],
                  manifests: dict[str, list[VersionInfo]]) -> tuple[Table, ...]:
    """The month-end close of the billing periods (the invoice's UTC months) that overlap the period: each period's
    state, its chargeback versions, its own lines (which add up to its invoice) and, apart, the adjustment lines
    that restate earlier closed periods; then the reconciliation."""
    periods = [f"{period[0]:%Y-%m}", f"{period[1]:%Y-%m}"]
    inputs = {(p, v.version): v for p, listed in manifests.items() for v in listed}
    own = _rows(con, """select billing_period, version, cost_center, team_id, metered_list_cost, price_adjustment,
                  allocated_shared_cost, chargeback_cost, rules from chargeback_of_record
                  where line_type = 'charge' and billing_period between ? and ?
                  order by billing_period, team_id = 'unallocated', cost_center, team_id""", periods)
    adjustments = _rows(con, """select billing_period, corrects_period, rules, cost_center, team_id,
                  metered_list_cost, price_adjustment, allocated_shared_cost, chargeback_cost from chargeback_of_record
                  where line_type = 'adjustment'
                    and (billing_period between ? and ? or corrects_period between ? and ?)
                  order by billing_period, rules, team_id = 'unallocated', cost_center, team_id""", periods * 2)
    return (
        _periods_table(con, periods, inputs),
        _events_table(con, periods),
        _versions_table(con, periods, inputs),
        Table("close-chargeback", "Chargeback of record: each billing period's own lines, by cost centre and team",
              ("billing period", "version", "cost centre", "team", "metered list (USD)", "price adjustment (USD)",
               "shared costs (USD)", "chargeback (USD)", "allocation rules"),
              tuple(own), footer=_own_totals(own, inputs),
              note="Billing periods are UTC calendar months (the AWS invoice). A closed period shows the version it "
                   "was closed at, an open one its latest `modelmeter chargeback` run. A period's own lines add up "
                   "to its in-scope invoice to the cent; restatements of earlier periods are not among them (below)."),
        Table("close-adjustments", "Adjustment lines: restatements of earlier closed periods",
              ("posted into", "corrects period", "restatement", "cost centre", "team", "metered list Δ (USD)",
               "price adjustment Δ (USD)", "shared costs Δ (USD)", "chargeback Δ (USD)"),
              tuple(adjustments), footer=_adjustment_totals(adjustments),
              note="`modelmeter restate` books what a closed period would be charged now (restated − booked, per "
                   "cost centre × team) into the next open period as extra lines, labelled with the period they "
                   "correct and the restatement id; the closed period itself never moves. They are not part of "
                   "the invoice of the period they are posted into."),
        Table("close-reconciliation", "Reconciliation: where the bill's dollars go",
              ("billing period", "category", "billed (USD)", "metered at list (USD)"),
              tuple(_rows(con, """select billing_period, category, sum(billed_cost), sum(metered_list_cost)
                    from reconciliation_summary where billing_period between ? and ?
                    group by billing_period, category order by billing_period, category""", periods)),
              note="matched, price variance, unmetered usage, metered but not billed, non-usage (credits, fees), "
                   "time-based and unmapped charges; see docs/finance.md. Of the newest CUR snapshot: a closed "
                   "period's record may be of an earlier one (its CUR snapshot is named above)."),
        Table("close-by-model", "Billed against metered by model",
              ("billing period", "category", "model or charge", "billed (USD)", "metered at list (USD)"),
              tuple(_rows(con, """select billing_period, category, item, billed_cost, metered_list_cost
                    from reconciliation_summary where billing_period between ? and ?
                    order by billing_period, item, category""", periods))),
    )


def _invoice(info: VersionInfo | None) -> Decimal | None:
    """The in-scope invoice a version charges back, rounded to the cent (what its rows add up to)."""
    return None if info is None else Decimal(info.in_scope_total).quantize(CENT, rounding=ROUND_HALF_UP)


def _periods_table(con: duckdb.DuckDBPyConnection, periods: list[str],
                   inputs: dict[tuple[str, int], VersionInfo]) -> Table:
    rows = []
    for r in _rows(con, """
            with shown as (
                select billing_period from chargeback_of_record where billing_period between ? and ?
                union
                select billing_period from period_events where billing_period between ? and ?
            ),
            latest as (
                select *, row_number() over (partition by billing_period order by seq desc) as newest
                from period_events
            ),
            lines as (
                select billing_period, max(period_status) as period_status, max(version) as version,
                       sum(case when line_type = 'charge' then chargeback_cost end) as own_cost,
                       sum(case when line_type = 'adjustment' then chargeback_cost end) as adjustment_cost
                from chargeback_of_record group by billing_period
            ),
            restated as (
                select corrects_period as billing_period,
                       string_agg(restatement || ' (posted into ' || billing_period || ')', ', '
                                  order by restatement) as restatements
                from (select distinct corrects_period, restatement, billing_period from chargeback_adjustments)
                group by corrects_period
            )
            select s.billing_period, coalesce(l.period_status, 'open'), l.version, e.action, e.version, e.reason,
                   strftime(e."at", '%Y-%m-%d %H:%M'), e."by", e.cur_snapshot, e.cur_final, l.own_cost,
                   l.adjustment_cost, r.restatements
            from shown as s
            left join lines as l on l.billing_period = s.billing_period
            left join latest as e on e.billing_period = s.billing_period and e.newest = 1
            left join restated as r on r.billing_period = s.billing_period
            order by s.billing_period""", periods * 2):
        period, state, version, action, closed_version, reason, at, by, snapshot, final, own, adjusted, restated = r
        info = inputs.get((period, version)) if version is not None else None
        if action == "close":
            last = f"closed at version {closed_version}"
        elif action == "reopen":
            last = f"reopened: {reason}"
        else:
            last, at, by = "never closed: its figures are a preview", None, None
        if action != "close" and info is not None:  # open: the snapshot of the run shown
            snapshot, final = info.cur_snapshot, info.cur_final
        rows.append((period, state, version, last, at, by, snapshot, final, own, _invoice(info), adjusted, restated))
    return Table("close-periods", "Billing periods: open or closed",
                 ("billing period", "status", "version of record", "last close or reopening", "at (UTC)", "by",
                  "CUR snapshot", "CUR final", "own lines (USD)", "in-scope invoice (USD)",
                  "adjustment lines posted into it (USD)", "restated by"),
                 tuple(rows),
                 note="`modelmeter close` freezes a period at its latest chargeback version; afterwards new prices, "
                      "a new CUR snapshot or an organisation change leave it as it is. A period closed on a CUR "
                      "snapshot that is not final (no invoice yet) may still be restated by AWS. An open period's "
                      "figures are a preview. Adjustment lines are restatements of earlier periods posted into it, "
                      "outside its invoice; \"restated by\" names the restatements of the period itself and where "
                      "they were booked.")


def _events_table(con: duckdb.DuckDBPyConnection, periods: list[str]) -> Table:
    return Table("close-events", "Closes and reopenings",
                 ("billing period", "event", "action", "version", "at (UTC)", "by", "reason", "CUR snapshot",
                  "CUR final"),
                 tuple(_rows(con, """select billing_period, seq, action, version, strftime("at", '%Y-%m-%d %H:%M'),
                       "by", reason, cur_snapshot, cur_final from period_events where billing_period between ? and ?
                       order by billing_period, seq""", periods)),
                 note="Append-only: a period's state is its latest event. Reopening needs a reason; a period whose "
                      "restatements are already posted cannot be reopened.")


def _versions_table(con: duckdb.DuckDBPyConnection, periods: list[str],
                    inputs: dict[tuple[str, int], VersionInfo]) -> Table:
    rows = []
    for period, version, purpose, total, of_record in _rows(con, """
            with record as (
                select distinct billing_period, version from chargeback_of_record where line_type = 'charge'
            )
            select c.billing_period, c.version, coalesce(max(c.purpose), 'chargeback'), sum(c.chargeback_cost),
                   bool_or(r.version is not null)
            from chargeback as c
            left join record as r on r.billing_period = c.billing_period and r.version = c.version
            where c.billing_period between ? and ?
            group by c.billing_period, c.version order by c.billing_period, c.version""", periods):
        info = inputs.get((period, version))
        created = (datetime.fromisoformat(info.created_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
                   if info else None)
        rows.append((period, version, purpose, info.restates_version if info else None, created,
                     info.cur_snapshot if info else None, info.cur_final if info else None,
                     ", ".join(info.price_versions) if info and info.price_versions else None, total,
                     bool(of_record)))
    return Table("close-versions", "Chargeback versions",
                 ("billing period", "version", "purpose", "restates version", "created (UTC)", "CUR snapshot",
                  "CUR final", "price versions", "chargeback total (USD)", "of record"),
                 tuple(rows),
                 note="Every run is kept. `chargeback` makes a new version of an open period; `restate` stores what "
                      "a closed period would be charged now as a restatement version, which is never its record. "
                      "`modelmeter chargeback --period P --versions` lists the same.")


def _own_totals(rows: list[tuple[Any, ...]], inputs: dict[tuple[str, int], VersionInfo]) -> tuple[tuple[Any, ...], ...]:
    """Per billing period: the sums of its own lines, and under them its in-scope invoice (to the cent)."""
    footer: list[tuple[Any, ...]] = []
    for period in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == period]
        sums = tuple(sum((Decimal(r[i]) for r in mine), ZERO) for i in range(4, 8))
        footer.append((f"{period} own lines", None, None, None, *sums, None))
        invoice = _invoice(inputs.get((period, mine[0][1])))
        if invoice is not None:
            footer.append((f"{period} in-scope invoice", None, None, None, None, None, None, invoice, None))
    return tuple(footer)


def _adjustment_totals(rows: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """Per restatement: the sums of its lines (restated − booked of the period it corrects)."""
    keys = sorted({(r[0], r[1], r[2]) for r in rows})
    return tuple((posted, corrects, f"{restatement} total", None, None,
                  *(sum((Decimal(r[i]) for r in rows if (r[0], r[1], r[2]) == (posted, corrects, restatement)),
                        ZERO) for i in range(5, 9)))
                 for posted, corrects, restatement in keys)


def _manifests(con: duckdb.DuckDBPyConnection, lake: Lake | None, period: list[Any]) -> dict[str, list[VersionInfo]]:
    """The version manifests (inputs: CUR snapshot, price versions, run time …) of the billing periods shown."""
    if lake is None:
        return {}
    shown = _rows(con, "select distinct billing_period from chargeback where billing_period between ? and ?",
                  [f"{period[0]:%Y-%m}", f"{period[1]:%Y-%m}"])
    return {p: versions(lake=lake, period=p) for (p,) in shown}


def gather(con: duckdb.DuckDBPyConnection, *, date_from: date | None, date_to: date | None,
           lake: Lake | None = None) -> ReportData:
    """Everything the page shows for the period (default: every day with data), read from the views; with
    ``lake``, the chargeback versions' inputs from their manifests too (without it, those cells are empty)."""
    first, last = data_range(con)
    date_from, date_to = date_from or first, date_to or last
    if date_from is None or date_to is None:  # an empty lake: an empty page, not an error
        return ReportData(None, None, ZERO, 0, 0, (), (), (), None, (), ())
    period = [date_from, date_to]
    spend, calls, unpriced = _kpis(con, period)
    daily = tuple((d, Decimal(v)) for d, v in _rows(con, """
        select local_date, total_cost from daily_trend where local_date between ? and ? order by local_date""",
        period))
    burn_month, burn = _burn(con, date_to)
    return ReportData(date_from=date_from, date_to=date_to, total_spend=spend, invocations=calls,
                      unpriced_invocations=unpriced, spend_by_team=_spend_by(con, "team_id", period),
                      spend_by_model=_spend_by(con, "model_id", period), daily=daily, burn_month=burn_month,
                      burn=burn, tables=_tables(con, period, burn_month, _manifests(con, lake, period),
                                                alert_log(lake)))

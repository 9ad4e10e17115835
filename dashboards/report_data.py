"""What the local dashboard shows, read from the SQL views (the same ones Athena and QuickSight use).

Every figure comes from a view created by :func:`sql.render.connect`; this module only filters them to the period
and shapes rows. Money stays ``Decimal`` (DuckDB returns DECIMAL(38,12) as ``Decimal``) until it is formatted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

ZERO = Decimal(0)


@dataclass(frozen=True)
class Table:
    """A table for the page: column headings and rows of raw values (formatted by the page by column kind)."""

    table_id: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


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


def _tables(con: duckdb.DuckDBPyConnection, period: list[Any], burn_month: date | None) -> tuple[Table, ...]:
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
        Table("growers", "Fastest growers (last 7 days with data against the 7 before)",
              ("rank", "team", "last 7 days (USD)", "prior 7 days (USD)", "growth (USD)"),
              tuple(_rows(con, """select growth_rank, team_id, last_7d_cost, prior_7d_cost, growth_cost
                    from fastest_growers order by growth_rank, team_id"""))),
        Table("unpriced", "Unpriced usage (kept, not charged: the catalog has no price)",
              ("team", "provider", "model", "operation", "invocations", "input tokens", "output tokens"),
              tuple(_rows(con, """select team_id, provider, model_id, operation, sum(invocations),
                    sum(input_tokens), sum(output_tokens) from unpriced_usage where local_date between ? and ?
                    group by all order by 5 desc, 1, 3""", period))),
        *_close_tables(con, period),
        Table("quarantine", "Quarantine summary (rejected events)",
              ("stage", "reason", "rejected rows"),
              tuple(_rows(con, """select stage, reason, sum(rejected_rows) from quarantine_summary
                    where local_date between ? and ? group by all order by 3 desc, 1, 2""", period))),
    )


def _close_tables(con: duckdb.DuckDBPyConnection, period: list[Any]) -> tuple[Table, ...]:
    """The month-end close of the billing periods (the invoice's UTC months) that overlap the period."""
    periods = [f"{period[0]:%Y-%m}", f"{period[1]:%Y-%m}"]
    return (
        Table("close-chargeback", "Chargeback of record (invoice-true) by billing period, cost centre and team",
              ("billing period", "version", "cost centre", "team", "metered list (USD)", "price adjustment (USD)",
               "shared costs (USD)", "chargeback (USD)", "allocation rules"),
              tuple(_rows(con, """select billing_period, version, cost_center, team_id, metered_list_cost,
                    price_adjustment, allocated_shared_cost, chargeback_cost, rules from chargeback_of_record
                    where billing_period between ? and ?
                    order by billing_period, team_id = 'unallocated', cost_center, team_id""", periods)),
              note="Billing periods are UTC calendar months (the AWS invoice); the rows of a period add up to its "
                   "in-scope invoice to the cent. `modelmeter chargeback` makes a new version; the latest is shown."),
        Table("close-reconciliation", "Reconciliation: where the bill's dollars go",
              ("billing period", "category", "billed (USD)", "metered at list (USD)"),
              tuple(_rows(con, """select billing_period, category, sum(billed_cost), sum(metered_list_cost)
                    from reconciliation_summary where billing_period between ? and ?
                    group by billing_period, category order by billing_period, category""", periods)),
              note="matched, price variance, unmetered usage, metered but not billed, non-usage (credits, fees), "
                   "time-based and unmapped charges; see docs/finance.md."),
        Table("close-by-model", "Billed against metered by model",
              ("billing period", "category", "model or charge", "billed (USD)", "metered at list (USD)"),
              tuple(_rows(con, """select billing_period, category, item, billed_cost, metered_list_cost
                    from reconciliation_summary where billing_period between ? and ?
                    order by billing_period, item, category""", periods))),
    )


def gather(con: duckdb.DuckDBPyConnection, *, date_from: date | None, date_to: date | None) -> ReportData:
    """Everything the page shows for the period (default: every day with data), read from the views."""
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
                      burn=burn, tables=_tables(con, period, burn_month))

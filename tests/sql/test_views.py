"""Every view on DuckDB over the fixture lake, against answers computed in Python from the rows the fixture wrote."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

import duckdb
import pytest

from common.contracts import COST_COLUMNS, COUNT_FIELDS
from common.lake import Lake
from sql.config import ReportingConfig
from sql.render import connect, views
from tests.fixture_lake import IMAGE_MODEL, UNPRICED_MODEL, WEST_TEAM, WEST_TIMEZONE, FixtureFacts
from tests.sql.conftest import FISCAL_CONFIG, rows

Q12 = Decimal("1e-12")
ZERO = Decimal(0)
RATIO_COLUMNS = {"share_of_month", "growth_ratio", "budget_used_ratio"}
MONEY_SUFFIXES = ("_cost", "_usd", "spend_to_date", "forecast_month_end", "budget_remaining")


def _div(num: Decimal, den: int, per: int = 1) -> Decimal | None:
    """What mm_money_div computes: num × per ÷ den, 12 places, half up."""
    if den <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return (num * per / den).quantize(Q12, rounding=ROUND_HALF_UP)


def _fiscal(facts: FixtureFacts, row: dict, config: ReportingConfig) -> date:
    return facts.fiscal_month_start(facts.local_day(row, config.timezone), config.fiscal_month_start_day)


@pytest.mark.parametrize("view", views())
def test_every_view_returns_rows_and_keeps_money_decimal(con_fiscal: duckdb.DuckDBPyConnection, view: str) -> None:
    assert con_fiscal.execute(f"select count(*) from {view}").fetchone()[0] > 0
    types = {name: str(typ) for name, typ, *_ in con_fiscal.execute(f"describe {view}").fetchall()}
    for name, typ in types.items():
        if name.endswith(MONEY_SUFFIXES) or name.startswith("usd_per_"):
            assert typ == "DECIMAL(38,12)", f"{view}.{name} is {typ}"
        # counts are BIGINT as in Athena (DuckDB sums BIGINT into HUGEINT, which pandas reads as float)
        assert typ != "HUGEINT", f"{view}.{name} is HUGEINT"
        if typ in ("DOUBLE", "FLOAT"):
            assert name in RATIO_COLUMNS, f"{view}.{name} is {typ}: money must stay DECIMAL"


#: the grain of each view: these columns are never NULL and never repeat together
VIEW_KEYS: dict[str, tuple[str, ...]] = {
    "usage_local": ("event_id",),
    "team_model_daily_local": ("local_date", "team_id", "model_id"),
    "priced_usage_daily": ("usage_date", "team_id", "provider", "region", "service_tier", "model_id", "price_version"),
    "chargeback_monthly": ("fiscal_month_start", "cost_center", "team_id"),  # a team that moved: a row per side
    "unit_cost_by_model": ("fiscal_month_start", "model_id"),
    "daily_trend": ("local_date",),
    "top_spenders": ("fiscal_month_start", "cost_center", "team_id"),
    "fastest_growers": ("team_id",),
    "unpriced_usage": ("local_date", "team_id", "provider", "region", "model_id", "operation", "service_tier",
                       "unpriced_dimensions"),
    "quarantine_summary": ("local_date", "stage", "reason"),
    "budget_burn": ("fiscal_month_start", "team_id"),
    "reconciliation_summary": ("billing_period", "category", "item"),
    "chargeback_of_record": ("billing_period", "line_type", "corrects_period", "rules", "cost_center", "team_id"),
    "period_status": ("billing_period",),
    "chargeback_versions": ("billing_period", "version", "cost_center", "team_id"),
}
#: key columns that may be NULL: region (DESIGN.md), the unallocated line's cost centre, a charge line's
#: corrects_period and rules
NULLABLE_KEYS = ("region", "cost_center", "corrects_period", "rules")


def test_every_view_has_a_declared_grain() -> None:
    assert set(VIEW_KEYS) == set(views())


@pytest.mark.parametrize(("view", "keys"), VIEW_KEYS.items())
def test_view_keys_are_unique_and_not_null(con_fiscal: duckdb.DuckDBPyConnection, view: str,
                                           keys: tuple[str, ...]) -> None:
    not_null = " and ".join([f"{k} is not null" for k in keys if k not in NULLABLE_KEYS] or ["true"])
    total, distinct, complete = con_fiscal.execute(
        f"select count(*), count(distinct ({', '.join(keys)})), count_if({not_null}) from {view}").fetchone()
    assert total == distinct == complete > 0


def test_usage_local_has_every_row_and_cost(con_utc: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    got = rows(con_utc, "select count(*) as n, sum(total_cost) as cost, count_if(not priced) as unpriced "
                        "from usage_local")[0]
    assert got == {"n": facts.invocations, "cost": facts.total_cost, "unpriced": facts.unpriced_invocations}


def test_team_model_daily_local_in_utc_equals_the_curated_rollup(
        con_utc: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    # GIVEN the reporting zone is UTC, local days are the UTC usage dates
    columns = ["invocations", *COUNT_FIELDS, *COST_COLUMNS, "unpriced_invocations", "price_version"]
    got = rows(con_utc, f"select local_date, team_id, model_id, {', '.join(columns)} from team_model_daily_local")
    # THEN the view re-derived from usage_cost equals the transform's team_model_daily, column by column
    expected = {(r["usage_date"], r["team_id"], r["model_id"]): {c: r[c] for c in columns}
                for r in facts.team_model_daily}
    assert {(r["local_date"], r["team_id"], r["model_id"]): {c: r[c] for c in columns} for r in got} == expected


def test_west_evening_traffic_lands_on_its_local_day(
        con_utc: duckdb.DuckDBPyConnection, con_west: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    # GIVEN the west team's requests are all evenings in UTC−8, i.e. the next day in UTC
    west = [r for r in facts.usage_cost if r["team_id"] == WEST_TEAM]
    assert west and all(facts.local_day(r, WEST_TIMEZONE) == r["usage_date"] - timedelta(days=1) for r in west)
    sql = ("select local_date, sum(invocations) as n, sum(total_cost) as cost from team_model_daily_local "
           "where team_id = ? group by local_date")
    # WHEN the views count days in America/Los_Angeles
    got_west = {r["local_date"]: (r["n"], r["cost"]) for r in rows(con_west, sql, [WEST_TEAM])}
    got_utc = {r["local_date"]: (r["n"], r["cost"]) for r in rows(con_utc, sql, [WEST_TEAM])}
    # THEN each evening counts on the local day it happened, and in UTC on the day after
    by_local: dict[date, list] = defaultdict(lambda: [0, ZERO])
    by_utc: dict[date, list] = defaultdict(lambda: [0, ZERO])
    for r in west:
        for bucket, day in ((by_local, facts.local_day(r, WEST_TIMEZONE)), (by_utc, r["usage_date"])):
            bucket[day][0] += 1
            bucket[day][1] += r["total_cost"] or ZERO
    assert got_west == {d: tuple(v) for d, v in by_local.items()}
    assert got_utc == {d: tuple(v) for d, v in by_utc.items()}
    assert min(got_west) == facts.first_day - timedelta(days=1) and min(got_utc) == facts.first_day


def test_chargeback_monthly_by_fiscal_month_team_and_cost_centre(
        con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    # GIVEN fiscal months starting on the 15th, in UTC−8
    expected: dict[tuple, dict] = defaultdict(lambda: {"invocations": 0, "unpriced": 0, "total_cost": ZERO,
                                                       "image_cost": ZERO, "cache_read_cost": ZERO})
    for r in facts.usage_cost:
        e = expected[(_fiscal(facts, r, FISCAL_CONFIG), r["team_id"])]
        e["invocations"] += 1
        e["unpriced"] += 0 if r["priced"] else 1
        for c in ("total_cost", "image_cost", "cache_read_cost"):
            e[c] += r[c] or ZERO
    got = rows(con_fiscal, "select * from chargeback_monthly")
    assert {(r["fiscal_month_start"], r["team_id"]): {
        "invocations": r["invocations"], "unpriced": r["unpriced_invocations"], "total_cost": r["total_cost"],
        "image_cost": r["image_cost"], "cache_read_cost": r["cache_read_cost"]} for r in got} == expected
    for r in got:
        assert r["cost_center"] == facts.cost_center_of(r["team_id"])
        assert r["fiscal_month_start"].day == 15 and r["fiscal_month_end"].day == 14
    # the fixture (local days Nov 4 … Dec 14) spans two fiscal months, starting Oct 15 and Nov 15
    assert {r["fiscal_month_start"] for r in got} == {date(2026, 10, 15), date(2026, 11, 15)}
    assert sum(r["total_cost"] for r in got) == facts.total_cost


def test_unit_cost_by_model_per_million_tokens_and_per_image(
        con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for r in facts.priced_rows:
        s = sums[(_fiscal(facts, r, FISCAL_CONFIG), r["model_id"])]
        for c in (*COUNT_FIELDS, *COST_COLUMNS):
            s[c] += r[c]
    got = {(r["fiscal_month_start"], r["model_id"]): r for r in rows(con_fiscal, "select * from unit_cost_by_model")}
    assert set(got) == set(sums)
    for key, s in sums.items():
        tokens = sum(s[c] for c in COUNT_FIELDS if c != "image_count")
        token_cost = s["input_cost"] + s["output_cost"] + s["cache_read_cost"] + s["cache_write_cost"]
        assert got[key]["usd_per_1m_input_tokens"] == _div(s["input_cost"], s["input_tokens"], 1_000_000)
        assert got[key]["usd_per_1m_output_tokens"] == _div(s["output_cost"], s["output_tokens"], 1_000_000)
        assert got[key]["usd_per_1m_tokens"] == _div(token_cost, tokens, 1_000_000)
        assert got[key]["usd_per_image"] == _div(s["image_cost"], s["image_count"])
    # the image model's unit cost is its fixture price, exactly; unpriced models do not appear at all
    assert {r["usd_per_image"] for k, r in got.items() if k[1] == IMAGE_MODEL} == {Decimal("0.008000000000")}
    assert UNPRICED_MODEL not in {k[1] for k in got}


def test_daily_trend_and_month_to_date(con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    per_day: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for r in facts.usage_cost:
        per_day[facts.local_day(r, FISCAL_CONFIG.timezone)] += r["total_cost"] or ZERO
    got = rows(con_fiscal, "select * from daily_trend order by local_date")
    assert {r["local_date"]: r["total_cost"] for r in got} == per_day
    running: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for r in got:
        running[r["fiscal_month_start"]] += r["total_cost"]
        assert r["month_to_date_cost"] == running[r["fiscal_month_start"]]


def test_top_spenders_rank_and_share(con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    spend = facts.aggregate(lambda r: (_fiscal(facts, r, FISCAL_CONFIG), r["team_id"]))
    got = rows(con_fiscal, "select * from top_spenders")
    assert {(r["fiscal_month_start"], r["team_id"]): r["total_cost"] for r in got} == spend
    for r in got:
        month = {t: c for (m, t), c in spend.items() if m == r["fiscal_month_start"]}
        assert r["spend_rank"] == 1 + sum(1 for c in month.values() if c > r["total_cost"])
        assert r["share_of_month"] == pytest.approx(float(r["total_cost"] / sum(month.values())))


def test_fastest_growers_last_7_days_against_the_7_before(
        con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    tz = FISCAL_CONFIG.timezone
    as_of = max(facts.local_day(r, tz) for r in facts.usage_cost)
    last = facts.aggregate(lambda r: r["team_id"],
                           rows=[r for r in facts.priced_rows if as_of - facts.local_day(r, tz) < timedelta(7)])
    prior = facts.aggregate(lambda r: r["team_id"], rows=[
        r for r in facts.priced_rows if timedelta(7) <= as_of - facts.local_day(r, tz) < timedelta(14)])
    got = rows(con_fiscal, "select * from fastest_growers order by growth_rank")
    assert {r["team_id"]: (r["last_7d_cost"], r["prior_7d_cost"]) for r in got} == {
        t: (last.get(t, ZERO), prior.get(t, ZERO)) for t in set(last) | set(prior)}
    growth = [r["growth_cost"] for r in got]
    assert growth == sorted(growth, reverse=True) and all(r["as_of_date"] == as_of for r in got)
    for r in got:
        assert r["growth_cost"] == r["last_7d_cost"] - r["prior_7d_cost"]
        assert r["growth_ratio"] == pytest.approx(float(r["growth_cost"] / r["prior_7d_cost"]))


def test_unpriced_usage_lists_what_no_price_applied_to(
        con_fiscal: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    unpriced = [r for r in facts.usage_cost if not r["priced"]]
    got = rows(con_fiscal, "select model_id, team_id, sum(invocations) as n, sum(input_tokens) as tokens "
                           "from unpriced_usage group by all")
    expected: dict[tuple, list] = defaultdict(lambda: [0, 0])
    for r in unpriced:
        expected[(r["model_id"], r["team_id"])][0] += 1
        expected[(r["model_id"], r["team_id"])][1] += r["input_tokens"]
    assert {(r["model_id"], r["team_id"]): [r["n"], r["tokens"]] for r in got} == expected
    assert sum(r["n"] for r in got) == facts.unpriced_invocations > 0


def test_quarantine_summary_counts_rejections_by_day_stage_and_reason(
        con_utc: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    expected: dict[tuple, int] = defaultdict(int)
    for r in facts.quarantine:
        expected[((r["event_time"] or r["quarantined_at"]).date(), r["stage"], r["reason"])] += 1
    got = rows(con_utc, "select * from quarantine_summary")
    assert {(r["local_date"], r["stage"], r["reason"]): r["rejected_rows"] for r in got} == expected
    negative = next(r for r in got if r["reason"] == "input_tokens -5 is negative")
    assert negative["teams"] == 2


def test_budget_burn_with_linear_month_end_forecast(
        con_west: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    # GIVEN calendar months in UTC−8; "today" is the last local day with data
    tz = WEST_TIMEZONE
    as_of = max(facts.local_day(r, tz) for r in facts.usage_cost)
    spend = facts.aggregate(lambda r: (facts.fiscal_month_start(facts.local_day(r, tz), 1), r["team_id"]))
    months = {m for m, _ in spend}
    got = {(r["fiscal_month_start"], r["team_id"]): r for r in rows(con_west, "select * from budget_burn")}
    # THEN every budgeted team appears in every month (the idle team with zero spend), plus every team that spent
    budgeted = {t.team_id for t in facts.teams if t.monthly_budget_usd is not None}
    assert set(got) == set(spend) | {(m, t) for m in months for t in budgeted}
    for (month, team), r in got.items():
        end = (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        day = min(as_of, end)
        elapsed, length = (day - month).days + 1, (end - month).days + 1
        spent = spend.get((month, team), ZERO)
        budget = facts.budget_of(team)
        assert (r["as_of_date"], r["days_elapsed"], r["days_in_month"]) == (day, elapsed, length)
        assert r["spend_to_date"] == spent
        assert r["forecast_month_end"] == _div(spent, elapsed, length)
        assert r["monthly_budget_usd"] == budget
        assert r["budget_remaining"] == (None if budget is None else budget - spent)
        assert r["forecast_over_budget"] == (None if budget is None else r["forecast_month_end"] > budget)
    # the finished month's forecast is its spend; the running month extrapolates
    november = got[(date(2026, 11, 1), WEST_TEAM)]
    assert november["forecast_month_end"] == november["spend_to_date"] and november["forecast_over_budget"]
    assert got[(date(2026, 12, 1), WEST_TEAM)]["days_elapsed"] < 31


def test_an_empty_lake_gives_empty_views(tmp_path) -> None:
    # GIVEN a lake with no curated, quarantine or reference data at all
    con = connect(lake=Lake.open(tmp_path / "empty"), config=ReportingConfig())
    # THEN every base table and view exists, typed, and is empty
    for view in views():
        assert con.execute(f"select count(*) from {view}").fetchone()[0] == 0
    types = {name: str(typ) for name, typ, *_ in con.execute("describe usage_cost").fetchall()}
    assert types["total_cost"] == "DECIMAL(38,12)" and types["event_time"] == "TIMESTAMP WITH TIME ZONE"

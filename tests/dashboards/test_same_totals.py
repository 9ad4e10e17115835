"""One question, three ways, one answer: total spend for a period via the Athena SQL, the DuckDB SQL and the
HTML dashboard equals the fixture's exact total.

The Athena rendering is transpiled back to DuckDB by sqlglot and executed. sqlglot leaves two Trino functions as they
are (``with_timezone``, ``at_timezone``); two one-line DuckDB macros with Trino's meaning stand in for them. Nothing
else is adapted: if the Athena SQL computed money differently, these totals would differ.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from common.lake import Lake
from dashboards.html import render_dashboard
from sql.config import ReportingConfig
from sql.render import connect, render_views, views
from tests.dashboards.browser import parse_dom
from tests.fixture_lake import WEST_TIMEZONE, FixtureFacts

TRINO_SHIMS = (
    # with_timezone(timestamp, zone): the wall time read in zone; at_timezone(instant, zone): that instant's wall time
    "create or replace macro with_timezone(ts, zone) as timezone(zone, cast(ts as timestamp))",
    "create or replace macro at_timezone(ts, zone) as timezone(zone, ts)",
)
CASES = [  # (reporting zone, first day, last day); None: every day with data
    ("UTC", None, None),
    ("UTC", date(2026, 11, 28), date(2026, 12, 3)),  # across the month boundary
    ("UTC", date(2026, 12, 1), date(2026, 12, 1)),
    (WEST_TIMEZONE, date(2026, 11, 28), date(2026, 12, 3)),  # evening traffic moves to the previous local day
]
TOTAL_SQL = "select sum(total_cost) from team_model_daily_local where local_date between ? and ?"


def _athena_connection(lake: Lake, config: ReportingConfig) -> duckdb.DuckDBPyConnection:
    con = connect(lake=lake, config=config)  # base tables over the lake's Parquet
    for shim in TRINO_SHIMS:
        con.execute(shim)
    for sql in render_views(dialect="athena", config=config).values():  # replace every view, in order
        con.execute(sqlglot.transpile(sql, read="athena", write="duckdb")[0])
    return con


def _expected(facts: FixtureFacts, first: date, last: date, timezone: str) -> Decimal:
    return sum((r["total_cost"] for r in facts.priced_rows if first <= facts.local_day(r, timezone) <= last),
               Decimal(0))


@pytest.mark.parametrize(("timezone", "date_from", "date_to"), CASES)
def test_athena_duckdb_and_html_give_the_fixtures_total(facts: FixtureFacts, tmp_path: Path, timezone: str,
                                                        date_from: date | None, date_to: date | None) -> None:
    # GIVEN the fixture lake, a reporting time zone and a period (None: every day with data)
    config = ReportingConfig(timezone=timezone)
    lake = Lake.open(facts.root)
    local_days = [facts.local_day(r, timezone) for r in facts.usage_cost]
    first, last = date_from or min(local_days), date_to or max(local_days)
    expected = _expected(facts, first, last, timezone)
    assert expected > 0

    # WHEN the same question is answered by the DuckDB rendering, the Athena rendering and the HTML page
    duck = connect(lake=lake, config=config)
    athena = _athena_connection(lake, config)
    via_duckdb = duck.execute(TOTAL_SQL, [first, last]).fetchone()[0]
    via_athena = athena.execute(TOTAL_SQL, [first, last]).fetchone()[0]
    page = render_dashboard(lake=lake, date_from=date_from, date_to=date_to, out=tmp_path / "r.html", config=config)
    via_html = Decimal(parse_dom(page.read_text("utf-8")).by_id("kpi-total-spend").attrs["data-value"])

    # THEN all three are the fixture's total, exactly (Decimal equality, no rounding)
    assert (via_duckdb, via_athena, via_html) == (expected, expected, expected)


def _normalised(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # Trino's date_trunc on a DATE returns a DATE, DuckDB's a TIMESTAMP (sql/dialect.py); same day either way
    return sorted((tuple(v.date() if isinstance(v, dt.datetime) and v.tzinfo is None else v for v in row)
                   for row in rows), key=repr)


def test_every_view_gives_the_same_rows_through_the_athena_rendering(facts: FixtureFacts) -> None:
    config = ReportingConfig(timezone=WEST_TIMEZONE)
    lake = Lake.open(facts.root)
    duck, athena = connect(lake=lake, config=config), _athena_connection(lake, config)
    for view in views():
        query = f'select * from "{view}"'
        assert _normalised(athena.execute(query).fetchall()) == _normalised(duck.execute(query).fetchall()), view
    # and the monthly chargeback adds up to the fixture's total in both
    assert athena.execute("select sum(total_cost) from chargeback_monthly").fetchone()[0] == facts.total_cost
    assert {r["event_time"].tzinfo for r in facts.usage_cost} == {UTC}

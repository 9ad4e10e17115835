"""Every engine-specific helper the views rely on, pinned in both dialects and executed on DuckDB.

Like sqlglot's own tests/dialects tables: the rendering is the contract (an upgrade of sqlglot that changes it fails
here first), and the DuckDB side is run so the pinned string is also known to compute the right value.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import duckdb
import pytest
import sqlglot

from sql.config import ReportingConfig
from sql.dialect import HELPERS, expand_helpers, render_helper

UTC = ReportingConfig()
WEST = ReportingConfig(timezone="America/Los_Angeles")
FISCAL15 = ReportingConfig(fiscal_month_start_day=15)

# The inputs the DuckDB side runs on (columns of one row).
INPUTS = """
select timestamptz '2026-11-16 03:00:00+00' as ts, date '2026-11-16' as d, date '2026-11-14' as d_early,
       date '2026-11-01' as a, cast(1.000000000005 as decimal(38, 12)) as c, cast(10 as decimal(38, 12)) as ten,
       3 as n, 2 as two, 0 as zero, cast(-1.000000000005 as decimal(38, 12)) as neg
"""

# (call in the views' source SQL, config, Athena rendering, DuckDB rendering, DuckDB value)
CASES: list[tuple[str, ReportingConfig, str, str, Any]] = [
    ("mm_utc_date(ts)", WEST,  # the UTC day whatever the reporting zone (mm_local_date gives the 15th there)
     "CAST(ts AS DATE)",
     "CAST(ts AS DATE)", date(2026, 11, 16)),
    ("mm_local_date(ts)", WEST,
     "CAST(AT_TIMEZONE(WITH_TIMEZONE(ts, 'UTC'), 'America/Los_Angeles') AS DATE)",
     "CAST(TIMEZONE('America/Los_Angeles', ts) AS DATE)", date(2026, 11, 15)),
    ("mm_local_date(ts)", UTC,
     "CAST(AT_TIMEZONE(WITH_TIMEZONE(ts, 'UTC'), 'UTC') AS DATE)",
     "CAST(TIMEZONE('UTC', ts) AS DATE)", date(2026, 11, 16)),
    ("mm_month_start(d)", UTC,
     "DATE_TRUNC('MONTH', d)",
     "CAST(DATE_TRUNC('MONTH', d) AS DATE)", date(2026, 11, 1)),
    ("mm_add_days(d, -14)", UTC,
     "DATE_ADD('DAY', -14, d)",
     "CAST(d + INTERVAL (-14) DAY AS DATE)", date(2026, 11, 2)),
    ("mm_add_days(d, n + 1)", UTC,
     "DATE_ADD('DAY', CAST((n + 1) AS BIGINT), d)",  # sqlglot: Trino's date_add takes a BIGINT
     "CAST(d + INTERVAL ((n + 1)) DAY AS DATE)", date(2026, 11, 20)),
    ("mm_add_months(d, 1)", UTC,
     "DATE_ADD('MONTH', 1, d)",
     "CAST(d + INTERVAL (1) MONTH AS DATE)", date(2026, 12, 16)),
    ("mm_days_between(a, d)", UTC,
     "DATE_DIFF('DAY', a, d)",
     "DATE_DIFF('DAY', a, d)", 15),
    ("mm_fiscal_month_start(d)", UTC,
     "DATE_TRUNC('MONTH', d)",
     "CAST(DATE_TRUNC('MONTH', d) AS DATE)", date(2026, 11, 1)),
    ("mm_fiscal_month_start(d)", FISCAL15,
     "DATE_ADD('DAY', 14, DATE_TRUNC('MONTH', DATE_ADD('DAY', -14, d)))",
     "CAST(CAST(DATE_TRUNC('MONTH', CAST(d + INTERVAL (-14) DAY AS DATE)) AS DATE) + INTERVAL (14) DAY AS DATE)",
     date(2026, 11, 15)),
    ("mm_fiscal_month_start(d_early)", FISCAL15,
     "DATE_ADD('DAY', 14, DATE_TRUNC('MONTH', DATE_ADD('DAY', -14, d_early)))",
     "CAST(CAST(DATE_TRUNC('MONTH', CAST(d_early + INTERVAL (-14) DAY AS DATE)) AS DATE) + INTERVAL (14) DAY AS DATE)",
     date(2026, 10, 15)),
    ("mm_fiscal_month_end(d)", UTC,
     "DATE_ADD('DAY', -1, DATE_ADD('MONTH', 1, DATE_TRUNC('MONTH', d)))",
     "CAST(CAST(CAST(DATE_TRUNC('MONTH', d) AS DATE) + INTERVAL (1) MONTH AS DATE) + INTERVAL (-1) DAY AS DATE)",
     date(2026, 11, 30)),
    ("mm_hash64(n) = mm_hash64(3)", UTC,  # the value differs between engines; equal inputs hash equal
     "FROM_BIG_ENDIAN_64(XXHASH64(TO_UTF8(JSON_FORMAT(CAST(n AS JSON))))) = "
     "FROM_BIG_ENDIAN_64(XXHASH64(TO_UTF8(JSON_FORMAT(CAST(3 AS JSON)))))",
     "HASH(n) = HASH(3)", True),
    ("mm_money(n)", UTC,
     "CAST(n AS DECIMAL(38, 12))",
     "CAST(n AS DECIMAL(38, 12))", Decimal("3.000000000000")),
    ("mm_pico_to_money(n)", UTC,  # whole pico-dollars to USD: 3 pico-dollars
     "CAST(CAST(n AS DECIMAL(18, 0)) * CAST(0.000000000001 AS DECIMAL(18, 12)) AS DECIMAL(38, 12))",
     "CAST(CAST(n AS DECIMAL(18, 0)) * CAST(0.000000000001 AS DECIMAL(18, 12)) AS DECIMAL(38, 12))",
     Decimal("0.000000000003")),
    ("mm_money_div(c, two, 1)", UTC,
     "CASE WHEN two > 0 THEN CAST(CAST(c AS DECIMAL(38, 12)) * 1 / two AS DECIMAL(38, 12)) END",
     "CASE WHEN two > 0 THEN CAST(SIGN(CAST(c AS DECIMAL(38, 12))) * ((ABS(CAST(CAST(c AS DECIMAL(38, 12)) "
     "* 1000000000000 AS INT128) * 1) * 2 + two) // (two * 2)) AS DECIMAL(38, 0)) "
     "* CAST(0.000000000001 AS DECIMAL(13, 12)) END",
     Decimal("0.500000000003")),  # 0.5000000000025 rounded half up
    ("mm_money_div(neg, two, 1)", UTC,
     "CASE WHEN two > 0 THEN CAST(CAST(neg AS DECIMAL(38, 12)) * 1 / two AS DECIMAL(38, 12)) END",
     "CASE WHEN two > 0 THEN CAST(SIGN(CAST(neg AS DECIMAL(38, 12))) * ((ABS(CAST(CAST(neg AS DECIMAL(38, 12)) "
     "* 1000000000000 AS INT128) * 1) * 2 + two) // (two * 2)) AS DECIMAL(38, 0)) "
     "* CAST(0.000000000001 AS DECIMAL(13, 12)) END",
     Decimal("-0.500000000003")),  # half away from zero, like Trino
    ("mm_money_div(ten, n, 1000000)", UTC,
     "CASE WHEN n > 0 THEN CAST(CAST(ten AS DECIMAL(38, 12)) * 1000000 / n AS DECIMAL(38, 12)) END",
     "CASE WHEN n > 0 THEN CAST(SIGN(CAST(ten AS DECIMAL(38, 12))) * ((ABS(CAST(CAST(ten AS DECIMAL(38, 12)) "
     "* 1000000000000 AS INT128) * 1000000) * 2 + n) // (n * 2)) AS DECIMAL(38, 0)) "
     "* CAST(0.000000000001 AS DECIMAL(13, 12)) END",
     Decimal("3333333.333333333333")),
    ("mm_money_div(ten, zero, 1)", UTC,
     "CASE WHEN zero > 0 THEN CAST(CAST(ten AS DECIMAL(38, 12)) * 1 / zero AS DECIMAL(38, 12)) END",
     "CASE WHEN zero > 0 THEN CAST(SIGN(CAST(ten AS DECIMAL(38, 12))) * ((ABS(CAST(CAST(ten AS DECIMAL(38, 12)) "
     "* 1000000000000 AS INT128) * 1) * 2 + zero) // (zero * 2)) AS DECIMAL(38, 0)) "
     "* CAST(0.000000000001 AS DECIMAL(13, 12)) END",
     None),
    ("mm_ratio(c, two)", UTC,
     "CAST(c AS DOUBLE) / NULLIF(CAST(two AS DOUBLE), 0)",
     "CAST(c AS DOUBLE) / NULLIF(CAST(two AS DOUBLE), 0)", 0.5000000000025),
    ("mm_ratio(c, zero)", UTC,
     "CAST(c AS DOUBLE) / NULLIF(CAST(zero AS DOUBLE), 0)",
     "CAST(c AS DOUBLE) / NULLIF(CAST(zero AS DOUBLE), 0)", None),
]


def _render(call: str, dialect: str, config: ReportingConfig) -> str:
    tree = sqlglot.parse_one(call, read="athena")
    return expand_helpers(tree, dialect=dialect, config=config).sql(dialect=dialect)


@pytest.mark.parametrize(("call", "config", "athena", "duck", "value"), CASES, ids=[c[0] for c in CASES])
def test_helper_renders_and_computes(call: str, config: ReportingConfig, athena: str, duck: str, value: Any) -> None:
    assert _render(call, "athena", config) == athena
    assert _render(call, "duckdb", config) == duck
    sqlglot.parse_one(f"SELECT {athena}", read="athena")  # and Athena's parser takes it back

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(f"SELECT {duck} FROM ({INPUTS})").fetchone()[0]
    assert got == value
    if isinstance(value, date):
        assert type(got) is date  # a DATE, not a TIMESTAMP (DuckDB's date_trunc and date + interval give those)
    if isinstance(value, Decimal):
        assert got.as_tuple().exponent == -12  # stays DECIMAL(38,12), never DOUBLE


def test_every_helper_is_pinned() -> None:
    pinned = {call.split("(")[0] for call, *_ in CASES}
    assert pinned == set(HELPERS)


def test_unknown_helper_and_wrong_arity_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown SQL helper mm_nope"):
        render_helper("mm_nope", ["x"], dialect="duckdb", config=UTC)
    with pytest.raises(ValueError, match=r"mm_add_days\(\) takes 2 argument"):
        _render("mm_add_days(d)", "duckdb", UTC)

"""The pyarrow writer of the curated tables gives exactly what the SQL models (``marts/*.sql``) define."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from modelmeter.synthetic import generate
from sql import models
from tests.transform.conftest import DAY, NOW
from transforms import run
from transforms.writer import pico_to_money, utc_date


def test_pico_dollars_become_exact_decimal_usd():
    picos = [0, 1, -1, 3_000_000, 999_999_999_999, 10**12, -(10**12) - 7, 2**63 - 1, -(2**63), None]
    money = pico_to_money(pa.array(picos, pa.int64()))
    assert money.type == pa.decimal128(38, 12)
    expected = [None if p is None else Decimal(p).scaleb(-12) for p in picos]
    assert money.to_pylist() == expected


def test_utc_date_is_the_calendar_day_of_each_instant():
    instants = [datetime(2026, 11, 20, 0, 0, tzinfo=UTC), datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=UTC),
                datetime(2026, 11, 21, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, tzinfo=UTC), None]
    days = utc_date(pa.array(instants, pa.timestamp("ms", tz="UTC")))
    assert days.to_pylist() == [date(2026, 11, 20), date(2026, 11, 20), date(2026, 11, 21), date(1969, 12, 31), None]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from common.lake import Lake

    lake = Lake.open(tmp_path_factory.mktemp("writer") / "lake")
    generate(lake=lake, n=6_000, days=1, start=DAY, teams=6, models=12, duplicate_rate=0.02, invalid_rate=0.01,
             seed=5, now=NOW)
    return lake


def _except_both_ways(con, a: str, b: str) -> tuple[int, int]:
    one = con.execute(f"select count(*) from (select * from ({a}) except all select * from ({b}))").fetchone()[0]
    two = con.execute(f"select count(*) from (select * from ({b}) except all select * from ({a}))").fetchone()[0]
    return one, two


def test_written_tables_equal_the_sql_models_row_for_row(lake, tmp_path):
    from pricing_catalog import load_catalog

    # GIVEN a day run by the transform's own steps (built-in prices), its DuckDB connection kept open
    catalog = load_catalog(lake=lake, version=None)
    con = run.connect(threads=2)
    res = run._run_models(con, lake=lake, day=DAY, catalog=catalog, now=NOW, workdir=tmp_path,
                          t=run._Timer({}, {}))
    # WHEN the SQL models compute the same tables (mm_pico_to_money over the pico-dollars; the rollup over the file)
    sql_usage_cost = models.render("marts/usage_cost")
    written = f"select * from read_parquet('{res.usage_cost}')"
    con.execute(f"create or replace temp view usage_cost_day as {written}")
    sql_daily = models.render("marts/team_model_daily")
    # THEN both hold exactly the same rows, to the last decimal (and some rows are priced, some not)
    assert res.written == con.execute(f"select count(*) from ({sql_usage_cost})").fetchone()[0] > 5_000
    assert _except_both_ways(con, sql_usage_cost, written) == (0, 0)
    assert _except_both_ways(con, sql_daily, f"select * from read_parquet('{res.daily}')") == (0, 0)
    assert 0 < res.unpriced < res.written
    con.close()

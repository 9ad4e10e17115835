"""The views and the FOCUS export on what the real transform writes (not only on the hand-built fixture lake)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from common.lake import Lake
from dashboards.focus import export_focus
from modelmeter.synthetic import generate
from sql.config import ReportingConfig
from sql.render import connect
from tests.sql.conftest import rows
from transforms.run import transform_range

FIRST = LAST = date(2026, 11, 20)


@pytest.mark.slow
def test_views_and_export_agree_with_the_transforms_tables(tmp_path) -> None:
    # GIVEN a day of synthetic raw events (duplicates and invalid rows included) run through the transform
    lake = Lake.open(tmp_path / "lake")
    generate(lake=lake, n=2000, days=1, start=FIRST, seed=3, now=datetime(2026, 11, 25, tzinfo=UTC))
    transform_range(lake=lake, date_from=FIRST, date_to=LAST, now=datetime(2026, 11, 25, tzinfo=UTC), threads=1)
    # WHEN the views read the curated tables
    con = connect(lake=lake, config=ReportingConfig())
    # THEN the rollup re-derived in the reporting day (UTC here) equals the transform's own rollup, row for row
    daily = rows(con, "select usage_date as d, team_id, model_id, invocations, unpriced_invocations, total_cost, "
                      "input_tokens from team_model_daily")
    local = rows(con, "select local_date as d, team_id, model_id, invocations, unpriced_invocations, total_cost, "
                      "input_tokens from team_model_daily_local")
    assert daily and sorted(local, key=str) == sorted(daily, key=str)
    # (the priced part: partly priced events, e.g. Claude 3 Haiku's cache tokens without a price, keep the rest)
    total = con.execute("select sum(total_cost) from usage_cost").fetchone()[0]
    assert con.execute("select count(*) from usage_cost where not priced and total_cost > 0").fetchone()[0] > 0
    assert con.execute("select sum(total_cost) from chargeback_monthly").fetchone()[0] == total
    assert con.execute("select sum(invocations) from unpriced_usage").fetchone()[0] == \
        con.execute("select count(*) from usage_cost where not priced").fetchone()[0]
    assert con.execute("select sum(rejected_rows) from quarantine_summary").fetchone()[0] == \
        con.execute("select count(*) from quarantine_usage_events").fetchone()[0] > 0
    # AND the FOCUS export bills exactly the priced part
    summary = export_focus(lake=lake, date_from=FIRST, date_to=LAST, out=tmp_path / "focus.parquet")
    assert summary.billed_cost == total and summary.rows > 0

"""The views and the FOCUS export over an ``s3://`` lake (moto's S3 server on 127.0.0.1), as in AWS."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from common.lake import Lake
from dashboards.focus import export_focus
from sql.config import ReportingConfig
from sql.render import connect
from tests.fixture_lake import build_fixture_lake


@pytest.mark.slow
def test_views_and_focus_export_read_an_s3_lake(s3_lake_uri: str, tmp_path) -> None:
    # GIVEN the fixture lake written to S3 (pyarrow and boto3 both honour AWS_ENDPOINT_URL)
    facts = build_fixture_lake(s3_lake_uri)
    lake = Lake.open(facts.uri)
    assert not lake.is_local
    # WHEN DuckDB opens it
    con = connect(lake=lake, config=ReportingConfig())
    # THEN every row and cent is there, and the FOCUS export lists the same total
    assert con.execute("select count(*), sum(total_cost) from usage_local").fetchone() == \
        (facts.invocations, facts.total_cost)
    assert con.execute("select sum(total_cost) from chargeback_monthly").fetchone()[0] == facts.total_cost
    assert con.execute("select count(*) from teams").fetchone()[0] == len(facts.teams)
    summary = export_focus(lake=lake, date_from=facts.first_day, date_to=facts.last_day, out=tmp_path / "f.parquet",
                           config=ReportingConfig())
    rows = pq.read_table(summary.out).to_pylist()
    assert sum(r["ListCost"] for r in rows if r["ChargeCategory"] == "Usage") == facts.total_cost
    assert summary.billed_cost == sum(r["BilledCost"] for r in rows)
    # November has a chargeback of record (the fixture's close): its rows bill the invoice, to the cent
    november = next(p for p in summary.periods if p.period == "2026-11")
    assert november.basis == "chargeback" and november.billed_cost == november.invoice_total

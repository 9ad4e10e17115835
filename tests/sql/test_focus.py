"""FOCUS 1.2 export: exact money, one usage row per day × team × model × priced dimension, accepted by
focus-validator. (The fixture lake's November has a chargeback of record: its monthly rows are tested in
tests/sql/test_focus_chargeback.py; here the usage rows.)"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.contracts import COST_OF
from common.lake import Lake
from dashboards.focus import KNOWN_VALIDATOR_DEFECTS, export_focus, run_validator
from modelmeter.cli import main
from sql.config import ReportingConfig
from tests.fixture_lake import FixtureFacts

UTC_DAYS = ReportingConfig()  # whatever MODELMETER_REPORTING_TZ the shell has

FOCUS_VENV = Path(__file__).resolve().parents[2] / ".venv-focus"


@pytest.fixture(scope="module")
def export(facts: FixtureFacts, lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("focus") / "focus.parquet"
    summary = export_focus(lake=lake, date_from=facts.first_day, date_to=facts.last_day, out=out, config=UTC_DAYS)
    assert summary.rows > 0 and summary.unpriced_invocations == facts.unpriced_invocations
    return out, pq.read_table(out).to_pylist()


def _usage(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["ChargeCategory"] == "Usage"]


def _expected_charges(facts: FixtureFacts, first: date, last: date) -> dict[tuple, tuple[int, Decimal]]:
    charges: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for r in facts.priced_rows:
        if not first <= r["usage_date"] <= last:
            continue
        for cost, count in COST_OF.items():
            if r[count] or r[cost]:
                c = charges[(r["usage_date"], r["team_id"], r["model_id"], count)]
                c[0] += r[count]
                c[1] += r[cost]
    return {k: (q, c) for k, (q, c) in charges.items()}


def _key(row: dict) -> tuple:
    return (row["ChargePeriodStart"].date(), row["SubAccountId"], row["ResourceName"], row["x_UsageDimension"])


def test_list_cost_of_the_usage_rows_equals_the_fixture_exactly(export: tuple[Path, list[dict]],
                                                                 facts: FixtureFacts) -> None:
    _, rows = export
    assert sum(r["ListCost"] for r in _usage(rows)) == facts.total_cost
    assert all(isinstance(r[c], Decimal) for r in rows for c in ("BilledCost", "ListCost", "EffectiveCost"))
    # December has no chargeback of record: BilledCost is the metered list cost, and the rows say so
    december = [r for r in rows if r["BillingPeriodStart"].month == 12]
    assert december and {r["x_CostBasis"] for r in december} == {"list"}
    assert sum(r["BilledCost"] for r in december) == sum(
        (r["total_cost"] for r in facts.priced_rows if r["usage_date"].month == 12), Decimal(0))


def test_one_row_per_day_team_model_and_priced_dimension(
        export: tuple[Path, list[dict]], facts: FixtureFacts) -> None:
    rows = _usage(export[1])
    expected = _expected_charges(facts, facts.first_day, facts.last_day)
    assert {_key(r): (int(r["PricingQuantity"]), r["ListCost"]) for r in rows} == expected
    assert len(rows) == len(expected)  # no duplicates
    used = {c for c in COST_OF.values() if any(r.get(c) for r in facts.priced_rows)}
    assert {"input_tokens", "cache_read_input_tokens", "image_count"} <= used  # tokens, cache, images present
    assert {r["x_UsageDimension"] for r in rows} == used


def test_focus_columns_hold_what_finance_expects(export: tuple[Path, list[dict]], facts: FixtureFacts) -> None:
    path, rows = export
    schema = pq.read_schema(path)
    for money in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert schema.field(money).type == pa.decimal128(38, 12)
    assert schema.field("ChargePeriodStart").type == pa.timestamp("ms", tz="UTC")
    for r in _usage(rows):
        day = r["ChargePeriodStart"]
        assert r["ChargePeriodEnd"] - day == timedelta(days=1) and day.tzinfo is not None
        assert (r["x_ReportingDate"], r["x_ReportingTimeZone"]) == (day.date(), "UTC")
        assert r["BillingPeriodStart"] == datetime(day.year, day.month, 1, tzinfo=UTC) <= day
        assert r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] == r["ContractedCost"]
        assert r["ListUnitPrice"] * r["PricingQuantity"] == r["ListCost"]  # exact: the fixture's prices are
        assert (r["ChargeCategory"], r["ChargeClass"], r["BillingCurrency"]) == ("Usage", None, "USD")
        assert r["ProviderName"] == r["InvoiceIssuerName"]
        tags = json.loads(r["Tags"])
        assert tags == {"team": r["SubAccountId"], "cost_center": facts.cost_center_of(r["SubAccountId"]),
                        "model": r["ResourceName"]}
        assert r["BillingAccountId"] == tags["cost_center"]
    publishers = {r["ResourceName"]: r["PublisherName"] for r in _usage(rows)}
    assert publishers["anthropic.claude-3-5-sonnet-20240620-v1:0"] == "Anthropic"
    assert publishers["meta.llama3-1-70b-instruct-v1:0"] == "Meta"


def test_date_range_is_inclusive_days(facts: FixtureFacts, lake: Lake, tmp_path: Path) -> None:
    first, last = date(2026, 11, 30), date(2026, 12, 1)  # across the month boundary
    summary = export_focus(lake=lake, date_from=first, date_to=last, out=tmp_path / "two-days.parquet",
                           config=UTC_DAYS)
    rows = pq.read_table(summary.out).to_pylist()
    assert {_key(r): (int(r["PricingQuantity"]), r["ListCost"]) for r in _usage(rows)} == \
        _expected_charges(facts, first, last)
    assert summary.list_cost == sum(c for _, c in _expected_charges(facts, first, last).values()) + sum(
        r["ListCost"] for r in rows if r["ChargeCategory"] != "Usage")
    assert {r["BillingPeriodStart"].month for r in rows} == {11, 12}
    # November 30 is the day November is booked on: its monthly rows are in this export, December's are not
    assert {r["BillingPeriodStart"].month for r in rows if r["ChargeCategory"] == "Adjustment"} == {11}


def test_cli_exports_and_refuses_a_reversed_range(facts: FixtureFacts, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    assert main(["export", "focus", "--lake", str(facts.root), "--from", str(facts.first_day),
                 "--to", str(facts.last_day), "--tz", "UTC", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = pq.read_table(out).to_pylist()
    assert f"BilledCost {sum(r['BilledCost'] for r in rows)} USD" in printed
    assert f"{facts.unpriced_invocations} unpriced invocations: what they used without a price is left out" in printed
    assert "days counted in UTC (reporting calendar" in printed
    assert "billing period 2026-11 (UTC calendar month): BilledCost from the chargeback of record" in printed
    assert "billing period 2026-12 (UTC calendar month): no chargeback of record, BilledCost = metered list cost" \
        in printed
    assert main(["export", "focus", "--lake", str(facts.root), "--from", "2026-12-02", "--to", "2026-12-01",
                 "--out", str(out)]) == 1
    assert "modelmeter export focus: --to 2026-12-01 is before --from 2026-12-02" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (FOCUS_VENV / "bin" / "focus-validator").exists(),
                    reason="focus-validator venv missing: run `make focus-venv`")
def test_focus_validator_accepts_the_export(export: tuple[Path, list[dict]]) -> None:
    # GIVEN the export of the whole fixture lake
    path, _ = export
    # WHEN the FinOps Foundation's validator checks it against FOCUS 1.2 (conditional columns included)
    report = run_validator(path=path, venv=FOCUS_VENV)
    # THEN rules ran and passed, and nothing failed except the validator's own documented defect
    assert report.passed > 100, report.output[-3000:]
    assert report.unexplained_failures == (), report.output[-3000:]
    assert report.failed == len(report.failed_rules) <= len(KNOWN_VALIDATOR_DEFECTS)

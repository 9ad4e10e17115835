"""Time-based charges at list price in the close: a bill line's list value, configured capacity without a bill line
valued with no billed dollars, and capacity files refused with their line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.errors import UserError
from finance.allocation import load_rules
from finance.capacity import load_capacity
from finance.chargeback import compute
from finance.cur import import_export
from finance.reconcile import Scope, reconcile, store
from modelmeter.cli import main
from modelmeter.simulated_bill import write_cur
from pricing_catalog.time_prices import read_time_prices
from tests.fixture_lake import TEAMS

from .conftest import PERIOD, START, extra_line, month_bill

ZERO = Decimal(0)
ARN = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt-claude"
ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/support-bot-endpoint"
CAPACITY = """\
provisioned_throughput:
  - name: support-claude
    model: anthropic.claude-v2:1:200k
    arn: {arn}
    model_units: 2
    commitment: one_month
    region: us-east-1
    from: 2026-11-01
  - name: search-command
    model: cohere.command-text-v14
    model_units: 2
    commitment: one_month
    region: us-east-1
    from: 2026-11-16
sagemaker_endpoints:
  - name: embed-endpoint
    instance_type: ml.g5.2xlarge
    instance_count: 2
    region: us-east-1
    from: 2026-11-01
    to: 2026-11-03
"""
RULES = """rules:
  - name: hourly
    source: {category: time_based}
    method: even
    targets: all
"""


def _reconcile(fl, lines, tmp_path, name, *, capacity=None, **kwargs):
    write_cur(lines, tmp_path / name / "export-00001.parquet")
    import_export(lake=fl.lake, paths=[str(tmp_path / name)])
    return reconcile(lake=fl.lake, period=PERIOD, catalog=fl.catalog, capacity=capacity, **kwargs)


def _capacity(tmp_path: Path, text: str = CAPACITY) -> Path:
    path = tmp_path / "capacity.yaml"
    path.write_text(text.replace("{arn}", ARN))
    return path


def _pt_line(**kwargs):
    settings = {"usage_type": "USE1-ProvisionedThroughput-ModelUnits-Hours", "amount": 96, "cost": 5900,
                "operation": "ProvisionedThroughput", "pricing_unit": "Hrs", "resource_id": ARN,
                "end": START + timedelta(hours=48), **kwargs}
    return extra_line(**settings)


def _time_rows(rec, basis=None):
    return [r for r in rec.rows if r["category"] == "time_based" and (basis is None or r["list_basis"] == basis)]


def test_a_provisioned_throughput_line_gets_its_list_value_from_the_configured_purchase(finance_lake, tmp_path):
    # GIVEN 48 hours of 2 model units of a provisioned Claude 2.1 (1-month commitment), billed $5,900 on its ARN
    capacity = load_capacity(_capacity(tmp_path))
    rec = _reconcile(finance_lake, [_pt_line()], tmp_path, "pt", capacity=capacity)
    (row,) = _time_rows(rec, "bill")
    # THEN the line keeps its billed dollars and gets 96 model-unit hours × USD 63.00 = 6,048.00 at list
    assert row["billed_cost"] == Decimal(5900) and row["billed_quantity"] == Decimal(96)
    assert (row["capacity"], row["price_key"], row["commitment"]) == ("support-claude", "anthropic.claude-v2:1",
                                                                       "one_month")
    assert row["list_unit_price"] == Decimal("63.00") and row["list_value"] == Decimal("6048.00")
    assert rec.time_based()["list_value"] == Decimal("6048.00")
    # AND the bill for the rest is unchanged: every billed dollar once, the purchase matched needs no extra row
    assert rec.billed_total == Decimal(5900)
    assert not [r for r in _time_rows(rec, "configuration") if r["capacity"] == "support-claude"]


def test_a_line_is_priced_from_its_usage_type_or_stays_unpriced_never_guessed(finance_lake, tmp_path):
    # GIVEN no capacity file: a line naming its model and commitment, the demo's line (a model without a price)
    # and a line of a provisioned model whose usage type names neither
    lines = [_pt_line(usage_type="USE1-TitanTextExpress-ProvisionedThroughput-6Month-ModelUnits", amount=10,
                      cost=150, resource_id=None),
             _pt_line(usage_type="USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits", amount=48, cost=1016.64),
             _pt_line(amount=5, cost=300)]
    rec = _reconcile(finance_lake, lines, tmp_path, "usage-type")
    by_type = {r["usage_type"]: r for r in _time_rows(rec)}
    titan = by_type["USE1-TitanTextExpress-ProvisionedThroughput-6Month-ModelUnits"]
    assert (titan["price_key"], titan["commitment"], titan["list_value"]) == (
        "amazon.titan-text-express-v1", "six_months", Decimal("148.00"))  # 10 × 14.80
    nova = by_type["USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits"]
    assert nova["commitment"] == "no_commitment" and nova["price_key"] is None and nova["list_value"] is None
    unnamed = by_type["USE1-ProvisionedThroughput-ModelUnits-Hours"]
    assert unnamed["list_value"] is None and unnamed["billed_cost"] == Decimal(300)
    timed = rec.time_based()
    assert timed["billed_cost"] == rec.billed_total == Decimal("1466.64")
    assert timed["unpriced_billed_cost"] == Decimal("1316.64") and timed["list_value"] == Decimal("148.00")


def test_an_endpoint_line_is_valued_by_its_instance_type(finance_lake, tmp_path):
    line = extra_line(usage_type="USE1-Host:ml.g5.xlarge", amount=24, cost=33.6, product_code="AmazonSageMaker",
                      operation="RunInstance", pricing_unit="Hrs", resource_id=ENDPOINT_ARN)
    rec = _reconcile(finance_lake, [line], tmp_path, "sagemaker", scope=Scope(sagemaker_endpoints=(
        "support-bot-endpoint",)))
    (row,) = _time_rows(rec)
    assert (row["price_key"], row["list_unit_price"], row["list_value"]) == ("ml.g5.xlarge", Decimal("1.4084"),
                                                                             Decimal("33.8016"))  # 24 × 1.4084
    assert row["billed_cost"] == Decimal("33.6") and row["commitment"] is None


def test_a_configured_endpoint_is_in_scope_and_its_line_names_it(finance_lake, tmp_path):
    # GIVEN the endpoint only in capacity.yaml (not in $MODELMETER_SAGEMAKER_ENDPOINTS)
    capacity = load_capacity(_capacity(tmp_path, "sagemaker_endpoints:\n  - name: Support-Bot-Endpoint\n"
                                                 "    instance_type: ml.g5.xlarge\n    instance_count: 1\n"
                                                 "    region: us-east-1\n    from: 2026-11-01\n"))
    line = extra_line(usage_type="USE1-Host:ml.g5.xlarge", amount=24, cost=33.6, product_code="AmazonSageMaker",
                      operation="RunInstance", pricing_unit="Hrs", resource_id=ENDPOINT_ARN)
    rec = _reconcile(finance_lake, [line], tmp_path, "configured-endpoint", capacity=capacity)
    (row,) = _time_rows(rec)
    assert row["capacity"] == "Support-Bot-Endpoint" and row["billed_cost"] == Decimal("33.6")


def test_configured_capacity_without_a_bill_line_is_valued_and_the_bill_is_unchanged(finance_lake, tmp_path):
    # GIVEN the month's bill with its demo provisioned line, and capacity the bill has no line for
    lines = month_bill(finance_lake, provisioned_hours=48, credit=Decimal("-25"))
    capacity = load_capacity(_capacity(tmp_path))
    without = _reconcile(finance_lake, lines, tmp_path, "no-capacity")
    rec = _reconcile(finance_lake, lines, tmp_path, "capacity", capacity=capacity)
    valued = {r["capacity"]: r for r in _time_rows(rec, "configuration")}
    # THEN each unbilled purchase is valued: hours it ran in the period × units × the hourly price …
    claude, command, endpoint = valued["support-claude"], valued["search-command"], valued["embed-endpoint"]
    assert claude["list_quantity"] == Decimal(720 * 2) and claude["list_value"] == Decimal(1440) * Decimal("63.00")
    assert command["list_quantity"] == Decimal(360 * 2) and command["list_value"] == Decimal("28512.00")  # × 39.60
    assert endpoint["list_quantity"] == Decimal(96) and endpoint["list_value"] == Decimal("145.44")  # × 1.515
    assert command["usage_date"] == datetime(2026, 11, 16).date() and claude["resource_id"] == ARN
    # … with no billed dollars: the categories still add up to the same in-scope bill exactly
    assert all(r["billed_cost"] == ZERO and r["billed_quantity"] == ZERO for r in valued.values())
    assert rec.billed_total == without.billed_total
    assert rec.by_category()["time_based"] == without.by_category()["time_based"]
    assert rec.time_based()["configured_list_value"] == Decimal("90720.00") + Decimal("28512.00") + Decimal("145.44")
    # AND allocation never sees them: the same chargeback with a rule claiming every time_based charge
    rules_path = tmp_path / "allocation.yaml"
    rules_path.write_text(RULES)
    rules = load_rules(rules_path, teams={t.team_id for t in TEAMS}, cost_centers={t.cost_center for t in TEAMS})
    assert len(rec.pieces) == len(without.pieces)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with_rows = compute(rec=rec, rules=rules, teams=list(TEAMS), version=1, now=now).rows
    assert with_rows == compute(rec=without, rules=rules, teams=list(TEAMS), version=1, now=now).rows
    # AND the rows are stored with their list columns
    table = pq.read_table(store(lake=finance_lake.lake, reconciliation=rec))
    stored = [r for r in table.to_pylist() if r["list_basis"] == "configuration"]
    assert {r["capacity"] for r in stored} == set(valued) and stored[0]["list_value"] is not None


def test_capacity_across_a_price_change_or_without_a_price(finance_lake, tmp_path):
    # GIVEN an hourly price that changes on 2026-11-21 and a purchase of a model with no price
    prices = tmp_path / "hourly.yaml"
    prices.write_text('provisioned_throughput:\n  acme.model-v1:\n    prices:\n'
                      '      - {effective_from: "2026-01-01", effective_to: "2026-11-21", one_month: "10.00", '
                      'region: us-east-1, source: "https://example.com/p", checked: "2026-12-02"}\n'
                      '      - {effective_from: "2026-11-21", one_month: "8.00", region: us-east-1, '
                      'source: "https://example.com/p", checked: "2026-12-02"}\n')
    capacity = load_capacity(_capacity(tmp_path, "provisioned_throughput:\n"
                                                 "  - {name: acme, model: acme.model-v1, model_units: 1, "
                                                 "commitment: one_month, region: us-east-1, from: 2026-11-11}\n"
                                                 "  - {name: nova, model: amazon.nova-lite-v1:0, model_units: 3, "
                                                 "commitment: six_months, region: us-east-1, from: 2026-11-01, "
                                                 "to: 2026-11-02}\n"))
    guardrail = extra_line(usage_type="USE1-Guardrail-TextUnits", amount=1, cost=1, pricing_unit="Units")
    rec = _reconcile(finance_lake, [guardrail], tmp_path, "price-change", capacity=capacity,
                     time_prices=read_time_prices(prices))
    acme = [r for r in _time_rows(rec, "configuration") if r["capacity"] == "acme"]
    assert [(r["list_quantity"], r["list_unit_price"], r["list_value"]) for r in acme] == [
        (Decimal(240), Decimal("10.00"), Decimal("2400.00")), (Decimal(240), Decimal("8.00"), Decimal("1920.00"))]
    (nova,) = [r for r in _time_rows(rec, "configuration") if r["capacity"] == "nova"]
    assert nova["list_quantity"] == Decimal(72) and nova["list_value"] is None and nova["list_unit_price"] is None
    assert rec.billed_total == Decimal(1)


@pytest.mark.parametrize(("text", "message"), [
    ("provisioned_throughput:\n  - name: a\n    model: m\n    model_units: 0\n    commitment: one_month\n"
     "    region: us-east-1\n    from: 2026-11-01\n", r"capacity.yaml:4: provisioned_throughput\[0\].model_units: "),
    ("provisioned_throughput:\n  - name: a\n    model: m\n    model_units: 1\n    commitment: 1 month\n"
     "    region: us-east-1\n    from: 2026-11-01\n",
     r"capacity.yaml:5: provisioned_throughput\[0\].commitment: .*'no_commitment', 'one_month' or 'six_months'"),
    ("sagemaker_endpoints:\n  - name: e\n    instance_type: ml.g5.xlarge\n    instance_count: 1.5\n"
     "    region: us-east-1\n    from: 2026-11-01\n", r"capacity.yaml:4: sagemaker_endpoints\[0\].instance_count"),
    ("sagemaker_endpoints:\n  - name: e\n    instance_type: g5.xlarge\n    instance_count: 1\n"
     "    region: us-east-1\n    from: 2026-11-01\n    colour: red\n",
     r"capacity.yaml:3: sagemaker_endpoints\[0\].instance_type: .*capacity.yaml:7: sagemaker_endpoints\[0\].colour: "
     r"unknown key"),
    ("sagemaker_endpoints:\n  - name: e\n    instance_type: ml.g5.xlarge\n    instance_count: 1\n"
     "    region: virginia\n    from: 2026-11-01\n", r"capacity.yaml:5: .*region: 'virginia' is not an AWS region"),
    ("sagemaker_endpoints:\n  - name: e\n    instance_type: ml.g5.xlarge\n    instance_count: 1\n"
     "    region: us-east-1\n", r"capacity.yaml:2: sagemaker_endpoints\[0\]: `from` is missing"),
    ("sagemaker_endpoints:\n  - {name: e, instance_type: ml.g5.xlarge, instance_count: 1, region: us-east-1, "
     "from: 2026-11-05, to: 2026-11-01}\n", r"capacity.yaml:2: sagemaker_endpoints\[0\]: `to` \(2026-11-01\) is not "
     r"after `from`"),
    ("sagemaker_endpoints:\n  - {name: e, instance_type: ml.g5.xlarge, instance_count: 1, region: us-east-1, "
     "from: 2026-11-01}\n  - {name: e, instance_type: ml.g5.xlarge, instance_count: 2, region: us-east-1, "
     "from: 2026-11-01}\n", r"capacity.yaml:3: sagemaker_endpoints\[1\]: name 'e' is also on line 2"),
    ("endpoints:\n  - name: e\n", r"capacity.yaml:1: endpoints: unknown key"),
    ("provisioned_throughput:\n  - name: a\n    name: b\n", r"capacity.yaml:3: .*`name` appears twice"),
    ("provisioned_throughput: [unclosed\n", r"capacity.yaml:2: not valid YAML"),
])
def test_a_bad_capacity_file_names_its_line(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_capacity(_capacity(tmp_path, text))


def test_a_missing_capacity_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such capacity file"):
        load_capacity(tmp_path / "nope.yaml")


def test_reconcile_takes_capacity_from_the_command_line(finance_lake, tmp_path, capsys):
    write_cur([_pt_line()], tmp_path / "cli" / "export-00001.parquet")
    import_export(lake=finance_lake.lake, paths=[str(tmp_path / "cli")])
    lake = str(finance_lake.root / "lake")
    path = _capacity(tmp_path)
    assert main(["reconcile", "--period", PERIOD, "--lake", lake, "--capacity", str(path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith("list_basis,capacity,price_key,commitment,list_quantity,list_unit_price,"
                                        "list_value")
    assert ",bill,support-claude,anthropic.claude-v2:1,one_month,96.00,63.00,6048.00" in out
    assert "time_based at list: billed 5900.00, list 6048.00; configured capacity without a bill line" in err
    path.write_text("provisioned_throughput:\n  - name: a\n    colour: red\n")
    assert main(["reconcile", "--period", PERIOD, "--lake", lake, "--capacity", str(path)]) == 1
    assert f"{path}:3: provisioned_throughput[0].colour: unknown key" in capsys.readouterr().err

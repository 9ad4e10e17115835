"""Reconciliation: every dollar of the in-scope bill in exactly one category, with the splits exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from common.contracts import RECONCILIATION_CATEGORIES
from common.errors import UserError
from finance.cur import import_export
from finance.reconcile import Scope, reconcile, scope_from_environment, store
from finance.usage_types import load_usage_types
from modelmeter.simulated_bill import write_cur

from .conftest import LLAMA, PERIOD, SONNET, extra_line, month_bill

ZERO = Decimal(0)


def _reconcile(fl, lines, tmp_path, name, **scope):
    write_cur(lines, tmp_path / name / "export-00001.parquet")
    import_export(lake=fl.lake, paths=[str(tmp_path / name)])
    return reconcile(lake=fl.lake, period=PERIOD, catalog=fl.catalog, scope=Scope(**scope))


def _in_scope_total(lines, *, tax: bool = False) -> Decimal:
    return sum((Decimal(str(li["line_item_net_unblended_cost"])).quantize(Decimal("1e-10")) for li in lines
                if tax or li["line_item_line_item_type"] != "Tax"), ZERO)


def test_a_bill_at_list_price_is_all_matched(finance_lake, tmp_path):
    # GIVEN the simulated bill of exactly what the gateway metered, at list price
    lines = month_bill(finance_lake)
    rec = _reconcile(finance_lake, lines, tmp_path, "list")
    by = rec.by_category()
    # THEN every billed dollar is matched (to the 10 decimals AWS writes), the metered list equals the bill
    assert rec.billed_total == _in_scope_total(lines)
    assert abs(by["matched"]["billed_cost"] - rec.billed_total) < Decimal("1e-8")
    assert abs(by.get("price_variance", {}).get("billed_cost", ZERO)) < Decimal("1e-8")
    assert "unmetered_usage" not in by and "unmapped" not in by


def test_every_deviation_lands_in_its_category_and_every_dollar_in_exactly_one(finance_lake, tmp_path):
    # GIVEN a bill with a 15 % private-pricing discount on Sonnet, 3 % more Llama usage than metered, a credit,
    # 48 provisioned-throughput model-unit hours, tax, an unknown usage type, a guardrail charge and a refund
    lines = month_bill(finance_lake, discounted_model=SONNET, bypass_model=LLAMA, credit=Decimal("-25"),
                       provisioned_hours=48, tax_rate=Decimal("0.08"))
    lines += [extra_line(usage_type="USE1-MysteryModel9-input-tokens", amount=100, cost=1.25),
              extra_line(usage_type="USE1-Guardrail-TextUnits", amount=7, cost=0.525, pricing_unit="Units"),
              extra_line(usage_type="", amount=0, cost=-0.4, line_type="Refund", region=None)]
    rec = _reconcile(finance_lake, lines, tmp_path, "deviations")
    by = rec.by_category()
    sonnet_list = sum((r["metered_list_cost"] for r in rec.rows if r["model_id"] == SONNET), ZERO)
    # THEN the categories partition the in-scope bill (tax out of scope) exactly
    assert set(by) <= set(RECONCILIATION_CATEGORIES)
    assert sum((c["billed_cost"] for c in by.values()), ZERO) == rec.billed_total == _in_scope_total(lines)
    # AND each deviation is where finance expects it
    sonnet_variance = sum((r["billed_cost"] for r in rec.rows if r["category"] == "price_variance"
                           and r["model_id"] == SONNET), ZERO)
    assert abs(sonnet_variance + sonnet_list * Decimal("0.15")) < Decimal("1e-6")
    assert by["time_based"]["billed_cost"] == Decimal("21.18") * 48
    assert by["non_usage"]["billed_cost"] == Decimal("-25.4")
    assert by["unmapped"]["billed_cost"] == Decimal("1.25")
    unmetered = [r for r in rec.rows if r["category"] == "unmetered_usage"]
    llama = sum((r["billed_cost"] for r in unmetered if r["model_id"] == LLAMA), ZERO)
    llama_billed = sum((r["billed_cost"] for r in rec.rows if r["model_id"] == LLAMA), ZERO)
    assert abs(llama - llama_billed * Decimal("0.03") / Decimal("1.03")) < Decimal("1e-6")
    assert any(r["dimension"] == "guardrails" and r["billed_cost"] == Decimal("0.525") for r in unmetered)


def test_tax_is_in_scope_only_when_asked(finance_lake, tmp_path):
    lines = month_bill(finance_lake, tax_rate=Decimal("0.10"), credit=Decimal(0))
    rec = _reconcile(finance_lake, lines, tmp_path, "tax", include_tax=True)
    tax = [r for r in rec.rows if r["line_item_type"] == "Tax"]
    assert len(tax) == 1 and tax[0]["category"] == "non_usage"
    assert rec.billed_total == _in_scope_total(lines, tax=True)


def test_metered_usage_the_bill_does_not_show_is_metered_not_billed(finance_lake, tmp_path):
    # GIVEN a bill without the Llama lines
    lines = [li for li in month_bill(finance_lake) if "Llama" not in li["line_item_usage_type"]]
    rec = _reconcile(finance_lake, lines, tmp_path, "missing")
    missing = [r for r in rec.rows if r["category"] == "metered_not_billed" and r["model_id"] == LLAMA]
    # THEN the gateway's Llama usage is shown at its list cost, with no billed dollars
    assert missing and all(r["billed_cost"] == 0 and r["metered_list_cost"] > 0 for r in missing)
    llama_list = sum((r["metered_list_cost"] for r in rec.rows if r["model_id"] == LLAMA), ZERO)
    assert sum((r["metered_list_cost"] for r in missing), ZERO) == llama_list


def test_a_monthly_export_is_compared_per_month(finance_lake, tmp_path):
    # GIVEN the same usage billed as one line per usage type for the whole month (a monthly export)
    daily = month_bill(finance_lake)
    monthly: dict[str, dict] = {}
    for li in daily:
        m = monthly.setdefault(li["line_item_usage_type"], {**li, "line_item_usage_amount": 0.0,
                                                            "line_item_unblended_cost": 0.0,
                                                            "line_item_net_unblended_cost": 0.0})
        for c in ("line_item_usage_amount", "line_item_unblended_cost", "line_item_net_unblended_cost"):
            m[c] = float(Decimal(str(m[c])) + Decimal(str(li[c])))
        m["line_item_usage_start_date"] = datetime(2026, 11, 1)
        m["line_item_usage_end_date"] = datetime(2026, 12, 1)
    rec = _reconcile(finance_lake, list(monthly.values()), tmp_path, "monthly")
    # THEN keys are the month's first day, and the month still matches
    assert {r["usage_date"] for r in rec.rows if r["category"] == "matched"} == {datetime(2026, 11, 1).date()}
    assert "unmetered_usage" not in rec.by_category()


def test_the_reconciliation_is_stored_for_the_views(finance_lake, tmp_path):
    rec = _reconcile(finance_lake, month_bill(finance_lake), tmp_path, "stored")
    path = store(lake=finance_lake.lake, reconciliation=rec)
    assert path.endswith(f"curated/reconciliation/billing_period={PERIOD}/reconciliation.parquet")


@pytest.mark.parametrize(("usage_type", "product", "unit", "expected"), [
    ("USE1-Claude3.5Sonnet-input-tokens", "AmazonBedrock", "1K tokens",
     ("tokens", SONNET, "input_tokens", "us-east-1", "on_demand", "in_region", 1000)),
    ("USW2-Claude4.5Sonnet-cache-read-input-token-count-cross-region-global", "AmazonBedrock", "1M tokens",
     ("tokens", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "cache_read_input_tokens", "us-west-2",
      "on_demand", "global", 1000000)),
    ("USW2-NovaLite-output-tokens-batch", "AmazonBedrock", "1K tokens",
     ("tokens", "amazon.nova-lite-v1:0", "output_tokens", "us-west-2", "batch", "in_region", 1000)),
    ("USE1-NovaPro-input-tokens-cross-region-geo-priority", "AmazonBedrock", "1K tokens",
     ("tokens", "amazon.nova-pro-v1:0", "input_tokens", "us-east-1", "priority", "geo", 1000)),
    ("USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits", "AmazonBedrock", "Hrs",
     ("time_based", None, "provisioned_throughput_model_unit_hours", "us-east-1", "on_demand", "in_region", 1)),
    ("USE1-Host:ml.g5.xlarge", "AmazonSageMaker", "Hrs",
     ("time_based", None, "sagemaker_instance_hours", "us-east-1", "on_demand", "in_region", 1)),
    ("EU-Guardrail-ContentPolicyUnits", "AmazonBedrock", "Units",
     ("other", None, "guardrails", "eu-west-1", "on_demand", "in_region", 1)),
    ("USE1-SomethingNew-input-tokens", "AmazonBedrock", "1K tokens",
     ("unmapped", None, None, "us-east-1", "on_demand", "in_region", 1000)),
])
def test_usage_types_map_to_model_dimension_region_tier_and_scope(usage_type, product, unit, expected):
    kind = load_usage_types().classify(product_code=product, usage_type=usage_type, pricing_unit=unit)
    assert (kind.kind, kind.model_id, kind.dimension, kind.region, kind.service_tier, kind.scope,
            kind.unit_scale) == expected


def test_hourly_lines_are_summed_to_days(finance_lake, tmp_path):
    # GIVEN each day's line cut into 24 hourly lines (an hourly export)
    hourly = []
    for li in month_bill(finance_lake):
        start = li["line_item_usage_start_date"]
        for h in range(24):
            part = {c: li[c] for c in li}
            for c in ("line_item_usage_amount", "line_item_unblended_cost", "line_item_net_unblended_cost"):
                part[c] = float((Decimal(str(li[c])) / 24).quantize(Decimal("1e-10")))  # AWS: 10 decimals at most
            part["line_item_usage_start_date"] = start + timedelta(hours=h)
            part["line_item_usage_end_date"] = start + timedelta(hours=h + 1)
            hourly.append(part)
    rec = _reconcile(finance_lake, hourly, tmp_path, "hourly")
    assert sum((c["billed_cost"] for c in rec.by_category().values()), ZERO) == _in_scope_total(hourly)
    matched_days = {r["usage_date"] for r in rec.rows if r["category"] == "matched"}
    assert datetime(2026, 11, 10, tzinfo=UTC).date() in matched_days
    # only AWS-style rounding of the hourly amounts (10 decimals of 1K tokens) is left outside matched
    assert abs(rec.by_category().get("unmetered_usage", {}).get("billed_cost", ZERO)) < Decimal("1e-6")


def test_a_billed_key_whose_quantity_nets_to_zero_keeps_its_dollars(finance_lake, tmp_path):
    # GIVEN a bill line for a metered key with cost but no quantity (a correction netting to zero)
    sonnet_input = "USE1-Claude3.5Sonnet-input-tokens"
    lines = [li for li in month_bill(finance_lake) if not (li["line_item_usage_type"] == sonnet_input
                                                           and li["line_item_usage_start_date"].day == 10)]
    lines.append(extra_line(usage_type=sonnet_input, amount=0, cost=5))  # the key's only billed line that day
    rec = _reconcile(finance_lake, lines, tmp_path, "zero-quantity")
    # THEN its 5 dollars are reconciled (unmetered_usage), and the categories still add up to the bill exactly
    assert rec.billed_total == _in_scope_total(lines)
    assert any(r["category"] == "unmetered_usage" and r["model_id"] == SONNET and r["billed_cost"] == 5
               and r["usage_date"].day == 10 for r in rec.rows)


def test_sagemaker_endpoint_names_match_whatever_their_case(finance_lake, tmp_path):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/support-bot-endpoint"
    lines = [extra_line(usage_type="USE1-Host:ml.g5.xlarge", amount=24, cost=33.6, product_code="AmazonSageMaker",
                        operation="RunInstance", pricing_unit="Hrs", resource_id=arn)]
    rec = _reconcile(finance_lake, lines, tmp_path, "sagemaker", sagemaker_endpoints=("Support-Bot-Endpoint",))
    assert rec.by_category()["time_based"]["billed_cost"] == Decimal("33.6")
    assert _reconcile(finance_lake, lines, tmp_path, "sagemaker-other").by_category().get("time_based") is None


def test_the_scope_comes_from_the_environment():
    scope = scope_from_environment({"MODELMETER_BILLED_PROVIDERS": "bedrock, simulator",
                                    "MODELMETER_SAGEMAKER_ENDPOINTS": '{"m": {"endpoint_name": "ep-1"}}'})
    assert scope.metered_providers == ("bedrock", "simulator") and scope.sagemaker_endpoints == ("ep-1",)
    assert scope_from_environment({}).metered_providers == ("bedrock", "sagemaker")
    with pytest.raises(UserError, match="MODELMETER_SAGEMAKER_ENDPOINTS"):
        scope_from_environment({"MODELMETER_SAGEMAKER_ENDPOINTS": "nope"})

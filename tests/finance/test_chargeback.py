"""Allocation rules and the chargeback of record: exact splits, the invoice to the cent, refusals with their line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import UNALLOCATED
from common.errors import UserError
from finance.allocation import load_rules, split
from finance.chargeback import compute, store, versions
from finance.cur import import_export
from finance.reconcile import reconcile
from modelmeter.simulated_bill import write_cur
from tests.fixture_lake import TEAMS

from .conftest import LLAMA, PERIOD, SONNET, extra_line, month_bill

TEAM_IDS = {t.team_id for t in TEAMS}
COST_CENTERS = {t.cost_center for t in TEAMS if t.cost_center}
MODELMETER = [sys.executable, "-c", "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"]
RULES = """rules:
  - name: credits-to-product-teams
    source: {line_item_type: Credit}
    method: fixed
    targets: {team-alpha: 60, team-beta: 40}
  - name: provisioned-throughput
    source: {category: time_based}
    method: proportional
    targets: all
    basis: metered_cost
  - name: guardrails-evenly
    source: {usage_type: "*Guardrail*"}
    method: even
    targets: [CC-1001, team-west]
"""


def _rules(tmp_path: Path, text: str = RULES):
    path = tmp_path / "allocation.yaml"
    path.write_text(text)
    return load_rules(path, teams=TEAM_IDS, cost_centers=COST_CENTERS)


@pytest.fixture(scope="module")
def deviating_bill(finance_lake, tmp_path_factory):
    lines = month_bill(finance_lake, discounted_model=SONNET, bypass_model=LLAMA, credit=Decimal("-25"),
                       provisioned_hours=48, tax_rate=Decimal("0.08"))
    lines.append(extra_line(usage_type="USE1-Guardrail-TextUnits", amount=7, cost=0.525, pricing_unit="Units"))
    folder = tmp_path_factory.mktemp("bill")
    write_cur(lines, folder / "export-00001.parquet")
    import_export(lake=finance_lake.lake, paths=[str(folder)])
    return reconcile(lake=finance_lake.lake, period=PERIOD, catalog=finance_lake.catalog)


def test_the_chargeback_adds_up_to_the_in_scope_bill_to_the_cent(deviating_bill, tmp_path):
    # GIVEN the reconciled bill and the rules
    cb = compute(rec=deviating_bill, rules=_rules(tmp_path), teams=list(TEAMS), version=1)
    rows = {r["team_id"]: r for r in cb.rows}
    bill = deviating_bill.billed_total
    # THEN the rows sum to the bill rounded to the cent, exactly, and every row is whole cents
    assert sum(r["chargeback_cost"] for r in cb.rows) == bill.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert all(r["chargeback_cost"] == r["chargeback_cost"].quantize(Decimal("0.01")) for r in cb.rows)
    # AND each row is its parts within a cent, the parts summing to the bill exactly
    parts = sum(r["metered_list_cost"] + r["price_adjustment"] + r["allocated_shared_cost"] for r in cb.rows)
    assert parts == bill
    for r in cb.rows:
        assert abs(r["chargeback_cost"] - r["metered_list_cost"] - r["price_adjustment"]
                   - r["allocated_shared_cost"]) < Decimal("0.01")
    # AND the credit went 60/40 to alpha and beta, the unmetered Llama usage to unallocated (no rule claims it)
    assert "credits-to-product-teams" in rows["team-alpha"]["rules"]
    assert rows[UNALLOCATED]["allocated_shared_cost"] > 0 and rows[UNALLOCATED]["cost_center"] is None
    assert rows["team-idle"]["rules"] == "guardrails-evenly,provisioned-throughput"
    assert cb.info.chargeback_total == format(bill.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


def test_price_variance_goes_to_the_models_users_by_their_list_cost(deviating_bill, tmp_path):
    cb = compute(rec=deviating_bill, rules=_rules(tmp_path, "rules: []\n"), teams=list(TEAMS), version=1)
    discount = -sum((r["billed_cost"] for r in deviating_bill.rows if r["category"] == "price_variance"
                     and r["model_id"] == SONNET), Decimal(0))
    sonnet_users = {team for (team, key) in deviating_bill.team_metered if key.model_id == SONNET}
    assert sonnet_users and discount > 0
    # every adjustment is negative (the discount) for Sonnet users, and they sum to the model's variance
    adjustments = {r["team_id"]: r["price_adjustment"] for r in cb.rows}
    assert all(adjustments[t] < 0 for t in sonnet_users)
    non_sonnet_variance = sum((r["billed_cost"] for r in deviating_bill.rows
                               if r["category"] == "price_variance" and r["model_id"] != SONNET), Decimal(0))
    assert sum(adjustments.values()) == non_sonnet_variance - discount


@pytest.mark.parametrize(("text", "message"), [
    ("rules:\n  - name: a\n    source: {line_item_type: Credit}\n    method: fixed\n    targets: {team-alpha: 70, "
     "team-beta: 40}\n", ":2: rule 'a': percentages sum to 110, not 100"),
    ("rules:\n  - name: a\n    source: {category: time_based}\n    method: even\n    targets: [team-nobody]\n",
     ":2: rule 'a': unknown team or cost centre team-nobody"),
    ("rules:\n  - name: a\n    source: {category: time_based}\n    method: even\n    targets: all\n"
     "  - name: b\n    source: {category: time_based}\n    method: even\n    targets: all\n",
     ":6: rule 'b' claims what rule 'a' (line 2) claims"),
    ("rules:\n  - name: a\n    source: {category: matched}\n    method: even\n    targets: all\n",
     "source category 'matched' is not one of"),
    ("rules:\n  - name: a\n    source: {category: time_based}\n    method: split\n    targets: all\n",
     "`method` must be one of fixed, proportional, even"),
    ("rules:\n  - name: a\n    source: {category: time_based}\n    method: even\n    targets: all\n    basis: tokens\n",
     "`basis` is for method proportional only"),
])
def test_a_bad_rule_is_refused_with_its_line(tmp_path, text, message):
    with pytest.raises(UserError) as err:
        _rules(tmp_path, text)
    assert message in str(err.value) and "allocation.yaml" in str(err.value)


def test_two_rules_claiming_one_charge_are_refused_naming_both(deviating_bill, tmp_path):
    rules = _rules(tmp_path, "rules:\n  - name: by-type\n    source: {line_item_type: Credit}\n    method: even\n"
                             "    targets: all\n  - name: by-category\n    source: {category: non_usage}\n"
                             "    method: even\n    targets: all\n")
    with pytest.raises(UserError, match=r"rules 'by-type' \(line 2\) and 'by-category' \(line 6\) both claim"):
        compute(rec=deviating_bill, rules=rules, teams=list(TEAMS), version=1)


@settings(max_examples=200, deadline=None)
@given(amount=st.decimals(min_value=-10**6, max_value=10**6, places=12, allow_nan=False, allow_infinity=False),
       weights=st.lists(st.decimals(min_value=0, max_value=10**4, places=6, allow_nan=False, allow_infinity=False),
                        min_size=1, max_size=12))
def test_largest_remainder_splits_sum_exactly(amount, weights):
    named = {f"t{i}": w for i, w in enumerate(weights)}
    shares = split(amount, named, quantum=Decimal("0.01"))
    assert sum(shares.values()) == amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    total = sum(weights)
    for name, share in shares.items():  # no share is more than a cent from its exact part
        exact = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * (named[name] / total if total else
                                                                            Decimal(1) / len(named))
        assert abs(share - exact) < Decimal("0.01")


def test_versions_are_kept_with_their_inputs(finance_lake, deviating_bill, tmp_path):
    first = compute(rec=deviating_bill, rules=_rules(tmp_path), teams=list(TEAMS), version=1)
    store(lake=finance_lake.lake, chargeback=first)
    second = compute(rec=deviating_bill, rules=_rules(tmp_path, "rules: []\n"), teams=list(TEAMS), version=2)
    store(lake=finance_lake.lake, chargeback=second)
    listed = versions(lake=finance_lake.lake, period=PERIOD)
    assert [v.version for v in listed][-2:] == [1, 2]
    assert listed[-1].rules_digest != listed[-2].rules_digest and listed[-1].cur_snapshot
    assert listed[-1].price_versions == ["fixture-2026-11"] and listed[-1].cur_final is False


def test_the_commands_import_reconcile_and_charge_back(finance_lake, tmp_path):
    # GIVEN a registry of the fixture teams, a rules file beside it and a CUR export
    lake = tmp_path / "lake"
    subprocess.run(["cp", "-r", str(finance_lake.root / "lake"), str(lake)], check=True)
    env = {**os.environ}
    for team in TEAMS:
        subprocess.run([*MODELMETER, "tenants", "add", team.team_id, "--cost-center", team.cost_center, "--lake",
                        str(lake)], check=True, capture_output=True, env=env)
    (tmp_path / "allocation.yaml").write_text(RULES)
    write_cur(month_bill(finance_lake, credit=Decimal("-5"), provisioned_hours=2), tmp_path / "cur" / "x.csv.gz",
              fmt="csv.gz")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MODELMETER, *args, "--lake", str(lake)], capture_output=True, text=True, env=env,
                              timeout=120)

    # WHEN finance runs import → reconcile → chargeback
    imported = cli("billing", "import", str(tmp_path / "cur"))
    reconciled = cli("reconcile", "--period", PERIOD, "--format", "csv")
    charged = cli("chargeback", "--period", PERIOD, "--format", "json")
    listed = cli("chargeback", "--period", PERIOD, "--versions", "--format", "json")
    usage_types = cli("billing", "usage-types", "--format", "csv")
    # THEN each works, the chargeback JSON has money as decimal strings summing to the bill
    assert imported.returncode == 0 and "billing period 2026-11: snapshot" in imported.stdout, imported.stderr
    assert reconciled.returncode == 0 and reconciled.stdout.startswith("category,usage_date,region,model_id")
    assert "billed (in scope)" in reconciled.stderr
    assert charged.returncode == 0, charged.stderr
    rows = json.loads(charged.stdout)
    assert all(isinstance(r["chargeback_cost"], str) for r in rows) and rows[-1]["team_id"] == UNALLOCATED
    total = sum(Decimal(r["chargeback_cost"]) for r in rows)
    assert f"{total} USD = the in-scope bill to the cent" in charged.stderr.replace(f"{total:.2f}", f"{total}")
    stored = json.loads(listed.stdout)
    assert stored[-1]["rules_source"] == str(tmp_path / "allocation.yaml")  # the file beside the registry
    assert [v["version"] for v in stored] == list(range(1, len(stored) + 1))
    assert usage_types.stdout.splitlines()[0] == "usage_type,model_id,dimension,service_tier,scope,kind"
    assert "*-Claude3.5Sonnet-input-tokens,anthropic.claude-3-5-sonnet-20240620-v1:0,input_tokens" in usage_types.stdout
    # AND a bad period is a usage error; unallocated is no team name
    assert cli("reconcile", "--period", "2026-13").returncode == 2
    refused = cli("tenants", "add", UNALLOCATED)
    assert refused.returncode == 2 and "reserved" in refused.stderr


def test_even_over_a_cost_centre_and_a_team_gives_each_target_half(deviating_bill, tmp_path):
    # CC-1001 has two teams (team-alpha, team-idle): together they get half, as team-west does
    rules = _rules(tmp_path, "rules:\n  - name: guardrails\n    source: {usage_type: \"*Guardrail*\"}\n"
                             "    method: even\n    targets: [CC-1001, team-west]\n")
    cb = compute(rec=deviating_bill, rules=rules, teams=list(TEAMS), version=1)
    shared = {r["team_id"]: r["allocated_shared_cost"] for r in cb.rows}
    guardrail = Decimal("0.525")
    assert shared["team-west"] == guardrail / 2
    assert shared["team-alpha"] + shared["team-idle"] == guardrail / 2


def test_a_rule_with_no_team_to_charge_is_one_clear_error(deviating_bill, tmp_path):
    # GIVEN a rule for a cost centre that, in the organisation the chargeback runs with, has no team
    rules = _rules(tmp_path, "rules:\n  - name: fees\n    source: {category: time_based}\n    method: even\n"
                             "    targets: [CC-2002]\n")
    org = [t for t in TEAMS if t.cost_center != "CC-2002"]
    unmetered = type(deviating_bill)(**{**vars(deviating_bill), "team_metered": {
        k: v for k, v in deviating_bill.team_metered.items() if k[0] != "team-beta"}})
    # THEN the charge is not silently lost: one clear error names the rule
    with pytest.raises(UserError, match=r"allocation rule 'fees' \(line 2\): no team to charge for 'CC-2002'"):
        compute(rec=unmetered, rules=rules, teams=org, version=1)

"""The demo's month-end close: a SIMULATED AWS bill of the demo's own traffic → import → reconcile → chargeback.

The bill (``modelmeter.simulated_bill``) deviates as real ones do: a private-pricing discount on one model, usage on
another that never went through the gateway, a credit, a provisioned-throughput model billed by the hour (tagged
for data-science), tax. The allocation rules are ``docs/allocation.example.yaml``, copied beside the demo's
registry. The printout puts the invoice-true chargeback by cost centre next to the metered list cost.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.constants import ENV_BILLED_PROVIDERS
from common.contracts import UNALLOCATED, Team
from common.lake import Lake
from finance.allocation import load_rules
from finance.chargeback import compute, next_version, store
from finance.cur import import_export
from finance.reconcile import Reconciliation, Scope, reconcile
from finance.reconcile import store as store_reconciliation
from modelmeter.simulated_bill import Deviations, simulate_period, write_cur
from pricing_catalog import load_catalog
from transforms.report import money_text

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "docs" / "allocation.example.yaml"
DISCOUNTED = "anthropic.claude-sonnet-4-20250514-v1:0"  # data-science and sales-copilot's model: 12 % off list
BYPASSED = "meta.llama3-1-8b-instruct-v1:0"  # 5 % more billed than the gateway metered (a script called AWS directly)
#: The demo's events come from the labelled simulator: its bill treats them as Bedrock calls in us-east-1.
DEMO_SCOPE = Scope(metered_providers=("bedrock", "sagemaker", "simulator"))


def billing_period_of(first_day: date, last_day: date) -> str:
    """The billing period (UTC month) holding most of the demo's days."""
    days = Counter(f"{first_day + timedelta(days=n):%Y-%m}" for n in range((last_day - first_day).days + 1))
    return days.most_common(1)[0][0]


def month_end_close(*, lake: Lake, registry_dir: Path, teams: list[Team], first_day: date, last_day: date) -> None:
    """Run and print the close of the period holding most of the demo's days."""
    period = billing_period_of(first_day, last_day)
    catalog = load_catalog(lake=lake)
    # the deviations scale with the week's metered spend, so the printout stays readable whatever --requests
    probe = simulate_period(lake=lake, period=period, catalog=catalog, deviations=Deviations(credit=Decimal(0),
                                                                                            provisioned_hours=0))
    spend = sum((Decimal(str(li["line_item_unblended_cost"])) for li in probe
                 if li["line_item_line_item_type"] == "Usage"), Decimal(0))
    deviations = Deviations(discounted_model=DISCOUNTED, discount=Decimal("0.12"), bypass_model=BYPASSED,
                            bypass_share=Decimal("0.05"), credit=-(spend * Decimal("0.05")).quantize(Decimal("0.01")),
                            provisioned_hours=4, provisioned_rate=(spend * Decimal("0.02")).quantize(Decimal("0.01"))
                            or Decimal("0.01"), tax_rate=Decimal("0.08"))
    bill = write_cur(simulate_period(lake=lake, period=period, catalog=catalog, deviations=deviations),
                     Path(lake.base) / "inbox" / "cur" / f"BILLING_PERIOD={period}" / "modelmeter-demo-00001.parquet")
    (snapshot,) = import_export(lake=lake, paths=[str(bill.parent)])
    rec = reconcile(lake=lake, period=period, catalog=catalog, scope=DEMO_SCOPE)
    store_reconciliation(lake=lake, reconciliation=rec)
    rules_file = registry_dir / "allocation.yaml"
    shutil.copyfile(EXAMPLE_RULES, rules_file)
    rules = load_rules(rules_file, teams={t.team_id for t in teams},
                       cost_centers={t.cost_center for t in teams if t.cost_center})
    chargeback = compute(rec=rec, rules=rules, teams=teams, version=next_version(lake=lake, period=period))
    store(lake=lake, chargeback=chargeback)
    _print(period, snapshot.rows, rec, chargeback.rows, rules_file)
    print(f"  by hand on this lake (its simulator events stand for Bedrock calls): "
          f"{ENV_BILLED_PROVIDERS}={','.join(DEMO_SCOPE.metered_providers)} modelmeter chargeback --period {period} "
          f"--lake {lake.uri} --tenants {registry_dir / 'tenants.json'}")


def _print(period: str, lines: int, rec: Reconciliation, rows: list[dict[str, Any]], rules_file: Path) -> None:
    print(f"Month-end close {period} (SIMULATED AWS bill of the demo's traffic: {lines} CUR 2.0 lines, "
          f"`modelmeter billing import` → `reconcile` → `chargeback`)")
    print(f"  invoice in scope (tax excluded) {money_text(rec.billed_total)} USD; "
          f"metered at list {money_text(rec.metered_total)} USD")
    print("  where the bill's dollars go: " + ", ".join(
        f"{name} {money_text(c['billed_cost'])}" for name, c in rec.by_category().items() if c["billed_cost"]))
    print(f"  chargeback of record (rules: {rules_file}), USD:")
    print(f"  {'cost_center':<12} {'team_id':<17} {'metered list':>13} {'chargeback':>12}")
    for r in rows:
        metered = money_text(r["metered_list_cost"]) if r["team_id"] != UNALLOCATED else "-"
        cost_center, charged = r["cost_center"] or "-", money_text(r["chargeback_cost"])
        print(f"  {cost_center:<12} {r['team_id']:<17} {metered:>13} {charged:>12}")
    metered_total = sum((r["metered_list_cost"] for r in rows), Decimal(0))
    total = sum((r["chargeback_cost"] for r in rows), Decimal(0))
    print(f"  {'TOTAL':<30} {money_text(metered_total):>13} {money_text(total):>12}  = the invoice in scope, "
          f"to the cent")

"""The demo's month-end close: a SIMULATED AWS bill of the demo's own traffic → import → reconcile → chargeback →
close → restate under a new price version → journal.

The bill (``modelmeter.simulated_bill``) deviates as real ones do: a private-pricing discount on one model, usage on
another that never went through the gateway, a credit, a provisioned-throughput model billed by the hour (tagged
for data-science), tax. The allocation rules are ``docs/allocation.example.yaml``, copied beside the demo's
registry. The printout puts the invoice-true chargeback by cost centre next to the metered list cost. The month is
then closed, a new catalog version (the discounted model's list price up 10 % from the period's start, a SIMULATED
price change) re-prices the month's usage, and the restatement prints the deltas that land in the next period; the
journal of the closed month is written with ``docs/ledger.example.yaml``.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.constants import ENV_BILLED_PROVIDERS
from common.contracts import UNALLOCATED, Team
from common.lake import Lake
from finance.allocation import Rules, load_rules
from finance.chargeback import compute, next_version, store
from finance.close import Restatement, close, record, restate
from finance.cur import import_export
from finance.journal import journal_lines, load_ledger, to_csv
from finance.reconcile import Reconciliation, Scope, period_days, reconcile
from finance.reconcile import store as store_reconciliation
from modelmeter.simulated_bill import Deviations, line, simulate_period, write_cur
from pricing_catalog import Catalog, load_catalog
from pricing_catalog.publish import import_sheet
from sql.config import ReportingConfig
from transforms.report import money_text
from transforms.run import transform_range

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "docs" / "allocation.example.yaml"
EXAMPLE_LEDGER = Path(__file__).resolve().parents[1] / "docs" / "ledger.example.yaml"
PRICE_RISE = Decimal("1.10")  # the SIMULATED price change the restatement shows
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
    lines = simulate_period(lake=lake, period=period, catalog=catalog, deviations=deviations)
    bill = write_cur(lines, Path(lake.base) / "inbox" / "cur" / f"BILLING_PERIOD={period}" /
                     "modelmeter-demo-00001.parquet")
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
    by_hand = (f"{ENV_BILLED_PROVIDERS}={','.join(DEMO_SCOPE.metered_providers)} modelmeter {{}} --period {period} "
               f"--lake {lake.uri} --tenants {registry_dir / 'tenants.json'}")
    print(f"  by hand on this lake (its simulator events stand for Bedrock calls): {by_hand.format('chargeback')}")
    close(lake=lake, period=period, reason="demo: month-end close")
    print(f"  closed {period} at version {chargeback.info.version} (`modelmeter close`): these figures no longer move")
    late = -(spend * Decimal("0.02")).quantize(Decimal("0.01")) or Decimal("-0.01")
    start, _end = period_days(period)
    restated_bill = write_cur([*lines, line(period=period, usage_type="", amount=0, cost=late, line_type="Credit",
                                            start=datetime(start.year, start.month, start.day, tzinfo=UTC),
                                            operation="", pricing_unit="", region=None,
                                            description="AWS service credit issued after the close (SIMULATED)")],
                              Path(lake.base) / "inbox" / "cur-restated" / f"BILLING_PERIOD={period}" /
                              "modelmeter-demo-00001.parquet")
    import_export(lake=lake, paths=[str(restated_bill.parent)])
    print(f"  then AWS restates {period} with a late credit of {money_text(late)} USD (a new CUR snapshot, "
          f"SIMULATED), and a new price version raises {DISCOUNTED}'s list price 10 %")
    result = _restate(lake=lake, period=period, catalog=catalog, rules=rules, teams=teams, first_day=first_day,
                      last_day=last_day, registry_dir=registry_dir)
    _print_restatement(result)
    ledger_file = registry_dir / "ledger.yaml"
    shutil.copyfile(EXAMPLE_LEDGER, ledger_file)
    journal = journal_lines(record(lake=lake, period=period), load_ledger(ledger_file),
                            fiscal_month=ReportingConfig.from_env().booked_fiscal_month(period).isoformat())
    out = Path(lake.base).parent / f"journal-{period}.csv"
    out.write_text(to_csv(journal), encoding="utf-8")
    debits = sum((j["debit"] for j in journal), Decimal(0))
    print(f"  journal {out} (`modelmeter export journal`, accounts from {ledger_file}): {len(journal)} lines, "
          f"debits = credits = {money_text(debits)} USD = the invoice in scope")


def _restate(*, lake: Lake, period: str, catalog: Catalog, rules: Rules, teams: list[Team], first_day: date,
             last_day: date, registry_dir: Path) -> Restatement:
    """A new price version (SIMULATED: the discounted model's list prices up 10 % from the period's start), the
    period's days re-priced with it, and the closed period restated."""
    start, end = period_days(period)
    sheet = registry_dir / "price-change.csv"
    rows = ["model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier"]
    key = catalog.resolve(DISCOUNTED) or DISCOUNTED
    for row in catalog.rows_for(key):
        if row.region is None and row.service_tier == "on_demand" and row.effective_to is None \
                and row.dimension in ("input_tokens", "output_tokens"):
            rows.append(f"{DISCOUNTED},{row.dimension},{row.price_usd * PRICE_RISE},{row.per},{start.isoformat()},,,")
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    version = import_sheet(lake=lake, sheet=sheet, note="demo: SIMULATED price change for the restatement")
    transform_range(lake=lake, date_from=max(first_day, start), date_to=min(last_day, end), price_version=version)
    rec = reconcile(lake=lake, period=period, catalog=load_catalog(lake=lake), scope=DEMO_SCOPE)
    restated = compute(rec=rec, rules=rules, teams=teams, version=0, purpose="restatement")
    return restate(lake=lake, period=period, restated=restated)


def _print_restatement(result: Restatement) -> None:
    versions = ", ".join(result.restated.info.price_versions)
    print(f"  restated {result.billing_period} at price version {versions} (`modelmeter restate`): deltas posted "
          f"into {result.posted_to or '-'} as adjustment lines labelled {result.billing_period}, USD:")
    print(f"  {'cost_center':<12} {'team_id':<17} {'closed':>10} {'restated':>10} {'delta':>8}")
    for r in result.rows:
        if r["delta"]:
            print(f"  {r['cost_center'] or '-':<12} {r['team_id']:<17} {money_text(r['closed_cost']):>10} "
                  f"{money_text(r['restated_cost']):>10} {money_text(r['delta']):>8}")
    total = sum((r["delta"] for r in result.rows), Decimal(0))
    closed = sum((r["closed_cost"] for r in result.rows), Decimal(0))
    restated = sum((r["restated_cost"] for r in result.rows), Decimal(0))
    print(f"  {'deltas sum to':<30} {money_text(total):>30}  = restated {money_text(restated)} − closed "
          f"{money_text(closed)}, exactly (the price change moves list cost and price adjustment within each "
          f"team: the chargeback is invoice-true)")


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

"""``modelmeter export focus --from D --to D [--tz ZONE] --out FILE.parquet``: the FOCUS 1.2 cost and usage export,
by days of the reporting calendar, billed from the chargeback of record where a billing period has one."""

from __future__ import annotations

from typing import Any

from common.errors import UserError
from common.lake import Lake
from dashboards.focus import CURRENCY, FOCUS_VERSION, ExportSummary, PeriodSummary, export_focus
from modelmeter.commands.report import USAGE_ERROR, reporting_config
from transforms.report import money_text


def run(args: Any) -> int:
    config = reporting_config(args)
    if config is None:
        return USAGE_ERROR
    try:
        summary = export_focus(lake=Lake.open(args.lake), date_from=args.date_from, date_to=args.date_to,
                               out=args.out, config=config)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for line in summary_lines(summary):
        print(line)
    return 0


def summary_lines(summary: ExportSummary) -> list[str]:
    """What the command prints: the file and totals, the calendar, then one line per billing period touched."""
    lines = [f"wrote {summary.rows} FOCUS {FOCUS_VERSION} rows to {summary.out}: BilledCost {summary.billed_cost} "
             f"{CURRENCY} (ListCost {summary.list_cost}), {summary.date_from} to {summary.date_to}, "
             f"{summary.config.describe()}"]
    lines += [_period_line(p) for p in summary.periods]
    if summary.unpriced_invocations:
        lines.append(f"{summary.unpriced_invocations} unpriced invocations: what they used without a price is left "
                     "out, their priced dimensions are exported (see the unpriced_usage view)")
    return lines


def _period_line(p: PeriodSummary) -> str:
    head = f"billing period {p.period} (UTC calendar month)"
    if p.corrections is not None:
        head += f", with restatements of earlier periods posted into it ({money_text(p.corrections)} {CURRENCY}, " \
                "ChargeClass Correction)"
    if p.basis == "list":
        return f"{head}: no chargeback of record, BilledCost = metered list cost (x_CostBasis list)"
    status = f", {p.status}" if p.status else ""
    invoice = money_text(p.invoice_total) if p.invoice_total is not None else "?"
    line = f"{head}: BilledCost from the chargeback of record, version {p.version}{status} (x_CostBasis chargeback"
    if p.monthly_rows and p.equals_invoice:
        return f"{line}): {money_text(p.billed_cost)} {CURRENCY}, the invoice"
    if p.monthly_rows:
        return (f"{line}): its monthly rows are here but part of its usage is outside these days, so its rows here "
                f"add up to {money_text(p.billed_cost)} of the invoice {invoice} {CURRENCY}")
    return (f"{line}): its monthly rows go with the export whose days hold the day it is booked on; here its usage "
            "at list price only")

"""``modelmeter export focus --from D --to D --out FILE.parquet``: the FOCUS 1.2 cost and usage export."""

from __future__ import annotations

from typing import Any

from common.errors import UserError
from common.lake import Lake
from dashboards.focus import CURRENCY, FOCUS_VERSION, export_focus


def run(args: Any) -> int:
    try:
        summary = export_focus(lake=Lake.open(args.lake), date_from=args.date_from, date_to=args.date_to,
                               out=args.out)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {summary.rows} FOCUS {FOCUS_VERSION} rows to {summary.out}: BilledCost {summary.billed_cost} "
          f"{CURRENCY}, {summary.date_from} to {summary.date_to}")
    if summary.unpriced_invocations:
        print(f"left out {summary.unpriced_invocations} unpriced invocations (no price applied; "
              "see the unpriced_usage view)")
    return 0

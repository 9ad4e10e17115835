"""``modelmeter dashboard [--from D --to D] [--out report.html]``: the chargeback dashboard as one HTML page."""

from __future__ import annotations

from typing import Any

from common.errors import UserError
from dashboards.html import render_dashboard


def run(args: Any) -> int:
    """Write the page, print its path."""
    try:
        path = render_dashboard(lake=args.lake, date_from=args.date_from, date_to=args.date_to, out=args.out)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    print(path)
    return 0

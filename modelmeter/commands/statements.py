"""``modelmeter export statements``: one printable chargeback statement per cost centre of a billing period (HTML,
and PDF through Chromium when it is installed), and an index (docs/finance.md "Statements")."""

from __future__ import annotations

import os
import sys
from typing import Any

from dashboards.statements import chromium, write_statements
from finance.reconcile import scope_from_environment


def run(args: Any) -> int:
    """Write the pages (and PDFs), print their paths."""
    pdf = False if args.no_pdf else None
    files = write_statements(lake=args.lake, period=args.period, out=args.out, pdf=pdf,
                             scope=scope_from_environment(os.environ))
    for path in files:
        print(path)
    if pdf is None and chromium() is None:
        print("modelmeter export statements: chromium is not installed, so no PDF (the HTML pages print on A4)",
              file=sys.stderr)
    return 0

"""``modelmeter report [--from D --to D] [--format table|csv|json]``: per team × model, from the curated tables."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from common.errors import UserError
from common.lake import Lake
from transforms.report import COLUMNS, MONEY, format_table, money_text, report_rows, text_cell


def run(args: Any) -> int:
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise UserError(f"--to {args.date_to} is before --from {args.date_from}")
    lake = Lake.open(args.lake)
    rows = report_rows(lake=lake, date_from=args.date_from, date_to=args.date_to)
    if not rows:
        span = f"{args.date_from or 'the beginning'} to {args.date_to or 'the end'}"
        raise UserError(f"no curated data from {span} in {lake.uri}: run `modelmeter transform` for those days first")
    if args.format == "json":
        print(json.dumps([{c: (money_text(r[c]) if c in MONEY else r[c]) for c in COLUMNS} for r in rows], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([text_cell(r, c) for c in COLUMNS] for r in rows)
    else:
        print(format_table(rows))
    return 0

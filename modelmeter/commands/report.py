"""``modelmeter report [--from D --to D] [--format table|csv|json]``: per team × model, from the curated tables."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from typing import Any

from common.errors import UserError
from common.lake import Lake
from transforms.report import COLUMNS, MONEY, fit_columns, format_table, money_text, report_rows, text_cell


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
    elif args.wide:
        print(format_table(rows))
    else:
        width = shutil.get_terminal_size().columns
        columns, id_widths = fit_columns(rows, width=width)
        print(format_table(rows, columns=columns, id_widths=id_widths))
        hidden = len(COLUMNS) - len(columns)
        if hidden or id_widths:
            print(f"({hidden} more column{'s' if hidden != 1 else ''}{' and ids shortened' if id_widths else ''} to "
                  f"fit {width} columns: --wide shows everything; --format csv or json for scripts)",
                  file=sys.stderr)
    return 0

"""``modelmeter report [--from D --to D] [--tz ZONE] [--format table|csv|json]``: per team × model, from the curated
tables, by days of the reporting calendar."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from typing import Any

from common.errors import UserError
from common.lake import Lake
from modelmeter.commands.late import untransformed_in, warn_untransformed
from sql.config import ReportingConfig, timezone_problem
from transforms.late import utc_span
from transforms.report import COLUMNS, MONEY, UNPRICED, fit_columns, format_table, money_text, report_rows, text_cell

#: Exit status of a usage error (as argparse's).
USAGE_ERROR = 2


def reporting_config(args: Any) -> ReportingConfig | None:
    """The reporting calendar of a command: the environment's, its zone replaced by ``--tz`` when given. None
    (after one line on stderr naming the flag) when ``--tz`` is not a time zone: the command exits 2.

    Raises:
        UserError: the environment's reporting configuration is invalid (the message names the variable).
    """
    zone = getattr(args, "tz", None)
    if zone is not None and (problem := timezone_problem(zone)):
        print(f"modelmeter {args.command_key}: argument --tz: {problem}", file=sys.stderr)
        return None
    try:
        return ReportingConfig.from_env(timezone=zone)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _json_money(value: Any) -> str | None:
    return None if value is None else money_text(value)


def run(args: Any) -> int:
    config = reporting_config(args)
    if config is None:
        return USAGE_ERROR
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise UserError(f"--to {args.date_to} is before --from {args.date_from}")
    lake = Lake.open(args.lake)
    rows = report_rows(lake=lake, date_from=args.date_from, date_to=args.date_to, config=config)
    # the UTC days holding the range's instants whose raw events the curated tables do not hold yet (late data)
    stale = untransformed_in(lake, *utc_span(config, args.date_from, args.date_to))
    if not rows:
        span = f"{args.date_from or 'the beginning'} to {args.date_to or 'the end'}"
        waiting = f" ({len(stale)} UTC days have raw events waiting)" if stale else ""
        raise UserError(f"no curated data from {span} (days in {config.timezone}) in {lake.uri}{waiting}: run "
                        "`modelmeter transform` for those days first")
    # which calendar the figures use, on stderr so that CSV and JSON on stdout stay data only
    print(config.describe(), file=sys.stderr)
    warn_untransformed("report", stale)
    late = [s.day.isoformat() for s in stale]
    if gap := sum(r["unpriced_invocations"] for r in rows):
        marked = {"json": "null", "csv": "an empty cell"}.get(args.format, f"`{UNPRICED}`")
        print(f"{gap} invocation{'s' if gap != 1 else ''} used something without a price: amounts are the priced "
              f"part (a lower bound where unpriced_invocations > 0); {marked} marks an amount nothing of which was "
              "priced", file=sys.stderr)
    if args.format == "json":
        # an unpriced amount is null, never 0: scripts parsing the decimal strings keep working
        # the list of rows stays a list (scripts index it); each row says which days of the range are short
        print(json.dumps([{**{c: (_json_money(r[c]) if c in MONEY else r[c]) for c in COLUMNS},
                           "untransformed_days": late} for r in rows], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([text_cell(r, c, unpriced="") for c in COLUMNS] for r in rows)
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

"""``modelmeter sql render --dialect athena|duckdb``: the views of ``sql/`` for one engine."""

from __future__ import annotations

from typing import Any

from common.errors import UserError
from sql.config import ReportingConfig
from sql.render import render_views


def run(args: Any) -> int:
    """Print every view, each ending with ``;``."""
    try:
        config = ReportingConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rendered = render_views(dialect=args.dialect, config=config)
    print(f"-- {len(rendered)} views for {args.dialect}, reporting time zone {config.timezone}, "
          f"fiscal months start on day {config.fiscal_month_start_day}\n")
    for name, sql in rendered.items():
        print(f"-- {name}\n{sql};\n")
    return 0

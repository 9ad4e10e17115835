"""The ``modelmeter`` command line (DESIGN.md "Command line").

Only argument parsing lives here; each command is a function ``run(args) -> int`` in ``modelmeter.commands``,
imported lazily (the one sanctioned lazy import of the roof) so that ``modelmeter report`` never pays for importing the
gateway or Great Expectations.
Exit status: 0 success, 1 failure, 2 usage error; errors go to stderr, one clear line first.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from common.constants import ENV_LAKE
from common.contracts import ALERT_AT_RANGE, BUDGET_MODES, alert_at_problem, team_id_problem
from common.errors import UserError


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: write YYYY-MM-DD") from None


def _team(value: str) -> str:
    problem = team_id_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def _usd(value: str) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{value!r} is not an amount of USD (write e.g. 2500 or 2500.50)") from None
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a non-negative amount of USD")
    # the lake stores budgets as DECIMAL(38,12): a value it cannot hold exactly is refused here, not later
    exponent = amount.normalize().as_tuple().exponent
    if amount.adjusted() >= 16 or (isinstance(exponent, int) and exponent < -12):
        raise argparse.ArgumentTypeError(f"{value!r} must be below 10^16 USD with at most 12 decimal places")
    return value  # the handler keeps the exact text as a Decimal


def _percentages(value: str) -> tuple[int, ...]:
    """``50,80,100`` → ``(50, 80, 100)``: whole percentages of the budget, each from 1 to 1000, ascending."""
    try:
        thresholds = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of whole percentages like 50,80,100") from None
    problem = alert_at_problem(thresholds) if thresholds else "no threshold given"
    if problem:
        low, high = ALERT_AT_RANGE
        raise argparse.ArgumentTypeError(f"{value!r}: {problem} (write e.g. 50,80,100; each {low}-{high})")
    return thresholds


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a {kind.__name__} number") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"{value!r} must be positive")
        return number
    return parse


_DURATION = re.compile(r"(\d{1,6})([dhm])")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _duration(value: str) -> timedelta:
    """``90d``, ``12h``, ``30m``: a whole number of days, hours or minutes."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration: write e.g. 90d, 12h or 30m")
    return timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})


def _expires_in(value: str) -> timedelta | datetime:
    """``--expires-in``: a positive duration (``90d``, ``12h``, ``30m``) or a future date or time (``YYYY-MM-DD``:
    its start, UTC; ``YYYY-MM-DDTHH:MM[+HH:MM]``: UTC unless an offset is given)."""
    if _DURATION.fullmatch(value.strip()):
        duration = _duration(value)
        if duration <= timedelta(0):
            raise argparse.ArgumentTypeError(f"{value!r} must be longer than zero")
        return duration
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a duration (90d, 12h, 30m) nor a date "
                                         f"(YYYY-MM-DD, or YYYY-MM-DDTHH:MM in UTC)") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= datetime.now(UTC):
        raise argparse.ArgumentTypeError(f"{value!r} is not in the future")
    return moment


_TENANTS_HELP = ("tenant registry: a file (default: tenants.json beside a local lake) or dynamodb://TABLE (the "
                 "deployed tenant table; region from AWS_DEFAULT_REGION)")
_CAPACITY_HELP = ("provisioned throughput and SageMaker endpoints (YAML; default: capacity.yaml beside the tenant "
                  "registry, if there): prices time-based lines and values capacity the bill has no line for")


def _add_lake(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=None,
                   help=f"lake folder or s3://bucket/prefix (default: ${ENV_LAKE}, else ./lake)")


def _add_key_options(p: argparse.ArgumentParser, *, rotate: bool = False) -> None:
    p.add_argument("--expires-in", type=_expires_in, default=None, metavar="DURATION|DATE",
                   help="the key stops working after 90d, 12h, 30m, or at a date (YYYY-MM-DD, UTC) "
                        + ("(default: the old key's lifetime, if it had one)" if rotate else "(default: never)"))
    p.add_argument("--api-gateway-unit", default=None, metavar="UNIT",
                   help="with a dynamodb:// registry: also make the key an API Gateway key (same secret) in the "
                        "team's usage plan UNIT-TEAM of that deployed unit"
                        + (" (default: the old key's plan, if it has an API Gateway key)" if rotate else ""))
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)


def _add_range(p: argparse.ArgumentParser, *, required: bool = True, calendar: str = "UTC") -> None:
    p.add_argument("--from", dest="date_from", type=_date, required=required, metavar="YYYY-MM-DD",
                   help=f"first day ({calendar}), inclusive")
    p.add_argument("--to", dest="date_to", type=_date, required=required, metavar="YYYY-MM-DD",
                   help=f"last day ({calendar}), inclusive")


def _period(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a billing period: write YYYY-MM (a UTC calendar month)")
    return value


def _add_bill_inputs(p: argparse.ArgumentParser, *, tax_help: str = "count Tax lines in scope") -> None:
    """What a reconciliation reads besides the lake: the CUR snapshot, whether tax is in scope, the capacity."""
    p.add_argument("--snapshot", default=None, help="CUR snapshot id (default: the newest imported)")
    p.add_argument("--include-tax", action="store_true", help=tax_help)
    p.add_argument("--capacity", default=None, metavar="FILE", help=_CAPACITY_HELP)


def _add_period(p: argparse.ArgumentParser) -> None:
    p.add_argument("--period", type=_period, required=True, metavar="YYYY-MM",
                   help="billing period: the CUR's UTC calendar month (the invoice)")


# command name → "module:function"; the function takes the parsed args and returns an exit status.
_HANDLERS = {
    "demo": "modelmeter.demo:run",
    "serve": "modelmeter.commands.serve:run",
    "ingest": "modelmeter.commands.ingest_files:run",
    "pricing import": "modelmeter.commands.pricing:run_import",
    "pricing list": "modelmeter.commands.pricing:run_list",
    "pricing import-seed": "modelmeter.commands.pricing:run_import_seed",
    "pricing update": "modelmeter.commands.pricing:run_update",
    "transform": "modelmeter.commands.transform:run",
    "report": "modelmeter.commands.report:run",
    "tenants add": "modelmeter.commands.tenants:run_add",
    "tenants list": "modelmeter.commands.tenants:run_list",
    "keys create": "modelmeter.commands.keys:run_create",
    "keys list": "modelmeter.commands.keys:run_list",
    "keys revoke": "modelmeter.commands.keys:run_revoke",
    "keys rotate": "modelmeter.commands.keys:run_rotate",
    "budget show": "modelmeter.commands.budget:run_show",
    "sql render": "modelmeter.commands.sql_render:run",
    "export focus": "modelmeter.commands.export_focus:run",
    "export statements": "modelmeter.commands.statements:run",
    "dashboard": "modelmeter.commands.dashboard:run",
    "billing import": "modelmeter.commands.billing:run_import",
    "billing usage-types": "modelmeter.commands.billing:run_usage_types",
    "reconcile": "modelmeter.commands.billing:run_reconcile",
    "chargeback": "modelmeter.commands.billing:run_chargeback",
    "close": "modelmeter.commands.close:run_close",
    "restate": "modelmeter.commands.close:run_restate",
    "export journal": "modelmeter.commands.close:run_journal",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelmeter", description="Foundation-model gateway and per-team, per-model chargeback.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the whole local path on simulated tenants; print the chargeback table")
    _add_lake(p)
    p.add_argument("--days", type=int, default=7, help="days of traffic (default 7)")
    p.add_argument("--requests", type=int, default=3000, help="requests sent through the gateway (default 3000)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulated tenants")
    p.add_argument("--dashboard", default="report.html", help="where to write the HTML dashboard")
    p.set_defaults(command_key="demo")

    p = sub.add_parser("serve", help="run the gateway locally")
    _add_lake(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--upstream", default="bedrock",
                   help="bedrock | simulator | URL of an OpenAI-compatible upstream (vLLM, Ollama, …)")
    p.add_argument("--tenants", default=None, help="tenant registry file (default: <lake>/../tenants.json)")
    p.set_defaults(command_key="serve")

    p = sub.add_parser("ingest", help="land raw events (JSON Lines) in the lake as Firehose would")
    _add_lake(p)
    p.add_argument("files", nargs="+", metavar="FILE.jsonl")
    p.set_defaults(command_key="ingest")

    pricing = sub.add_parser("pricing", help="the pricing catalog").add_subparsers(dest="pricing_command",
                                                                                   required=True, metavar="ACTION")
    p = pricing.add_parser("import", help="publish a new catalog version from a price sheet (CSV); print its id")
    _add_lake(p)
    p.add_argument("sheet", metavar="SHEET.csv")
    p.add_argument("--note", default=None, help="a note stored with the version (who, why)")
    p.set_defaults(command_key="pricing import")
    p = pricing.add_parser("list", help="list catalog versions")
    _add_lake(p)
    p.set_defaults(command_key="pricing list")
    p = pricing.add_parser("import-seed", help="publish a new catalog version from the seed guidance's price file "
                                               "(models.json); print its id, and on stderr its prices that differ")
    _add_lake(p)
    p.add_argument("seed", metavar="models.json")
    p.add_argument("--effective-from", type=_date, required=True, metavar="YYYY-MM-DD",
                   help="the day (UTC) from which the file's prices apply")
    p.add_argument("--note", default=None, help="a note stored with the version (who, why)")
    p.set_defaults(command_key="pricing import-seed")
    p = pricing.add_parser("update", help="publish the shipped catalog with the lake's price sheets laid over it "
                                          "again; print its id (nothing when nothing changed)")
    _add_lake(p)
    p.add_argument("--note", default=None, help="a note stored with the version (who, why)")
    p.set_defaults(command_key="pricing update")

    p = sub.add_parser("transform", help="validate, dedupe, price and write the curated tables for a range of days "
                                         "(no dates: every day whose raw files changed since its last run)")
    _add_lake(p)
    _add_range(p, required=False)
    p.add_argument("--changed", action="store_true",
                   help="transform the days whose raw files changed since their last run (late data), within "
                        "--from/--to when given; the default when no dates are given")
    p.add_argument("--price-version", default=None, help="catalog version (default: the latest)")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default: in this process) or spark (Apache Spark in local mode, as the Glue job "
                        "runs it; needs the spark extra and Java 17)")
    p.add_argument("--lock-timeout", type=_positive(float), default=None, metavar="SECONDS",
                   help="how long to wait for a day another transform is working on before failing "
                        "(default: 10 minutes)")
    p.set_defaults(command_key="transform")

    p = sub.add_parser("report", help="per team × model cost for a range of days")
    _add_lake(p)
    p.add_argument("--wide", action="store_true",
                   help="the table with every column, whatever the terminal's width (default: what fits)")
    p.add_argument("--from", dest="date_from", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="first day of the reporting calendar (MODELMETER_REPORTING_TZ or --tz), inclusive")
    p.add_argument("--to", dest="date_to", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="last day of the reporting calendar, inclusive")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="count days in this IANA time zone for this report (default: $MODELMETER_REPORTING_TZ, "
                        "else UTC)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(command_key="report")

    tenants = sub.add_parser("tenants", help="the team registry").add_subparsers(dest="tenants_command",
                                                                               required=True, metavar="ACTION")
    p = tenants.add_parser("add", help="register a team, or update the settings given for an existing one")
    _add_lake(p)
    p.add_argument("team", type=_team)
    p.add_argument("--cost-center", default=None)
    p.add_argument("--from", dest="effective_from", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="the UTC day the --cost-center takes effect; earlier days and billing periods keep the cost "
                        "centre in force then (default: since always for a new team, today for a move)")
    p.add_argument("--allow", action="extend", nargs="+", default=None, metavar="MODEL_PATTERN",
                   help="allowed model patterns (globs), as in --allow 'anthropic.*' 'amazon.nova-*' or repeated; "
                        "default for a new team: every model")
    p.add_argument("--monthly-budget", type=_usd, default=None,
                   help="monthly budget in USD, per fiscal month of the reporting calendar")
    p.add_argument("--budget-mode", choices=BUDGET_MODES, default=None,
                   help="alert: alert at the thresholds only (default for a new team); block: also refuse calls "
                        "(429) once the fiscal month's spend has reached the budget")
    p.add_argument("--alert-at", type=_percentages, default=None, metavar="PCT,PCT,…",
                   help="alert thresholds in percent of the budget, each 1-1000 (default for a new team: 50,80,100)")
    p.add_argument("--rps", type=_positive(float), default=None, help="requests-per-second limit")
    p.add_argument("--daily-tokens", type=_positive(int), default=None, help="daily token limit")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="tenants add")
    p = tenants.add_parser("list", help="list teams")
    _add_lake(p)
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="tenants list")

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True,
                                                                  metavar="ACTION")
    p = keys.add_parser("create", help="create an API key for a team; prints the secret once")
    _add_lake(p)
    p.add_argument("team")
    _add_key_options(p)
    p.set_defaults(command_key="keys create")
    p = keys.add_parser("list", help="keys (id, team, created, last used, expires, status); never a secret")
    _add_lake(p)
    p.add_argument("team", nargs="?", default=None, help="one team's keys (default: every key)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="keys list")
    p = keys.add_parser("revoke", help="revoke a key (and disable its API Gateway key): refused from then on")
    _add_lake(p)
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="keys revoke")
    p = keys.add_parser("rotate", help="a new key for the key's team (its secret printed once); the old key keeps "
                                       "working for the grace, then is refused")
    _add_lake(p)
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--grace", type=_duration, default=timedelta(hours=24), metavar="DURATION",
                   help="how long the old key keeps working: 90d, 12h, 30m, 0m (default: 24h)")
    _add_key_options(p, rotate=True)
    p.set_defaults(command_key="keys rotate")

    budget = sub.add_parser("budget", help="team budgets and the gateway's spend counters").add_subparsers(
        dest="budget_command", required=True, metavar="ACTION")
    p = budget.add_parser("show", help="a team's (or every team's) fiscal month: spend, budget, remaining, mode, "
                                       "thresholds crossed, daily tokens, from the gateway's spend store")
    _add_lake(p)
    p.add_argument("team", nargs="?", type=_team, default=None, help="one team (default: every team)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.add_argument("--spend", default=None, metavar="STORE",
                   help="the spend counters: dynamodb://TABLE (a deployed unit's, its SpendTableName output) or a "
                        "SQLite file (default: $MODELMETER_SPEND_TABLE, else the file beside the tenant file)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(command_key="budget show")

    sqlp = sub.add_parser("sql", help="the SQL views").add_subparsers(dest="sql_command", required=True,
                                                                      metavar="ACTION")
    p = sqlp.add_parser("render", help="print every view for an engine")
    _add_lake(p)  # accepted like everywhere; the views themselves do not depend on the lake
    p.add_argument("--dialect", choices=("athena", "duckdb"), default="duckdb")
    p.set_defaults(command_key="sql render")

    export = sub.add_parser("export", help="exports").add_subparsers(dest="export_command", required=True,
                                                                     metavar="FORMAT")
    p = export.add_parser("focus", help="FOCUS 1.2 cost and usage export (Parquet)")
    _add_lake(p)
    p.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD",
                   help="first day of the reporting calendar (MODELMETER_REPORTING_TZ or --tz), inclusive")
    p.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD",
                   help="last day of the reporting calendar, inclusive")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="count days in this IANA time zone for this export (default: $MODELMETER_REPORTING_TZ, "
                        "else UTC); billing periods stay UTC calendar months")
    p.add_argument("--out", required=True, metavar="FILE.parquet")
    p.set_defaults(command_key="export focus")
    p = export.add_parser("statements", help="one printable chargeback statement per cost centre of a billing "
                                             "period (HTML; PDF when chromium is installed) and an index.html")
    _add_lake(p)
    _add_period(p)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML pages only")
    p.set_defaults(command_key="export statements")
    p = export.add_parser("journal", help="a balanced journal of a billing period's chargeback of record (CSV)")
    _add_lake(p)
    _add_period(p)
    p.add_argument("--out", required=True, metavar="FILE.csv")
    p.add_argument("--ledger", default=None, metavar="FILE",
                   help="GL accounts and the central account (YAML; default: ledger.yaml beside the tenant "
                        "registry)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="export journal")

    billing = sub.add_parser("billing", help="the AWS bill (CUR 2.0)").add_subparsers(
        dest="billing_command", required=True, metavar="ACTION")
    p = billing.add_parser("import", help="import a CUR 2.0 export (Parquet, CSV or CSV.gz; files, folders or "
                                          "s3:// prefixes) as a new snapshot per billing period")
    _add_lake(p)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(command_key="billing import")
    p = billing.add_parser("usage-types", help="print the map from a bill line's usage type to model and dimension")
    _add_lake(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(command_key="billing usage-types")

    p = sub.add_parser("reconcile", help="reconcile a billing period's bill with the metered usage")
    _add_lake(p)
    _add_period(p)
    _add_bill_inputs(p, tax_help="count Tax lines in scope (as non_usage)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(command_key="reconcile")

    p = sub.add_parser("chargeback", help="the chargeback of record of a billing period (a new version each run)")
    _add_lake(p)
    _add_period(p)
    p.add_argument("--rules", default=None, metavar="FILE",
                   help="allocation rules (YAML; default: allocation.yaml beside the tenant registry, if there)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    _add_bill_inputs(p)
    p.add_argument("--versions", action="store_true", help="list the stored versions and their inputs instead")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(command_key="chargeback")

    p = sub.add_parser("close", help="close a billing period: freeze its chargeback of record (or --reopen it)")
    _add_lake(p)
    _add_period(p)
    p.add_argument("--reopen", action="store_true", help="reopen a closed period (needs --reason; recorded)")
    p.add_argument("--reason", default=None, help="why the period is reopened (or a note on the close)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    p.set_defaults(command_key="close")

    p = sub.add_parser("restate", help="what a closed period would be now; posts the deltas into the next open "
                                       "period as labelled adjustment lines")
    _add_lake(p)
    _add_period(p)
    p.add_argument("--price-version", default=None, help="re-price the period's usage at this catalog version")
    p.add_argument("--rules", default=None, metavar="FILE", help="allocation rules (default as for chargeback)")
    p.add_argument("--tenants", default=None, help=_TENANTS_HELP)
    _add_bill_inputs(p)
    p.add_argument("--dry-run", action="store_true", help="print the deltas without posting them")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(command_key="restate")

    p = sub.add_parser("dashboard", help="render the chargeback dashboard as one self-contained HTML page")
    _add_lake(p)
    _add_range(p, required=False, calendar="reporting calendar: MODELMETER_REPORTING_TZ")
    p.add_argument("--out", default="report.html")
    p.set_defaults(command_key="dashboard")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    module_name, func_name = _HANDLERS[args.command_key].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"modelmeter {args.command_key}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"modelmeter {args.command_key}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (`| head`) went away: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # an unreachable lake, a full disk, a permission: one line, no traceback
        if os.environ.get("MODELMETER_DEBUG"):
            raise
        print(f"modelmeter {args.command_key}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

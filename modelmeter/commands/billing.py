"""``modelmeter billing import|usage-types``, ``modelmeter reconcile`` and ``modelmeter chargeback``: the
month-end close from the command line (docs/finance.md)."""

from __future__ import annotations

import csv
import json
import os
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.contracts import RECONCILIATION_CATEGORIES, Team
from common.errors import UserError
from common.lake import Lake
from common.progress import Progress
from finance.allocation import Rules, load_rules
from finance.capacity import CAPACITY_FILE, Capacity, load_capacity
from finance.chargeback import VersionInfo, compute, next_version, store, versions
from finance.close import Record, period_lock, record, status
from finance.cur import import_export
from finance.reconcile import Reconciliation, Scope, reconcile, scope_from_environment
from finance.reconcile import store as store_reconciliation
from finance.usage_types import load_usage_types
from ingest.registry import dynamodb_table, open_registry
from ingest.tenants import registry_path
from modelmeter.commands.late import moved_since_record, period_untransformed, warn_closed_period, warn_untransformed
from pricing_catalog import load_catalog
from transforms.report import money_text

RULES_FILE = "allocation.yaml"
CHARGEBACK_COLUMNS = ("cost_center", "team_id", "metered_list_cost", "price_adjustment", "allocated_shared_cost",
                      "chargeback_cost", "rules", "line_type", "corrects_period")
_MONEY = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost", "billed_cost",
          "metered_list_cost", "billed_quantity", "metered_quantity", "closed_cost", "adjusted_before",
          "restated_cost", "delta", "list_value", "list_unit_price", "list_quantity")


def run_import(args: Any) -> int:
    lake = Lake.open(args.lake)
    with Progress("billing import") as progress:  # files read, then billing periods written
        snapshots = import_export(lake=lake, paths=list(args.paths), progress=progress.update)
    for s in snapshots:
        state = "final" if s.final else "not final (AWS restates it until the invoice is issued)"
        print(f"billing period {s.billing_period}: snapshot {s.snapshot_id}, {s.rows} lines, "
              f"{money_text(Decimal(s.line_cost_total))} {s.currency}, {state}")
    return 0


def run_usage_types(args: Any) -> int:
    rows = load_usage_types().rows()
    print_rows(rows, tuple(rows[0]), args.format)
    return 0


def _scope(args: Any) -> Scope:
    return scope_from_environment(os.environ, include_tax=args.include_tax)


def open_capacity(args: Any) -> Capacity:
    """The checked capacity file: ``--capacity FILE``, else ``capacity.yaml`` beside the tenant registry if there."""
    given = getattr(args, "capacity", None)
    path = Path(given) if given else registry_folder(args) / CAPACITY_FILE
    return load_capacity(path if given or path.is_file() else None)


def reconcile_now(args: Any, lake: Lake, *, store: bool = True) -> Reconciliation:
    """The period's reconciliation now; stored unless ``store`` is false (a restatement of a closed period leaves
    the stored reconciliation alone)."""
    rec = reconcile(lake=lake, period=args.period, catalog=load_catalog(lake=lake), scope=_scope(args),
                    snapshot_id=args.snapshot, capacity=open_capacity(args))
    if store:
        store_reconciliation(lake=lake, reconciliation=rec)
    return rec


def run_reconcile(args: Any) -> int:
    """Prints the summary (billed, metered, variance by category) on stderr and the rows on stdout; exit 0 whatever
    the variance (it is information)."""
    lake = Lake.open(args.lake)
    rec = reconcile_now(args, lake)
    _summary(rec)
    columns = ("category", "usage_date", "region", "model_id", "dimension", "service_tier", "line_item_type",
               "billed_quantity", "metered_quantity", "billed_cost", "metered_list_cost", "list_basis", "capacity",
               "price_key", "commitment", "list_quantity", "list_unit_price", "list_value")
    print_rows(rec.rows, columns, args.format)
    return 0


def _summary(rec: Reconciliation) -> None:
    s = rec.snapshot
    print(f"billing period {rec.billing_period} ({rec.currency}), CUR snapshot {s.snapshot_id}"
          f"{'' if s.final else ' (not final)'}", file=sys.stderr)
    print(f"  billed (in scope) {money_text(rec.billed_total)}   metered at list {money_text(rec.metered_total)}",
          file=sys.stderr)
    categories = rec.by_category()
    for name in RECONCILIATION_CATEGORIES:
        c = categories.get(name)
        if c:
            billed, metered = money_text(c["billed_cost"]), money_text(c["metered_list_cost"])
            print(f"  {name:<20} billed {billed:>16}   metered {metered}", file=sys.stderr)
    timed = rec.time_based()
    if any(timed.values()):
        unpriced = timed["unpriced_billed_cost"]
        print(f"  time_based at list: billed {money_text(timed['billed_cost'])}, list "
              f"{money_text(timed['list_value'])}{f' (billed {money_text(unpriced)} unpriced)' if unpriced else ''}"
              f"; configured capacity without a bill line: list {money_text(timed['configured_list_value'])} "
              f"(not billed)", file=sys.stderr)


def _organisation(args: Any) -> list[Team]:
    """The dated organisation: the local registry file (none yet: no teams) or the DynamoDB tenant table."""
    if dynamodb_table(getattr(args, "tenants", None)) is None and not registry_path(
            tenants=getattr(args, "tenants", None), lake=args.lake).is_file():
        return []
    return open_registry(tenants=getattr(args, "tenants", None), lake=args.lake).list_teams()


def registry_folder(args: Any) -> Path:
    """Where the finance configuration files (``allocation.yaml``, ``ledger.yaml``) are by default: beside the
    local registry file; with the DynamoDB registry, the current folder."""
    if dynamodb_table(getattr(args, "tenants", None)) is not None:
        return Path.cwd()
    return registry_path(tenants=getattr(args, "tenants", None), lake=args.lake).parent


def open_inputs(args: Any) -> tuple[list[Team], Rules]:
    """The dated organisation and the checked allocation rules of a chargeback run."""
    teams = _organisation(args)
    rules_path: Path | None = Path(args.rules) if args.rules else registry_folder(args) / RULES_FILE
    if not args.rules and rules_path is not None and not rules_path.is_file():
        rules_path = None
    rules = load_rules(rules_path, teams={t.team_id for t in teams},
                       cost_centers={s.cost_center for t in teams for s in t.spans() if s.cost_center})
    return teams, rules


def run_chargeback(args: Any) -> int:
    """A new version of an open period's chargeback; a closed period's record as it was closed (nothing is
    computed). Adjustment lines posted into the period (restatements of earlier ones) are listed after its rows."""
    lake = Lake.open(args.lake)
    if args.versions:
        listed = versions(lake=lake, period=args.period)
        if not listed:
            raise UserError(f"no chargeback stored for {args.period} in {lake.uri}: run `modelmeter chargeback "
                            f"--period {args.period}` first")
        state = status(lake=lake, period=args.period)
        shown = [{**vars(v), "of_record": v.version == (state.version if state.closed else _latest_run(listed))}
                 for v in listed]
        print_rows(shown, tuple(shown[0]), args.format)
        return 0
    with period_lock(lake, args.period, what="chargeback"):
        state = status(lake=lake, period=args.period)
        if not state.closed:
            teams, rules = open_inputs(args)
            rec = reconcile_now(args, lake)
            chargeback = compute(rec=rec, rules=rules, teams=teams, version=next_version(lake=lake,
                                                                                         period=args.period))
            store(lake=lake, chargeback=chargeback)
    of_record = record(lake=lake, period=args.period)
    if of_record.status.closed:
        event = of_record.status.event or {}
        print(f"billing period {args.period} is closed (version {of_record.info.version}, "
              f"{event.get('at'):%Y-%m-%d} by {event.get('by')}): its chargeback of record as closed; "
              f"`modelmeter restate --period {args.period}` shows what would change", file=sys.stderr)
    _chargeback_summary(of_record)
    late = _late_usage(lake, args.period, of_record)
    rows = [{**r, "line_type": "charge", "corrects_period": None} for r in of_record.rows]
    rows += [{**a, "line_type": "adjustment", "rules": a["restatement"]} for a in of_record.adjustments]
    columns: tuple[str, ...] = CHARGEBACK_COLUMNS
    if args.format == "json":  # each row says which UTC days of the period have usage it does not hold
        rows, columns = [{**r, **late} for r in rows], columns + tuple(late)
    print_rows(rows, columns, args.format)
    return 0


def _late_usage(lake: Lake, period: str, of_record: Record) -> dict[str, list[str]]:
    """Warn (stderr) about the period's usage the chargeback shown does not hold; the JSON fields naming the days:
    ``untransformed_days`` (raw events not transformed yet) and ``transformed_after_record`` (of a closed period:
    days transformed again, from other files or prices, after its version of record was computed; only
    ``restate`` books them. Always empty for an open period, whose version shown was computed just now)."""
    stale = period_untransformed(lake, period)
    moved: list[date] = []
    if of_record.status.closed:
        moved = moved_since_record(lake, period, of_record.info)
        warn_closed_period(period, of_record.info.version, moved, stale)
    else:  # the version shown was computed just now: nothing was transformed after it
        warn_untransformed("chargeback", stale, what="the metered usage of this chargeback")
    return {"untransformed_days": [s.day.isoformat() for s in stale],
            "transformed_after_record": [d.isoformat() for d in moved]}


def _latest_run(listed: list[VersionInfo]) -> int | None:
    runs = [v.version for v in listed if v.purpose == "chargeback"]
    return runs[-1] if runs else None


def _chargeback_summary(of_record: Record) -> None:
    i = of_record.info
    print(f"chargeback {i.billing_period} version {i.version} ({of_record.status.label}): "
          f"{money_text(Decimal(i.chargeback_total))} {i.currency} = the in-scope bill to the cent (CUR snapshot "
          f"{i.cur_snapshot}{'' if i.cur_final else ', not final'}; rules {i.rules_source}; unallocated "
          f"{money_text(Decimal(i.unallocated))})", file=sys.stderr)
    if of_record.adjustments:
        corrected = sorted({a["corrects_period"] for a in of_record.adjustments})
        total = sum((a["chargeback_cost"] for a in of_record.adjustments), Decimal(0))
        print(f"  plus {len(of_record.adjustments)} adjustment lines restating {', '.join(corrected)}: "
              f"{money_text(total)} (not part of {i.billing_period}'s own invoice)", file=sys.stderr)


def _cell(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    if isinstance(value, Decimal):
        return money_text(value) if column in _MONEY else format(value, "f")
    return value


def print_rows(rows: list[dict[str, Any]], columns: tuple[str, ...], fmt: str) -> None:
    """JSON: a list of objects, money as decimal strings; CSV; or an aligned table."""
    if fmt == "json":
        print(json.dumps([{c: (format(r.get(c), "f") if isinstance(r.get(c), Decimal) else _json(r.get(c)))
                           for c in columns} for r in rows], indent=2))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if _cell(r, c) is None else _cell(r, c) for c in columns] for r in rows])
        return
    cells = [[str("" if _cell(r, c) is None else _cell(r, c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _json(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value

"""``modelmeter close``, ``modelmeter restate`` and ``modelmeter export journal``: booking a billing period
(docs/finance.md, "Close, restate, journal")."""

from __future__ import annotations

import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.constants import CURATED_USAGE_COST, RAW_EVENTS
from common.errors import UserError
from common.lake import Lake
from finance.chargeback import compute
from finance.close import Record, close, record, reopen, restate
from finance.cur import snapshot_in_force
from finance.journal import LEDGER_FILE, journal_lines, load_ledger, to_csv
from finance.reconcile import period_days
from modelmeter.commands.billing import open_capacity, open_inputs, print_rows, reconcile_now, registry_folder
from modelmeter.commands.late import period_untransformed, warn_untransformed
from pricing_catalog.store import list_versions
from sql.config import ReportingConfig
from transforms.report import money_text
from transforms.run import transform_range

RESTATE_COLUMNS = ("cost_center", "team_id", "closed_cost", "adjusted_before", "restated_cost", "delta")


def run_close(args: Any) -> int:
    lake = Lake.open(args.lake)
    if args.reopen:
        state = reopen(lake=lake, period=args.period, reason=args.reason)
        print(f"billing period {args.period} reopened (event {state.event['seq'] if state.event else '?'}: "
              f"{args.reason.strip()}); `modelmeter chargeback --period {args.period}` computes it again",
              file=sys.stderr)
        return 0
    done = close(lake=lake, period=args.period, reason=args.reason)
    info = done.info
    newest = snapshot_in_force(lake=lake, period=args.period).snapshot_id
    if newest != info.cur_snapshot:
        print(f"warning: the closed version was computed on CUR snapshot {info.cur_snapshot}, but {newest} is newer: "
              f"`modelmeter restate --period {args.period}` shows and posts what the newer bill changes",
              file=sys.stderr)
    print(f"billing period {args.period} closed at chargeback version {info.version}: "
          f"{money_text(Decimal(info.chargeback_total))} {info.currency} (CUR snapshot {info.cur_snapshot})",
          file=sys.stderr)
    if not info.cur_final:
        print(f"note: closed on a CUR snapshot that is not final (no invoice id yet); AWS may still restate "
              f"{args.period}: `modelmeter restate --period {args.period}` shows and posts what moves",
              file=sys.stderr)
    if done.adjustments:
        print(f"  with {len(done.adjustments)} adjustment lines of earlier periods", file=sys.stderr)
    # closed anyway (finance decides when); once transformed, only `restate` books that usage
    warn_untransformed("close", period_untransformed(lake, args.period),
                       what="the chargeback of record just closed (only `modelmeter restate` books them later)")
    return 0


def run_restate(args: Any) -> int:
    lake = Lake.open(args.lake)
    current = record(lake=lake, period=args.period)
    if not current.status.closed:
        raise UserError(f"billing period {args.period} is open: re-run `modelmeter chargeback --period "
                        f"{args.period}`; restate is for closed periods")
    if current.info.include_tax and not args.include_tax:  # restated in the scope it was closed in
        args.include_tax = True
        print(f"{args.period} was closed with Tax lines in scope: restated with them too", file=sys.stderr)
    teams, rules = open_inputs(args)  # every input checked before anything is written
    open_capacity(args)
    if args.price_version:
        if args.dry_run:
            raise UserError(f"--dry-run cannot re-price {args.period} (that rewrites its curated usage): run "
                            f"`modelmeter transform` for the period with --price-version {args.price_version} "
                            f"first, then `restate --dry-run` without --price-version")
        _reprice(lake, args)
    rec = reconcile_now(args, lake, store=False)
    restated = compute(rec=rec, rules=rules, teams=teams, version=0, purpose="restatement",
                       restates_version=current.info.version)
    result = restate(lake=lake, period=args.period, restated=restated, post=not args.dry_run)
    total = {c: sum((r[c] for r in result.rows), Decimal(0)) for c in ("closed_cost", "adjusted_before",
                                                                          "restated_cost", "delta")}
    print(f"restatement {result.restatement_id} of {args.period} (closed version {result.closed_version}; "
          f"restated with price versions {', '.join(rec.price_versions) or '-'}, CUR snapshot "
          f"{rec.snapshot.snapshot_id}): closed {money_text(total['closed_cost'])}, restated "
          f"{money_text(total['restated_cost'])}, "
          f"delta {money_text(total['delta'])} {restated.info.currency}", file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing stored or posted", file=sys.stderr)
    elif result.posted_to:
        print(f"posted as adjustment lines into {result.posted_to} (labelled {args.period}); {args.period} itself "
              f"stays closed at version {result.closed_version}; restated figures stored as version "
              f"{restated.info.version}", file=sys.stderr)
    else:
        print(f"nothing moved: no adjustment lines posted (restated figures stored as version "
              f"{restated.info.version})", file=sys.stderr)
    print_rows(result.rows, RESTATE_COLUMNS, args.format)
    return 0


def _reprice(lake: Lake, args: Any) -> None:
    """Re-run the transform of the period's days at ``--price-version`` (the curated usage moves; the closed
    record does not)."""
    first, last = period_days(args.period)
    if args.price_version not in {v.version for v in list_versions(lake=lake)}:
        raise UserError(f"no catalog version {args.price_version!r} in {lake.uri}: see `modelmeter pricing list`")
    day, lost = first, []
    while day <= last:  # a day whose raw events are gone (retention) would be re-written empty: refuse
        partition = f"dt={day.isoformat()}"
        if lake.list_files(CURATED_USAGE_COST, partition) and not lake.list_files(RAW_EVENTS, partition):
            lost.append(day.isoformat())
        day += timedelta(days=1)
    if lost:
        raise UserError(f"cannot re-price {args.period} at {args.price_version}: {len(lost)} days have curated usage "
                        f"but no raw events any more ({', '.join(lost[:5])}{' …' if len(lost) > 5 else ''}); "
                        f"re-pricing them would empty them")
    manifests = transform_range(lake=lake, date_from=first, date_to=last, price_version=args.price_version)
    written = sum(m.counts["written"] for m in manifests)
    print(f"re-priced {args.period} at price version {args.price_version}: {written} events on "
          f"{sum(1 for m in manifests if m.counts['read'])} days", file=sys.stderr)


def run_journal(args: Any) -> int:
    lake = Lake.open(args.lake)
    of_record: Record = record(lake=lake, period=args.period)
    ledger_path = Path(args.ledger) if args.ledger else _beside_registry(args, LEDGER_FILE)
    try:
        config = ReportingConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    lines = journal_lines(of_record, load_ledger(ledger_path),
                          fiscal_month=config.booked_fiscal_month(args.period).isoformat())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(lines), encoding="utf-8")
    info = of_record.info
    debits = sum((line["debit"] for line in lines), Decimal(0))
    print(f"wrote {len(lines)} journal lines to {out}: {args.period} chargeback version {info.version} "
          f"({of_record.status.label}): debits = credits = {money_text(debits)} {info.currency}, the in-scope "
          f"invoice {money_text(Decimal(info.chargeback_total))} (plus adjustment lines, if any, balanced apart)",
          file=sys.stderr)
    if not of_record.status.closed:
        print(f"note: {args.period} is open, so this journal is a preview: close the period before booking it",
              file=sys.stderr)
    return 0


def _beside_registry(args: Any, name: str) -> Path:
    return registry_folder(args) / name

"""``modelmeter transform --from D --to D [--price-version V]``: validate, price and write the curated tables."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.constants import RUN_MANIFESTS
from common.errors import UserError
from common.lake import Lake
from finance.close import status
from modelmeter.commands.budget import correct_after_transform
from pricing_catalog.model import CatalogError
from pricing_catalog.publish import stale_version
from transforms.run import DEFAULT_LOCK_TIMEOUT, Manifest, days_between, transform_range


def run(args: Any) -> int:
    lake = Lake.open(args.lake)
    days = days_between(args.date_from, args.date_to)
    args.lock_timeout = getattr(args, "lock_timeout", None) or DEFAULT_LOCK_TIMEOUT
    try:
        if len(days) > 1 and sys.stdout.isatty():
            manifests = _with_progress_bar(lake, args, len(days))
        else:
            manifests = transform_range(lake=lake, date_from=args.date_from, date_to=args.date_to,
                                        price_version=args.price_version, lock_timeout=args.lock_timeout)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    for m in manifests:
        print(_summary(m))
        if m.unpriced_models:
            listed = ", ".join(f"{u['model_id']} ({u['events']})" for u in m.unpriced_models[:10])
            print(f"  unpriced models (kept, priced=false): {listed}")
    if manifests:
        print(f"price version {manifests[0].price_version}; manifests under {lake.url(RUN_MANIFESTS)}")
    _closed_periods_note(lake, days)
    for line in correct_after_transform(lake=lake, days=days):  # the gateway's budget counters (ingest/budget.py)
        print(line, file=sys.stderr)
    _stale_catalog_note(lake)
    return 0


def _stale_catalog_note(lake: Lake) -> None:
    """The lake's newest prices were built from other built-in data than this modelmeter ships: say how to update."""
    try:
        newest = stale_version(lake=lake)
    except CatalogError as exc:  # the days are written: a question about the catalog must not fail the run
        print(f"warning: cannot tell whether the lake's prices are the shipped ones: {exc}", file=sys.stderr)
        return
    if newest:
        print(f"warning: the lake's newest price version {newest} was built from older built-in prices than this "
              f"modelmeter ships; `modelmeter pricing update` publishes them with the lake's price sheets laid "
              f"over again", file=sys.stderr)


def _closed_periods_note(lake: Lake, days: list[date]) -> None:
    """The curated usage of a closed billing period may move; its chargeback of record does not: say so."""
    for period in sorted({f"{d:%Y-%m}" for d in days}):
        state = status(lake=lake, period=period)
        if state.closed:
            print(f"note: billing period {period} is closed (chargeback version {state.version}): its chargeback of "
                  f"record stays as closed; `modelmeter restate --period {period}` shows and posts what this "
                  f"changes", file=sys.stderr)


def _summary(m: Manifest) -> str:
    c = m.counts
    line = (f"{m.day}: read {c['read']} / valid {c['valid']} / quarantined {c['quarantined']} / duplicates "
            f"{c['duplicates']} / written {c['written']} / unpriced {c['unpriced']}")
    if c["unreadable_files"]:
        line += f" / unreadable files {c['unreadable_files']}"
    if c["duplicate_conflicts"]:
        line += f" / conflicting duplicates {c['duplicate_conflicts']}"
    return line


def _with_progress_bar(lake: Lake, args: Any, total: int) -> list[Manifest]:
    columns = (TextColumn("transform"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns) as bar:
        task = bar.add_task("", total=total)

        def advance(day: date, manifest: Manifest) -> None:
            bar.update(task, advance=1, description=f"{day} ({manifest.counts['written']} events)")

        return transform_range(lake=lake, date_from=args.date_from, date_to=args.date_to,
                               price_version=args.price_version, progress=advance, lock_timeout=args.lock_timeout)

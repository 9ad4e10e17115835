"""``modelmeter transform [--from D --to D] [--changed] [--price-version V]``: validate, price and write the curated
tables. Without dates (or with ``--changed``) it transforms every day whose raw files changed since its last run
(``modelmeter.commands.late.select_days``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

from common.constants import RUN_MANIFESTS
from common.errors import UserError
from common.lake import Lake
from common.progress import Progress
from finance.close import status
from modelmeter.commands.budget import correct_after_transform
from modelmeter.commands.late import describe_plan, note_other_stale, select_days
from pricing_catalog.model import CatalogError
from pricing_catalog.publish import stale_version
from transforms import spark_engine
from transforms.run import DEFAULT_LOCK_TIMEOUT, Manifest, transform_days
from transforms.spark_session import local_session


def run(args: Any) -> int:
    if not getattr(args, "changed", False) and bool(args.date_from) != bool(args.date_to):
        print("modelmeter transform: give both --from and --to (or --changed for the stale days from --from or up "
              "to --to)", file=sys.stderr)
        return 2  # a usage error, as argparse's
    lake = Lake.open(args.lake)
    selection = select_days(lake, args)
    for line in describe_plan(selection.late) if selection.late else ():
        print(line, file=sys.stderr)
    days = selection.days
    args.lock_timeout = getattr(args, "lock_timeout", None) or DEFAULT_LOCK_TIMEOUT
    run_days = _engine(args)
    manifests: list[Manifest] = []
    try:
        with Progress("transform", total=len(days), unit="days") as progress:
            for price_version, group in selection.groups:  # late days keep their last run's prices
                manifests += _with_progress(lake, args, group, price_version, run_days, progress, len(manifests))
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    for m in manifests:
        print(_summary(m))
        if m.unpriced_models:
            listed = ", ".join(f"{u['model_id']} ({u['events']})" for u in m.unpriced_models[:10])
            print(f"  unpriced models (kept, priced=false): {listed}")
    if manifests:
        used = ", ".join(sorted({m.price_version for m in manifests}))
        print(f"price version{'s' if ',' in used else ''} {used}; manifests under {lake.url(RUN_MANIFESTS)}")
    _closed_periods_note(lake, days)
    for line in correct_after_transform(lake=lake, days=days):  # the gateway's budget counters (ingest/budget.py)
        print(line, file=sys.stderr)
    _stale_catalog_note(lake)
    if selection.late is None:
        note_other_stale(lake, days)
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


def _engine(args: Any) -> Callable[..., list[Manifest]]:
    """``transform_days`` of the engine ``--engine`` names: DuckDB in this process, or Spark in local mode (one
    session for every day of the run; docs/transform.md, "Engines")."""
    if getattr(args, "engine", "duckdb") != "spark":
        return transform_days
    return partial(spark_engine.transform_days, local_session())


def _with_progress(lake: Lake, args: Any, days: list[date], price_version: str | None,
                   run_days: Callable[..., list[Manifest]], progress: Progress, done: int) -> list[Manifest]:
    """Run ``days``, telling ``progress`` (stderr: a bar on a terminal, plain lines otherwise) each day done and,
    on the DuckDB engine, each step as it starts."""
    finished = [done]

    def day_done(day: date, manifest: Manifest) -> None:
        finished[0] += 1
        progress.update(finished[0], note=f"{day} ({manifest.counts['written']:,} events)")

    def step(day: date, name: str) -> None:
        progress.update(finished[0], note=f"{day}: {name}")

    steps = {"step_progress": step} if run_days is transform_days else {}  # the Spark engine times no steps
    return run_days(lake=lake, days=days, price_version=price_version, progress=day_done,
                    lock_timeout=args.lock_timeout, **steps)

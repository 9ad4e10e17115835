"""Late data on the command line: which days ``modelmeter transform`` picks by itself, and the warnings of
``report`` and ``chargeback`` about days with untransformed raw events (docs/transform.md, "Late data").

Not a command of its own: the helpers the transform, report and chargeback commands share (as ``billing.py``'s
are shared by the close commands).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from common.errors import UserError
from common.lake import Lake
from finance.chargeback import VersionInfo
from finance.reconcile import period_days
from transforms.late import LatePlan, StaleDay, by_price_version, plan, rerun_since, stale_days
from transforms.run import days_between

#: How many stale days a warning names before "and N more".
_NAMED = 5


@dataclass(frozen=True)
class Selection:
    """The days one ``modelmeter transform`` run transforms, grouped by catalog version, and why."""

    groups: list[tuple[str | None, list[date]]]
    late: LatePlan | None = None  # None: the days were given (--from/--to without --changed)

    @property
    def days(self) -> list[date]:
        return sorted(d for _, days in self.groups for d in days)


def select_days(lake: Lake, args: Any, *, today: date | None = None) -> Selection:
    """``--from D --to D``: those days, as always. ``--changed`` (bounded by ``--from``/``--to`` when given) or no
    dates at all: every stale day up to today (UTC), each at its last run's catalog version (yesterday and today at
    the latest, as the schedule) unless ``--price-version`` says otherwise; days whose re-run would drop events are
    set aside (named on stderr).

    Raises:
        UserError: only one of ``--from``/``--to`` without ``--changed``, or ``--to`` before ``--from``.
    """
    first, last = getattr(args, "date_from", None), getattr(args, "date_to", None)
    if not getattr(args, "changed", False) and (first or last):
        if not (first and last):
            raise UserError("give both --from and --to (or --changed to transform the stale days between them)")
        if last < first:
            raise UserError(f"--to {last} is before --from {first}")
        return Selection(groups=[(args.price_version, days_between(first, last))])
    today = today or datetime.now(UTC).date()
    # a partition dated after today holds events from the future: the transform would quarantine them all
    late = plan(stale_days(lake=lake, date_from=first, date_to=min(last or today, today)))
    if args.price_version:
        return Selection(groups=[(args.price_version, [s.day for s in late.run])] if late.run else [], late=late)
    # Yesterday and today are the schedule's own days: priced at the latest version, as the transform Lambda does
    # (a version published this morning prices today's new events); older late days keep their last run's.
    recent = {today, today - timedelta(days=1)}
    return Selection(groups=by_price_version([s.day if s.day in recent else s for s in late.run]), late=late)


def describe_plan(late: LatePlan) -> list[str]:
    """Lines for stderr: how many stale days were found, which run now, which are set aside and why."""
    found = len(late.run) + len(late.set_aside) + len(late.left)
    lines = [f"{found} day{'s' if found != 1 else ''} with raw events changed since their last transform"
             + (":" if found else " (nothing to do)")]
    lines += [f"  {s.describe()}" for s in late.run]
    lines += [f"  set aside: {s.describe()}; transform it with --from {s.day} --to {s.day} once that is understood"
              for s in late.set_aside]
    return lines


def note_other_stale(lake: Lake, done: list[date]) -> None:
    """After a run of given days: the stale days outside them, counted on stderr (a hint, never a failure)."""
    others = [s for s in stale_days(lake=lake) if s.day not in set(done)]
    if others:
        n = len(others)
        print(f"note: {n} other day{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} raw events changed since "
              f"their last transform ({_named(others)}): `modelmeter transform --changed` transforms them",
              file=sys.stderr)


def _named(stale: list[StaleDay]) -> str:
    shown = "; ".join(s.describe() for s in stale[:_NAMED])
    return shown + (f"; and {len(stale) - _NAMED} more" if len(stale) > _NAMED else "")


def untransformed_in(lake: Lake, first: date | None, last: date | None) -> list[StaleDay]:
    """The stale UTC days between ``first`` and ``last`` (inclusive; None: open)."""
    return stale_days(lake=lake, date_from=first, date_to=last)


def warn_untransformed(command: str, stale: list[StaleDay], *, what: str = "these figures") -> None:
    """One warning on stderr naming the days whose raw events the curated tables do not hold yet (exit code
    unchanged: the figures are shown, and said to be short)."""
    today = datetime.now(UTC).date()
    future = [s for s in stale if s.day > today]
    stale = [s for s in stale if s.day <= today]
    if future:  # the transform leaves them until their day comes: telling to run it would repeat every time
        print(f"modelmeter {command}: warning: raw events dated after today (UTC) wait untransformed: "
              f"{', '.join(str(s.day) for s in future[:_NAMED])}{' …' if len(future) > _NAMED else ''} "
              f"(a clock ahead at the producer?)", file=sys.stderr)
    if not stale:
        return
    n = len(stale)
    print(f"modelmeter {command}: warning: {n} day{'s' if n != 1 else ''} in range ha{'ve' if n != 1 else 's'} raw "
          f"usage events not transformed yet, so {what} miss them: {_named(stale)}; `modelmeter transform` "
          f"transforms them", file=sys.stderr)


def period_untransformed(lake: Lake, period: str) -> list[StaleDay]:
    """The stale UTC days of a billing period (a UTC calendar month)."""
    first, last = period_days(period)
    return stale_days(lake=lake, date_from=first, date_to=last)


def moved_since_record(lake: Lake, period: str, info: VersionInfo) -> list[date]:
    """Days of ``period`` whose curated usage was transformed again, from other files or prices, after the
    chargeback version ``info`` was computed: usage the version (the record, once closed) does not hold."""
    first, last = period_days(period)
    since = datetime.fromisoformat(info.created_at)
    return rerun_since(lake=lake, date_from=first, date_to=last,
                       since=since if since.tzinfo else since.replace(tzinfo=UTC))


def warn_closed_period(period: str, version: int, moved: list[date], stale: list[StaleDay]) -> None:
    """A closed period with late usage: its record stays, and only ``restate`` books the difference."""
    if not moved and not stale:
        return
    parts = []
    if moved:
        parts.append(f"transformed after version {version} was computed: {', '.join(str(d) for d in moved)}")
    if stale:
        parts.append(f"raw events not transformed yet: {_named(stale)}")
    print(f"modelmeter chargeback: warning: billing period {period} is closed and has late usage its chargeback of "
          f"record does not hold ({'; '.join(parts)}); the record stays as closed: `modelmeter restate --period "
          f"{period}` shows and posts the difference", file=sys.stderr)

"""The dashboard's late-data warning: days of the page whose raw usage events the curated tables do not hold yet,
and closed billing periods whose usage moved after their chargeback of record was computed (docs/transform.md,
"Late data"). The page shows it as a banner above the figures, so nobody reads a short total as the whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape

from common.lake import Lake
from finance.chargeback import versions
from finance.close import status
from finance.reconcile import period_days
from sql.config import ReportingConfig
from transforms.late import StaleDay, rerun_since, stale_days, utc_span

#: How many days the banner names before "and N more".
_NAMED = 8


@dataclass(frozen=True)
class ClosedLate:
    """A closed billing period with days transformed again after its version of record was computed."""

    period: str
    version: int
    days: tuple[date, ...]


@dataclass(frozen=True)
class LateNotice:
    """What the banner says: stale days of the page's range, and closed periods with late usage."""

    stale: tuple[StaleDay, ...] = ()
    closed: tuple[ClosedLate, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.stale or self.closed)


def _months(first: date, last: date) -> list[str]:
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = year + month // 12, month % 12 + 1
    return months


def _closed_late(lake: Lake, period: str) -> ClosedLate | None:
    state = status(lake=lake, period=period)
    if not state.closed or state.version is None:
        return None
    info = next((v for v in versions(lake=lake, period=period) if v.version == state.version), None)
    if info is None:
        return None
    since = datetime.fromisoformat(info.created_at)
    first, last = period_days(period)
    moved = rerun_since(lake=lake, date_from=first, date_to=last,
                        since=since if since.tzinfo else since.replace(tzinfo=UTC))
    return ClosedLate(period, state.version, tuple(moved)) if moved else None


def late_notice(*, lake: Lake, config: ReportingConfig, date_from: date | None, date_to: date | None,
                shown: tuple[date | None, date | None] = (None, None)) -> LateNotice:
    """The late data of the page's reporting days ``date_from``…``date_to`` (None: open); ``shown`` is the range
    the page ended up covering (the data's when open), whose billing periods are checked for a close."""
    first, last = utc_span(config, date_from, date_to)
    stale = tuple(stale_days(lake=lake, date_from=first, date_to=last))
    covered = utc_span(config, shown[0] or date_from, shown[1] or date_to)
    days = [d for d in (*covered, *(s.day for s in stale)) if d is not None]
    closed: list[ClosedLate] = []
    if days:
        for period in _months(min(days), max(days)):
            if (late := _closed_late(lake, period)) is not None:
                closed.append(late)
    return LateNotice(stale=stale, closed=tuple(closed))


def _listed(days: list[str]) -> str:
    return ", ".join(days[:_NAMED]) + (f" and {len(days) - _NAMED} more" if len(days) > _NAMED else "")


def notice_html(notice: LateNotice) -> str:
    """The banner (empty when there is nothing late): a ``role="alert"`` box above the figures."""
    if not notice:
        return ""
    items = []
    if notice.stale:
        n = len(notice.stale)
        items.append(f'<li id="late-untransformed" data-days="{escape(" ".join(str(s.day) for s in notice.stale))}">'
                     f"{n} UTC day{'s' if n != 1 else ''} of this page ha{'ve' if n != 1 else 's'} raw usage events "
                     f"not transformed yet, so the figures below miss them: "
                     f"{escape(_listed([s.describe() for s in notice.stale]))}. Run <code>modelmeter transform</code> "
                     f"(the schedule does, within its look-back).</li>")
    for c in notice.closed:
        items.append(f'<li class="late-closed" data-period="{escape(c.period)}">Billing period {escape(c.period)} is '
                     f"closed at version {c.version}; usage of {escape(_listed([str(d) for d in c.days]))} was "
                     f"transformed after that version was computed. Its chargeback of record stays as closed: "
                     f"<code>modelmeter restate --period {escape(c.period)}</code> shows and posts the "
                     f"difference.</li>")
    return (f'<section class="late" id="late-data" role="alert"><h2>Late data: these figures are not complete'
            f"</h2><ul>{''.join(items)}</ul></section>")

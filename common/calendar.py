"""The reporting calendar's arithmetic: days in a time zone, fiscal months starting on a given day.

One definition for every layer: the views and ``sql.config.ReportingConfig`` (which adds fiscal years and booking),
and the gateway, whose budget periods and daily-token days must be the ones the budget views count
(``budget_burn``: fiscal months of local days). Pure functions of the standard library; no configuration is read
here except by :meth:`Calendar.from_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from common.constants import ENV_FISCAL_MONTH_START, ENV_REPORTING_TZ


def fiscal_month_start(day: date, start_day: int) -> date:
    """First day of the fiscal month holding ``day`` when fiscal months start on ``start_day`` (1–28)."""
    if day.day >= start_day:
        return day.replace(day=start_day)
    previous = day.replace(day=1) - timedelta(days=1)
    return previous.replace(day=start_day)


def next_fiscal_month_start(start: date) -> date:
    """The first day of the fiscal month after the one starting on ``start`` (same day of the next month)."""
    return (start.replace(day=1) + timedelta(days=32)).replace(day=start.day)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` starts in ``zone``."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Period:
    """One fiscal month of the calendar.

    Attributes:
        start: its first local day (the views' ``fiscal_month_start``).
        end: its last local day (inclusive).
        starts_at: the UTC instant it starts.
        resets_at: the UTC instant the next one starts (when a budget resets).
    """

    start: date
    end: date
    starts_at: datetime
    resets_at: datetime

    @property
    def key(self) -> str:
        """The period as a counter key: its first day, ``2026-11-01``."""
        return self.start.isoformat()


@dataclass(frozen=True)
class Day:
    """One local day of the calendar: its date, the UTC instant it starts and the one the next starts."""

    day: date
    starts_at: datetime
    resets_at: datetime

    @property
    def key(self) -> str:
        return self.day.isoformat()


@dataclass(frozen=True)
class Calendar:
    """Days counted in ``timezone`` (IANA name), fiscal months starting on ``fiscal_month_start_day`` (1–28).

    Validation of the two values is the reporting configuration's (``sql.config.ReportingConfig``); this class
    trusts them (an unknown zone raises ``ZoneInfoNotFoundError`` on first use).
    """

    timezone: str = "UTC"
    fiscal_month_start_day: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Calendar:
        """``MODELMETER_REPORTING_TZ`` and ``MODELMETER_FISCAL_MONTH_START``, as the reporting configuration reads
        them (defaults UTC and 1).

        Raises:
            ValueError: a fiscal month start that is not a whole number from 1 to 28, or an unknown time zone.
        """
        env = os.environ if environ is None else environ
        raw = env.get(ENV_FISCAL_MONTH_START) or "1"
        if not raw.strip().isdigit() or not 1 <= int(raw) <= 28:
            raise ValueError(f"{ENV_FISCAL_MONTH_START}={raw!r} is not a day of the month (1-28)")
        calendar = cls(timezone=env.get(ENV_REPORTING_TZ) or "UTC", fiscal_month_start_day=int(raw))
        try:
            calendar.zone()
        except (KeyError, ValueError):
            raise ValueError(f"{ENV_REPORTING_TZ}={calendar.timezone!r} is not a known IANA time zone") from None
        return calendar

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, instant: datetime) -> date:
        """The local day of ``instant`` (naive instants are UTC)."""
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return instant.astimezone(self.zone()).date()

    def fiscal_month_start(self, day: date) -> date:
        return fiscal_month_start(day, self.fiscal_month_start_day)

    def period_of_day(self, day: date) -> Period:
        """The fiscal month holding local day ``day``."""
        start = self.fiscal_month_start(day)
        following = next_fiscal_month_start(start)
        zone = self.zone()
        return Period(start=start, end=following - timedelta(days=1), starts_at=local_midnight(start, zone),
                      resets_at=local_midnight(following, zone))

    def period(self, instant: datetime) -> Period:
        """The fiscal month holding ``instant``."""
        return self.period_of_day(self.local_date(instant))

    def period_named(self, key: str) -> Period:
        """The period whose key is ``key`` (its first day, ``YYYY-MM-DD``; ``YYYY-MM`` means the fiscal month
        starting in that calendar month).

        Raises:
            ValueError: not a date, or not the first day of a fiscal month.
        """
        day = date.fromisoformat(f"{key}-{self.fiscal_month_start_day:02d}" if len(key) == 7 else key)
        if day.day != self.fiscal_month_start_day:
            raise ValueError(f"{key} is not the first day of a fiscal month (fiscal months start on day "
                             f"{self.fiscal_month_start_day})")
        return self.period_of_day(day)

    def day(self, instant: datetime) -> Day:
        """The local day holding ``instant`` and when it ends."""
        local, zone = self.local_date(instant), self.zone()
        return Day(day=local, starts_at=local_midnight(local, zone),
                   resets_at=local_midnight(local + timedelta(days=1), zone))

    def describe(self) -> dict[str, object]:
        """The calendar as JSON (what ``/v1/usage`` says it counts in)."""
        return {"timezone": self.timezone, "fiscal_month_start_day": self.fiscal_month_start_day}

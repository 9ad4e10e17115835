"""Reporting configuration: the reporting calendar (time zone, fiscal months and years) beside the billing calendar.

Two calendars, said plainly:

- **Billing periods** are the CUR's UTC calendar months (``YYYY-MM``): the invoice. Chargeback, close, restate and
  journal work on them, whatever is configured here.
- **The reporting calendar** is this configuration: the time zone days are counted in, the day fiscal months start
  on and the month fiscal years start in. It governs ``modelmeter report``, ``modelmeter export focus``, the views,
  the dashboards and the notebook alike (``--tz`` overrides the zone for one command's output).

Curated tables carry ``usage_date`` in UTC (the ``dt`` partition); the views re-count days in the reporting time zone
from ``event_time``, so a team in UTC−8 sees its evening traffic on its own day, not on the next UTC day. Which fiscal
month a billing period is booked into is configuration too (:meth:`ReportingConfig.booked_fiscal_month`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.calendar import Calendar, local_midnight
from common.calendar import fiscal_month_start as _fiscal_month_start
from common.constants import ENV_FISCAL_BOOKING, ENV_FISCAL_MONTH_START, ENV_FISCAL_YEAR_START, ENV_REPORTING_TZ

# Time-zone names end up inside SQL string literals: accept only IANA-style names, never quotes or spaces.
_TZ_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
#: How a billing period is booked into a fiscal month: by the fiscal month holding its last day or its first.
BOOKINGS = ("period_end", "period_start")


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not a usable IANA time-zone name (None when it is one)."""
    if not _TZ_NAME.match(name):
        return f"{name!r} is not an IANA time-zone name like America/Los_Angeles"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name like America/Los_Angeles"
    return None


@dataclass(frozen=True)
class ReportingConfig:
    """How the reporting calendar counts days, months and years.

    Attributes:
        timezone: IANA time-zone name (``UTC``, ``America/Los_Angeles``, ``Etc/GMT+8`` …).
        fiscal_month_start_day: day of the month on which a fiscal month starts (1–28; 1 = calendar months).
        fiscal_year_start_month: calendar month (1–12) of the fiscal year's first fiscal month (1 = January).
        fiscal_booking: ``period_end`` (default): a billing period is booked into the fiscal month holding its last
            day; ``period_start``: the one holding its first day.
    """

    timezone: str = "UTC"
    fiscal_month_start_day: int = 1
    fiscal_year_start_month: int = 1
    fiscal_booking: str = "period_end"

    def __post_init__(self) -> None:
        if not _TZ_NAME.match(self.timezone):
            raise ValueError(f"reporting time zone {self.timezone!r} is not an IANA name like America/Los_Angeles")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown reporting time zone {self.timezone!r}: use an IANA name") from None
        day = self.fiscal_month_start_day
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 28:
            # 29–31 do not exist in every month, so a fiscal month starting on them would drift.
            raise ValueError(f"fiscal month start day must be an integer from 1 to 28, got {day!r}")
        month = self.fiscal_year_start_month
        if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
            raise ValueError(f"fiscal year start month must be an integer from 1 to 12, got {month!r}")
        if self.fiscal_booking not in BOOKINGS:
            raise ValueError(f"fiscal booking must be one of {', '.join(BOOKINGS)}, got {self.fiscal_booking!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, timezone: str | None = None) -> ReportingConfig:
        """Read ``MODELMETER_REPORTING_TZ``, ``MODELMETER_FISCAL_MONTH_START``, ``MODELMETER_FISCAL_YEAR_START`` and
        ``MODELMETER_FISCAL_BOOKING`` (all optional); ``timezone`` (a command's ``--tz``) wins over the first.

        Raises:
            ValueError: a value that is set but invalid (named in the message).
        """
        env = os.environ if environ is None else environ
        tz = timezone or env.get(ENV_REPORTING_TZ) or "UTC"
        return cls(timezone=tz,
                   fiscal_month_start_day=_int_env(env, ENV_FISCAL_MONTH_START, 1, "a day of the month (1-28)"),
                   fiscal_year_start_month=_int_env(env, ENV_FISCAL_YEAR_START, 1, "a month (1-12)"),
                   fiscal_booking=env.get(ENV_FISCAL_BOOKING) or "period_end")

    def with_timezone(self, timezone: str | None) -> ReportingConfig:
        """This calendar counted in ``timezone`` instead (None: unchanged)."""
        return self if timezone is None else dataclasses.replace(self, timezone=timezone)

    @property
    def is_utc(self) -> bool:
        """Days are UTC days: the reporting day of an event is its curated ``usage_date``."""
        return self.timezone == "UTC"

    def utc_window(self, first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
        """The instants ``[start, end)`` (aware, UTC) of the reporting days ``first``…``last`` (inclusive; None:
        open at that end): from local midnight of ``first`` to local midnight after ``last``."""
        zone = ZoneInfo(self.timezone)
        return (None if first is None else local_midnight(first, zone),
                None if last is None else local_midnight(last + timedelta(1), zone))

    @property
    def calendar(self) -> Calendar:
        """The days and fiscal months of this configuration (``common.calendar``: what the gateway counts budgets
        and daily tokens in)."""
        return Calendar(timezone=self.timezone, fiscal_month_start_day=self.fiscal_month_start_day)

    def fiscal_month_start(self, day: date) -> date:
        """First day of the fiscal month holding ``day`` (as the views' ``mm_fiscal_month_start``)."""
        return _fiscal_month_start(day, self.fiscal_month_start_day)

    def fiscal_year(self, day: date) -> int:
        """The fiscal year holding ``day``, named by the calendar year of its last fiscal month (with fiscal years
        starting in July: 2026-07-01 … 2027-06-30 is FY2027)."""
        start = self.fiscal_month_start(day)
        return start.year + (1 if self.fiscal_year_start_month > 1 and start.month >= self.fiscal_year_start_month
                             else 0)

    def booked_fiscal_month(self, period: str) -> date:
        """First day of the fiscal month billing period ``YYYY-MM`` (a UTC calendar month) is booked into.

        Raises:
            ValueError: not a ``YYYY-MM`` period.
        """
        first = date.fromisoformat(f"{period}-01")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return self.fiscal_month_start(last if self.fiscal_booking == "period_end" else first)

    def describe(self) -> str:
        """One line saying how days are counted: ``days counted in America/Los_Angeles (reporting calendar; fiscal
        months from day 1)``."""
        fiscal = f"fiscal months from day {self.fiscal_month_start_day}"
        if self.fiscal_year_start_month > 1:
            fiscal += f", fiscal years from month {self.fiscal_year_start_month}"
        return f"days counted in {self.timezone} (reporting calendar; {fiscal})"


def _int_env(env: Mapping[str, str], name: str, default: int, what: str) -> int:
    raw = env.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {what}") from None

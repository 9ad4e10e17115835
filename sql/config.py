"""Reporting configuration: the time zone in which days and months are counted, and the fiscal-month start.

Curated tables carry ``usage_date`` in UTC (the ``dt`` partition); the views re-count days in the reporting time zone
from ``event_time``, so a team in UTC−8 sees its evening traffic on its own day, not on the next UTC day.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.constants import ENV_FISCAL_MONTH_START, ENV_REPORTING_TZ

# Time-zone names end up inside SQL string literals: accept only IANA-style names, never quotes or spaces.
_TZ_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


@dataclass(frozen=True)
class ReportingConfig:
    """How the views count days and months.

    Attributes:
        timezone: IANA time-zone name (``UTC``, ``America/Los_Angeles``, ``Etc/GMT+8`` …).
        fiscal_month_start_day: day of the month on which a fiscal month starts (1–28; 1 = calendar months).
    """

    timezone: str = "UTC"
    fiscal_month_start_day: int = 1

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReportingConfig:
        """Read ``MODELMETER_REPORTING_TZ`` and ``MODELMETER_FISCAL_MONTH_START`` (both optional).

        Raises:
            ValueError: a value that is set but invalid (named in the message).
        """
        env = os.environ if environ is None else environ
        tz = env.get(ENV_REPORTING_TZ) or "UTC"
        raw_day = env.get(ENV_FISCAL_MONTH_START) or "1"
        try:
            day = int(raw_day)
        except ValueError:
            raise ValueError(f"{ENV_FISCAL_MONTH_START}={raw_day!r} is not a day of the month (1-28)") from None
        return cls(timezone=tz, fiscal_month_start_day=day)

"""common/calendar.py: budget periods and days are the reporting calendar's, as sql/config.py and the views count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from common.calendar import Calendar
from sql.config import ReportingConfig


@pytest.mark.parametrize("start_day", [1, 15, 28])
def test_fiscal_months_agree_with_the_reporting_configuration(start_day: int) -> None:
    config = ReportingConfig(timezone="America/Los_Angeles", fiscal_month_start_day=start_day)
    calendar = config.calendar
    day = date(2025, 12, 1)
    while day < date(2027, 3, 1):
        period = calendar.period_of_day(day)
        assert period.start == config.fiscal_month_start(day) <= day <= period.end
        assert calendar.period_of_day(period.end + timedelta(days=1)).start == period.end + timedelta(days=1)
        day += timedelta(days=1)


def test_a_period_resets_at_local_midnight_of_the_next_fiscal_month_across_dst() -> None:
    # GIVEN fiscal months from the 15th in Los Angeles (PST from 2026-11-01)
    calendar = Calendar(timezone="America/Los_Angeles", fiscal_month_start_day=15)
    # WHEN an instant of 2026-11-15 07:59 UTC (still the 14th, 23:59 PST) and one a minute later
    before, after = datetime(2026, 11, 15, 7, 59, tzinfo=UTC), datetime(2026, 11, 15, 8, 0, tzinfo=UTC)
    # THEN the first is in the fiscal month from 2026-10-15, which resets at 08:00 UTC; the second in the next
    assert calendar.period(before).key == "2026-10-15"
    assert calendar.period(before).starts_at == datetime(2026, 10, 15, 7, 0, tzinfo=UTC)  # PDT then
    assert calendar.period(before).resets_at == after
    assert calendar.period(after).key == "2026-11-15" and calendar.period(after).end == date(2026, 12, 14)
    assert calendar.day(before).day == date(2026, 11, 14) and calendar.day(before).resets_at == after


def test_period_names_and_the_environment() -> None:
    calendar = Calendar.from_env({"MODELMETER_REPORTING_TZ": "Europe/Berlin", "MODELMETER_FISCAL_MONTH_START": "5"})
    assert calendar == Calendar("Europe/Berlin", 5)
    assert calendar.period_named("2026-11").key == calendar.period_named("2026-11-05").key == "2026-11-05"
    with pytest.raises(ValueError, match="first day of a fiscal month"):
        calendar.period_named("2026-11-01")
    with pytest.raises(ValueError, match="MODELMETER_FISCAL_MONTH_START"):
        Calendar.from_env({"MODELMETER_FISCAL_MONTH_START": "31"})
    with pytest.raises(ValueError, match="MODELMETER_REPORTING_TZ"):
        Calendar.from_env({"MODELMETER_REPORTING_TZ": "Mars/Olympus"})

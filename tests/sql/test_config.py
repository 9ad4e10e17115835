"""Reporting configuration from the environment, and its refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from common.constants import ENV_FISCAL_BOOKING, ENV_FISCAL_MONTH_START, ENV_FISCAL_YEAR_START, ENV_REPORTING_TZ
from sql.config import ReportingConfig, timezone_problem


def test_defaults_are_utc_calendar_months() -> None:
    assert ReportingConfig.from_env({}) == ReportingConfig(timezone="UTC", fiscal_month_start_day=1)


def test_reads_the_environment() -> None:
    env = {ENV_REPORTING_TZ: "America/Los_Angeles", ENV_FISCAL_MONTH_START: "15"}
    assert ReportingConfig.from_env(env) == ReportingConfig(timezone="America/Los_Angeles", fiscal_month_start_day=15)


@pytest.mark.parametrize(("env", "message"), [
    ({ENV_REPORTING_TZ: "Mars/Olympus"}, "unknown reporting time zone 'Mars/Olympus'"),
    ({ENV_REPORTING_TZ: "UTC'; drop table x; --"}, "is not an IANA name"),
    ({ENV_FISCAL_MONTH_START: "29"}, "from 1 to 28, got 29"),
    ({ENV_FISCAL_MONTH_START: "0"}, "from 1 to 28, got 0"),
    ({ENV_FISCAL_MONTH_START: "first"}, "MODELMETER_FISCAL_MONTH_START='first' is not a day of the month"),
    ({ENV_FISCAL_YEAR_START: "13"}, "from 1 to 12, got 13"),
    ({ENV_FISCAL_YEAR_START: "July"}, "MODELMETER_FISCAL_YEAR_START='July' is not a month"),
    ({ENV_FISCAL_BOOKING: "middle"}, "one of period_end, period_start, got 'middle'"),
])
def test_refuses_bad_values_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReportingConfig.from_env(env)


def test_reads_the_fiscal_year_and_the_booking_and_a_tz_override() -> None:
    env = {ENV_REPORTING_TZ: "Europe/Paris", ENV_FISCAL_YEAR_START: "7", ENV_FISCAL_BOOKING: "period_start"}
    assert ReportingConfig.from_env(env, timezone="Asia/Tokyo") == ReportingConfig(
        timezone="Asia/Tokyo", fiscal_year_start_month=7, fiscal_booking="period_start")
    assert ReportingConfig.from_env(env).timezone == "Europe/Paris"


@pytest.mark.parametrize(("start_day", "start_month", "day", "fiscal_month", "fiscal_year"), [
    (1, 1, date(2026, 11, 20), date(2026, 11, 1), 2026),
    (15, 1, date(2026, 11, 14), date(2026, 10, 15), 2026),
    (15, 1, date(2027, 1, 3), date(2026, 12, 15), 2026),  # still the last fiscal month of FY2026
    (1, 7, date(2026, 7, 1), date(2026, 7, 1), 2027),  # fiscal years from July: named by the year they end in
    (1, 7, date(2026, 6, 30), date(2026, 6, 1), 2026),
    (26, 2, date(2026, 1, 30), date(2026, 1, 26), 2026),
    (26, 2, date(2026, 2, 26), date(2026, 2, 26), 2027),
])
def test_fiscal_months_and_years(start_day: int, start_month: int, day: date, fiscal_month: date,
                                 fiscal_year: int) -> None:
    config = ReportingConfig(fiscal_month_start_day=start_day, fiscal_year_start_month=start_month)
    assert (config.fiscal_month_start(day), config.fiscal_year(day)) == (fiscal_month, fiscal_year)


def test_a_billing_period_is_booked_into_the_fiscal_month_of_its_last_day_or_its_first() -> None:
    assert ReportingConfig().booked_fiscal_month("2026-11") == date(2026, 11, 1)
    assert ReportingConfig(fiscal_month_start_day=15).booked_fiscal_month("2026-11") == date(2026, 11, 15)
    assert ReportingConfig(fiscal_month_start_day=15, fiscal_booking="period_start").booked_fiscal_month(
        "2026-11") == date(2026, 10, 15)
    assert ReportingConfig(fiscal_month_start_day=28).booked_fiscal_month("2027-02") == date(2027, 2, 28)


def test_reporting_days_as_utc_instants_across_a_dst_change() -> None:
    west = ReportingConfig(timezone="America/Los_Angeles")
    # November 1, 2026 is the day Los Angeles leaves daylight saving time: 25 hours long
    assert west.utc_window(date(2026, 11, 1), date(2026, 11, 1)) == (
        datetime(2026, 11, 1, 7, tzinfo=UTC), datetime(2026, 11, 2, 8, tzinfo=UTC))
    assert west.utc_window(None, date(2026, 11, 1)) == (None, datetime(2026, 11, 2, 8, tzinfo=UTC))
    assert ReportingConfig().utc_window(date(2026, 11, 1), None) == (datetime(2026, 11, 1, tzinfo=UTC), None)


def test_every_surface_can_say_which_calendar() -> None:
    assert ReportingConfig().describe() == "days counted in UTC (reporting calendar; fiscal months from day 1)"
    assert ReportingConfig(timezone="America/Los_Angeles", fiscal_year_start_month=7).describe() == (
        "days counted in America/Los_Angeles (reporting calendar; fiscal months from day 1, fiscal years from "
        "month 7)")
    assert timezone_problem("UTC") is None
    assert "unknown time zone 'Mars/Olympus'" in (timezone_problem("Mars/Olympus") or "")
    assert "not an IANA time-zone name" in (timezone_problem("UTC'; drop") or "")

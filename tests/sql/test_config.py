"""Reporting configuration from the environment, and its refusals."""

from __future__ import annotations

import pytest

from common.constants import ENV_FISCAL_MONTH_START, ENV_REPORTING_TZ
from sql.config import ReportingConfig


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
])
def test_refuses_bad_values_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReportingConfig.from_env(env)

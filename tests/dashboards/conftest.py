"""Shared fixtures of the dashboard tests: the fixture lake (built once per session) and DuckDB over it."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from common.lake import Lake
from sql.config import ReportingConfig
from sql.render import connect
from tests.fixture_lake import FixtureFacts, build_fixture_lake

UTC_CONFIG = ReportingConfig(timezone="UTC", fiscal_month_start_day=1)


@pytest.fixture(scope="session")
def facts(tmp_path_factory: pytest.TempPathFactory) -> FixtureFacts:
    return build_fixture_lake(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="session")
def lake(facts: FixtureFacts) -> Lake:
    return Lake.open(facts.root)


@pytest.fixture(autouse=True)
def _utc_reporting(monkeypatch: pytest.MonkeyPatch) -> None:
    # The views read the reporting zone from the environment by default; pin it so a developer's shell can't move
    # days between months under the tests.
    monkeypatch.setenv("MODELMETER_REPORTING_TZ", UTC_CONFIG.timezone)
    monkeypatch.setenv("MODELMETER_FISCAL_MONTH_START", str(UTC_CONFIG.fiscal_month_start_day))


@pytest.fixture()
def con(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(lake=lake, config=UTC_CONFIG)
    yield connection
    connection.close()

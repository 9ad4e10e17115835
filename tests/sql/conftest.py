"""Shared fixtures of the SQL tests: one fixture lake per session, DuckDB connections over it per reporting config."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from common.lake import Lake
from sql.config import ReportingConfig
from sql.render import connect
from tests.fixture_lake import WEST_TIMEZONE, FixtureFacts, build_fixture_lake

UTC_CONFIG = ReportingConfig()
WEST_CONFIG = ReportingConfig(timezone=WEST_TIMEZONE)
#: fiscal months from the 15th, counted in UTC−8: both settings at once
FISCAL_CONFIG = ReportingConfig(timezone=WEST_TIMEZONE, fiscal_month_start_day=15)


@pytest.fixture(scope="session")
def facts(tmp_path_factory: pytest.TempPathFactory) -> FixtureFacts:
    return build_fixture_lake(tmp_path_factory.mktemp("fixture-lake"))


@pytest.fixture(scope="session")
def lake(facts: FixtureFacts) -> Lake:
    return Lake.open(facts.root)


def _connection(lake: Lake, config: ReportingConfig) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(lake=lake, config=config)
    yield con
    con.close()


@pytest.fixture(scope="session")
def con_utc(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    yield from _connection(lake, UTC_CONFIG)


@pytest.fixture(scope="session")
def con_west(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    yield from _connection(lake, WEST_CONFIG)


@pytest.fixture(scope="session")
def con_fiscal(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    yield from _connection(lake, FISCAL_CONFIG)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """Query results as dicts."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

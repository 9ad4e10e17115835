"""A curated fixture lake (tests/fixture_lake.py) and CUR 2.0 files written with AWS's real columns and types."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from common.lake import Lake
from modelmeter.simulated_bill import Deviations, line, simulate_period
from pricing_catalog import Catalog, load_catalog
from tests.fixture_lake import FixtureFacts, build_fixture_lake

PERIOD = "2026-11"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
START = datetime(2026, 11, 10, tzinfo=UTC)


@dataclass
class FinanceLake:
    root: Path
    lake: Lake
    facts: FixtureFacts
    catalog: Catalog


@pytest.fixture(scope="module")
def finance_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinanceLake]:
    root = tmp_path_factory.mktemp("finance")
    facts = build_fixture_lake(root / "lake", close=False)  # these tests import their own bills
    lake = Lake.open(root / "lake")
    yield FinanceLake(root=root, lake=lake, facts=facts, catalog=load_catalog(lake=lake))


def month_bill(fl: FinanceLake, **deviations: object) -> list[dict]:
    """The fixture lake's November at list price, with the given deviations (SIMULATED, see simulated_bill)."""
    settings = {"discounted_model": None, "bypass_model": None, "credit": Decimal(0), "provisioned_hours": 0,
                "tax_rate": Decimal(0), **deviations}
    return simulate_period(lake=fl.lake, period=PERIOD, catalog=fl.catalog, deviations=Deviations(**settings))


def extra_line(**kwargs: object) -> dict:
    return line(period=PERIOD, start=START, **kwargs)

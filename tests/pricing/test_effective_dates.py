"""Effective dating: [effective_from, effective_to), exact boundaries, and the most specific price winning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pricing_catalog.catalog import Catalog, interval_at
from pricing_catalog.loader import load_builtin
from pricing_catalog.model import PriceInterval, PriceRow, parse_instant
from pricing_catalog.store import load_catalog, publish

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TINY = timedelta(microseconds=1)

NOON_CHANGE = """
    provider: test
    models:
      acme.chat-v1:0:
        prices:
          - {effective_from: "2026-11-01", effective_to: "2026-11-25T12:00:00Z", per: 1000, input_tokens: "0.001",
             output_tokens: "0.004", source: "https://example.com/p", checked: "2026-11-25"}
          - {effective_from: "2026-11-25T12:00:00Z", per: 1000, input_tokens: "0.002", output_tokens: "0.004",
             source: "https://example.com/p", checked: "2026-11-25"}
"""


def _cost(intervals: list[PriceInterval], *, dimension: str, units: int, at: datetime) -> Decimal:
    interval = interval_at(intervals, dimension=dimension, instant=at)
    assert interval is not None, f"no {dimension} price at {at}"
    return units * interval.price_usd / interval.per


def _noon_catalog(write_data) -> Catalog:
    return load_builtin(data_dir=write_data(text=NOON_CHANGE))


def test_a_price_change_at_noon_splits_the_interval_exactly_there(write_data) -> None:
    intervals = _noon_catalog(write_data).prices_for(model_id="acme.chat-v1:0", region=None, service_tier="on_demand")
    inputs = [i for i in intervals if i.dimension == "input_tokens"]
    assert [(i.effective_from, i.effective_to, i.price_usd) for i in inputs] == [
        (datetime(2026, 11, 1, tzinfo=UTC), NOON, Decimal("0.001")),
        (NOON, None, Decimal("0.002")),
    ]
    assert interval_at(intervals, dimension="input_tokens", instant=NOON - TINY).price_usd == Decimal("0.001")
    assert interval_at(intervals, dimension="input_tokens", instant=NOON).price_usd == Decimal("0.002")


def test_a_noon_change_splits_one_days_cost_exactly(write_data) -> None:
    # GIVEN one day's events on both sides of the 12:00 UTC change
    intervals = _noon_catalog(write_data).prices_for(model_id="acme.chat-v1:0", region=None, service_tier="on_demand")
    events = [(datetime(2026, 11, 25, 0, 0, tzinfo=UTC), 1500), (NOON - TINY, 1000), (NOON, 1000),
              (datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC), 333)]
    # WHEN each event is priced at its event_time
    total = sum((_cost(intervals, dimension="input_tokens", units=n, at=t) for t, n in events), Decimal(0))
    # THEN the morning is at the old price and the afternoon at the new one, to the last decimal
    assert total == Decimal("0.0015") + Decimal("0.001") + Decimal("0.002") + Decimal("0.000666")


def test_noon_boundary_survives_publishing(write_data, lake) -> None:
    publish(lake=lake, catalog_or_rows=_noon_catalog(write_data), note="noon")
    intervals = load_catalog(lake=lake).prices_for(model_id="acme.chat-v1:0", region=None, service_tier="on_demand")
    assert interval_at(intervals, dimension="input_tokens", instant=NOON - TINY).price_usd == Decimal("0.001")
    assert interval_at(intervals, dimension="input_tokens", instant=NOON).price_usd == Decimal("0.002")


def test_the_real_claude_3_5_haiku_price_cut_is_effective_dated(builtin: Catalog) -> None:
    intervals = builtin.prices_for(model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0", region="us-west-2",
                                   service_tier="on_demand")
    cut = datetime(2024, 12, 2, tzinfo=UTC)
    assert interval_at(intervals, dimension="input_tokens", instant=cut - TINY).price_usd == Decimal("0.001")
    assert interval_at(intervals, dimension="input_tokens", instant=cut).price_usd == Decimal("0.0008")
    assert interval_at(intervals, dimension="input_tokens", instant=datetime(2024, 11, 3, tzinfo=UTC)) is None


def test_before_the_first_price_nothing_applies(write_data) -> None:
    intervals = _noon_catalog(write_data).prices_for(model_id="acme.chat-v1:0", region=None, service_tier="on_demand")
    assert interval_at(intervals, dimension="input_tokens", instant=datetime(2026, 10, 31, tzinfo=UTC)) is None


def _row(**kwargs: object) -> PriceRow:
    base = dict(model="acme.chat-v1:0", dimension="input_tokens", price_usd=Decimal("0.001"), per=1000,
                effective_from=datetime(2026, 1, 1, tzinfo=UTC), effective_to=None, source="https://example.com/p")
    return PriceRow(**{**base, **kwargs})


def test_a_region_price_wins_where_it_exists_and_only_there() -> None:
    # GIVEN an all-regions price and an eu-west-1 price from March to May
    catalog = Catalog(version="t", rows=[
        _row(), _row(region="eu-west-1", price_usd=Decimal("0.0012"), effective_from=datetime(2026, 3, 1, tzinfo=UTC),
                     effective_to=datetime(2026, 5, 1, tzinfo=UTC))])
    # WHEN pricing a call in eu-west-1 THEN the region price cuts the all-regions price for its period only
    eu = catalog.prices_for(model_id="acme.chat-v1:0", region="eu-west-1", service_tier="on_demand")
    assert [(i.effective_from.month, i.effective_to and i.effective_to.month, i.price_usd) for i in eu] == [
        (1, 3, Decimal("0.001")), (3, 5, Decimal("0.0012")), (5, None, Decimal("0.001"))]
    # AND other regions, or an unknown region, only see the all-regions price
    for region in ("us-east-1", None):
        other = catalog.prices_for(model_id="acme.chat-v1:0", region=region, service_tier="on_demand")
        assert [(i.effective_from.month, i.effective_to, i.price_usd) for i in other] == [(1, None, Decimal("0.001"))]


def test_govcloud_has_its_own_claude_price(builtin: Catalog) -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    gov = builtin.prices_for(model_id="anthropic.claude-3-haiku-20240307-v1:0", region="us-gov-west-1",
                             service_tier="on_demand")
    east = builtin.prices_for(model_id="anthropic.claude-3-haiku-20240307-v1:0", region="us-east-1",
                              service_tier="on_demand")
    assert interval_at(gov, dimension="input_tokens", instant=when).price_usd == Decimal("0.0003")
    assert interval_at(east, dimension="input_tokens", instant=when).price_usd == Decimal("0.00025")


def test_intervals_of_one_dimension_never_overlap(builtin: Catalog) -> None:
    for model in builtin.models:
        for region in (None, "us-east-1", "us-gov-west-1"):
            for tier in ("on_demand", "batch"):
                intervals = builtin.prices_for(model_id=model, region=region, service_tier=tier)
                for dimension in {i.dimension for i in intervals}:
                    mine = [i for i in intervals if i.dimension == dimension]
                    for before, after in zip(mine, mine[1:], strict=False):
                        assert before.effective_to is not None and before.effective_to <= after.effective_from


@pytest.mark.parametrize("text, expected", [
    ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),
    ("2026-11-25T12:00:00Z", NOON),
    ("2026-11-25T13:00:00+01:00", NOON),
    ("2026-11-25T12:00:00.000001Z", NOON + TINY),
])
def test_instants_are_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text, what="effective_from") == expected


@pytest.mark.parametrize("text", ["2026-11-25T12:00:00", "25/11/2026", "", "2026-02-30"])
def test_bad_instants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="effective_from"):
        parse_instant(text, what="effective_from")

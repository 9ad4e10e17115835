"""Input images and 1-hour cache writes: counted by the providers, priced by the catalog, or plainly unpriced."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from ingest.providers.bedrock_payloads import converse_usage
from pricing_catalog import Catalog, PriceRow
from pricing_catalog.loader import load_builtin
from transforms.run import transform_day

from .conftest import DAY, NOW, PER, TEXT_MODEL, build_catalog, event, usage_cost, write_raw

TITAN_MM = "amazon.titan-embed-image-v1"


def test_converse_cache_details_split_one_hour_writes_from_five_minute_ones() -> None:
    usage = converse_usage({"inputTokens": 12, "outputTokens": 3, "cacheReadInputTokens": 40,
                            "cacheWriteInputTokens": 1500,
                            "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 500}]})
    assert (usage.cache_write_1h_input_tokens, usage.cache_write_input_tokens) == (1000, 500)
    # without a breakdown every write is a default (5-minute) write, as before
    plain = converse_usage({"inputTokens": 1, "outputTokens": 1, "cacheWriteInputTokens": 70})
    assert (plain.cache_write_1h_input_tokens, plain.cache_write_input_tokens) == (0, 70)


def test_an_image_embedding_is_priced_per_input_image_from_the_shipped_catalog(lake) -> None:
    # GIVEN two Titan Multimodal Embeddings calls: an image alone, and an image with 20 text tokens
    write_raw(lake, [event(model_id=TITAN_MM, operation="image_embeddings", input_tokens=0, output_tokens=0,
                           input_image_count=1, event_id="00000000-0000-4000-8000-000000000001"),
                     event(model_id=TITAN_MM, operation="image_embeddings", input_tokens=20, output_tokens=0,
                           input_image_count=1, event_id="00000000-0000-4000-8000-000000000002")])
    # WHEN the day is transformed with the built-in catalog
    transform_day(lake=lake, day=DAY, catalog=load_builtin(), now=NOW, threads=2)
    # THEN each image costs AWS's $0.00006, the text its per-token price, and both are priced (never $0)
    alone, with_text = usage_cost(lake)
    assert (alone["priced"], alone["input_image_cost"], alone["total_cost"]) == (
        True, Decimal("0.00006"), Decimal("0.00006"))
    assert with_text["priced"] and with_text["input_cost"] == Decimal("0.000016")
    assert with_text["total_cost"] == Decimal("0.000076")


def _with_one_hour_price(price: Decimal) -> Catalog:
    base = build_catalog()
    row = PriceRow(model=TEXT_MODEL, dimension="cache_write_1h_input_tokens", price_usd=price, per=PER,
                   effective_from=datetime(2025, 1, 1, tzinfo=UTC), effective_to=None,
                   source="https://example.com/test-prices")
    return Catalog(version="test-1h", rows=[*base.rows, row])


def test_one_hour_cache_writes_are_priced_at_their_own_price(lake) -> None:
    write_raw(lake, [event(input_tokens=0, output_tokens=0, cache_write_input_tokens=1_000_000,
                           cache_write_1h_input_tokens=2_000_000)])
    transform_day(lake=lake, day=DAY, catalog=_with_one_hour_price(Decimal("6.00")), now=NOW, threads=2)
    (row,) = usage_cost(lake)
    assert row["priced"] and row["cache_write_cost"] == Decimal("3.75")
    assert row["cache_write_1h_cost"] == Decimal("12.00") and row["total_cost"] == Decimal("15.75")


def test_one_hour_cache_writes_without_a_price_leave_the_event_unpriced(lake, catalog) -> None:
    # GIVEN an event (before noon: input at $3, output at $15 per 1 M) that also wrote 500 tokens to the 1-hour
    # cache, which the test catalog has no price for
    write_raw(lake, [event(cache_write_1h_input_tokens=500)])
    # WHEN the day is transformed
    transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)
    # THEN it is unpriced and says why, its 1-hour writes have no cost, and the rest keeps its price
    (row,) = usage_cost(lake)
    assert row["priced"] is False and row["cache_write_1h_cost"] is None
    assert row["unpriced_dimensions"] == "cache_write_1h_input_tokens"
    assert (row["input_cost"], row["output_cost"]) == (Decimal("0.003"), Decimal("0.003"))  # 1000 × 3, 200 × 15
    assert row["cache_read_cost"] == row["cache_write_cost"] == row["image_cost"] == Decimal(0)  # not used
    assert row["total_cost"] == Decimal("0.006")  # the priced part: a lower bound

"""Every model id the demo and the other parts rely on is priced by the built-in catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing_catalog.catalog import Catalog, interval_at

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

TEXT_IDS = [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "meta.llama3-1-8b-instruct-v1:0",
    "us.meta.llama3-3-70b-instruct-v1:0",
    "amazon.nova-micro-v1:0",
    "us.amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "mistral.mistral-large-2402-v1:0",
]
EMBEDDING_IDS = ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"]
IMAGE_IDS = ["amazon.titan-image-generator-v2:0", "amazon.nova-canvas-v1:0", "stability.stable-image-core-v1:1"]


def _now(catalog: Catalog, model_id: str, **kwargs: object) -> dict[str, Decimal]:
    intervals = catalog.prices_for(model_id=model_id, region="us-east-1", service_tier="on_demand", **kwargs)
    found = {}
    for dimension in {i.dimension for i in intervals}:
        interval = interval_at(intervals, dimension=dimension, instant=NOW)
        if interval is not None:
            found[dimension] = interval.price_usd * Decimal(1_000_000) / interval.per  # USD per million units
    return found


@pytest.mark.parametrize("model_id", TEXT_IDS)
def test_text_models_have_input_and_output_prices(builtin: Catalog, model_id: str) -> None:
    prices = _now(builtin, model_id)
    assert prices["input_tokens"] > 0
    assert prices["output_tokens"] > prices["input_tokens"] or model_id.startswith(("meta.", "us.meta."))


@pytest.mark.parametrize("model_id", EMBEDDING_IDS)
def test_embedding_models_have_input_prices(builtin: Catalog, model_id: str) -> None:
    assert _now(builtin, model_id)["input_tokens"] > 0


@pytest.mark.parametrize("model_id", IMAGE_IDS)
def test_image_models_have_an_image_price(builtin: Catalog, model_id: str) -> None:
    assert _now(builtin, model_id, image_width=1024, image_height=1024, image_quality="standard")["images"] > 0


def test_some_known_figures(builtin: Catalog) -> None:
    # USD per million tokens as AWS lists them (per 1,000 in the data)
    assert _now(builtin, "anthropic.claude-3-haiku-20240307-v1:0") == {
        "input_tokens": Decimal("0.25"), "output_tokens": Decimal("1.25")}
    assert _now(builtin, "amazon.nova-micro-v1:0") == {
        "input_tokens": Decimal("0.035"), "output_tokens": Decimal("0.14"),
        "cache_read_input_tokens": Decimal("0.00875")}
    assert _now(builtin, "us.anthropic.claude-3-7-sonnet-20250219-v1:0") == {
        "input_tokens": Decimal(3), "output_tokens": Decimal(15),
        "cache_write_input_tokens": Decimal("3.75"), "cache_read_input_tokens": Decimal("0.3")}


def test_global_profile_is_cheaper_than_the_regional_profile_for_claude_4_5(builtin: Catalog) -> None:
    global_ = _now(builtin, "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    regional = _now(builtin, "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    in_region = _now(builtin, "anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert global_["input_tokens"] == Decimal(3) and global_["output_tokens"] == Decimal(15)
    assert regional == in_region
    for dimension, price in global_.items():
        assert regional[dimension] == price * Decimal("1.1")


def test_cache_prices_exist_where_the_model_has_prompt_caching(builtin: Catalog) -> None:
    for model_id in ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "us.anthropic.claude-sonnet-4-20250514-v1:0",
                     "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                     "us.anthropic.claude-3-5-haiku-20241022-v1:0"):
        prices = _now(builtin, model_id)
        assert prices["cache_read_input_tokens"] == prices["input_tokens"] / 10, model_id
        assert prices["cache_write_input_tokens"] == prices["input_tokens"] * Decimal("1.25"), model_id


def test_batch_tier_is_half_of_on_demand_where_offered(builtin: Catalog) -> None:
    for model_id in ("meta.llama3-1-8b-instruct-v1:0", "amazon.nova-pro-v1:0", "amazon.titan-embed-text-v2:0"):
        on_demand = _now(builtin, model_id)
        batch = {i.dimension: i.price_usd * Decimal(1_000_000) / i.per for i in builtin.prices_for(
            model_id=model_id, region="us-east-1", service_tier="batch") if i.contains(NOW)}
        assert batch, model_id
        assert all(batch[d] == on_demand[d] / 2 for d in batch), model_id


def test_unpriced_tiers_and_models_give_no_intervals(builtin: Catalog) -> None:
    assert builtin.prices_for(model_id="amazon.nova-pro-v1:0", region=None, service_tier="provisioned") == []
    assert builtin.prices_for(model_id="acme.unknown-v1:0", region=None, service_tier="on_demand") == []


@pytest.mark.parametrize("width, height, quality, expected", [
    (512, 512, "standard", "0.008"), (1024, 1024, "standard", "0.01"), (512, 512, "premium", "0.01"),
    (1024, 1024, "premium", "0.012"), (None, None, None, "0.008"), (1408, 768, "premium", "0.012"),
])
def test_titan_images_are_priced_by_size_and_quality(builtin: Catalog, width, height, quality, expected) -> None:
    prices = _now(builtin, "amazon.titan-image-generator-v2:0", image_width=width, image_height=height,
                  image_quality=quality)
    assert prices == {"images": Decimal(expected) * 1_000_000}


@pytest.mark.parametrize("width, height, quality, expected", [
    (1024, 1024, "standard", "0.04"), (1280, 720, "standard", "0.04"), (2048, 2048, "standard", "0.06"),
    (1024, 1024, "premium", "0.06"), (2048, 1024, "premium", "0.08"),
])
def test_nova_canvas_images_are_priced_by_pixel_count_and_quality(builtin: Catalog, width, height, quality,
                                                                  expected) -> None:
    prices = _now(builtin, "amazon.nova-canvas-v1:0", image_width=width, image_height=height, image_quality=quality)
    assert prices == {"images": Decimal(expected) * 1_000_000}


def test_an_image_larger_than_every_size_class_is_unpriced(builtin: Catalog) -> None:
    assert _now(builtin, "amazon.nova-canvas-v1:0", image_width=4096, image_height=4096) == {}


def test_stability_price_is_flat(builtin: Catalog) -> None:
    for size in ((512, 512), (1536, 1536)):
        for quality in ("standard", "premium"):
            assert _now(builtin, "stability.stable-image-core-v1:1", image_width=size[0], image_height=size[1],
                        image_quality=quality) == {"images": Decimal("40000")}


def test_a_missing_service_tier_means_on_demand(builtin: Catalog) -> None:
    model_id = "amazon.nova-pro-v1:0"
    assert builtin.prices_for(model_id=model_id, region=None, service_tier=None) == builtin.prices_for(
        model_id=model_id, region=None, service_tier="on_demand")

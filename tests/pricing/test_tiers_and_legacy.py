"""Service tiers (batch, flex, priority) and the legacy models of the AWS seed guidance (issue 13; docs/pricing.md).

Every figure here is one of the built-in data's sourced prices; a (model, tier) AWS publishes no price for must
stay unpriced, never derived or guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pricing_catalog.catalog import Catalog, interval_at
from pricing_catalog.loader import load_builtin
from pricing_catalog.sheet import apply_sheet, read_sheet

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TINY = timedelta(microseconds=1)
SHEET_HEADER = "model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier\n"


def _per_1k(catalog: Catalog, model_id: str, *, tier: str = "on_demand", at: datetime = NOW,
            region: str | None = "us-east-1", **image: object) -> dict[str, Decimal]:
    """USD per 1,000 units (per image for images) of every dimension priced at ``at``."""
    intervals = catalog.prices_for(model_id=model_id, region=region, service_tier=tier, **image)
    found = {}
    for dimension in {i.dimension for i in intervals}:
        interval = interval_at(intervals, dimension=dimension, instant=at)
        if interval is not None:
            scale = 1 if dimension == "images" else 1000
            found[dimension] = interval.price_usd * scale / interval.per
    return found


def _cost(catalog: Catalog, event: dict[str, object]) -> Decimal | None:
    """An event's cost as the transform computes it, or None when any counted dimension has no price."""
    intervals = catalog.prices_for(model_id=event["model_id"], region=event["region"],
                                   service_tier=event["service_tier"])
    total = Decimal(0)
    for dimension in ("input_tokens", "output_tokens"):
        interval = interval_at(intervals, dimension=dimension, instant=event["event_time"])
        if interval is None:
            return None
        total += event[dimension] * interval.price_usd / interval.per
    return total


# --- legacy models -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id, key, expected", [
    ("anthropic.claude-v2:1", "anthropic.claude-v2:1", {"input_tokens": "0.008", "output_tokens": "0.024"}),
    ("anthropic.claude-v2", "anthropic.claude-v2", {"input_tokens": "0.008", "output_tokens": "0.024"}),
    ("ai21.j2-ultra", "ai21.j2-ultra-v1", {"input_tokens": "0.0188", "output_tokens": "0.0188"}),
    ("ai21.j2-ultra-v1", "ai21.j2-ultra-v1", {"input_tokens": "0.0188", "output_tokens": "0.0188"}),
    ("cohere.command-text-v14", "cohere.command-text-v14", {"input_tokens": "0.0015", "output_tokens": "0.002"}),
])
def test_legacy_text_models_have_their_published_on_demand_price(builtin: Catalog, model_id: str, key: str,
                                                                  expected: dict[str, str]) -> None:
    assert builtin.resolve(model_id) == key
    assert _per_1k(builtin, model_id) == {d: Decimal(p) for d, p in expected.items()}


@pytest.mark.parametrize("model_id", ["anthropic.claude-v2:1", "ai21.j2-ultra", "cohere.command-text-v14"])
def test_legacy_prices_start_at_the_earliest_dated_document(builtin: Catalog, model_id: str) -> None:
    start = datetime(2024, 1, 10, tzinfo=UTC)
    assert _per_1k(builtin, model_id, at=start - TINY) == {}
    assert set(_per_1k(builtin, model_id, at=start)) == {"input_tokens", "output_tokens"}


@pytest.mark.parametrize("width, height, quality, expected", [
    (1024, 1024, "standard", "0.04"),   # up to 50 steps
    (1024, 1024, "premium", "0.08"),    # more than 50 steps
    (768, 512, "premium", "0.08"),      # smaller images are the same class (the seed notebook: steps 60)
    (1152, 896, "standard", "0.04"),    # fewer pixels than 1024 x 1024
    (None, None, None, "0.04"),         # no size, no quality: the smallest class, standard
])
def test_sdxl_1_is_priced_per_image_by_steps_class(builtin: Catalog, width, height, quality, expected) -> None:
    prices = _per_1k(builtin, "stability.stable-diffusion-xl-v1", image_width=width, image_height=height,
                     image_quality=quality)
    assert prices == {"images": Decimal(expected)}


def test_sdxl_images_larger_than_the_published_class_are_unpriced(builtin: Catalog) -> None:
    assert _per_1k(builtin, "stability.stable-diffusion-xl-v1", image_width=1536, image_height=1536,
                   image_quality="standard") == {}
    assert _per_1k(builtin, "stability.stable-diffusion-xl-v0", image_width=512, image_height=512,
                   image_quality="premium") == {"images": Decimal("0.036")}
    assert _per_1k(builtin, "stability.stable-diffusion-xl-v0", image_width=1024, image_height=1024) == {}


@pytest.mark.parametrize("model_id", [
    "anthropic.claude-v1",             # shares only the stem `anthropic.claude` with Claude 2.0 and 2.1
    "anthropic.claude-instant-v1",     # not in the catalog
    "stability.stable-diffusion-xl",   # between SDXL 0.8 and 1.0
    "ai21.j2-mid-v1",
    "cohere.command-light-text-v14",
])
def test_neighbours_of_the_legacy_models_are_never_priced_by_a_guess(builtin: Catalog, model_id: str) -> None:
    assert builtin.resolve(model_id) is None


#: Every model id the seed guidance's notebook (notebooks/01_bedrock_api.ipynb) invokes.
SEED_NOTEBOOK_IDS = [
    "amazon.titan-text-express-v1", "anthropic.claude-3-sonnet-20240229-v1:0", "anthropic.claude-v2:1",
    "ai21.j2-ultra", "cohere.command-text-v14", "mistral.mistral-large-2402-v1:0", "amazon.titan-embed-text-v1",
    "amazon.titan-embed-text-v2:0", "cohere.embed-multilingual-v3", "amazon.titan-embed-image-v1",
    "amazon.titan-image-generator-v1", "stability.stable-diffusion-xl-v1",
]


@pytest.mark.parametrize("model_id", SEED_NOTEBOOK_IDS)
def test_every_model_the_seed_notebook_calls_has_an_on_demand_price(builtin: Catalog, model_id: str) -> None:
    assert builtin.resolve(model_id) is not None
    assert _per_1k(builtin, model_id, image_width=512, image_height=512, image_quality="standard")


# --- batch -------------------------------------------------------------------------------------------------------

def test_a_batch_event_is_half_the_on_demand_cost_where_aws_publishes_batch(builtin: Catalog) -> None:
    event = {"model_id": "us.amazon.nova-pro-v1:0", "region": "us-east-1", "service_tier": "batch",
             "event_time": NOW, "input_tokens": 10_000, "output_tokens": 2_000}
    assert _cost(builtin, event) == Decimal("0.0072")   # 10,000 x 0.0004 / 1,000 + 2,000 x 0.0016 / 1,000
    assert _cost(builtin, {**event, "service_tier": "on_demand"}) == Decimal("0.0144")


def test_claude_3_5_haiku_batch_is_priced_only_before_the_price_cut(builtin: Catalog) -> None:
    cut = datetime(2024, 12, 2, tzinfo=UTC)
    model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    assert _per_1k(builtin, model_id, tier="batch", at=cut - TINY) == {
        "input_tokens": Decimal("0.0005"), "output_tokens": Decimal("0.0025")}
    assert _per_1k(builtin, model_id, tier="batch", at=cut) == {}


#: (model, tier) pairs AWS's pricing page lists without a price (N/A) or not at all: docs/pricing.md, "What is not
#: priced, and why". Pricing them would be a guess.
NO_PUBLISHED_BATCH_PRICE = [
    "anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-opus-4-20250514-v1:0", "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-v2:1", "cohere.command-r-v1:0",
    "cohere.command-r-plus-v1:0", "cohere.embed-english-v3", "cohere.command-text-v14",
    "mistral.mistral-7b-instruct-v0:2", "mistral.mixtral-8x7b-instruct-v0:1", "mistral.mistral-large-2402-v1:0",
    "mistral.mistral-small-2402-v1:0", "mistral.pixtral-large-2502-v1:0", "ai21.j2-ultra-v1",
]


@pytest.mark.parametrize("model_id", NO_PUBLISHED_BATCH_PRICE)
def test_batch_stays_unpriced_where_aws_publishes_no_batch_price(builtin: Catalog, model_id: str) -> None:
    assert _per_1k(builtin, model_id, tier="batch") == {}
    event = {"model_id": model_id, "region": "us-east-1", "service_tier": "batch", "event_time": NOW,
             "input_tokens": 1_000, "output_tokens": 100}
    assert _cost(builtin, event) is None


# --- flex and priority -------------------------------------------------------------------------------------------

def test_the_built_in_catalog_has_no_flex_or_priority_price(builtin: Catalog) -> None:
    # Bedrock offers flex and priority for two catalog models only (Nova Pro, Nova Premier), and their figures could
    # not be read from AWS: such events stay unpriced until a price sheet adds them (docs/pricing.md).
    assert not [r for r in builtin.rows if r.service_tier in ("flex", "priority")]
    for tier in ("flex", "priority"):
        assert _per_1k(builtin, "us.amazon.nova-pro-v1:0", tier=tier) == {}


def test_an_explicit_flex_entry_in_the_data_prices_only_the_flex_tier(write_data) -> None:
    # GIVEN a data file with an on-demand entry and a flex entry (service_tier: flex), as the loader already allows
    folder = write_data(text="""
        provider: test
        models:
          acme.chat-v1:0:
            prices:
              - {effective_from: "2025-11-18", per: 1000, input_tokens: "0.0008", output_tokens: "0.0032",
                 source: "https://example.com/p", checked: "2026-12-02"}
              - {effective_from: "2025-11-18", service_tier: flex, per: 1000, input_tokens: "0.0004",
                 output_tokens: "0.0016", source: "https://example.com/p", checked: "2026-12-02"}
    """)
    catalog = load_builtin(data_dir=folder)
    # WHEN flex, on-demand and priority events are priced THEN each tier has only its own prices
    assert _per_1k(catalog, "acme.chat-v1:0", tier="flex") == {"input_tokens": Decimal("0.0004"),
                                                               "output_tokens": Decimal("0.0016")}
    assert _per_1k(catalog, "acme.chat-v1:0")["input_tokens"] == Decimal("0.0008")
    assert _per_1k(catalog, "acme.chat-v1:0", tier="priority") == {}


def test_a_price_sheet_prices_flex_and_priority_events_and_leaves_on_demand_alone(builtin: Catalog,
                                                                                   write_sheet) -> None:
    # GIVEN the built-in catalog and a sheet with Nova Pro's flex and priority rates (the worked example of
    # docs/pricing.md: the rates finance confirms on its bill)
    sheet = read_sheet(write_sheet(SHEET_HEADER + "".join(
        f"amazon.nova-pro-v1:0,{dimension},{price},1000,2025-11-18,,,{tier}\n"
        for tier, dimension, price in (("flex", "input_tokens", "0.0004"), ("flex", "output_tokens", "0.0016"),
                                       ("priority", "input_tokens", "0.0014"),
                                       ("priority", "output_tokens", "0.0056")))))
    catalog = apply_sheet(builtin, sheet)
    event = {"model_id": "us.amazon.nova-pro-v1:0", "region": "us-east-1", "event_time": NOW,
             "input_tokens": 10_000, "output_tokens": 2_000}
    # WHEN events of each tier are priced
    costs = {tier: _cost(catalog, {**event, "service_tier": tier}) for tier in ("on_demand", "flex", "priority")}
    # THEN flex and priority use the sheet's rates, and on-demand keeps the catalog's
    assert costs == {"on_demand": Decimal("0.0144"), "flex": Decimal("0.0072"), "priority": Decimal("0.0252")}
    assert _cost(catalog, {**event, "service_tier": "flex", "event_time": datetime(2025, 11, 17, tzinfo=UTC)}) is None

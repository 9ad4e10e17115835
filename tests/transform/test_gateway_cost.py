"""The gateway's ``cost_usd`` is the transform's ``total_cost``: one set of unit prices, one arithmetic.

Events are built by the gateway's own event builder, landed as the gateway's sink lands them, priced by
``ingest.pricing.GatewayPricer`` from the lake's published catalog and transformed by the real transform against the
same version; every event's two figures are compared exactly.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from common.contracts import parse_event
from ingest.pricing import GatewayPricer
from ingest.providers.base import Usage
from ingest.sink import LocalParquetSink
from ingest.usage import build_event
from pricing_catalog import Catalog, load_catalog, publish
from tests.transform.conftest import (
    DAY,
    IMAGE_MODEL,
    MIDNIGHT,
    NOON,
    NOW,
    TEXT_MODEL,
    UNKNOWN_MODEL,
    build_catalog,
    usage_cost,
)
from transforms.run import transform_day

MS = timedelta(milliseconds=1)


def _catalog() -> Catalog:
    """The built-in catalog (regions, tiers, image classes, input images …) plus the test models (a noon change)."""
    builtin, test = load_catalog(), build_catalog()
    return Catalog(version="unpublished", rows=[*builtin.rows, *test.rows], aliases=builtin.aliases)


def _event(when: datetime, model_id: str, *, region: str | None = "us-east-1", usage: Usage | None = None,
           operation: str = "chat", status: str = "ok", http_status: int | None = 200,
           provider: str = "bedrock") -> dict[str, Any]:
    return build_event(request_id=uuid.uuid4().hex, event_time=when, team_id="team-a", api_key_id="key-a",
                       business_unit="retail", provider=provider, region=region, model_id=model_id,
                       operation=operation, status=status, http_status=http_status, usage=usage, streaming=False,
                       latency_ms=12)


def _chosen_cases() -> list[dict[str, Any]]:
    """One event of each kind of price the catalog has, and of each way an event goes unpriced."""
    nine = MIDNIGHT + timedelta(hours=9)
    tokens = Usage(input_tokens=1234, output_tokens=567)
    cached = Usage(input_tokens=1000, output_tokens=200, cache_read_input_tokens=40_000, cache_write_input_tokens=2000)
    return [
        # the noon price change of the test model: the last millisecond before it, the first at it
        _event(NOON - MS, TEXT_MODEL, usage=cached),
        _event(NOON, TEXT_MODEL, usage=cached),
        # regions: the GovCloud regional price, and the every-region price elsewhere and without a region
        _event(nine, "anthropic.claude-3-haiku-20240307-v1:0", region="us-gov-west-1", usage=tokens),
        _event(nine, "anthropic.claude-3-haiku-20240307-v1:0", region="eu-west-1", usage=tokens),
        _event(nine, "anthropic.claude-3-haiku-20240307-v1:0", region=None, usage=tokens),
        # inference profiles: global. has its own price, us. falls back to the base model's
        _event(nine, "global.anthropic.claude-sonnet-4-5-20250929-v1:0", usage=tokens),
        _event(nine, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", usage=tokens),
        # tiers: batch where AWS publishes a batch price, and where it does not (unpriced)
        _event(nine, "us.amazon.nova-pro-v1:0", usage=Usage(input_tokens=10_000, output_tokens=2000,
                                                           service_tier="batch")),
        _event(nine, "anthropic.claude-sonnet-4-20250514-v1:0", usage=Usage(input_tokens=10, service_tier="batch")),
        # images by size class and quality; larger than every class (unpriced); no size (the smallest class)
        _event(nine, "amazon.titan-image-generator-v2:0", operation="image", usage=Usage(
            image_count=2, image_width=512, image_height=512, image_quality="standard")),
        _event(nine, "amazon.titan-image-generator-v2:0", operation="image", usage=Usage(
            image_count=3, image_width=1280, image_height=720, image_quality="premium")),
        _event(nine, "amazon.nova-canvas-v1:0", operation="image", usage=Usage(
            image_count=1, image_width=2048, image_height=2048, image_quality="premium")),
        _event(nine, "amazon.nova-canvas-v1:0", operation="image", usage=Usage(
            image_count=1, image_width=4096, image_height=4096, image_quality="standard")),
        _event(nine, IMAGE_MODEL, operation="image", usage=Usage(image_count=4)),
        # input images (Titan Multimodal Embeddings)
        _event(nine, "amazon.titan-embed-image-v1", operation="image_embeddings",
               usage=Usage(input_tokens=7, input_image_count=1)),
        # a unit without a price (1-hour cache writes), a model nobody priced, a provisioned ARN
        _event(nine, TEXT_MODEL, usage=Usage(input_tokens=10, cache_write_1h_input_tokens=100)),
        _event(nine, UNKNOWN_MODEL, provider="sagemaker", usage=tokens),
        _event(nine, "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", usage=tokens),
        # refusals: no usage, of a priced model (0) and of one not known (unpriced)
        _event(nine, TEXT_MODEL, status="client_error", http_status=403),
        _event(nine, "unknown", status="client_error", http_status=400),
        _event(nine, "amazon.nova-lite-v1:0", status="throttled", http_status=429),
    ]


_MODELS = ("amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "us.amazon.nova-pro-v1:0", TEXT_MODEL,
           "anthropic.claude-3-5-sonnet-20240620-v1:0", "meta.llama3-8b-instruct-v1:0", "cohere.embed-english-v3",
           UNKNOWN_MODEL, "anthropic.claude-3-5-haiku-20241022-v1:0")


def _random_cases(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        when = MIDNIGHT + timedelta(milliseconds=rng.randrange(24 * 3600 * 1000))
        usage = None if rng.random() < 0.1 else Usage(
            input_tokens=rng.randrange(0, 200_000), output_tokens=rng.randrange(0, 8000),
            cache_read_input_tokens=rng.choice((0, 0, rng.randrange(1, 100_000))),
            cache_write_input_tokens=rng.choice((0, 0, rng.randrange(1, 10_000))),
            service_tier=rng.choice((None, None, None, "batch", "flex")))
        out.append(_event(when, rng.choice(_MODELS), region=rng.choice(("us-east-1", "us-west-2", "us-gov-west-1",
                                                                        None)), usage=usage,
                          status="ok" if usage else "client_error", http_status=200 if usage else 400))
    return out


@pytest.fixture
def priced(lake):
    """(events, the pricer, the transform's usage_cost rows by event_id) over one published catalog version."""
    version = publish(lake=lake, catalog_or_rows=_catalog(), note="gateway cost test")
    events = _chosen_cases() + _random_cases(random.Random(12), 400)
    LocalParquetSink(lake).write_rows([parse_event(e) for e in events])
    pricer = GatewayPricer(lake=lake)
    assert pricer.poll(force=True) and pricer.version == version
    manifest = transform_day(lake=lake, day=DAY, catalog=load_catalog(lake=lake), now=NOW, threads=2)
    assert manifest.price_version == version and manifest.counts["quarantined"] == 0
    return events, pricer, {r["event_id"]: r for r in usage_cost(lake)}


def test_the_gateways_cost_of_every_event_is_the_transforms_total_cost_exactly(priced):
    events, pricer, rows = priced
    assert set(rows) == {e["event_id"] for e in events}
    kinds = {"priced": 0, "zero": 0, "unpriced": 0}
    for e in events:
        row, cost = rows[e["event_id"]], pricer.cost_usd(e)
        pico, fully = pricer.priced_pico(e)
        assert fully is row["priced"], (e, row)
        if row["priced"]:
            # THEN the same figure, to the pico-dollar, written as DECIMAL(38,12) is
            assert cost is not None and Decimal(cost) == row["total_cost"], (e, row)
            assert cost == format(row["total_cost"], "f") and len(cost.split(".")[1]) == 12
            assert Decimal(pico).scaleb(-12) == row["total_cost"]
            kinds["zero" if pico == 0 else "priced"] += 1
        else:
            assert cost is None, (e, row)
            kinds["unpriced"] += 1
            # a transform that keeps the priced part of an unpriced event keeps the gateway's priced part
            if row["total_cost"] is not None:
                assert Decimal(pico).scaleb(-12) == row["total_cost"], (e, row)
    assert kinds["priced"] > 100 and kinds["zero"] >= 2 and kinds["unpriced"] > 20, kinds


def test_the_chosen_cases_price_as_documented(priced):
    events, pricer, rows = priced
    chosen = events[:len(_chosen_cases())]
    costs = [pricer.cost_usd(e) for e in chosen]
    before_noon, at_noon = costs[0], costs[1]
    # 1000 input at $3 then $2.50 per M, 200 output at $15, 40,000 cache reads at $0.30, 2,000 writes at $3.75
    assert (before_noon, at_noon) == ("0.025500000000", "0.025000000000")
    govcloud, elsewhere, no_region = costs[2:5]
    assert Decimal(govcloud) > Decimal(elsewhere) == Decimal(no_region)
    global_profile, us_profile = costs[5:7]
    assert global_profile != us_profile
    assert costs[7] == "0.007200000000"  # docs/pricing.md's batch example: 10,000 × 0.0004/1000 + 2,000 × 0.0016/1000
    assert costs[8] is None  # batch without a published batch price
    assert costs[9:14] == ["0.016000000000", "0.036000000000", "0.080000000000", None, "0.160000000000"]
    assert costs[14] is not None and Decimal(costs[14]) >= Decimal("0.00006")
    assert costs[15:18] == [None, None, None]
    assert costs[18:21] == ["0.000000000000", None, "0.000000000000"]
    assert all(Decimal(c) == rows[e["event_id"]]["total_cost"] for c, e in zip(costs, chosen, strict=True) if c)

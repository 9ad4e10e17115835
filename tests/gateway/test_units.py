"""The gateway's plain parts without HTTP: router, long-poll store, limits, registry, simulator, event builder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from common.contracts import Limits, Team, parse_event, value_problems
from common.errors import NotFound, Throttled
from ingest.limits import LimitTracker
from ingest.longpoll import MemoryLongPollStore
from ingest.ports import hash_key
from ingest.providers.base import ModelRequest, Usage
from ingest.providers.registry import ProviderRouter, build_router
from ingest.providers.simulator import SimulatorProvider
from ingest.tenants import LocalTenantRegistry
from ingest.usage import build_event


class Named:
    def __init__(self, name):
        self.name, self.region = name, None


def test_router_prefers_arn_then_exact_then_patterns_then_default():
    default, sm, bedrock_arn, exact = Named("default"), Named("sagemaker"), Named("bedrock"), Named("exact")
    router = ProviderRouter(default=default, exact={"my-endpoint": exact},
                            patterns=[("arn:aws:sagemaker:*", sm), ("arn:aws:bedrock:*", bedrock_arn)])
    assert router.resolve("my-endpoint") is exact
    assert router.resolve("amazon.nova-lite-v1:0") is default
    assert router.resolve("x", model_arn="arn:aws:sagemaker:us-east-1:1:endpoint/e") is sm
    assert router.resolve("x", model_arn="arn:aws:bedrock:us-east-1:1:custom-model/m") is bedrock_arn
    with pytest.raises(NotFound):
        ProviderRouter(exact={"a": exact}).resolve("b")
    with pytest.raises(ValueError, match="unknown upstream"):
        build_router(upstream="ftp://nope")
    assert build_router(upstream="simulator").resolve("anything").name == "simulator"


def test_longpoll_claim_is_once_per_team_and_expires():
    now = [0.0]
    store = MemoryLongPollStore(clock=lambda: now[0])
    store.start("r1", team_id="a", ttl_seconds=60)
    assert store.claim("r1", team_id="a") is None  # pending
    with pytest.raises(NotFound):
        store.claim("r1", team_id="b")
    store.complete("r1", result={"status": 200})
    assert store.claim("r1", team_id="a") == {"status": 200}
    with pytest.raises(NotFound):
        store.claim("r1", team_id="a")
    store.start("r2", team_id="a", ttl_seconds=60)
    now[0] = 61
    with pytest.raises(NotFound):
        store.claim("r2", team_id="a")


def test_rate_bucket():
    # (daily tokens are counted fleet-wide in the spend store: tests/gateway/test_budgets.py)
    t = [0.0]
    limits = LimitTracker(monotonic=lambda: t[0])
    rps = Limits(requests_per_second=2)
    limits.check("a", rps)
    limits.check("a", rps)
    with pytest.raises(Throttled) as exc:
        limits.check("a", rps)
    assert exc.value.retry_after >= 1
    t[0] = 0.5  # one token refilled
    limits.check("a", rps)
    limits.check("a", Limits(daily_tokens=100))  # not this tracker's: never refused here


def test_registry_hashes_keys_and_honours_revocation(tmp_path):
    registry = LocalTenantRegistry(tmp_path / "t.json", recheck_seconds=0)
    registry.put_team(Team(team_id="a"))
    record, secret = registry.create_key("a")
    assert record.key_hash == hash_key(secret) and secret not in (tmp_path / "t.json").read_text()
    assert registry.lookup_key(secret)[1].team_id == "a"
    other = LocalTenantRegistry(tmp_path / "t.json", recheck_seconds=0)  # e.g. the CLI, beside a running gateway
    assert other.revoke_key(record.api_key_id)
    assert registry.lookup_key(secret) is None
    with pytest.raises(KeyError):
        registry.create_key("nobody")


def test_simulator_is_deterministic_and_counts_usage():
    sim = SimulatorProvider(seed=3)
    request = ModelRequest(model_id="m", operation="chat", messages=[{"role": "user", "content": [{"text": "hi"}]}],
                           parameters={"maxTokens": 5})
    first, second = asyncio.run(sim.invoke(request)), asyncio.run(sim.invoke(request))
    assert first.text == second.text and first.usage.output_tokens <= 5 and first.usage.input_tokens == 1

    async def collect():
        return [c async for c in sim.stream(request)]

    chunks = asyncio.run(collect())
    assert chunks[-1].usage.output_tokens == first.usage.output_tokens


def test_built_event_follows_schema_v1():
    event = build_event(request_id="r", event_time=datetime(2026, 11, 25, 13, 45, 1, 123456, tzinfo=UTC),
                        team_id="a", api_key_id="mk_live_1", business_unit=None, provider="simulator", region=None,
                        model_id="m", operation="image", status="ok", http_status=200,
                        usage=Usage(image_count=2, image_width=512, image_height=512, image_quality="premium"),
                        streaming=False, latency_ms=3)
    assert event["event_time"] == "2026-11-25T13:45:01.123Z"
    row = parse_event(event)
    assert value_problems(row, now=datetime(2026, 11, 25, tzinfo=UTC)) == []


def test_a_provisioned_throughput_arn_is_billed_in_the_provisioned_tier():
    def tier(model_id, usage=None):
        return build_event(request_id="r", event_time=datetime(2026, 11, 25, tzinfo=UTC), team_id="a",
                           api_key_id=None, business_unit=None, provider="bedrock", region="us-east-1",
                           model_id=model_id, operation="chat", status="ok", http_status=200, usage=usage,
                           streaming=False, latency_ms=1)["service_tier"]

    # a provisioned-model ARN is not on-demand token usage; a custom model's ARN and a base model id are
    assert tier("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123") == "provisioned"
    assert tier("arn:aws:bedrock:us-east-1:123456789012:custom-model/m/abc") == "on_demand"
    assert tier("amazon.nova-micro-v1:0", Usage(input_tokens=3)) == "on_demand"
    # what the provider reported wins
    assert tier("amazon.nova-micro-v1:0", Usage(service_tier="batch")) == "batch"

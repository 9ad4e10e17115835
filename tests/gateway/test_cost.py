"""``cost_usd`` at the gateway (ingest/pricing.py): a real gateway records it, the transform agrees, new catalog
versions are picked up within the reload interval, and nothing breaks without a catalog."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import requests
from fastapi.testclient import TestClient

from common.constants import CURATED_USAGE_COST
from common.contracts import UNITS
from common.lake import Lake
from ingest import pricing
from ingest.app import create_app
from ingest.emit import local_emitter
from ingest.lambda_handler import GatewaySettings, build_runtime
from ingest.longpoll import MemoryLongPollStore
from ingest.pricing import GatewayPricer, reload_seconds_from_env, usd
from ingest.providers.base import Usage
from ingest.providers.registry import build_router
from ingest.server import build_local_app
from ingest.usage import build_event
from pricing_catalog import interval_at, list_versions, load_catalog
from pricing_catalog.publish import import_sheet
from pricing_catalog.unit_prices import LOOKUP_KEYS
from tests.gateway.conftest import Gateway, make_registry, run_gateway
from transforms.run import transform_day

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SHEET_HEADER = "model_id,dimension,price_usd,per,effective_from,effective_to,region,service_tier\n"


def _call(model: str = HAIKU, *, when: datetime | None = None, **usage: Any) -> dict[str, Any]:
    return build_event(request_id="r1", event_time=when or datetime.now(UTC), team_id="alpha", api_key_id=None,
                       business_unit=None, provider="bedrock", region="us-east-1", model_id=model, operation="chat",
                       status="ok", http_status=200, usage=Usage(**(usage or {"input_tokens": 1_000_000})),
                       streaming=False, latency_ms=1)


def _expected(catalog: Any, event: dict[str, Any]) -> Decimal | None:
    """The event's cost the way docs/pricing.md computes it by hand (Decimal, interval by interval)."""
    intervals = catalog.prices_for(model_id=event["model_id"], region=event["region"],
                                   service_tier=event["service_tier"], image_width=event["image_width"],
                                   image_height=event["image_height"], image_quality=event["image_quality"])
    when = event["event_time"]
    if not any(i.contains(when) for i in intervals):
        return None
    total = Decimal(0)
    for unit in UNITS:
        if event[unit.count_field]:
            price = interval_at(intervals, dimension=unit.dimension, instant=when)
            if price is None:
                return None
            total += event[unit.count_field] * price.price_usd / price.per
    return total


# --- a real gateway -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def priced_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The real server (simulator upstream) pricing from its lake, which has a published catalog version."""
    tmp = tmp_path_factory.mktemp("priced")
    load_catalog(lake=Lake.open(tmp / "lake"))  # publishes the built-in catalog, as the first transform does
    yield from run_gateway(tmp, build_router(upstream="simulator"), lake=str(tmp / "lake"))


def _seed(gw: Gateway, model: str, body: dict[str, Any], *, team: str = "alpha", **headers: str) -> str:
    r = requests.post(f"{gw.url}/invoke_model?model_id={model}", json=body, timeout=10,
                      headers={"x-api-key": gw.keys[team], "team_id": team, **headers})
    return r.headers["x-request-id"]


def test_a_real_gateway_records_each_calls_cost_and_the_transform_agrees(priced_gateway: Gateway) -> None:
    gw = priced_gateway
    # GIVEN calls of priced models (text, chat, embeddings, images), a refusal and a model nobody priced
    ids = {
        "text": _seed(gw, "amazon.nova-micro-v1:0", {"inputs": "What did we spend?", "parameters": {"maxTokens": 20}}),
        "embed": _seed(gw, "amazon.titan-embed-text-v2:0", {"inputs": "cost per team"}, type="embeddings"),
        "image": _seed(gw, "amazon.titan-image-generator-v2:0", {
            "textToImageParams": {"text": "a dashboard"}, "parameters": {"taskType": "TEXT_IMAGE",
            "imageGenerationConfig": {"numberOfImages": 2, "width": 512, "height": 512, "quality": "standard"}}},
            type="image"),
        "refused": _seed(gw, HAIKU, {"inputs": "hi"}, team="beta"),  # outside beta's allowlist: 403
        "unpriced": _seed(gw, "fake-unpriced-model", {"inputs": "hi"}, team="beta"),
    }
    r = requests.post(f"{gw.url}/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {gw.keys['alpha']}"},
                      json={"model": "amazon.nova-lite-v1:0", "messages": [{"role": "user", "content": "spend?"}]})
    ids["chat"] = r.headers["x-request-id"]
    # WHEN their events land
    events = {e["request_id"]: e for e in gw.events()}
    by_call = {name: events[request_id] for name, request_id in ids.items()}
    # THEN each carries the cost the catalog gives by hand: priced calls a 12-place decimal, a refusal $0, the
    # model nobody priced null
    catalog = load_catalog(lake=gw.lake)
    for name, event in by_call.items():
        expected = _expected(catalog, event)
        assert (Decimal(event["cost_usd"]) if event["cost_usd"] is not None else None) == expected, name
    assert all(Decimal(by_call[n]["cost_usd"]) > 0 for n in ("text", "chat", "embed", "image"))
    assert by_call["image"]["cost_usd"] == "0.016000000000"  # 2 standard 512×512 Titan images at $0.008
    assert by_call["refused"]["cost_usd"] == "0.000000000000" and by_call["refused"]["status"] == "client_error"
    assert by_call["unpriced"]["cost_usd"] is None
    # AND the transform of the same events gives the same total_cost, event by event
    rows = {}
    for day in sorted({e["event_time"].date() for e in events.values()}):
        transform_day(lake=gw.lake, day=day, catalog=catalog, threads=2)
        rows |= {r["event_id"]: r for r in _usage_cost(gw.lake, day)}
    for event in events.values():
        row = rows[event["event_id"]]
        cost = event["cost_usd"]
        assert (Decimal(cost) if cost is not None else None) == (row["total_cost"] if row["priced"] else None)


def _usage_cost(lake: Lake, day: date) -> list[dict[str, Any]]:
    files = lake.list_files(CURATED_USAGE_COST, f"dt={day.isoformat()}")
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_serve_prices_from_its_lake(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    version = load_catalog(lake=lake).version
    make_registry(tmp_path / "tenants.json")
    emitter = local_emitter(lake=lake)
    try:
        app = build_local_app(upstream="simulator", lake=lake, tenants=str(tmp_path / "tenants.json"), emitter=emitter)
        assert app.state.gateway.pricer.version == version
        app.state.gateway.pricer.close()
    finally:
        emitter.close()


class _Recording:
    """An emitter keeping what it is given: the placeholder journaled before the call, the final event."""

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.emitted: list[dict[str, Any]] = []

    def admit(self) -> None: ...

    def open_call(self, placeholder: dict[str, Any]) -> None:
        self.opened.append(placeholder)

    def emit(self, event: dict[str, Any]) -> None:
        self.emitted.append(event)

    def status(self) -> dict[str, Any]:
        return {"spool": "ok"}

    def flush(self, *, timeout: float = 30.0) -> bool:
        return True

    def close(self, *, timeout: float = 30.0) -> bool:
        return True


def test_the_final_event_is_priced_and_the_placeholder_is_not(tmp_path: Path) -> None:
    registry, keys, _ = make_registry(tmp_path / "tenants.json")
    recording = _Recording()
    app = create_app(registry=registry, providers=build_router(upstream="simulator"), emitter=recording,
                     longpoll=MemoryLongPollStore(), pricer=GatewayPricer(catalog=load_catalog()))
    with TestClient(app) as client:
        r = client.post("/invoke_model?model_id=amazon.nova-micro-v1:0", json={"inputs": "hello"},
                        headers={"x-api-key": keys["alpha"], "team_id": "alpha"})
    assert r.status_code == 200
    (placeholder,), (final,) = recording.opened, recording.emitted
    assert placeholder["event_id"] == final["event_id"]
    assert placeholder["cost_usd"] is None and Decimal(final["cost_usd"]) > 0


# --- reloading ------------------------------------------------------------------------------------------------

def _sheet(tmp_path: Path, price: str) -> Path:
    path = tmp_path / f"sheet-{price}.csv"
    path.write_text(SHEET_HEADER + f"{HAIKU},input_tokens,{price},1000000,2026-01-01,,,\n")
    return path


def test_a_new_version_prices_calls_once_the_reload_interval_has_passed(tmp_path: Path) -> None:
    # GIVEN a pricer on a lake with one version, its clock injected, listing the versions every 60 s
    lake = Lake.open(tmp_path / "lake")
    first = load_catalog(lake=lake).version
    now = [1000.0]
    pricer = GatewayPricer(lake=lake, reload_seconds=60, clock=lambda: now[0])
    assert pricer.poll(force=True) and pricer.version == first
    call = _call()
    assert pricer.cost_usd(call) == "0.250000000000"  # 1 M input tokens at $0.25 per M
    # WHEN finance publishes a new price
    second = import_sheet(lake=lake, sheet=_sheet(tmp_path, "0.2"))
    # THEN calls keep the old price until the interval has passed since the last listing, then get the new one
    now[0] += 59.9
    assert not pricer.poll() and pricer.version == first and pricer.cost_usd(call) == "0.250000000000"
    now[0] += 0.1
    assert pricer.poll() and pricer.version == second and pricer.cost_usd(call) == "0.200000000000"


def test_the_background_thread_picks_up_a_new_version_within_the_interval(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    load_catalog(lake=lake)
    pricer = GatewayPricer(lake=lake, reload_seconds=0.5).start()
    try:
        second = import_sheet(lake=lake, sheet=_sheet(tmp_path, "0.2"))
        published = time.monotonic()
        while pricer.version != second and time.monotonic() - published < 10:
            time.sleep(0.01)
        took = time.monotonic() - published
        assert pricer.version == second and pricer.cost_usd(_call()) == "0.200000000000"
        assert took <= 0.5 + 2.0, took  # the interval, plus the listing and the load on a busy machine
    finally:
        pricer.close()


def test_pricing_calls_never_lists_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake.open(tmp_path / "lake")
    load_catalog(lake=lake)
    listings = []
    real = pricing.latest_version
    monkeypatch.setattr(pricing, "latest_version", lambda **kw: listings.append(1) or real(**kw))
    pricer = GatewayPricer(lake=lake, reload_seconds=60)
    pricer.poll(force=True)
    for i in range(1000):
        pricer.cost_usd(_call(input_tokens=i + 1))
        pricer.poll()  # what the thread does: within the interval, no listing either
    assert listings == [1]


def test_without_a_reachable_catalog_costs_are_null_a_warning_is_logged_and_calls_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a lake that cannot be listed (S3 down, no permission)
    lake = Lake.open(tmp_path / "lake")
    load_catalog(lake=lake)
    real = pricing.latest_version

    def unreachable(**_: Any) -> str:
        raise OSError("When listing objects under key 'pricing/catalog': AWS Error ACCESS_DENIED")

    monkeypatch.setattr(pricing, "latest_version", unreachable)
    caplog.set_level(logging.WARNING, logger="ingest.pricing")
    pricer = GatewayPricer(lake=lake, reload_seconds=60).start(wait=5)
    try:
        # THEN calls are unpriced (never refused), and the problem is logged once however often it is retried
        assert pricer.version is None and pricer.cost_usd(_call()) is None and pricer.priced_pico(_call()) == (0, False)
        pricer.poll(force=True)
        pricer.poll(force=True)
        warnings = [r for r in caplog.records if "cannot read the price catalog" in r.getMessage()]
        assert len(warnings) == 1 and "ACCESS_DENIED" in warnings[0].getMessage()
        assert "cost_usd is null" in warnings[0].getMessage()
        # AND once the lake answers again, calls are priced and that is logged too
        monkeypatch.setattr(pricing, "latest_version", real)
        assert pricer.poll(force=True) and pricer.cost_usd(_call()) == "0.250000000000"
        assert any("reads the price catalog again" in r.getMessage() for r in caplog.records)
    finally:
        pricer.close()


def test_an_empty_lake_prices_from_the_builtin_data_and_the_gateway_publishes_nothing(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    pricer = GatewayPricer(lake=lake, reload_seconds=60)
    assert pricer.poll(force=True) and pricer.version == load_catalog().version
    assert pricer.cost_usd(_call()) == "0.250000000000" and list_versions(lake=lake) == []
    # WHEN the first transform publishes the built-in catalog, the next listing switches to that version
    published = load_catalog(lake=lake).version
    assert pricer.poll(force=True) and pricer.version == published


def test_the_cost_text_the_reload_setting_and_the_lookup() -> None:
    # the pricer spells the lookup out on its hot path: in the order of the price table's lookup
    assert LOOKUP_KEYS == ("model_id", "region", "service_tier", "image_width", "image_height", "image_quality")
    assert [usd(0), usd(1), usd(3 * 10**12 + 5)] == ["0.000000000000", "0.000000000001", "3.000000000005"]
    assert reload_seconds_from_env({}) == 60
    assert reload_seconds_from_env({"MODELMETER_PRICING_RELOAD_SECONDS": "5"}) == 5
    with pytest.raises(ValueError, match="MODELMETER_PRICING_RELOAD_SECONDS"):
        reload_seconds_from_env({"MODELMETER_PRICING_RELOAD_SECONDS": "0"})


def test_in_aws_the_gateway_lambda_prices_from_the_s3_lakes_pricing_prefix(s3_lake_uri: str, tmp_path: Path) -> None:
    # GIVEN an s3:// lake with a published version (moto's S3 server; pyarrow's real S3 client)
    lake = Lake.open(s3_lake_uri)
    version = load_catalog(lake=lake).version
    # WHEN the Lambda builds its runtime from the environment infra sets (MODELMETER_LAKE)
    settings = GatewaySettings.from_env({"MODELMETER_TENANT_TABLE": "tenants", "MODELMETER_LONGPOLL_TABLE": "longpoll",
                                         "MODELMETER_FIREHOSE_STREAM": "usage", "MODELMETER_SPOOL_DIR": str(tmp_path),
                                         "MODELMETER_LAKE": s3_lake_uri, "MODELMETER_PRICING_RELOAD_SECONDS": "30"})
    runtime = build_runtime(settings=settings, dynamodb=boto3.client("dynamodb"), firehose=boto3.client("firehose"),
                            bedrock_client=boto3.client("bedrock-runtime"))
    try:
        # THEN its gateway prices calls from that version, listing it every 30 s
        pricer = runtime.gateway.pricer
        assert (pricer.version, pricer.reload_seconds) == (version, 30)
        assert pricer.cost_usd(_call()) == "0.250000000000"
    finally:
        runtime.gateway.pricer.close()
        runtime.emitter.close(timeout=1)

"""The real gateway app on 127.0.0.1 (uvicorn) with BedrockProvider behind it: the seed's ``requests`` calls and the
``openai`` SDK, and the usage events that land in the lake (cache tokens, image count/size/quality)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import openai
import pyarrow.parquet as pq
import pytest
import requests
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from common.constants import RAW_EVENTS
from common.contracts import Team
from common.lake import Lake
from ingest.app import create_app
from ingest.emit import Emitter, local_emitter
from ingest.longpoll import MemoryLongPollStore
from ingest.providers.bedrock import BedrockProvider
from ingest.providers.registry import ProviderRouter
from ingest.server import start_background
from ingest.tenants import LocalTenantRegistry
from tests.aws.conftest import REGION, converse_stream_body, load_event

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


@dataclass
class Running:
    url: str
    secret: str
    emitter: Emitter
    lake: Lake

    def events(self) -> list[dict[str, Any]]:
        assert self.emitter.flush(timeout=10)
        return [row for path in self.lake.list_files(RAW_EVENTS) for row in pq.read_table(path).to_pylist()]


def serve(tmp: Path, client: Any) -> Iterator[Running]:
    registry = LocalTenantRegistry(tmp / "tenants.json")
    registry.put_team(Team(team_id="search", cost_center="CC-42"))
    _, secret = registry.create_key("search")
    lake = Lake.open(tmp / "lake")
    emitter = local_emitter(lake=lake, flush_interval=0.2)
    app = create_app(registry=registry, providers=ProviderRouter(default=BedrockProvider(client=client)),
                     emitter=emitter, longpoll=MemoryLongPollStore(), business_unit="retail")
    handle = start_background(app=app)
    try:
        yield Running(url=handle.url, secret=secret, emitter=emitter, lake=lake)
    finally:
        handle.stop()
        emitter.close(timeout=10)


@pytest.fixture
def stubbed(tmp_path: Path) -> Iterator[tuple[Running, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    with Stubber(client) as stubber:
        for running in serve(tmp_path, client):
            yield running, stubber


def _invoke_response(payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = json.dumps(payload).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json",
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": headers or {}}}


def test_seed_notebook_call_with_requests_bills_cache_tokens(stubbed: tuple[Running, Stubber]) -> None:
    # GIVEN Bedrock answering a Converse call with cache reads and writes
    gw, stubber = stubbed
    stubber.add_response("converse", load_event("converse_response"), {"modelId": CLAUDE, "messages": ANY,
                                                                       "inferenceConfig": {"maxTokens": 200}})
    # WHEN the seed's notebook calls the gateway exactly as it called the original
    r = requests.post(f"{gw.url}/invoke_model?model_id={CLAUDE}",
                      json={"inputs": [{"role": "user", "content": [{"text": "Capital of France?"}]}],
                            "parameters": {"maxTokens": 200}},
                      headers={"x-api-key": gw.secret, "team_id": "search", "messages_api": "true"}, timeout=10)
    # THEN it reads r.json()[0]["generated_text"], and the event carries the exact split of input tokens
    assert r.status_code == 200
    assert r.json()[0]["generated_text"] == "Paris is the capital of France."
    (event,) = gw.events()
    assert (event["provider"], event["region"], event["model_id"], event["status"]) == (
        "bedrock", REGION, CLAUDE, "ok")
    assert (event["input_tokens"], event["output_tokens"], event["cache_read_input_tokens"],
            event["cache_write_input_tokens"], event["token_source"]) == (12, 9, 1536, 512, "exact")


def test_seed_titan_image_records_count_size_and_quality(stubbed: tuple[Running, Stubber]) -> None:
    gw, stubber = stubbed
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_image_response")))
    body = {"textToImageParams": {"text": "a lighthouse at dusk"},
            "parameters": {"taskType": "TEXT_IMAGE", "imageGenerationConfig": {
                "numberOfImages": 2, "width": 1280, "height": 768, "quality": "premium"}}}
    r = requests.post(f"{gw.url}/invoke_model?model_id=amazon.nova-canvas-v1:0", json=body, timeout=10,
                      headers={"x-api-key": gw.secret, "team_id": "search", "type": "image"})
    assert r.status_code == 200 and len(r.json()[0]["images"]) == 2
    (event,) = gw.events()
    assert (event["operation"], event["image_count"], event["image_width"], event["image_height"],
            event["image_quality"]) == ("image", 2, 1280, 768, "premium")


def test_openai_sdk_chat_and_embeddings(stubbed: tuple[Running, Stubber]) -> None:
    gw, stubber = stubbed
    stubber.add_response("converse", load_event("converse_response"))
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_embed_text_v2_response"),
                                                          {"x-amzn-bedrock-input-token-count": "7"}))
    sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.secret, max_retries=0)
    chat = sdk.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Capital of France?"}])
    assert chat.choices[0].message.content == "Paris is the capital of France."
    assert chat.usage.prompt_tokens_details.cached_tokens == 1536
    emb = sdk.embeddings.create(model="amazon.titan-embed-text-v2:0", input="hello world")
    assert emb.data[0].embedding == pytest.approx([0.0133, -0.0421, 0.0874, 0.0012])
    events = sorted(gw.events(), key=lambda e: e["operation"])
    assert [(e["operation"], e["input_tokens"], e["cache_read_input_tokens"]) for e in events] == [
        ("chat", 12, 1536), ("embeddings", 7, 0)]


def test_openai_sdk_streaming_over_converse_stream(tmp_path: Path, stream_server: Any) -> None:
    # GIVEN Bedrock's ConverseStream bytes behind the gateway
    stream_server.body = converse_stream_body(load_event("converse_stream_events"))
    for gw in serve(tmp_path, stream_server.client("bedrock-runtime")):
        sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.secret, max_retries=0)
        # WHEN the SDK streams with include_usage
        stream = sdk.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Say hello"}],
                                             stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        # THEN the text arrives in pieces, usage comes last, and the event is marked streaming with cache reads
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
        assert chunks[-1].usage.completion_tokens == 5
        (event,) = gw.events()
        assert (event["streaming"], event["input_tokens"], event["output_tokens"],
                event["cache_read_input_tokens"]) == (True, 10, 5, 1024)


def test_bedrock_throttling_and_failure_reach_the_tenant_as_429_and_502(stubbed: tuple[Running, Stubber]) -> None:
    # GIVEN Bedrock throttling one call and failing the next
    gw, stubber = stubbed
    stubber.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429,
                             service_message="Too many requests, please wait before trying again.")
    stubber.add_client_error("converse", service_error_code="InternalServerException", http_status_code=500,
                             service_message="Internal error in account 111122223333")
    headers = {"x-api-key": gw.secret, "team_id": "search"}
    # WHEN the seed client calls twice
    throttled = requests.post(f"{gw.url}/invoke_model?model_id={CLAUDE}", json={"inputs": "hi"}, headers=headers,
                              timeout=10)
    failed = requests.post(f"{gw.url}/invoke_model?model_id={CLAUDE}", json={"inputs": "hi"}, headers=headers,
                           timeout=10)
    # THEN 429 with Retry-After, then 502 without the provider's text; one event each with that status
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert failed.status_code == 502 and "111122223333" not in failed.text
    statuses = sorted((e["status"], e["http_status"]) for e in gw.events())
    assert statuses == [("throttled", 429), ("upstream_error", 502)]

"""Refusals and failures: who gets which status, what body, and which usage event (one per authenticated request)."""

from __future__ import annotations

import time

import pytest
import requests

from bench.fake_upstream import FakeUpstream
from ingest.providers.openai_compat import OpenAICompatProvider
from ingest.providers.registry import ProviderRouter
from ingest.providers.simulator import SimulatorProvider

from .conftest import run_gateway

NOVA = "amazon.nova-micro-v1:0"


class BrokenProvider:
    """A provider with a bug: raises something that is not a gateway error."""

    name, region = "bedrock", "us-east-1"

    async def list_models(self):
        return []

    async def invoke(self, request):
        raise RuntimeError("secret internal detail: /home/x/traceback")

    def stream(self, request):
        raise RuntimeError("secret internal detail")

    async def aclose(self):
        return None


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with FakeUpstream() as upstream:
        openai_upstream = OpenAICompatProvider(base_url=upstream.url, timeout=0.5)
        router = ProviderRouter(default=SimulatorProvider(), patterns=[
            *((p, openai_upstream) for p in ("fail-*", "slow-*", "no-usage", "cached", "fake-*")),
            ("broken-*", BrokenProvider()), ("sim-slow-*", SimulatorProvider(per_token_latency=0.05))])
        yield from run_gateway(tmp_path_factory.mktemp("errors"), router, max_body_bytes=64 * 1024)


def _seed(gw, model=NOVA, body=None, *, team="alpha", key=None, **headers):
    hdrs = {"x-api-key": key if key is not None else gw.keys[team], "team_id": team, **headers}
    return requests.post(f"{gw.url}/invoke_model?model_id={model}", json=body or {"inputs": "hi"}, headers=hdrs,
                         timeout=10)


def _event(gw, response):
    events = gw.events_of(response.headers["x-request-id"])
    assert len(events) == 1, events
    return events[0]


def test_unknown_or_missing_key_is_403_with_no_event(gw):
    before = len(gw.events())
    for key in ("mk_live_000000000000.forged", ""):
        r = _seed(gw, key=key)
        assert r.status_code == 403 and r.json()["message"] == "Forbidden"
        assert "x-request-id" not in r.headers
    assert len(gw.events()) == before


def test_spoofed_team_id_is_403_and_billed_to_the_keys_team(gw):
    r = requests.post(f"{gw.url}/invoke_model?model_id={NOVA}", json={"inputs": "hi"},
                      headers={"x-api-key": gw.keys["alpha"], "team_id": "beta"}, timeout=10)
    assert r.status_code == 403 and "team_id" in r.json()["message"]
    event = _event(gw, r)
    assert (event["team_id"], event["status"], event["http_status"]) == ("alpha", "client_error", 403)
    assert event["refusal_reason"] == "team_mismatch"


def test_spoofed_team_id_on_v1_is_403_and_its_event_names_the_model(gw):
    r = requests.post(f"{gw.url}/v1/chat/completions", json={"model": NOVA, "messages": [{"role": "user",
                                                                                          "content": "hi"}]},
                      headers={"Authorization": f"Bearer {gw.keys['alpha']}", "team_id": "beta"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["type"]
    event = _event(gw, r)
    assert (event["team_id"], event["model_id"], event["http_status"]) == ("alpha", NOVA, 403)


def test_missing_team_id_is_400(gw):
    r = requests.post(f"{gw.url}/invoke_model?model_id={NOVA}", json={"inputs": "hi"},
                      headers={"x-api-key": gw.keys["alpha"]}, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "missing team_id header"
    assert _event(gw, r)["status"] == "client_error"


def test_model_outside_allowlist_is_403(gw):
    r = _seed(gw, "anthropic.claude-3-haiku-20240307-v1:0", team="beta")
    assert r.status_code == 403 and "not allowed" in r.json()["message"]
    event = _event(gw, r)
    assert (event["model_id"], event["refusal_reason"]) == ("anthropic.claude-3-haiku-20240307-v1:0", "allowlist")
    assert _seed(gw, NOVA, team="beta").status_code == 200


def test_rate_limit_is_429_with_retry_after_and_a_throttled_event(gw):
    responses = [_seed(gw, team="slow") for _ in range(4)]
    limited = [r for r in responses if r.status_code == 429]
    assert responses[0].status_code == 200 and limited
    assert int(limited[0].headers["Retry-After"]) >= 1
    event = _event(gw, limited[0])
    assert (event["status"], event["http_status"], event["input_tokens"]) == ("throttled", 429, 0)
    assert event["refusal_reason"] == "rate_limit"


def test_daily_token_limit_is_429_once_spent(gw):
    first = _seed(gw, team="thrifty", body={"inputs": "a prompt long enough to pass ten tokens at once"})
    assert first.status_code == 200
    second = _seed(gw, team="thrifty")
    assert second.status_code == 429 and "daily token limit" in second.json()["message"]
    assert int(second.headers["Retry-After"]) > 0
    assert _event(gw, second)["refusal_reason"] == "token_quota"


@pytest.mark.parametrize(("body", "headers", "fragment"), [
    (b"{not json", {}, "not valid JSON"),
    (b"", {}, "empty"),
    (b'["a list"]', {}, "JSON object"),
    (b'{"inputs": 42}', {}, "inputs must be a string"),
    (b'{"inputs": "x", "parameters": "warm"}', {}, "parameters must be an object"),
    (b'{"inputs": "x", "parameters": {"maxTokens": -3}}', {}, "positive integer"),
    (b'{"inputs": "not messages"}', {"messages_api": "true"}, "list of {role, content}"),
    (b'{"inputs": "x"}', {"type": "video"}, "unknown type"),
    (b'\xff\xfe', {}, "UTF-8"),
])
def test_malformed_bodies_are_400_with_a_clear_message(gw, body, headers, fragment):
    r = requests.post(f"{gw.url}/invoke_model?model_id={NOVA}", data=body, timeout=10,
                      headers={"x-api-key": gw.keys["alpha"], "team_id": "alpha", "content-type": "application/json",
                               **headers})
    assert r.status_code == 400 and fragment in r.json()["message"], r.text
    assert _event(gw, r)["status"] == "client_error"


def test_v1_malformed_body_uses_the_openai_error_shape(gw):
    r = requests.post(f"{gw.url}/v1/chat/completions", data=b'{"model": 3}', timeout=10,
                      headers={"Authorization": f"Bearer {gw.keys['alpha']}"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error" and "model" in r.json()["error"]["message"]


def test_oversized_body_is_413_declared_or_chunked(gw):
    big = {"inputs": "x" * (70 * 1024)}
    r = _seed(gw, body=big)
    assert r.status_code == 413 and _event(gw, r)["status"] == "client_error"
    chunked = requests.post(f"{gw.url}/invoke_model?model_id={NOVA}", data=iter([b'{"inputs": "', b"y" * 70_000,
                                                                                   b'"}']),
                            headers={"x-api-key": gw.keys["alpha"], "team_id": "alpha"}, timeout=10)
    assert chunked.status_code == 413


@pytest.mark.parametrize(("model", "status", "event_status"), [
    ("fail-500", 502, "upstream_error"),
    ("fail-429", 429, "throttled"),
    ("fail-400", 400, "client_error"),
    ("slow-1500", 504, "upstream_error"),
])
def test_upstream_failures_map_to_statuses(gw, model, status, event_status):
    r = requests.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {gw.keys['alpha']}"}, timeout=10)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) >= {"type", "message"}
    event = _event(gw, r)
    assert (event["status"], event["http_status"], event["provider"]) == (event_status, status, "openai_compatible")
    assert event["refusal_reason"] is None  # the provider's refusal, not the gateway's
    if status == 429:
        assert r.headers["Retry-After"] == "2"


def test_unexpected_provider_bug_is_a_json_500_without_internals(gw):
    r = _seed(gw, "broken-model")
    assert r.status_code == 500
    assert r.json()["message"].startswith("internal error") and "secret" not in r.text and "Traceback" not in r.text
    assert _event(gw, r)["status"] == "upstream_error"


def test_openai_upstream_usage_exact_estimated_and_cached(gw):
    auth = {"Authorization": f"Bearer {gw.keys['alpha']}"}
    for model, source in (("fake-chat", "exact"), ("no-usage", "estimated"), ("cached", "exact")):
        r = requests.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": [
            {"role": "user", "content": "count these tokens please, all of them"}]}, headers=auth, timeout=10)
        assert r.status_code == 200
        event = _event(gw, r)
        assert event["token_source"] == source and event["output_tokens"] > 0
        if model == "cached":
            assert event["cache_read_input_tokens"] > 0
            assert r.json()["usage"]["prompt_tokens"] == event["input_tokens"] + event["cache_read_input_tokens"]


def test_openai_upstream_streaming_takes_usage_from_the_final_chunk(gw):
    r = requests.post(f"{gw.url}/v1/chat/completions", stream=True, headers={
        "Authorization": f"Bearer {gw.keys['alpha']}"}, json={"model": "fake-chat", "stream": True,
                                                              "messages": [{"role": "user", "content": "hey"}]},
        timeout=10)
    lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]" and r.status_code == 200
    event = _event(gw, r)
    assert event["streaming"] is True and event["token_source"] == "exact" and event["output_tokens"] == 7


def test_unknown_route_and_method_are_json(gw):
    assert requests.get(f"{gw.url}/nope", timeout=10).json()["message"] == "Not Found"
    r = requests.get(f"{gw.url}/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_client_leaving_mid_stream_is_billed_for_what_was_produced(gw):
    # GIVEN a slowly streamed answer (50 ms a token)
    r = requests.post(f"{gw.url}/v1/chat/completions", stream=True, timeout=10, headers={
        "Authorization": f"Bearer {gw.keys['alpha']}"}, json={"model": "sim-slow-1", "stream": True, "messages": [
            {"role": "user", "content": "a long answer please"}], "max_tokens": 40})
    # WHEN the client reads a few chunks and hangs up
    lines = r.iter_lines()
    received = [next(lines) for _ in range(6)]
    assert all(line.startswith(b"data:") or not line for line in received)
    request_id = r.headers["x-request-id"]
    r.close()
    # THEN the call is billed once, as a client error, with the tokens produced so far (estimated)
    deadline = time.monotonic() + 10
    while not gw.events_of(request_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    event = _event(gw, r)
    assert (event["status"], event["streaming"], event["token_source"]) == ("client_error", True, "estimated")
    assert 0 < event["output_tokens"] < 40


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": [{"type": "text", "text": 5}]}, {"role": "user", "content": "hi"}],
    [{"role": "system", "content": [{"type": "text", "text": None}]}, {"role": "user", "content": "hi"}],
    [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
     {"role": "user", "content": "hi"}],
    [{"role": "user", "content": [{"type": "text", "text": ["not", "text"]}]}],
])
def test_v1_content_parts_of_the_wrong_type_are_400_not_500(gw, messages):
    # A non-string text part reached "\n".join(...) and answered 500, billed as upstream_error.
    r = requests.post(f"{gw.url}/v1/chat/completions", json={"model": NOVA, "messages": messages}, timeout=10,
                      headers={"Authorization": f"Bearer {gw.keys['alpha']}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and "messages[0]" in r.json()["error"]["message"]
    assert _event(gw, r)["status"] == "client_error"


def test_too_many_or_too_large_headers_are_431_json(gw):
    many = {f"x-filler-{i}": "1" for i in range(150)}
    big = {"x-filler": "y" * (40 * 1024)}
    for extra in (many, big):
        r = requests.post(f"{gw.url}/v1/chat/completions", json={"model": NOVA, "messages": []}, timeout=10,
                          headers={"Authorization": f"Bearer {gw.keys['alpha']}", **extra})
        assert r.status_code == 431 and "headers over the limit" in r.json()["error"]["message"]
    ordinary = _seed(gw, **{f"x-filler-{i}": "1" for i in range(20)})
    assert ordinary.status_code == 200


def test_a_pending_poll_carries_the_polled_calls_request_id(gw):
    # GIVEN a seed async call on a slow model (0.4 s), polled before it is done
    start = _seed(gw, model="slow-400", body={"inputs": "a long answer please"}, streaming="true")
    request_id = start.json()[0]["request_id"]
    poll = requests.post(f"{gw.url}/invoke_model?model_id=slow-400&requestId={request_id}", json={}, timeout=10,
                         headers={"x-api-key": gw.keys["alpha"], "team_id": "alpha", "streaming": "true"})
    # THEN the pending answer names the call it waits for (a fresh id would name a request with no event)
    assert poll.status_code == 200 and poll.json() == [{"request_id": request_id}]
    assert poll.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 15
    while not gw.events_of(request_id):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [e["status"] for e in gw.events_of(request_id)] == ["ok"]

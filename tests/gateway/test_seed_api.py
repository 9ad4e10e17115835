"""The seed's own client (its notebooks' ``requests`` calls) against a real gateway on 127.0.0.1."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from common.contracts import parse_event, value_problems

NOVA = "amazon.nova-micro-v1:0"


def _headers(gateway, team="alpha", **extra):
    return {"x-api-key": gateway.keys[team], "team_id": team, **extra}


def _invoke(gateway, model, body, *, team="alpha", query="", **headers):
    return requests.post(f"{gateway.url}/invoke_model?model_id={model}{query}", json=body,
                         headers=_headers(gateway, team, **headers), timeout=10)


def _only_event(gateway, request_id):
    events = gateway.events_of(request_id)
    assert len(events) == 1, events
    event = events[0]
    assert value_problems(event) == []
    return event


def test_text_completion_answers_like_the_seed_and_bills_one_event(gateway):
    # GIVEN the seed's plain text body
    body = {"inputs": "Write a haiku about invoices", "parameters": {"maxTokens": 20, "temperature": 0.5}}
    # WHEN the seed's client calls it
    r = _invoke(gateway, NOVA, body)
    # THEN the answer is a one-element array of generated_text
    assert r.status_code == 200
    answer = r.json()
    assert len(answer) == 1 and answer[0]["generated_text"].startswith("[simulated]")
    # AND exactly one valid usage event carries the key's team, the key id (never the key) and no text
    event = _only_event(gateway, r.headers["x-request-id"])
    assert parse_event({**event, "event_time": event["event_time"].isoformat()})
    assert (event["team_id"], event["api_key_id"], event["status"], event["operation"]) == (
        "alpha", gateway.key_ids["alpha"], "ok", "text")
    assert event["input_tokens"] > 0 and 0 < event["output_tokens"] <= 20
    assert event["provider"] == "simulator" and event["business_unit"] == "test-bu"
    assert event["token_source"] == "exact" and event["latency_ms"] >= 0 and event["http_status"] == 200
    flat = " ".join(str(v) for v in event.values())
    assert gateway.keys["alpha"] not in flat and "haiku" not in flat and "[simulated]" not in flat


def test_messages_api_with_system_and_tools(gateway):
    body = {"inputs": [{"role": "user", "content": [{"text": "What is our spend?"}]}],
            "parameters": {"maxTokens": 12, "system": "You are terse.", "stopSequences": ["\n"]},
            "additional_model_fields": {"top_k": 5},
            "tool_config": {"tools": [{"toolSpec": {"name": "spend", "inputSchema": {"json": {"type": "object"}}}}]}}
    r = _invoke(gateway, NOVA, body, messages_api="true")
    # with tools offered, the seed answers the model's toolUse blocks (the simulator always asks for the tool)
    assert r.status_code == 200
    assert [b["toolUse"]["name"] for b in r.json()[0]["generated_text"]] == ["spend"]
    event = _only_event(gateway, r.headers["x-request-id"])
    assert event["operation"] == "chat" and 0 < event["output_tokens"] <= 12


def test_embeddings_and_image_embeddings(gateway):
    r = _invoke(gateway, "amazon.titan-embed-text-v2:0", {"inputs": "cost per team"}, type="embeddings")
    assert r.status_code == 200
    vector = r.json()[0]["embedding"]
    assert len(vector) == 16 and all(isinstance(v, float) for v in vector)
    assert _only_event(gateway, r.headers["x-request-id"])["operation"] == "embeddings"

    image = base64.b64encode(b"\x89PNG fake image bytes").decode()
    r = _invoke(gateway, "amazon.titan-embed-image-v1", {"inputs": image}, type="embeddings-image")
    assert r.status_code == 200 and r.json()[0]["embedding"]
    event = _only_event(gateway, r.headers["x-request-id"])
    # Titan Multimodal Embeddings bills the image per image: the event counts it (it was priced $0 before)
    assert (event["operation"], event["input_image_count"], event["image_count"]) == ("image_embeddings", 1, 0)


def test_titan_image_records_count_size_and_quality(gateway):
    body = {"textToImageParams": {"text": "a cost dashboard"},
            "parameters": {"taskType": "TEXT_IMAGE", "imageGenerationConfig": {
                "numberOfImages": 3, "width": 512, "height": 768, "quality": "premium"}}}
    r = _invoke(gateway, "amazon.titan-image-generator-v2:0", body, type="image")
    assert r.status_code == 200 and len(r.json()[0]["images"]) == 3
    event = _only_event(gateway, r.headers["x-request-id"])
    assert (event["operation"], event["image_count"], event["image_width"], event["image_height"],
            event["image_quality"]) == ("image", 3, 512, 768, "premium")


def test_stability_image_answers_artifacts(gateway):
    body = {"text_prompts": [{"text": "a lighthouse", "weight": 1}], "parameters": {"height": 640, "width": 640}}
    r = _invoke(gateway, "stability.stable-diffusion-xl-v1", body, type="image")
    assert r.status_code == 200 and len(r.json()[0]["artifacts"]) == 1
    event = _only_event(gateway, r.headers["x-request-id"])
    assert (event["image_count"], event["image_width"], event["image_quality"]) == (1, 640, "standard")


def _poll_until_text(gateway, model, request_id, headers, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = requests.post(f"{gateway.url}/invoke_model?model_id={model}&requestId={request_id}", json={},
                          headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        if "generated_text" in r.json()[0]:
            return r.json()[0]["generated_text"]
        assert r.json() == [{"request_id": request_id}]
        time.sleep(0.05)
    raise AssertionError("no generated_text before the deadline")


def test_streaming_long_poll_flow_bills_once(gateway):
    # GIVEN the seed's async flow: the first call returns a request id at once
    headers = _headers(gateway, messages_api="true", streaming="true")
    body = {"inputs": [{"role": "user", "content": [{"text": "summarise costs"}]}], "parameters": {"maxTokens": 30}}
    r = requests.post(f"{gateway.url}/invoke_model?model_id={NOVA}", json=body, headers=headers, timeout=10)
    assert r.status_code == 200
    request_id = r.json()[0]["request_id"]
    # WHEN the client re-POSTs with requestId until the text is there
    text = _poll_until_text(gateway, NOVA, request_id, headers)
    # THEN it gets the text once, further polls are refused, and the call is billed exactly once
    assert text.startswith("[simulated]")
    again = requests.post(f"{gateway.url}/invoke_model?model_id={NOVA}&requestId={request_id}", json={},
                          headers=headers, timeout=10)
    assert again.status_code == 404 and "requestId" in again.json()["message"]
    billed = [e for e in gateway.events_of(request_id) if e["status"] == "ok"]
    assert len(billed) == 1 and billed[0]["streaming"] is True and billed[0]["output_tokens"] > 0


def test_concurrent_polls_get_the_result_once_and_bill_once(gateway):
    headers = _headers(gateway, streaming="true")
    r = _invoke(gateway, NOVA, {"inputs": "hello"}, streaming="true")
    request_id = r.json()[0]["request_id"]
    time.sleep(0.3)  # the simulator has finished: every poll below races for the one result
    url = f"{gateway.url}/invoke_model?model_id={NOVA}&requestId={request_id}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(url, json={}, headers=headers, timeout=10), range(8)))
    got_text = [a for a in answers if a.status_code == 200 and "generated_text" in a.json()[0]]
    assert len(got_text) == 1
    assert all(a.status_code == 404 for a in answers if a not in got_text)
    assert len([e for e in gateway.events_of(request_id) if e["status"] == "ok"]) == 1


def test_unpolled_async_call_is_still_billed(gateway):
    r = _invoke(gateway, NOVA, {"inputs": "nobody will poll this"}, streaming="true")
    request_id = r.json()[0]["request_id"]
    deadline = time.monotonic() + 5
    while not gateway.events_of(request_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    event = _only_event(gateway, request_id)
    assert event["status"] == "ok" and event["input_tokens"] > 0


def test_poll_by_another_team_is_not_found(gateway):
    r = _invoke(gateway, NOVA, {"inputs": "mine"}, streaming="true")
    request_id = r.json()[0]["request_id"]
    other = requests.post(f"{gateway.url}/invoke_model?model_id={NOVA}&requestId={request_id}", json={},
                          headers=_headers(gateway, "beta", streaming="true"), timeout=10)
    assert other.status_code == 404


def test_list_foundation_models(gateway):
    r = requests.get(f"{gateway.url}/list_foundation_models", headers={"x-api-key": gateway.keys["alpha"]},
                     timeout=10)
    assert r.status_code == 200
    (listing,) = r.json()
    assert NOVA in {m["modelId"] for m in listing["modelSummaries"]}
    assert requests.get(f"{gateway.url}/list_foundation_models", timeout=10).status_code == 403

"""The ``openai`` SDK, unchanged, against the gateway's /v1 routes (simulator behind it)."""

from __future__ import annotations

import openai
import pytest

NOVA = "amazon.nova-micro-v1:0"


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.keys["alpha"], max_retries=0, timeout=10)


def test_chat_completion(gateway, client):
    raw = client.chat.completions.with_raw_response.create(
        model=NOVA, max_tokens=16, messages=[{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "How much did we spend?"}])
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert completion.usage.completion_tokens <= 16 and completion.usage.prompt_tokens > 0
    (event,) = gateway.events_of(raw.headers["x-request-id"])
    assert (event["operation"], event["status"], event["streaming"]) == ("chat", "ok", False)
    assert event["input_tokens"] == completion.usage.prompt_tokens
    assert event["output_tokens"] == completion.usage.completion_tokens


def test_streaming_with_include_usage(gateway, client):
    # GIVEN a streamed chat asking for usage in the final chunk
    stream = client.chat.completions.create(model=NOVA, stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "stream please"}])
    # WHEN it is read to the end
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage]
    # THEN the deltas make the answer, the last chunk carries the usage, and the event has the same counts
    assert text.startswith("[simulated]") and len(usage) == 1
    request_id = chunks[0].id.removeprefix("chatcmpl-")
    (event,) = gateway.events_of(request_id)
    assert event["streaming"] is True and event["status"] == "ok"
    assert (event["input_tokens"], event["output_tokens"]) == (usage[0].prompt_tokens, usage[0].completion_tokens)


def test_streaming_without_include_usage_is_still_billed(gateway, client):
    chunks = list(client.chat.completions.create(model=NOVA, stream=True,
                                                 messages=[{"role": "user", "content": "no usage chunk"}]))
    assert all(c.usage is None for c in chunks)
    (event,) = gateway.events_of(chunks[0].id.removeprefix("chatcmpl-"))
    assert event["output_tokens"] > 0 and event["token_source"] == "exact"


def test_embeddings_default_base64_and_float(gateway, client):
    result = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=["one", "two three"])
    assert [len(d.embedding) for d in result.data] == [16, 16]
    floats = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert result.usage.prompt_tokens > 0


def test_models_list(client):
    assert NOVA in {m.id for m in client.models.list()}


def test_error_types_map_to_sdk_exceptions(gateway):
    bad_key = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-a-key", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}])
    beta = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.keys["beta"], max_retries=0, timeout=10)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        beta.chat.completions.create(model="anthropic.claude-3-haiku-20240307-v1:0",
                                     messages=[{"role": "user", "content": "x"}])
    assert denied.value.body["type"] == "permission_error"
    alpha = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.keys["alpha"], max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError):
        alpha.chat.completions.create(model=NOVA, messages=[])
    slow = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.keys["slow"], max_retries=0, timeout=10)
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(5):
            slow.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_huge_max_tokens_is_answered_promptly_and_billed_once(gateway, client):
    # GIVEN a client asking for two billion output tokens (schemathesis found this used to hang the simulator)
    # WHEN it calls chat completions
    response = client.chat.completions.create(model="amazon.nova-micro-v1:0", max_tokens=2**31 - 1,
                                              messages=[{"role": "user", "content": "hi"}], timeout=10)

    # THEN the answer is bounded like a real model's, and exactly one event records the same usage
    assert 0 < response.usage.completion_tokens <= 4096
    events = gateway.events_of(response.id.removeprefix("chatcmpl-"))
    assert [e["output_tokens"] for e in events] == [response.usage.completion_tokens]

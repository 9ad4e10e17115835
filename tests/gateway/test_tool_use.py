"""Tool use through the gateway with the labelled simulator: the seed notebook's round trip (``requests``) and the
``openai`` SDK's tools (plain and streamed), each call with exactly one usage event."""

from __future__ import annotations

import json
import time

import jsonschema
import openai
import pytest
import requests

from bench.fake_upstream import FakeUpstream
from ingest.providers.openai_compat import OpenAICompatProvider
from ingest.providers.registry import ProviderRouter
from ingest.providers.simulator import SimulatorProvider
from tests.gateway.conftest import run_gateway

NOVA = "amazon.nova-micro-v1:0"
SONNET = "anthropic.claude-3-sonnet-20240229-v1:0"  # what the seed notebook's tool cells call
#: The seed guidance's notebook (01_bedrock_api.ipynb, "Amazon Bedrock - Tools"), its tool and tool config as sent.
TOOL_CONFIG = {"tools": [{"toolSpec": {
    "name": "get_weather", "description": "Get weather of a location.",
    "inputSchema": {"json": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City of the location"},
        "state": {"type": "string", "description": "State of the location"}}, "required": ["city", "state"]}}}}]}
MODEL_KWARGS = {"maxTokens": 4096, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\nHuman:"]}
WEATHER_SCHEMA = TOOL_CONFIG["tools"][0]["toolSpec"]["inputSchema"]["json"]
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get weather of a location.",
                                                  "parameters": WEATHER_SCHEMA}},
                {"type": "function", "function": {"name": "get_stock_price", "description": "Price of a share.",
                                                  "parameters": {"type": "object", "properties": {
                                                      "ticker": {"type": "string"}}, "required": ["ticker"]}}}]


class ToolsList:
    """The notebook's mock-up tool, called the way the notebook calls it: ``getattr(ToolsList(), name)(**input)``."""

    def get_weather(self, city, state):
        return f"Weather in {city}, {state} is 70F and clear skies."


def _one_event(gateway, request_id):
    events = gateway.events_of(request_id)
    assert len(events) == 1, events
    return events[0]


def _seed_post(gateway, body, **headers):
    return requests.post(f"{gateway.url}/invoke_model?model_id={SONNET}", json=body, timeout=10, headers={
        "x-api-key": gateway.keys["alpha"], "team_id": "alpha", "messages_api": "true", **headers})


def test_the_seed_notebooks_tool_round_trip_runs_and_bills_each_call_once(gateway):
    # GIVEN the notebook's prompt, tool config and model kwargs
    prompt = [{"role": "user", "content": [{"text": "What is the weather like in Queens, NY?"}]}]
    # WHEN it runs its cells: the call with tool_config …
    response = _seed_post(gateway, {"inputs": prompt, "parameters": MODEL_KWARGS, "tool_config": TOOL_CONFIG})
    assert response.status_code == 200, response.text
    text = response.json()[0]["generated_text"]
    # … the tool, run from the toolUse block …
    function_calling = next((c["toolUse"] for c in text if "toolUse" in c), None)
    tool_response = getattr(ToolsList(), function_calling["name"])(**(function_calling["input"] or {})) or ""
    # … and the call again with the assistant's turn and the toolResult appended
    prompt.append({"role": "assistant", "content": text})
    prompt.append({"role": "user", "content": [{"toolResult": {
        "toolUseId": function_calling["toolUseId"], "content": [{"text": tool_response}], "status": "success"}}]})
    final = _seed_post(gateway, {"inputs": prompt, "parameters": MODEL_KWARGS, "tool_config": TOOL_CONFIG})
    # THEN the tool got type-correct arguments, the second answer is text, and each call has exactly one event
    assert tool_response == "Weather in simulated city, simulated state is 70F and clear skies."
    assert final.status_code == 200 and final.json()[0]["generated_text"].startswith("[simulated]")
    first_event = _one_event(gateway, response.headers["x-request-id"])
    second_event = _one_event(gateway, final.headers["x-request-id"])
    for event in (first_event, second_event):
        assert (event["status"], event["operation"], event["model_id"]) == ("ok", "chat", SONNET)
        assert event["input_tokens"] > 0 and event["output_tokens"] > 0
    # the second call sends the whole conversation (the tool call and its result) again: more input
    assert second_event["input_tokens"] > first_event["input_tokens"]


def test_the_seed_async_flow_answers_the_tool_call_once(gateway):
    # GIVEN the seed's async ("streaming: true") flow with a tool config
    body = {"inputs": [{"role": "user", "content": [{"text": "Weather in Queens, NY?"}]}],
            "parameters": {"maxTokens": 200}, "tool_config": TOOL_CONFIG}
    started = _seed_post(gateway, body, streaming="true")
    request_id = started.json()[0]["request_id"]
    # WHEN the client polls with requestId until generated_text appears
    deadline, answer = time.monotonic() + 10, None
    while answer is None and time.monotonic() < deadline:
        poll = requests.post(f"{gateway.url}/invoke_model?model_id={SONNET}&requestId={request_id}", json={},
                             headers={"x-api-key": gateway.keys["alpha"], "team_id": "alpha"}, timeout=10)
        assert poll.status_code == 200, poll.text
        answer = poll.json()[0].get("generated_text")
        time.sleep(0.05)
    # THEN the answer is the toolUse block, and the model call is billed exactly once
    (block,) = answer
    jsonschema.validate(block["toolUse"]["input"], WEATHER_SCHEMA)
    event = _one_event(gateway, request_id)
    assert event["status"] == "ok" and event["streaming"] is True and event["output_tokens"] > 0


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.keys["alpha"], max_retries=0, timeout=10)


def test_openai_tools_round_trip(gateway, client):
    # GIVEN the openai SDK offering two tools
    messages = [{"role": "user", "content": "What is the weather like in Queens, NY?"}]
    raw = client.chat.completions.with_raw_response.create(model=NOVA, messages=messages, tools=OPENAI_TOOLS)
    first = raw.parse()
    # THEN the answer is a tool call to the tool the question is about, arguments valid for its schema
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    event = _one_event(gateway, raw.headers["x-request-id"])
    assert (event["input_tokens"], event["output_tokens"]) == (first.usage.prompt_tokens,
                                                               first.usage.completion_tokens)
    # WHEN the tool's result is sent back as a tool message
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "70F and clear skies."}]
    raw = client.chat.completions.with_raw_response.create(model=NOVA, messages=messages, tools=OPENAI_TOOLS)
    second = raw.parse()
    # THEN the model answers in text, and that call too has exactly one event
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("[simulated]")
    assert _one_event(gateway, raw.headers["x-request-id"])["output_tokens"] == second.usage.completion_tokens


def test_openai_streamed_tool_call_is_assembled_by_the_sdk(gateway, client):
    # GIVEN a streamed chat that must call get_stock_price (tool_choice names it)
    choice = {"type": "function", "function": {"name": "get_stock_price"}}
    with client.chat.completions.stream(model=NOVA, messages=[{"role": "user", "content": "AMZN?"}],
                                        tools=OPENAI_TOOLS, tool_choice=choice,
                                        stream_options={"include_usage": True}) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    # THEN the SDK assembled one tool call from several deltas, finish_reason tool_calls
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) >= 2 and deltas[0].id and deltas[0].function.name == "get_stock_price"
    (call,) = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls" and call.id == deltas[0].id
    assert json.loads(call.function.arguments) == {"ticker": "simulated ticker"}
    # AND exactly one streamed event with the usage chunk's counts
    event = _one_event(gateway, chunks[0].id.removeprefix("chatcmpl-"))
    assert event["streaming"] is True and event["status"] == "ok"
    assert (event["input_tokens"], event["output_tokens"]) == (final.usage.prompt_tokens,
                                                               final.usage.completion_tokens)


def test_tool_choice_none_answers_text_and_bad_tools_get_a_clear_400(gateway, client):
    text = client.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "weather?"}],
                                          tools=OPENAI_TOOLS, tool_choice="none")
    assert text.choices[0].message.tool_calls is None and text.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": ""}}])
    assert "tools[0].function needs a non-empty name" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as orphan:
        client.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"},
                                                             {"role": "tool", "content": "70F"}])
    assert "tool_call_id" in orphan.value.body["message"]
    for choice in ({"type": "function", "function": "get_weather"}, {"type": "function", "function": ["x"]}):
        with pytest.raises(openai.BadRequestError) as wrong:  # a JSON 400, not a 500
            client.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}],
                                           tools=OPENAI_TOOLS, tool_choice=choice)
        assert "tool_choice must be" in wrong.value.body["message"]


@pytest.fixture(scope="module")
def upstream_gw(tmp_path_factory):
    """The gateway with an OpenAI-compatible upstream (bench/fake_upstream.py) behind ``fake-*``."""
    with FakeUpstream() as upstream:
        router = ProviderRouter(default=SimulatorProvider(), patterns=[
            ("fake-*", OpenAICompatProvider(base_url=upstream.url, timeout=5))])
        yield from run_gateway(tmp_path_factory.mktemp("tools-upstream"), router)


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_compatible_upstreams_tool_calls_reach_the_sdk(upstream_gw, stream):
    # GIVEN an upstream that answers a chat offering tools with a tool call (streamed: in three deltas)
    client = openai.OpenAI(base_url=f"{upstream_gw.url}/v1", api_key=upstream_gw.keys["alpha"], max_retries=0,
                           timeout=10)
    messages = [{"role": "user", "content": "weather?"}]
    # WHEN the SDK calls it through the gateway
    if stream:
        with client.chat.completions.stream(model="fake-chat", messages=messages, tools=OPENAI_TOOLS) as chunks:
            completion = chunks.get_final_completion()
    else:
        completion = client.chat.completions.create(model="fake-chat", messages=messages, tools=OPENAI_TOOLS)
    # THEN the tool call arrives whole, and the call has exactly one event
    (call,) = completion.choices[0].message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_fake_0", "get_weather", {"fake": True})
    assert completion.choices[0].finish_reason == "tool_calls"
    event = _one_event(upstream_gw, completion.id.removeprefix("chatcmpl-"))
    assert (event["provider"], event["status"], event["streaming"]) == ("openai_compatible", "ok", stream)

"""The simulator's tool use: inputs that satisfy the tool's JSON Schema, the tool it picks, and when it answers text."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from common.errors import UpstreamError
from ingest.openai_tools import converse_tool_config, tool_call_deltas
from ingest.providers.base import ModelRequest
from ingest.providers.openai_compat import _fold_tool_calls
from ingest.providers.simulator import SimulatorProvider
from ingest.providers.simulator_tools import example_value, tool_to_call
from ingest.routes_v1 import chat_request

SCHEMAS = [
    {"type": "object", "properties": {"city": {"type": "string"}, "state": {"type": "string"}},
     "required": ["city", "state"]},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 9},
                                      "x": {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 3},
                                      "neg": {"type": "integer", "maximum": -4},
                                      "ok": {"type": "boolean"}, "nothing": {"type": "null"}},
     "required": ["n", "x", "neg", "ok", "nothing"]},
    {"type": "object", "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                      "kind": {"const": "forecast"}, "day": {"type": "string", "format": "date"},
                                      "code": {"type": "string", "minLength": 40},
                                      "short": {"type": "string", "maxLength": 3}},
     "required": ["unit", "kind", "day", "code", "short"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                                      "where": {"type": "object", "properties": {"lat": {"type": "number"}},
                                                "required": ["lat"]},
                                      "maybe": {"type": ["null", "integer"]},
                                      "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
     "required": ["tags", "where", "maybe", "either"], "additionalProperties": False},
    {"type": "object", "properties": {"optional": {"type": "string"}}},  # nothing required: {}
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_input_satisfies_the_schema(schema):
    value = example_value(schema, "input")
    jsonschema.validate(value, schema)  # raises ValidationError on any violation
    # only what is required: a client calling tool(**input) gets no unexpected keyword
    assert set(value) == set(schema.get("required", [])) | {r for part in schema.get("allOf", [])
                                                            for r in part.get("required", [])}


WEATHER = {"tools": [
    {"toolSpec": {"name": "get_stock", "description": "Price of a share.",
                  "inputSchema": {"json": {"type": "object", "properties": {"ticker": {"type": "string"}},
                                           "required": ["ticker"]}}}},
    {"toolSpec": {"name": "get_weather", "description": "Get weather of a location.",
                  "inputSchema": {"json": {"type": "object", "properties": {
                      "city": {"type": "string"}, "state": {"type": "string"}}, "required": ["city", "state"]}}}},
]}


def _chat(text, tool_config=WEATHER, extra_messages=()):
    return ModelRequest(model_id="amazon.nova-micro-v1:0", operation="chat", tool_config=tool_config,
                        messages=[{"role": "user", "content": [{"text": text}]}, *extra_messages])


def test_the_tool_is_the_one_the_conversation_is_about_or_the_one_tool_choice_names():
    assert tool_to_call(_chat("What is the weather like in Queens?"), "What is the weather like in Queens?")[
        "name"] == "get_weather"
    named = {**WEATHER, "toolChoice": {"tool": {"name": "get_stock"}}}
    assert tool_to_call(_chat("weather please", named), "weather please")["name"] == "get_stock"
    assert tool_to_call(_chat("anything", None), "anything") is None


def test_invoke_asks_for_the_tool_then_answers_its_result_in_text():
    sim = SimulatorProvider(seed=7)
    # GIVEN a chat with tools
    first = asyncio.run(sim.invoke(_chat("What is the weather like in Queens, NY?")))
    # THEN one deterministic toolUse block, stop reason tool_use, the tool definitions counted as input
    (block,) = first.tool_use
    use = block["toolUse"]
    assert (use["name"], use["input"], first.stop_reason, first.text) == (
        "get_weather", {"city": "simulated city", "state": "simulated state"}, "tool_use", None)
    assert use["toolUseId"].startswith("tooluse_") and len(use["toolUseId"]) == len("tooluse_") + 22
    assert asyncio.run(sim.invoke(_chat("What is the weather like in Queens, NY?"))).tool_use == first.tool_use
    without_tools = asyncio.run(sim.invoke(_chat("What is the weather like in Queens, NY?", None)))
    assert first.usage.input_tokens > without_tools.usage.input_tokens + 50
    assert first.usage.output_tokens > 0
    # WHEN the tool's result comes back (the seed notebook's own message shapes)
    result = {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [
        {"text": "Weather in Queens, NY is 70F and clear skies."}], "status": "success"}}]}
    second = asyncio.run(sim.invoke(_chat("What is the weather like in Queens, NY?", extra_messages=(
        {"role": "assistant", "content": first.tool_use}, result))))
    # THEN it answers in text, end_turn
    assert second.tool_use is None and second.text.startswith("[simulated]") and second.stop_reason == "end_turn"


def test_stream_yields_the_tool_call_then_the_usage():
    async def collect():
        return [c async for c in SimulatorProvider().stream(_chat("weather in Queens"))]

    chunks = asyncio.run(collect())
    assert [c.tool_use[0]["toolUse"]["name"] for c in chunks if c.tool_use] == ["get_weather"]
    assert chunks[-1].stop_reason == "tool_use" and chunks[-1].usage.output_tokens > 0
    assert not any(c.text for c in chunks)


def test_openai_tools_become_a_converse_tool_config():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                               "parameters": {"type": "object"}}}]
    assert converse_tool_config(tools, None) == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather.", "inputSchema": {"json": {"type": "object"}}}}]}
    assert converse_tool_config(tools, "required")["toolChoice"] == {"any": {}}
    assert converse_tool_config(tools, {"type": "function", "function": {"name": "get_weather"}})[
        "toolChoice"] == {"tool": {"name": "get_weather"}}
    assert converse_tool_config(tools, "none") is None
    with pytest.raises(Exception, match="not one of tools"):
        converse_tool_config(tools, {"type": "function", "function": {"name": "other"}})
    with pytest.raises(Exception, match=r"tools\[0\].function needs a non-empty name"):
        converse_tool_config([{"type": "function", "function": {}}], None)


def test_streamed_deltas_carry_the_id_and_name_first_then_the_arguments_in_pieces():
    block = {"toolUse": {"toolUseId": "tooluse_x", "name": "f", "input": {"text": "y" * 80}}}
    deltas, chars = tool_call_deltas([block], first_index=2)
    head, *pieces = [d["tool_calls"][0] for d in deltas]
    assert (head["index"], head["id"], head["function"]) == (2, "tooluse_x", {"name": "f", "arguments": ""})
    assert len(pieces) > 1 and all(p["index"] == 2 and "id" not in p for p in pieces)
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(arguments) == block["toolUse"]["input"] and chars == len(arguments)


def test_a_v1_conversation_with_tool_calls_becomes_converse_messages():
    # GIVEN an OpenAI conversation: a question, an assistant turn with two calls (content "", as LangChain sends
    # it), and both results as tool messages
    calls = [{"id": f"call_{n}", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": json.dumps({"city": city})}}
             for n, city in ((1, "Paris"), (2, "Oslo"))]
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "get_weather"}}], "messages": [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "3C"}]}]}
    # WHEN the route translates it
    request, _, _ = chat_request(body)
    # THEN Converse gets toolUse blocks (no blank text) and one user message holding both toolResults
    assert request.messages[1:] == [
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "12C"}]}},
                                     {"toolResult": {"toolUseId": "call_2", "content": [{"text": "3C"}]}}]}]
    assert request.tool_config == {"tools": [{"toolSpec": {
        "name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    with pytest.raises(Exception, match=r"messages\[1\].tool_calls\[0\].function.arguments must be a JSON object"):
        chat_request({**body, "messages": [body["messages"][0], {"role": "assistant", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "not json"}}]}]})


def test_streamed_upstream_tool_calls_without_an_index_are_told_apart_by_their_id():
    # GIVEN two whole calls streamed without "index" (older OpenAI-compatible servers), then a continuation piece
    calls: dict[int, dict] = {}
    _fold_tool_calls(calls, [{"id": "a", "function": {"name": "f", "arguments": '{"x":'}}])
    _fold_tool_calls(calls, [{"function": {"arguments": "1}"}}])
    _fold_tool_calls(calls, [{"id": "b", "function": {"name": "g", "arguments": '{"y":2}'}}])
    # THEN they stay two calls, each with its own id, name and valid JSON arguments
    assert {i: (c["id"], c["name"], json.loads("".join(c["args"]))) for i, c in calls.items()} == {
        0: ("a", "f", {"x": 1}), 1: ("b", "g", {"y": 2})}
    # a malformed index is the upstream's error, not a crash of the stream
    with pytest.raises(UpstreamError):
        _fold_tool_calls(calls, [{"index": "0a", "function": {"arguments": "{}"}}])

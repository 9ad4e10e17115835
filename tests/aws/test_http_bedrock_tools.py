"""The ``openai`` SDK's tools through the gateway to Bedrock Converse (botocore Stubber, real response shapes): the
route sends Converse's ``toolConfig``, then the assistant's ``toolUse`` and the tool's ``toolResult`` blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import openai
import pytest
from botocore.stub import Stubber

from tests.aws.conftest import REGION, converse_stream_body, load_event
from tests.aws.test_http_bedrock import CLAUDE, Running, serve

SCHEMA = {"type": "object", "properties": {"sign": {"type": "string"}}, "required": ["sign"]}
TOOLS = [{"type": "function", "function": {"name": "top_song", "description": "The most popular song on a station.",
                                           "parameters": SCHEMA}}]
TOOL_CONFIG = {"tools": [{"toolSpec": {"name": "top_song", "description": "The most popular song on a station.",
                                       "inputSchema": {"json": SCHEMA}}}], "toolChoice": {"any": {}}}


@pytest.fixture
def stubbed(tmp_path: Path) -> Iterator[tuple[Running, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    with Stubber(client) as stubber:
        for running in serve(tmp_path, client):
            yield running, stubber


def test_openai_tool_round_trip_reaches_converse_in_its_own_shapes(stubbed: tuple[Running, Stubber]) -> None:
    gw, stubber = stubbed
    question = {"role": "user", "content": [{"text": "What is the top song on WZPZ?"}]}
    # GIVEN Bedrock asking for top_song, then answering in text once it has the result
    stubber.add_response("converse", load_event("converse_tool_use_response"), {
        "modelId": CLAUDE, "messages": [question], "toolConfig": TOOL_CONFIG})
    tool_use = {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}
    stubber.add_response("converse", load_event("converse_response"), {"modelId": CLAUDE, "toolConfig": TOOL_CONFIG,
                                                                       "messages": [question, {
        "role": "assistant", "content": [{"text": "I'll look up the weather."}, {"toolUse": tool_use}]}, {
        "role": "user", "content": [{"toolResult": {"toolUseId": tool_use["toolUseId"],
                                                    "content": [{"text": "Elemental Hotel"}]}}]}]})
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.secret, max_retries=0, timeout=10)
    messages: list[dict] = [{"role": "user", "content": "What is the top song on WZPZ?"}]
    # WHEN the SDK calls with tools, runs the tool and sends its result back
    first = client.chat.completions.create(model=CLAUDE, messages=messages, tools=TOOLS, tool_choice="required")
    (call,) = first.choices[0].message.tool_calls
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Elemental Hotel"}]
    second = client.chat.completions.create(model=CLAUDE, messages=messages, tools=TOOLS, tool_choice="required")
    # THEN Converse got both requests in its shapes (the Stubber checks them), the SDK saw the tool call, and each
    # call has one event with Bedrock's counts
    stubber.assert_no_pending_responses()
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        tool_use["toolUseId"], "top_song", {"sign": "WZPZ"})
    assert second.choices[0].message.content == "Paris is the capital of France."
    events = gw.events()
    assert sorted(e["output_tokens"] for e in events) == [9, 66] and {e["status"] for e in events} == {"ok"}


def test_a_streamed_converse_tool_call_reaches_the_sdk_as_tool_call_deltas(tmp_path: Path, stream_server) -> None:
    # GIVEN Bedrock's ConverseStream answer (text, then a toolUse block whose input arrives in two pieces) as
    # event-stream frames over HTTP
    stream_server.body = converse_stream_body(load_event("converse_stream_tool_events"))
    for gw in serve(tmp_path, stream_server.client("bedrock-runtime")):
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.secret, max_retries=0, timeout=10)
        # WHEN the SDK streams the chat with tools
        with client.chat.completions.stream(model=CLAUDE, tools=TOOLS, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Top song on WZPZ?"}]) as stream:
            final = stream.get_final_completion()
        # THEN it assembles the text and the tool call, and the one event has Bedrock's counts
        message = final.choices[0].message
        assert message.content == "Let me check." and final.choices[0].finish_reason == "tool_calls"
        (call,) = message.tool_calls
        assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
            "tooluse_Wf1dCR3nTz6mBcXS0r8ojg", "top_song", {"sign": "WZPZ"})
        (event,) = gw.events()
        assert (event["streaming"], event["input_tokens"], event["output_tokens"]) == (True, 375, 66)
        sent = json.loads(stream_server.requests[0][1])
        assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "top_song"

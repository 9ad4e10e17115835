"""BedrockProvider against botocore's Stubber (Converse, InvokeModel with real response shapes and headers) and a
local server speaking AWS event-stream (ConverseStream, InvokeModelWithResponseStream)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from common.errors import BadRequest, UpstreamClientError, UpstreamError, UpstreamThrottled, UpstreamTimeout
from ingest.providers.base import ModelRequest
from ingest.providers.bedrock import BedrockProvider
from ingest.providers.bedrock_payloads import ConverseStreamState
from tests.aws.conftest import REGION, converse_stream_body, encode_frame, load_event

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
PNG = load_event("titan_image_response")["images"][0]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    with Stubber(client) as stubber:
        yield BedrockProvider(client=client), stubber
        stubber.assert_no_pending_responses()


def _body(payload: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def _invoke_response(payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"body": _body(payload), "contentType": "application/json",
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {"content-type": "application/json",
                                                                        **(headers or {})}}}


def test_converse_chat_reports_cache_tokens_system_and_decoded_image(stubbed: Any) -> None:
    # GIVEN a chat with a system prompt, an image sent as base64 (seed shape) and extra model fields
    provider, stubber = stubbed
    messages = [{"role": "user", "content": [{"text": "What is this?"},
                                             {"image": {"format": "png", "source": {"bytes": PNG}}}]}]
    stubber.add_response("converse", load_event("converse_response"), {
        "modelId": CLAUDE,
        "messages": [{"role": "user", "content": [{"text": "What is this?"}, {
            "image": {"format": "png", "source": {"bytes": base64.b64decode(PNG)}}}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2},
        "additionalModelRequestFields": {"top_k": 5},
    })
    request = ModelRequest(model_id=CLAUDE, operation="chat", messages=messages,
                           parameters={"maxTokens": 50, "temperature": 0.2, "system": "Be brief."},
                           additional_model_fields={"top_k": 5})
    # WHEN it is invoked
    result = run(provider.invoke(request))
    # THEN text, stop reason and the exact usage (cache reads and writes apart from plain input) come back
    assert result.text == "Paris is the capital of France."
    assert result.stop_reason == "end_turn"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 9)
    assert (result.usage.cache_read_input_tokens, result.usage.cache_write_input_tokens) == (1536, 512)
    assert result.usage.token_source == "exact"


def test_converse_tool_use_out_and_tool_config_in(stubbed: Any) -> None:
    provider, stubber = stubbed
    tools = {"tools": [{"toolSpec": {"name": "top_song", "description": "Most popular song on a station.",
                                     "inputSchema": {"json": {"type": "object",
                                                              "properties": {"sign": {"type": "string"}}}}}}]}
    stubber.add_response("converse", load_event("converse_tool_use_response"),
                         {"modelId": CLAUDE, "messages": ANY, "toolConfig": tools})
    result = run(provider.invoke(ModelRequest(model_id=CLAUDE, operation="chat", tool_config=tools,
                                              messages=[{"role": "user", "content": [{"text": "WZPZ?"}]}])))
    assert result.tool_use == [{"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                                            "input": {"sign": "WZPZ"}}}]
    assert result.stop_reason == "tool_use"
    assert result.usage.input_tokens == 375


def test_custom_model_arn_is_what_bedrock_is_called_with(stubbed: Any) -> None:
    provider, stubber = stubbed
    arn = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/abcd1234efgh"
    stubber.add_response("converse", load_event("converse_response"), {"modelId": arn, "messages": ANY})
    result = run(provider.invoke(ModelRequest(model_id=CLAUDE, model_arn=arn, operation="text", prompt="Hi")))
    assert result.usage.output_tokens == 9


def test_titan_embeddings_use_header_token_counts(stubbed: Any) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_embed_text_v2_response"), {
        "x-amzn-bedrock-input-token-count": "7", "x-amzn-bedrock-invocation-latency": "52"}),
        {"modelId": "amazon.titan-embed-text-v2:0", "body": json.dumps({"inputText": "hello world"}),
         "contentType": "application/json", "accept": "application/json"})
    result = run(provider.invoke(ModelRequest(model_id="amazon.titan-embed-text-v2:0", operation="embeddings",
                                              prompt="hello world")))
    assert result.embedding == [0.0133, -0.0421, 0.0874, 0.0012]
    assert (result.usage.input_tokens, result.usage.token_source) == (7, "exact")


def test_cohere_embeddings_body_and_header_tokens(stubbed: Any) -> None:
    provider, stubber = stubbed
    text = "what is the capital of france?"
    stubber.add_response("invoke_model", _invoke_response(load_event("cohere_embed_response"), {
        "x-amzn-bedrock-input-token-count": "9"}),
        {"modelId": "cohere.embed-english-v3", "contentType": "application/json", "accept": "application/json",
         "body": json.dumps({"texts": [text], "input_type": "search_query"})})
    result = run(provider.invoke(ModelRequest(model_id="cohere.embed-english-v3", operation="embeddings",
                                              prompt=text, parameters={"input_type": "search_query"})))
    assert result.embedding == [0.0215, -0.0318, 0.0462]
    assert result.usage.input_tokens == 9


def test_embeddings_without_any_count_are_marked_estimated(stubbed: Any) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_model", _invoke_response(load_event("cohere_embed_response")))
    result = run(provider.invoke(ModelRequest(model_id="cohere.embed-english-v3", operation="embeddings",
                                              prompt="x" * 40)))
    assert (result.usage.input_tokens, result.usage.token_source) == (10, "estimated")


def test_titan_image_records_count_size_and_quality(stubbed: Any) -> None:
    # GIVEN the seed's Titan body: parameters hold taskType and imageGenerationConfig
    provider, stubber = stubbed
    config = {"numberOfImages": 2, "width": 768, "height": 1152, "quality": "premium", "cfgScale": 8.0}
    native = {"textToImageParams": {"text": "a lighthouse"}, "taskType": "TEXT_IMAGE",
              "imageGenerationConfig": config}
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_image_response")),
                         {"modelId": "amazon.titan-image-generator-v2:0", "body": json.dumps(native),
                          "contentType": "application/json", "accept": "application/json"})
    body = {"textToImageParams": {"text": "a lighthouse"},
            "parameters": {"taskType": "TEXT_IMAGE", "imageGenerationConfig": config}}
    # WHEN it is invoked
    result = run(provider.invoke(ModelRequest(model_id="amazon.titan-image-generator-v2:0", operation="image",
                                              body=body)))
    # THEN both images come back and the usage says 2 premium 768x1152 images
    assert len(result.images) == 2
    u = result.usage
    assert (u.image_count, u.image_width, u.image_height, u.image_quality) == (2, 768, 1152, "premium")


def test_stability_image_artifacts_and_step_quality(stubbed: Any) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_model", _invoke_response(load_event("stability_sdxl_response")))
    body = {"text_prompts": [{"text": "a red fox", "weight": 1.0}],
            "parameters": {"height": 1024, "width": 1024, "steps": 70, "cfg_scale": 7}}
    result = run(provider.invoke(ModelRequest(model_id="stability.stable-diffusion-xl-v1", operation="image",
                                              body=body)))
    assert result.artifacts[0]["finishReason"] == "SUCCESS"
    u = result.usage
    assert (u.image_count, u.image_width, u.image_height, u.image_quality) == (1, 1024, 1024, "premium")


def test_text_falls_back_to_invoke_model_when_converse_refuses_the_model(stubbed: Any) -> None:
    # GIVEN a model Converse turns away (Bedrock's own wording), answered natively with token headers
    provider, stubber = stubbed
    model = "amazon.titan-text-express-v1"
    stubber.add_client_error("converse", service_error_code="ValidationException", http_status_code=400,
                             service_message="This action doesn't support the model that you provided. "
                                             "Try again with a supported text or chat model.")
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_text_response"), {
        "x-amzn-bedrock-input-token-count": "5", "x-amzn-bedrock-output-token-count": "12"}),
        {"modelId": model, "contentType": "application/json", "accept": "application/json",
         "body": json.dumps({"inputText": "Describe a gateway.", "textGenerationConfig": {"maxTokenCount": 64}})})
    stubber.add_response("invoke_model", _invoke_response(load_event("titan_text_response")))
    request = ModelRequest(model_id=model, operation="text", prompt="Describe a gateway.",
                           parameters={"maxTokenCount": 64})
    # WHEN it is invoked twice
    first = run(provider.invoke(request))
    second = run(provider.invoke(request))
    # THEN the first call fell back, and the second went straight to InvokeModel (body counts, no headers)
    assert first.text == "\nA gateway meters model usage."
    assert (first.usage.input_tokens, first.usage.output_tokens) == (5, 12)
    assert (second.usage.input_tokens, second.usage.output_tokens, second.usage.token_source) == (5, 12, "exact")


@pytest.mark.parametrize(("code", "aws_status", "error", "status"), [
    ("ThrottlingException", 429, UpstreamThrottled, 429),
    ("ServiceQuotaExceededException", 429, UpstreamThrottled, 429),
    ("ModelTimeoutException", 408, UpstreamTimeout, 504),
    ("ValidationException", 400, UpstreamClientError, 400),
    ("AccessDeniedException", 403, UpstreamClientError, 403),
    ("ResourceNotFoundException", 404, UpstreamClientError, 404),
    ("InternalServerException", 500, UpstreamError, 502),
    ("ModelNotReadyException", 429, UpstreamError, 502),
])
def test_bedrock_errors_map_to_gateway_errors(stubbed: Any, code: str, aws_status: int, error: type,
                                              status: int) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse", service_error_code=code, http_status_code=aws_status,
                             service_message="Account 111122223333 arn:aws:bedrock:us-east-1:111122223333:x")
    with pytest.raises(error) as raised:
        run(provider.invoke(ModelRequest(model_id=CLAUDE, operation="chat",
                                         messages=[{"role": "user", "content": [{"text": "hi"}]}])))
    assert raised.value.status_code == status
    assert "111122223333" not in raised.value.message  # no account ids or ARNs reach the tenant


def test_read_timeout_is_a_504() -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)

    def boom(**_: Any) -> Any:
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse")

    client.meta.events.register("before-send.bedrock-runtime.Converse", boom)
    provider = BedrockProvider(client=client)
    with pytest.raises(UpstreamTimeout) as raised:
        run(provider.invoke(ModelRequest(model_id=CLAUDE, operation="text", prompt="hi")))
    assert raised.value.status_code == 504


def test_bad_base64_image_is_a_clear_400(stubbed: Any) -> None:
    provider, _ = stubbed
    messages = [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}]
    with pytest.raises(BadRequest, match=r"inputs\[0\]\.content\[0\]\.image\.source\.bytes"):
        run(provider.invoke(ModelRequest(model_id=CLAUDE, operation="chat", messages=messages)))


def test_list_models_from_bedrock_and_fallback() -> None:
    control = boto3.client("bedrock", region_name=REGION)
    runtime = boto3.client("bedrock-runtime", region_name=REGION)
    with Stubber(control) as stubber:
        stubber.add_response("list_foundation_models", {"modelSummaries": [{
            "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
            "modelId": "amazon.nova-lite-v1:0", "modelName": "Nova Lite", "providerName": "Amazon",
            "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"]}]})
        stubber.add_client_error("list_foundation_models", service_error_code="AccessDeniedException",
                                 http_status_code=403)
        provider = BedrockProvider(client=runtime, control_client=control, models=["amazon.nova-pro-v1:0"])
        listed = [{"model_id": "amazon.nova-lite-v1:0", "provider_name": "Amazon", "modalities": ["TEXT"]}]
        assert run(provider.list_models()) == listed
        assert run(provider.list_models()) == listed  # from the cache: no second control-plane call
        provider._listed = None  # cache expired, and now the call is denied: the configured models are listed
        assert [m["model_id"] for m in run(provider.list_models())] == ["amazon.nova-pro-v1:0"]


# --- streaming ----------------------------------------------------------------------------------------------------

def test_stream_state_folds_text_tool_use_and_usage() -> None:
    state = ConverseStreamState()
    text = "".join(state.feed(e) for e in load_event("converse_stream_tool_events"))
    assert text == "Let me check."
    assert state.tool_use == [{"toolUse": {"toolUseId": "tooluse_Wf1dCR3nTz6mBcXS0r8ojg", "name": "top_song",
                                           "input": {"sign": "WZPZ"}}}]
    assert state.stop_reason == "tool_use"
    assert (state.usage.input_tokens, state.usage.output_tokens) == (375, 66)


async def _collect(provider: BedrockProvider, request: ModelRequest) -> list[Any]:
    return [chunk async for chunk in provider.stream(request)]


def test_converse_stream_over_real_event_stream_bytes(stream_server: Any) -> None:
    # GIVEN Bedrock's ConverseStream answer encoded as event-stream frames, served over HTTP
    stream_server.body = converse_stream_body(load_event("converse_stream_events"))
    provider = BedrockProvider(client=stream_server.client("bedrock-runtime"))
    request = ModelRequest(model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0", operation="chat",
                           messages=[{"role": "user", "content": [{"text": "Say hello"}]}])
    # WHEN it is streamed through botocore's real event-stream parser
    chunks = run(_collect(provider, request))
    # THEN the deltas arrive in order and the last chunk carries the metadata usage
    assert "".join(c.text for c in chunks) == "Hello there!"
    assert chunks[-1].usage.cache_read_input_tokens == 1024
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (10, 5)
    assert chunks[-1].stop_reason == "end_turn"
    path, sent = stream_server.requests[0]
    assert path.endswith("/converse-stream")
    assert json.loads(sent)["messages"][0]["content"][0]["text"] == "Say hello"


def test_converse_stream_error_mid_stream_is_mapped(stream_server: Any) -> None:
    events = load_event("converse_stream_events")[:2] + [{"throttlingException": {"message": "Too many tokens"}}]
    stream_server.body = converse_stream_body(events)
    provider = BedrockProvider(client=stream_server.client("bedrock-runtime"))
    request = ModelRequest(model_id=CLAUDE, operation="text", prompt="hi")
    with pytest.raises(UpstreamThrottled):
        run(_collect(provider, request))


def test_native_stream_takes_usage_from_invocation_metrics(stream_server: Any) -> None:
    # GIVEN a native (InvokeModelWithResponseStream) Titan stream whose last chunk has the invocation metrics
    parts = [{"outputText": "Meter", "index": 0, "totalOutputTextTokenCount": 2, "completionReason": None,
              "inputTextTokenCount": 4},
             {"outputText": "ing.", "index": 0, "totalOutputTextTokenCount": 3, "completionReason": "FINISH",
              "inputTextTokenCount": None,
              "amazon-bedrock-invocationMetrics": {"inputTokenCount": 4, "outputTokenCount": 3,
                                                   "invocationLatency": 640, "firstByteLatency": 210}}]
    stream_server.body = b"".join(
        encode_frame("chunk", json.dumps({"bytes": base64.b64encode(json.dumps(p).encode()).decode()}).encode())
        for p in parts)
    provider = BedrockProvider(client=stream_server.client("bedrock-runtime"))
    provider._no_converse.add("amazon.titan-text-express-v1")
    # WHEN it is streamed
    chunks = run(_collect(provider, ModelRequest(model_id="amazon.titan-text-express-v1", operation="text",
                                                 prompt="Go")))
    # THEN text and exact counts come back
    assert "".join(c.text for c in chunks) == "Metering."
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (4, 3)
    assert stream_server.requests[0][0].endswith("/invoke-with-response-stream")


def test_openai_image_part_and_seed_document_become_converse_blocks() -> None:
    from ingest.providers.bedrock_payloads import converse_messages

    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    out = converse_messages([{"role": "user", "content": [
        {"text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
        {"document": {"format": "pdf", "name": "spec", "source": {"bytes": pdf}}}]}])
    blocks = out[0]["content"]
    assert blocks[1] == {"image": {"format": "jpeg", "source": {"bytes": base64.b64decode(PNG)}}}
    assert blocks[2]["document"]["source"]["bytes"] == b"%PDF-1.4 tiny"
    with pytest.raises(BadRequest, match="cannot fetch remote images"):
        converse_messages([{"role": "user", "content": [{"image_url": {"url": "https://example.com/a.png"}}]}])


def test_stream_abandoned_by_the_client_closes_the_provider_stream() -> None:
    class EventStream(list):
        closed = False

        def close(self) -> None:
            self.closed = True

    provider = BedrockProvider(client=boto3.client("bedrock-runtime", region_name=REGION))
    events = EventStream(load_event("converse_stream_events"))

    async def take_one() -> Any:
        stream = provider._iterate(events, CLAUDE)
        first = await anext(stream)
        await stream.aclose()  # what Starlette does when the tenant disconnects
        return first

    assert run(take_one()) == {"messageStart": {"role": "assistant"}}
    assert events.closed

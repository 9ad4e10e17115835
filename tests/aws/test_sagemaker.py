"""SageMakerProvider against botocore's Stubber (invoke_endpoint) and a local event-stream server
(invoke_endpoint_with_response_stream)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from common.errors import BadRequest, NotFound, UpstreamClientError, UpstreamError, UpstreamThrottled
from ingest.providers.base import ModelRequest
from ingest.providers.sagemaker import SageMakerProvider
from tests.aws.conftest import REGION, encode_frame, load_event

ENDPOINTS = {
    "llama-3-8b": {"endpoint_name": "llama3-8b-tgi", "inference_component": "llama3-8b-ic", "api": "messages"},
    "falcon-7b": {"endpoint_name": "jumpstart-falcon-7b", "api": "jumpstart"},
}


def _body(payload: Any) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    with Stubber(client) as stubber:
        yield SageMakerProvider(endpoints=ENDPOINTS, client=client), stubber
        stubber.assert_no_pending_responses()


def test_messages_api_usage_is_exact_and_inference_component_is_sent(stubbed: Any) -> None:
    # GIVEN a TGI messages-API endpoint hosting the model as an inference component
    provider, stubber = stubbed
    expected_body = {"messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "What is deep learning?"}], "max_tokens": 64}
    stubber.add_response("invoke_endpoint", {"Body": _body(load_event("tgi_messages_response")),
                                             "ContentType": "application/json"},
                         {"EndpointName": "llama3-8b-tgi", "InferenceComponentName": "llama3-8b-ic",
                          "ContentType": "application/json", "Accept": "application/json",
                          "Body": json.dumps(expected_body)})
    request = ModelRequest(model_id="llama-3-8b", operation="chat", system="Be brief.",
                           messages=[{"role": "user", "content": [{"text": "What is deep learning?"}]}],
                           parameters={"maxTokens": 64})
    # WHEN invoked
    result = asyncio.run(provider.invoke(request))
    # THEN the text and the container's usage come back
    assert result.text == "Deep learning is a subset of machine learning."
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.token_source) == (26, 11, "exact")
    assert result.stop_reason == "stop"


def test_jumpstart_shape_with_tgi_details(stubbed: Any) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_endpoint", {"Body": _body(load_event("jumpstart_tgi_response"))},
                         {"EndpointName": "jumpstart-falcon-7b", "ContentType": "application/json",
                          "Accept": "application/json", "Body": ANY, "InferenceComponentName": "override-ic"})
    request = ModelRequest(model_id="falcon-7b", operation="text", prompt="What is deep learning?",
                           parameters={"max_new_tokens": 32, "InferenceComponentName": "override-ic"})
    result = asyncio.run(provider.invoke(request))
    assert result.text.startswith(" Deep learning")
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.token_source) == (6, 11, "exact")


def test_jumpstart_without_details_is_estimated(stubbed: Any) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_endpoint", {"Body": _body([{"generated_text": "x" * 21}])})
    result = asyncio.run(provider.invoke(ModelRequest(model_id="falcon-7b", operation="text", prompt="abcdefgh")))
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.token_source) == (2, 6, "estimated")


def test_unknown_model_and_bad_config(stubbed: Any) -> None:
    provider, _ = stubbed
    with pytest.raises(NotFound):
        asyncio.run(provider.invoke(ModelRequest(model_id="nope", operation="text", prompt="hi")))
    with pytest.raises(ValueError, match="endpoint_name"):
        SageMakerProvider(endpoints={"m": {"api": "messages"}}, client=boto3.client("sagemaker-runtime"))
    with pytest.raises(BadRequest):
        asyncio.run(provider.invoke(ModelRequest(model_id="llama-3-8b", operation="chat", messages=[])))


@pytest.mark.parametrize(("code", "extra", "error", "status"), [
    ("ModelError", {"OriginalStatusCode": 400, "OriginalMessage": "Input validation error: `inputs` too long"},
     UpstreamClientError, 400),
    ("ModelError", {"OriginalStatusCode": 500, "OriginalMessage": "CUDA out of memory"}, UpstreamError, 502),
    ("ThrottlingException", {}, UpstreamThrottled, 429),
    ("ValidationError", {}, UpstreamClientError, 400),
    ("InternalFailure", {}, UpstreamError, 502),
])
def test_sagemaker_errors(stubbed: Any, code: str, extra: dict[str, Any], error: type, status: int) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=424 if extra else 400,
                             service_message="Endpoint llama3-8b-tgi of account 123456789012 not found.",
                             response_meta=None, modeled_fields=extra or None)
    with pytest.raises(error) as raised:
        asyncio.run(provider.invoke(ModelRequest(model_id="llama-3-8b", operation="text", prompt="hi")))
    assert raised.value.status_code == status
    assert "123456789012" not in raised.value.message and "CUDA" not in raised.value.message


def test_messages_stream_reassembles_split_sse_lines(stream_server: Any) -> None:
    # GIVEN a TGI SSE stream cut into PayloadParts at arbitrary byte offsets, usage in the last event
    sse = "".join(f"data: {json.dumps(d)}\n\n" for d in [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Deep"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": " learning."}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}},
    ]) + "data: [DONE]\n\n"
    raw = sse.encode()
    stream_server.body = b"".join(encode_frame("PayloadPart", raw[i:i + 37]) for i in range(0, len(raw), 37))
    provider = SageMakerProvider(endpoints=ENDPOINTS, client=stream_server.client("sagemaker-runtime"))

    async def collect() -> list[Any]:
        request = ModelRequest(model_id="llama-3-8b", operation="chat",
                               messages=[{"role": "user", "content": [{"text": "What is deep learning?"}]}])
        return [c async for c in provider.stream(request)]

    # WHEN streamed
    chunks = asyncio.run(collect())
    # THEN the text is whole, the usage exact, and the request asked for it
    assert "".join(c.text for c in chunks) == "Deep learning."
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (26, 3)
    path, sent = stream_server.requests[0]
    assert path == "/endpoints/llama3-8b-tgi/invocations-response-stream"
    assert json.loads(sent)["stream_options"] == {"include_usage": True}

"""Amazon SageMaker provider: real-time endpoints, configured as a map of model id → endpoint.

Two container APIs are spoken:

* ``messages``: TGI / LMI "messages API" (an OpenAI ``/v1/chat/completions`` body posted to the endpoint), whose
  response carries ``usage`` (exact token counts); streamed with ``invoke_endpoint_with_response_stream`` as SSE
  ``data:`` lines, ``stream_options.include_usage`` asking for the usage in the last one.
* ``jumpstart``: the text-generation shape ``{"inputs", "parameters"}`` → ``[{"generated_text"}]``. TGI reports
  ``details.generated_tokens`` (and the prompt tokens with ``decoder_input_details``) when asked for ``details``;
  otherwise the counts are estimated and marked so.

``InferenceComponentName`` (endpoints hosting several models) comes from the map, or from the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.exceptions import ClientError

from common.errors import BadRequest, NotFound, ServiceError, UpstreamClientError, UpstreamError
from ingest.providers.aws_calls import CLIENT_CONFIG, iterate_in_pool
from ingest.providers.aws_errors import map_boto_error, safe_message
from ingest.providers.base import ModelRequest, ModelResult, StreamChunk, Usage
from ingest.usage import estimate_tokens

T = TypeVar("T")
APIS = ("messages", "jumpstart")


class SageMakerProvider:
    """SageMaker endpoints behind the :class:`ingest.providers.base.Provider` interface.

    Args:
        endpoints: ``{"model_id": {"endpoint_name": …, "inference_component": … | None, "api": "messages" |
            "jumpstart"}}``.
        region: AWS region of the endpoints.
        client: a ``sagemaker-runtime`` client.
    """

    name = "sagemaker"

    def __init__(self, *, endpoints: dict[str, dict], region: str | None = None, client: Any = None,
                 max_workers: int = 32):
        for model_id, spec in endpoints.items():
            if not spec.get("endpoint_name"):
                raise ValueError(f"sagemaker model {model_id!r}: 'endpoint_name' is missing")
            if spec.get("api", "messages") not in APIS:
                raise ValueError(f"sagemaker model {model_id!r}: 'api' must be one of {', '.join(APIS)}")
        self.endpoints = endpoints
        self._client = client or boto3.client("sagemaker-runtime", region_name=region, config=CLIENT_CONFIG)
        self.region = region or self._client.meta.region_name
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sagemaker")

    async def list_models(self) -> list[dict[str, Any]]:
        return [{"model_id": m, "provider_name": "sagemaker", "modalities": ["TEXT"]} for m in self.endpoints]

    async def invoke(self, request: ModelRequest) -> ModelResult:
        spec, kwargs = self._call_args(request)
        body = _request_body(request, spec["api"], stream=False)
        response = await self._run(self._client.invoke_endpoint, request.model_id, Body=json.dumps(body), **kwargs)
        raw = await self._run(response["Body"].read, request.model_id)
        try:
            payload = json.loads(raw)
        except ValueError:
            raise UpstreamError(f"sagemaker endpoint for {request.model_id} returned a body that is not JSON") from None
        if spec["api"] == "messages":
            return _messages_result(payload, request)
        return _jumpstart_result(payload, request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        spec, kwargs = self._call_args(request)
        if spec["api"] != "messages":
            raise BadRequest(f"model {request.model_id} does not support streaming (its endpoint is not a messages "
                             f"API endpoint)")
        body = _request_body(request, "messages", stream=True)
        response = await self._run(self._client.invoke_endpoint_with_response_stream, request.model_id,
                                   Body=json.dumps(body), **kwargs)
        lines = _SSELines()
        usage: Usage | None = None
        finish: str | None = None
        produced = 0
        async for event in self._iterate(response["Body"], request.model_id):
            for data in lines.feed(event.get("PayloadPart", {}).get("Bytes", b"")):
                text, chunk_usage, chunk_finish = _parse_stream_data(data)
                usage = chunk_usage or usage
                finish = chunk_finish or finish
                if text:
                    produced += len(text)
                    yield StreamChunk(text=text)
        yield StreamChunk(usage=usage or Usage(input_tokens=estimate_tokens(request.prompt_text()),
                                               output_tokens=-(-produced // 4), token_source="estimated"),
                          stop_reason=finish)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _call_args(self, request: ModelRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = self.endpoints.get(request.model_id)
        if spec is None:
            raise NotFound(f"model {request.model_id!r} is not configured on this gateway")
        spec = {"api": "messages", **spec}
        kwargs: dict[str, Any] = {"EndpointName": spec["endpoint_name"], "ContentType": "application/json",
                                  "Accept": "application/json"}
        component = (request.extra.get("InferenceComponentName") or request.parameters.get("InferenceComponentName")
                     or spec.get("inference_component"))
        if component:
            kwargs["InferenceComponentName"] = component
        return spec, kwargs

    async def _run(self, fn: Callable[..., T], model_id: str, /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except ServiceError:
            raise
        except ClientError as exc:
            raise _map_error(exc, model_id) from exc
        except Exception as exc:
            raise map_boto_error(exc, provider=self.name, model_id=model_id) from exc

    def _iterate(self, stream: Any, model_id: str) -> AsyncIterator[dict[str, Any]]:
        return iterate_in_pool(stream, lambda step: self._run(step, model_id))


def _map_error(exc: ClientError, model_id: str) -> ServiceError:
    """SageMaker's ``ModelError`` carries the container's own status: 4xx is the request's fault, 5xx is not."""
    err = exc.response.get("Error", {})
    if err.get("Code") == "ModelError":
        status = int(exc.response.get("OriginalStatusCode") or 0)
        if 400 <= status < 500:
            refused = UpstreamClientError(f"the model {model_id} refused the request: "
                                          f"{safe_message(str(exc.response.get('OriginalMessage') or ''))[:500]}")
            refused.status_code = 413 if status == 413 else 400
            return refused
        return UpstreamError(f"the model {model_id} failed (its container answered {status or 'an error'})")
    return map_boto_error(exc, provider="sagemaker", model_id=model_id)


def _openai_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Converse-shaped messages (or a text prompt) as OpenAI chat messages for a messages-API container."""
    out: list[dict[str, Any]] = []
    system = request.system or request.parameters.get("system")
    if isinstance(system, str) and system:
        out.append({"role": "system", "content": system})
    if request.messages:
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            out.append({"role": message.get("role", "user"), "content": content})
    elif isinstance(request.prompt, str) and request.prompt:
        out.append({"role": "user", "content": request.prompt})
    elif isinstance(request.prompt, dict):  # the seed allows a dict 'inputs' for SageMaker: pass it through
        return request.prompt.get("messages") or []
    if not out or out[-1]["role"] == "system":
        raise BadRequest("'inputs' must hold a prompt or at least one message")
    return out


def _request_body(request: ModelRequest, api: str, *, stream: bool) -> dict[str, Any]:
    params = {k: v for k, v in request.parameters.items() if k not in ("InferenceComponentName", "system")}
    if api == "messages":
        body: dict[str, Any] = {"messages": _openai_messages(request), **_openai_params(params)}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body
    if request.prompt is None or (isinstance(request.prompt, str) and not request.prompt):
        raise BadRequest("'inputs' must be a non-empty prompt")
    inputs = request.prompt
    # Ask TGI for its token counts; containers that do not know 'details' ignore it.
    return {"inputs": inputs, "parameters": {"details": True, "decoder_input_details": False, **params}}


def _openai_params(params: dict[str, Any]) -> dict[str, Any]:
    aliases = {"maxTokens": "max_tokens", "max_new_tokens": "max_tokens", "topP": "top_p", "stopSequences": "stop"}
    return {aliases.get(k, k): v for k, v in params.items()}


def _messages_result(payload: Any, request: ModelRequest) -> ModelResult:
    if not isinstance(payload, dict) or not payload.get("choices"):
        raise UpstreamError(f"sagemaker endpoint for {request.model_id} did not answer in the messages API shape")
    choice = payload["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    usage_doc = payload.get("usage")
    if usage_doc:
        usage = Usage(input_tokens=int(usage_doc.get("prompt_tokens") or 0),
                      output_tokens=int(usage_doc.get("completion_tokens") or 0))
    else:
        usage = Usage(input_tokens=estimate_tokens(request.prompt_text()), output_tokens=estimate_tokens(text),
                      token_source="estimated")
    return ModelResult(text=text, stop_reason=choice.get("finish_reason"), usage=usage, raw=payload)


def _jumpstart_result(payload: Any, request: ModelRequest) -> ModelResult:
    first = payload[0] if isinstance(payload, list) and payload else payload
    if not isinstance(first, dict) or "generated_text" not in first:
        # Not a text-generation container: hand its answer back as it is, unmetered beyond the prompt.
        return ModelResult(text=None, raw=payload, usage=Usage(input_tokens=estimate_tokens(request.prompt_text()),
                                                               token_source="estimated"))
    text = first["generated_text"]
    details = first.get("details") or {}
    if "generated_tokens" in details:
        prefill = details.get("prefill") or []
        usage = Usage(input_tokens=len(prefill) or estimate_tokens(request.prompt_text()),
                      output_tokens=int(details["generated_tokens"]),
                      token_source="exact" if prefill else "estimated")
    else:
        usage = Usage(input_tokens=estimate_tokens(request.prompt_text()), output_tokens=estimate_tokens(text),
                      token_source="estimated")
    return ModelResult(text=text, stop_reason=details.get("finish_reason"), usage=usage, raw=payload)


class _SSELines:
    """Reassembles SSE ``data:`` lines from PayloadPart bytes (a line may be split across parts)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out = []
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                value = line[5:].strip().decode("utf-8", "replace")
                if value and value != "[DONE]":
                    out.append(value)
        return out


def _parse_stream_data(data: str) -> tuple[str, Usage | None, str | None]:
    try:
        doc = json.loads(data)
    except ValueError:
        return "", None, None
    usage = None
    if isinstance(doc.get("usage"), dict):
        usage = Usage(input_tokens=int(doc["usage"].get("prompt_tokens") or 0),
                      output_tokens=int(doc["usage"].get("completion_tokens") or 0))
    text, finish = "", None
    for choice in doc.get("choices") or []:
        text += (choice.get("delta") or {}).get("content") or ""
        finish = choice.get("finish_reason") or finish
    return text, usage, finish

"""Amazon Bedrock provider: Converse / ConverseStream for chat, InvokeModel for embeddings, images and the text
models that have no Converse support.

boto3 is synchronous, so every call runs in a bounded thread pool; the event loop never blocks on Bedrock. Usage is
what Bedrock reports (Converse ``usage``, the ConverseStream ``metadata`` event, InvokeModel's token-count headers and
the streaming ``amazon-bedrock-invocationMetrics``); ``token_source='estimated'`` only when it reports nothing.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import boto3
from botocore.exceptions import ClientError

from common.errors import BadRequest, ServiceError, UpstreamError
from ingest.providers import bedrock_payloads as bp
from ingest.providers.aws_calls import CLIENT_CONFIG, iterate_in_pool
from ingest.providers.aws_errors import map_boto_error
from ingest.providers.base import ModelRequest, ModelResult, StreamChunk, Usage
from ingest.usage import estimate_tokens

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Text models without Converse support: their ``text`` calls go through InvokeModel with the native body.
NATIVE_TEXT_MODELS = ("ai21.j2-*", "cohere.command-text-*", "cohere.command-light-text-*")
#: Offered by ``list_models`` when the ``bedrock`` control-plane call is not allowed or fails.
DEFAULT_MODELS = (
    "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0",
    "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3", "amazon.titan-image-generator-v2:0",
    "amazon.nova-canvas-v1:0", "stability.stable-diffusion-xl-v1",
)
LIST_CACHE_SECONDS = 300.0


class BedrockProvider:
    """Bedrock behind the :class:`ingest.providers.base.Provider` interface.

    Args:
        region: AWS region of the calls (default: the boto3 session's).
        client: a ``bedrock-runtime`` client (tests pass one wrapped in a ``Stubber``).
        control_client: a ``bedrock`` client for ``list_foundation_models``; created lazily when needed.
        models: model ids offered when listing models is not possible.
        max_workers: threads for the blocking boto3 calls.
    """

    name = "bedrock"

    def __init__(self, *, region: str | None = None, client: Any = None, control_client: Any = None,
                 models: tuple[str, ...] | list[str] | None = None, max_workers: int = 32):
        self._client = client or boto3.client("bedrock-runtime", region_name=region, config=CLIENT_CONFIG)
        self.region = region or self._client.meta.region_name
        self._control = control_client
        self._models = tuple(models or DEFAULT_MODELS)
        self._listed: tuple[float, list[dict[str, Any]]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bedrock")
        self._no_converse: set[str] = set()  # models Converse turned away at run time

    # --- Provider interface -----------------------------------------------------------------------------------

    async def list_models(self) -> list[dict[str, Any]]:
        # ListFoundationModels is a rate-limited control-plane call: answer from a short cache.
        if self._listed is not None and time.monotonic() - self._listed[0] < LIST_CACHE_SECONDS:
            return self._listed[1]
        try:
            control = self._control or boto3.client("bedrock", region_name=self.region)
            self._control = control
            summaries = (await self._run(control.list_foundation_models, model_id="(list)")).get("modelSummaries", [])
        except Exception as exc:  # listing is a convenience: fall back to the configured ids, never fail
            log.warning("list_foundation_models failed (%s); listing the configured models", type(exc).__name__)
            return [{"model_id": m, "provider_name": bp.model_family(m), "modalities": []} for m in self._models]
        models = [{"model_id": s["modelId"], "provider_name": s.get("providerName"),
                   "modalities": s.get("outputModalities", [])} for s in summaries]
        self._listed = (time.monotonic(), models)
        return models

    async def invoke(self, request: ModelRequest) -> ModelResult:
        op = request.operation
        if op == "chat":
            return await self._converse(request, messages=request.messages or [])
        if op == "text":
            if self._is_native_text(request):
                return await self._native_text(request)
            try:
                return await self._converse(request, messages=_prompt_messages(request))
            except _ConverseUnsupported:
                self._no_converse.add(_target(request))
                return await self._native_text(request)
        if op in ("embeddings", "image_embeddings"):
            return await self._embed(request, image=op == "image_embeddings")
        if op == "image":
            return await self._image(request)
        raise BadRequest(f"operation {op!r} is not supported by bedrock")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        if request.operation not in ("chat", "text"):
            raise BadRequest(f"operation {request.operation!r} cannot be streamed")
        if request.operation == "text" and self._is_native_text(request):
            async for chunk in self._native_stream(request):
                yield chunk
            return
        messages = request.messages if request.operation == "chat" else _prompt_messages(request)
        kwargs = _converse_kwargs(request, messages or [])
        try:
            response = await self._run(self._client.converse_stream, **kwargs, model_id=_target(request),
                                       fallback=request.operation == "text")
        except _ConverseUnsupported:
            self._no_converse.add(_target(request))
            async for chunk in self._native_stream(request):
                yield chunk
            return
        state = bp.ConverseStreamState()
        produced = 0
        async for event in self._iterate(response.get("stream") or [], _target(request)):
            text = state.feed(event)
            if text:
                produced += len(text)
                yield StreamChunk(text=text)
        usage = state.usage or Usage(input_tokens=estimate_tokens(request.prompt_text()),
                                     output_tokens=-(-produced // 4), token_source="estimated")
        yield StreamChunk(usage=usage, stop_reason=state.stop_reason, tool_use=state.tool_use or None)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- calls ------------------------------------------------------------------------------------------------

    async def _converse(self, request: ModelRequest, *, messages: list[dict[str, Any]]) -> ModelResult:
        kwargs = _converse_kwargs(request, messages)
        response = await self._run(self._client.converse, **kwargs, model_id=_target(request),
                                   fallback=request.operation == "text")
        text, tools = bp.converse_output(response)
        usage = bp.converse_usage(response.get("usage")) if response.get("usage") else Usage(
            input_tokens=estimate_tokens(request.prompt_text()), output_tokens=estimate_tokens(text),
            token_source="estimated")
        return ModelResult(text=text, tool_use=tools, stop_reason=response.get("stopReason"), usage=usage,
                           raw=response.get("output"))

    async def _native_text(self, request: ModelRequest) -> ModelResult:
        body = bp.native_text_body(_target(request), request.prompt_text(), request.parameters)
        payload, headers = await self._invoke_model(request, body)
        text, body_usage = bp.native_text_output(payload)
        usage = bp.header_usage(headers) or body_usage or Usage(
            input_tokens=estimate_tokens(request.prompt_text()), output_tokens=estimate_tokens(text),
            token_source="estimated")
        return ModelResult(text=text, usage=usage, raw=payload)

    async def _embed(self, request: ModelRequest, *, image: bool) -> ModelResult:
        body = bp.embedding_body(_target(request), request.prompt, request.parameters, image=image)
        payload, headers = await self._invoke_model(request, body)
        vector, body_tokens = bp.embedding_output(payload)
        usage = bp.header_usage(headers)
        if usage is None:
            usage = (Usage(input_tokens=int(body_tokens)) if body_tokens is not None else
                     Usage(input_tokens=0 if image else estimate_tokens(request.prompt), token_source="estimated"))
        if image:  # Titan Multimodal Embeddings bills the image per image (and any text per token)
            usage = replace(usage, input_image_count=1)
        return ModelResult(embedding=vector, usage=usage, raw=payload)

    async def _image(self, request: ModelRequest) -> ModelResult:
        native = bp.image_body(_target(request), request.body or {})
        payload, _ = await self._invoke_model(request, native)
        if payload.get("error"):
            raise UpstreamError(f"bedrock could not generate the image: {payload['error']}")
        usage = bp.image_usage(_target(request), native, payload)
        return ModelResult(images=payload.get("images"), artifacts=payload.get("artifacts"), usage=usage,
                           raw=payload)

    async def _invoke_model(self, request: ModelRequest, body: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        response = await self._run(self._client.invoke_model, modelId=_target(request), body=json.dumps(body),
                                   contentType="application/json", accept="application/json",
                                   model_id=_target(request))
        raw = await self._run(response["body"].read, model_id=_target(request))
        try:
            payload = json.loads(raw)
        except ValueError:
            raise UpstreamError(f"bedrock returned a body that is not JSON for {_target(request)}") from None
        return payload, response.get("ResponseMetadata", {}).get("HTTPHeaders", {})

    async def _native_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        body = bp.native_text_body(_target(request), request.prompt_text(), request.parameters)
        response = await self._run(self._client.invoke_model_with_response_stream, modelId=_target(request),
                                   body=json.dumps(body), contentType="application/json",
                                   accept="application/json", model_id=_target(request))
        usage: Usage | None = None
        async for event in self._iterate(response.get("body") or [], _target(request)):
            chunk = json.loads(event.get("chunk", {}).get("bytes") or b"{}")
            text = bp.native_stream_text(chunk)
            usage = bp.invocation_metrics_usage(chunk) or usage
            if text:
                yield StreamChunk(text=text)
        yield StreamChunk(usage=usage or Usage(input_tokens=estimate_tokens(request.prompt_text()),
                                               token_source="estimated"))

    # --- plumbing ---------------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], /, *args: Any, model_id: str, fallback: bool = False,
                   **kwargs: Any) -> T:
        """Run a blocking boto3 call in the pool; botocore errors become gateway errors.

        With ``fallback``, a Converse "model not supported" refusal raises ``_ConverseUnsupported`` instead, so that
        a text request can go through InvokeModel.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except ClientError as exc:
            if fallback and _converse_unsupported(exc):
                raise _ConverseUnsupported() from exc
            raise map_boto_error(exc, provider=self.name, model_id=model_id) from exc
        except ServiceError:
            raise
        except Exception as exc:
            raise map_boto_error(exc, provider=self.name, model_id=model_id) from exc

    def _iterate(self, stream: Any, model_id: str) -> AsyncIterator[dict[str, Any]]:
        """Iterate a blocking botocore EventStream from the pool, one event at a time."""
        return iterate_in_pool(stream, lambda step: self._run(step, model_id=model_id))

    def _is_native_text(self, request: ModelRequest) -> bool:
        target = _target(request)
        return target in self._no_converse or any(fnmatch.fnmatch(request.model_id, p) for p in NATIVE_TEXT_MODELS)


class _ConverseUnsupported(Exception):
    """Converse turned the model away: call it through InvokeModel instead."""


def _converse_unsupported(exc: ClientError) -> bool:
    # Bedrock's wording: "This action doesn't support the model that you provided. Try again with a supported …"
    err = exc.response.get("Error", {})
    return err.get("Code") == "ValidationException" and "doesn't support the model" in str(err.get("Message", ""))


def _target(request: ModelRequest) -> str:
    """What Bedrock is called with: the custom/provisioned model ARN when given, else the model id."""
    return request.model_arn or request.model_id


def _prompt_messages(request: ModelRequest) -> list[dict[str, Any]]:
    if not isinstance(request.prompt, str) or not request.prompt:
        raise BadRequest("'inputs' must be a non-empty string for a text request")
    return [{"role": "user", "content": [{"text": request.prompt}]}]


def _converse_kwargs(request: ModelRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Converse/ConverseStream arguments from a provider-neutral request."""
    config, extra = bp.split_inference_params(request.parameters)
    kwargs: dict[str, Any] = {"modelId": _target(request), "messages": bp.converse_messages(messages)}
    system = request.system or request.parameters.get("system")
    if system:
        kwargs["system"] = [{"text": system}] if isinstance(system, str) else system
    if config:
        kwargs["inferenceConfig"] = config
    additional = {**extra, **(request.additional_model_fields or {})}
    if additional:
        kwargs["additionalModelRequestFields"] = additional
    if request.tool_config:
        kwargs["toolConfig"] = request.tool_config
    return kwargs

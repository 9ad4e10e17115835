"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (SSE streaming), ``POST /v1/embeddings``, ``GET /v1/models``.

Authenticated with ``Authorization: Bearer <key>`` so the ``openai`` SDK and LangChain work unchanged. Requests
are translated to the provider-neutral :class:`ModelRequest` (Converse-shaped messages); the original body rides
along in ``extra["openai"]`` so an OpenAI-compatible upstream gets it unchanged.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from common.errors import BadRequest, ServiceError
from ingest import fastjson
from ingest.auth import authenticate, bearer_secret, check_model_allowed, check_team_header
from ingest.gateway import REQUEST_ID_HEADER, Call, Gateway, json_response, read_json
from ingest.http import GatewayApp
from ingest.openai_tools import (
    converse_tool_config,
    openai_tool_calls,
    tool_call_deltas,
    tool_result_block,
    tool_use_blocks,
)
from ingest.openapi_docs import V1_CHAT, V1_EMBEDDINGS, V1_MODELS
from ingest.providers.base import ModelRequest, ModelResult, Provider, StreamChunk, Usage
from ingest.usage import estimate_tokens

_FINISH = {"end_turn": "stop", "stop": "stop", "stop_sequence": "stop", "max_tokens": "length", "length": "length",
           "tool_use": "tool_calls", "tool_calls": "tool_calls", "content_filtered": "content_filter"}
MAX_EMBEDDING_INPUTS = 2048


def _secret(request: Request) -> str | None:
    return bearer_secret(request.headers.get("authorization")) or request.headers.get("x-api-key")


def _text_of(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of parts")
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            raise BadRequest(f"{where}.content parts must be objects")
        if part.get("type") == "text" or "text" in part:
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"{where}.content text parts need a string text")
            blocks.append({"text": part["text"]})
        else:
            blocks.append({k: v for k, v in part.items() if k != "type"} | {"type": part.get("type")})
    return blocks


def _optional(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds)):
        raise BadRequest(f"{name} must be {what}")
    return value


def chat_request(body: Any) -> tuple[ModelRequest, bool, bool]:
    """``(request, stream, include_usage)`` of a chat.completions body; wrong shapes → 400."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    system: list[str] = []
    converse: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a role")
        blocks = _text_of(m.get("content"), f"messages[{i}]")
        if m["role"] in ("system", "developer"):
            if any("text" not in b for b in blocks):
                raise BadRequest(f"messages[{i}]: a {m['role']} message holds text parts only")
            system += [b["text"] for b in blocks]
        elif m["role"] == "tool":  # Converse wants the results of one turn's calls in one user message
            result = tool_result_block(m, blocks, f"messages[{i}]")
            if converse and converse[-1]["role"] == "user" and all("toolResult" in b for b in converse[-1]["content"]):
                converse[-1]["content"].append(result)
            else:
                converse.append({"role": "user", "content": [result]})
        elif m["role"] == "assistant":
            calls = tool_use_blocks(m.get("tool_calls"), f"messages[{i}]")
            if calls:  # clients send content "" beside tool calls; Converse refuses a blank text block
                blocks = [b for b in blocks if b.get("text") != ""]
            converse.append({"role": "assistant", "content": blocks + calls})
        else:
            converse.append({"role": "user", "content": blocks})
    stream = _optional(body, "stream", (bool,), "true or false") or False
    options = _optional(body, "stream_options", (dict,), "an object") or {}
    params: dict[str, Any] = {}
    max_tokens = _optional(body, "max_completion_tokens", (int,), "an integer") or _optional(
        body, "max_tokens", (int,), "an integer")
    if max_tokens is not None:
        if max_tokens < 1:
            raise BadRequest("max_tokens must be at least 1")
        params["maxTokens"] = max_tokens
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        value = _optional(body, name, (int, float), "a number")
        if value is not None:
            params[key] = value
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("stop must be a string or a list of strings")
        params["stopSequences"] = stop
    request = ModelRequest(model_id=model, operation="chat", messages=converse, system="\n".join(system) or None,
                           parameters=params, tool_config=converse_tool_config(body.get("tools"),
                                                                               body.get("tool_choice")),
                           extra={"openai": body})
    return request, stream, bool(options.get("include_usage"))


def _usage_json(usage: Usage) -> dict[str, Any]:
    prompt = (usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_input_tokens
              + usage.cache_write_1h_input_tokens)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": usage.output_tokens,
                           "total_tokens": prompt + usage.output_tokens}
    if usage.cache_read_input_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_input_tokens}
    return out


def _completion(call: Call, result: ModelResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    finish = _FINISH.get(result.stop_reason or "end_turn", "stop")
    if result.tool_use:
        message["tool_calls"] = openai_tool_calls(result.tool_use)
        finish = "tool_calls"
    return {"id": f"chatcmpl-{call.request_id}", "object": "chat.completion", "created": int(time.time()),
            "model": call.model_id, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage_json(result.usage)}


def _chunk(call: Call, created: int, delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, Any] | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": f"chatcmpl-{call.request_id}", "object": "chat.completion.chunk",
                           "created": created, "model": call.model_id,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + fastjson.dumps(obj) + b"\n\n"


class _BilledStream(StreamingResponse):
    """The SSE response of a streamed chat; bills the call exactly once however the stream ends.

    Normal end: the event carries the provider's usage. Failure mid-stream: the headers are gone, so the error
    travels as an SSE event and the call is billed as failed with what was produced. Client gone (or the body never
    iterated): billed as ``client_error`` with the tokens produced so far, and the upstream stream is closed so its
    connection is released.
    """

    def __init__(self, *, call: Call, first: StreamChunk | None, chunks: AsyncIterator[StreamChunk],
                 request: ModelRequest, include_usage: bool):
        self.call, self.first, self.chunks, self.request = call, first, chunks, request
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.streamed = 0
        self.tool_calls = 0  # tool calls streamed so far: the next one's index
        super().__init__(self._body(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", REQUEST_ID_HEADER: call.request_id})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.call.finish(status="client_error", http_status=None, usage=self._usage_so_far())  # no-op if billed
            closer = getattr(self.chunks, "aclose", None)
            if closer is not None:
                await closer()

    def _usage_so_far(self) -> Usage:
        return self.usage or _estimated(self.request, self.streamed)

    async def _body(self) -> AsyncIterator[bytes]:
        call, created, stop = self.call, int(time.time()), None
        try:
            yield _chunk(call, created, {"role": "assistant", "content": ""})
            pending = [self.first] if self.first is not None else []
            while True:
                chunk = pending.pop() if pending else await anext(self.chunks, None)
                if chunk is None:
                    break
                self.usage, stop = chunk.usage or self.usage, chunk.stop_reason or stop
                if chunk.text:
                    self.streamed += len(chunk.text)
                    yield _chunk(call, created, {"content": chunk.text})
                if chunk.tool_use:
                    deltas, chars = tool_call_deltas(chunk.tool_use, first_index=self.tool_calls)
                    self.tool_calls += len(chunk.tool_use)
                    self.streamed += chars
                    for delta in deltas:
                        yield _chunk(call, created, delta)
            usage = self._usage_so_far()
            finish = "tool_calls" if self.tool_calls else _FINISH.get(stop or "end_turn", "stop")
            yield _chunk(call, created, {}, finish)
            if self.include_usage:
                yield _chunk(call, created, {}, usage=_usage_json(usage), choices=False)
            call.finish(status="ok", http_status=200, usage=usage)
            yield b"data: [DONE]\n\n"
        except ServiceError as exc:
            call.finish(status=exc.event_status, http_status=200, usage=self._usage_so_far())
            yield b"data: " + fastjson.dumps({"error": {"type": exc.error_type, "message": exc.message}}) + b"\n\n"
        except Exception:
            call.finish(status="upstream_error", http_status=200, usage=self._usage_so_far())
            raise


def _estimated(request: ModelRequest, streamed_chars: int) -> Usage:
    text = (request.system or "") + "".join(b.get("text", "") for m in request.messages or [] for b in m["content"])
    return Usage(input_tokens=estimate_tokens(text), output_tokens=(streamed_chars + 3) // 4,
                 token_source="estimated")


async def chat_completions(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    call = gw.begin(_secret(request))
    try:
        body = await read_json(request, gw)
        _note_model(call, body)  # a refused call's event still names the model it asked for
        check_team_header(call.team, request.headers.get("team_id"), required=False)
        model_request, stream, include_usage = chat_request(body)
        check_model_allowed(call.team, call.model_id)
        gw.limits.check(call.team.team_id, call.team.limits)
        provider: Provider = call.route(model_request)
        if not stream:
            result = await provider.invoke(model_request)
            call.finish(status="ok", http_status=200, usage=result.usage)
            return call.respond(_completion(call, result))
        call.streaming = True
        chunks = aiter(provider.stream(model_request))
        first = await anext(chunks, None)  # upstream errors before the first byte still get their status code
        return _BilledStream(call=call, first=first, chunks=chunks, request=model_request,
                             include_usage=include_usage)
    except BaseException as exc:
        call.fail(exc)
        raise


def _note_model(call: Call, body: Any) -> None:
    """The call's model, from the body as soon as it is read: a refused call's event still names what it asked for."""
    if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
        call.model_id = body["model"]


def _embedding_inputs(body: Any) -> list[str]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(s, str) for s in inputs):
        raise BadRequest("input must be a string or a non-empty list of strings")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise BadRequest(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise BadRequest("encoding_format must be float or base64")
    return inputs


async def embeddings(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    call = gw.begin(_secret(request))
    call.operation = "embeddings"
    total = Usage()
    try:
        body = await read_json(request, gw)
        _note_model(call, body)
        check_team_header(call.team, request.headers.get("team_id"), required=False)
        inputs = _embedding_inputs(body)
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("model must be a non-empty string")
        check_model_allowed(call.team, call.model_id)
        gw.limits.check(call.team.team_id, call.team.limits)
        provider = call.route(ModelRequest(model_id=call.model_id, operation="embeddings", prompt="".join(inputs)))
        data: list[dict[str, Any]] = []
        for i, text in enumerate(inputs):
            result = await provider.invoke(ModelRequest(model_id=call.model_id, operation="embeddings", prompt=text,
                                                        extra={"openai": body}))
            total.input_tokens += result.usage.input_tokens
            if result.usage.token_source == "estimated":
                total.token_source = "estimated"
            vector = result.embedding or []
            encoded: list[float] | str = vector
            if body.get("encoding_format") == "base64":  # what the openai SDK asks for by default
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        call.finish(status="ok", http_status=200, usage=total)
        return call.respond({"object": "list", "data": data, "model": call.model_id,
                             "usage": {"prompt_tokens": total.input_tokens, "total_tokens": total.input_tokens}})
    except BaseException as exc:
        # the inputs embedded before the failure were paid to the provider: bill them, not $0
        call.fail(exc, usage=total if total.input_tokens else None)
        raise


async def models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    authenticate(gw.registry, _secret(request))  # listing calls no model: no usage event
    listed = await gw.providers.list_models()
    return json_response({"object": "list", "data": [
        {"id": m["model_id"], "object": "model", "created": 0, "owned_by": m.get("provider_name") or "modelmeter"}
        for m in listed]})


def register(app: GatewayApp, gw: Gateway) -> None:
    app.add_fast_route("/v1/chat/completions", chat_completions, method="POST", openapi_extra=V1_CHAT,
                       summary="Chat completion (OpenAI-compatible)", tags=["openai"])
    app.add_fast_route("/v1/embeddings", embeddings, method="POST", openapi_extra=V1_EMBEDDINGS,
                       summary="Embeddings (OpenAI-compatible)", tags=["openai"])
    app.add_fast_route("/v1/models", models, method="GET", openapi_extra=V1_MODELS,
                       summary="List models (OpenAI-compatible)", tags=["openai"])

"""An OpenAI-compatible upstream (vLLM, Ollama, TGI's /v1, …) through one shared ``aiohttp`` session.

aiohttp rather than httpx: on this kind of machine a pass-through with aiohttp served 3,000 requests/s against
410 with httpx (issue 3). Usage comes from the upstream's ``usage`` (for streams: the final chunk, which we ask for
with ``stream_options.include_usage``); only when the upstream reports nothing is it estimated and marked so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from common.errors import (
    ServiceError,
    UpstreamClientError,
    UpstreamError,
    UpstreamThrottled,
    UpstreamTimeout,
)
from ingest import fastjson
from ingest.providers.base import ModelRequest, ModelResult, StreamChunk, Usage
from ingest.usage import estimate_tokens

_JSON = {"Content-Type": "application/json"}


def _usage(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    prompt = int(obj.get("prompt_tokens") or 0)
    details = obj.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return Usage(input_tokens=max(0, prompt - cached), output_tokens=int(obj.get("completion_tokens") or 0),
                 cache_read_input_tokens=cached)


def _openai_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Converse-shaped messages → OpenAI chat messages (text blocks joined; other blocks are not sent)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages or []:
        text = "".join(b.get("text", "") for b in m.get("content", []) if isinstance(b, dict))
        out.append({"role": m.get("role", "user"), "content": text})
    if request.prompt is not None and not out:
        prompt = request.prompt if isinstance(request.prompt, str) else json.dumps(request.prompt)
        out.append({"role": "user", "content": prompt})
    return out


def _prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    return "".join(parts)


class OpenAICompatProvider:
    """Chat (plain and streamed) and embeddings against ``base_url`` (ending in ``/v1``)."""

    name = "openai_compatible"

    def __init__(self, *, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 region: str | None = None, max_connections: int = 256):
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.timeout = timeout
        self.max_connections = max_connections
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp sessions belong to one loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(10.0, self.timeout)),
                # identity: no compression on a local hop, so nothing to decompress on every answer
                headers={**self._headers, "Accept-Encoding": "identity"}, auto_decompress=False,
                skip_auto_headers=("User-Agent",))
        return self._session

    def chat_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        original = request.extra.get("openai")
        if isinstance(original, dict) and "messages" in original:
            body = dict(original)  # from /v1: forward the tenant's body unchanged (tools, response_format …)
        else:
            body = {"messages": _openai_messages(request)}
            params = request.parameters
            for ours, theirs in (("maxTokens", "max_tokens"), ("max_new_tokens", "max_tokens"),
                                 ("temperature", "temperature"), ("topP", "top_p"), ("stopSequences", "stop")):
                if params.get(ours) is not None:
                    body[theirs] = params[ours]
        body["model"] = request.model_arn or request.model_id
        body["stream"] = stream
        if stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with self._client().post(self.base_url + path, data=fastjson.dumps(body), headers=_JSON) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw, resp.headers.get("Retry-After"))
        except TimeoutError:
            raise UpstreamTimeout(f"upstream did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream unreachable ({type(exc).__name__})") from None
        try:
            return fastjson.loads(raw)
        except ValueError:
            raise UpstreamError("upstream answered with invalid JSON") from None

    async def invoke(self, request: ModelRequest) -> ModelResult:
        if request.operation == "embeddings":
            return await self._embed(request)
        if request.operation not in ("chat", "text"):
            raise UpstreamClientError(f"{request.operation} is not offered by the OpenAI-compatible upstream")
        body = self.chat_body(request, stream=False)
        data = await self._post("/chat/completions", body)
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError):
            raise UpstreamError("upstream answer has no choices") from None
        text = message.get("content")
        usage = _usage(data.get("usage"))
        if usage is None:
            usage = Usage(input_tokens=estimate_tokens(_prompt_text(body)), output_tokens=estimate_tokens(text or ""),
                          token_source="estimated")
        tool_use = [{"toolUse": {"toolUseId": c.get("id"), "name": (c.get("function") or {}).get("name"),
                                 "input": _json_or_text((c.get("function") or {}).get("arguments"))}}
                    for c in message.get("tool_calls") or []] or None
        return ModelResult(text=text, tool_use=tool_use, stop_reason=choice.get("finish_reason"), usage=usage,
                           raw=None)

    async def _embed(self, request: ModelRequest) -> ModelResult:
        data = await self._post("/embeddings", {"model": request.model_id, "input": request.prompt})
        try:
            vector = data["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError):
            raise UpstreamError("upstream embeddings answer has no data") from None
        usage = _usage(data.get("usage"))
        if usage is None:
            usage = Usage(input_tokens=estimate_tokens(str(request.prompt)), token_source="estimated")
        usage.output_tokens = 0
        return ModelResult(embedding=vector, usage=usage)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        body = self.chat_body(request, stream=True)
        usage, stop, streamed = None, None, 0
        calls: dict[int, dict[str, Any]] = {}  # streamed tool calls by index: id, name, argument pieces
        try:
            async with self._client().post(self.base_url + "/chat/completions", data=fastjson.dumps(body),
                                           headers=_JSON) as resp:
                if resp.status >= 400:
                    raise _status_error(resp.status, await resp.read(), resp.headers.get("Retry-After"))
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        break
                    chunk = fastjson.loads(payload)
                    usage = _usage(chunk.get("usage")) or usage
                    for choice in chunk.get("choices") or []:
                        stop = choice.get("finish_reason") or stop
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            streamed += len(text)
                            yield StreamChunk(text=text)
                        streamed += _fold_tool_calls(calls, (choice.get("delta") or {}).get("tool_calls"))
        except TimeoutError:
            raise UpstreamTimeout(f"upstream did not finish within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream stream broke ({type(exc).__name__})") from None
        except ValueError:
            raise UpstreamError("upstream sent an invalid stream chunk") from None
        if usage is None:
            usage = Usage(input_tokens=estimate_tokens(_prompt_text(body)), output_tokens=(streamed + 3) // 4,
                          token_source="estimated")
        tool_use = [{"toolUse": {"toolUseId": c["id"], "name": c["name"], "input": _json_or_text("".join(c["args"]))}}
                    for _, c in sorted(calls.items())] or None
        yield StreamChunk(usage=usage, stop_reason=stop, tool_use=tool_use)

    async def list_models(self) -> list[dict[str, Any]]:
        try:
            async with self._client().get(self.base_url + "/models") as resp:
                if resp.status >= 400:
                    raise _status_error(resp.status, await resp.read(), None)
                data = fastjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, ValueError):
            raise UpstreamError("upstream model list unavailable") from None
        return [{"model_id": m["id"], "provider_name": m.get("owned_by") or "openai_compatible",
                 "modalities": ["TEXT"]} for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _fold_tool_calls(calls: dict[int, dict[str, Any]], deltas: Any) -> int:
    """Add a chunk's ``delta.tool_calls`` pieces to ``calls`` (the id and name come first, the arguments in
    fragments, all keyed by ``index``); returns the argument characters they carried."""
    chars = 0
    for piece in deltas if isinstance(deltas, list) else ():
        if not isinstance(piece, dict):
            continue
        call = calls.setdefault(_call_index(calls, piece), {"id": None, "name": None, "args": []})
        function: dict[str, Any] = piece["function"] if isinstance(piece.get("function"), dict) else {}
        call["id"] = piece.get("id") or call["id"]
        call["name"] = function.get("name") or call["name"]
        if isinstance(function.get("arguments"), str):
            call["args"].append(function["arguments"])
            chars += len(function["arguments"])
    return chars


def _call_index(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> int:
    """Which call a streamed piece belongs to: its ``index``; without one (some older OpenAI-compatible servers),
    a piece with a new ``id`` starts the next call and one without continues the last."""
    index = piece.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    if index is not None:
        raise UpstreamError("upstream sent a streamed tool call with a malformed index")
    last = max(calls, default=None)
    if last is None:
        return 0
    new_id = piece.get("id")
    return last + 1 if new_id and calls[last]["id"] not in (None, new_id) else last


def _json_or_text(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _status_error(status: int, raw: bytes, retry_after: str | None) -> ServiceError:
    """The tenant-safe error for an upstream HTTP status (the upstream's own message, shortened)."""
    try:
        detail = json.loads(raw).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = None
    message = (message or raw[:200].decode("utf-8", "replace") or f"HTTP {status}")[:300]
    if status == 429:
        return UpstreamThrottled(f"upstream throttled: {message}",
                                 retry_after=float(retry_after) if retry_after and retry_after.isdigit() else 1.0)
    if status in (401, 403):  # our credentials towards the upstream, not the tenant's fault
        return UpstreamError(f"upstream refused the gateway's credentials (HTTP {status})")
    if status == 408 or status == 504:
        return UpstreamTimeout(f"upstream timed out (HTTP {status})")
    if 400 <= status < 500:
        return UpstreamClientError(f"upstream refused the request: {message}")
    return UpstreamError(f"upstream failed (HTTP {status})")

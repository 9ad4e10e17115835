"""A tiny OpenAI-compatible upstream on 127.0.0.1 for benchmarks and tests (aiohttp). Not a model.

Behaviour is chosen by the model name, so tests can script failures without a second server:
``fail-500`` / ``fail-429`` / ``fail-400`` answer that status; ``slow-<ms>`` waits that long; ``no-usage`` omits
``usage`` (the gateway must then estimate and say so); ``cached`` reports cached prompt tokens. A chat that offers
``tools`` is answered with a call to the first one (``finish_reason: "tool_calls"``; streamed as ``tool_calls``
deltas, the arguments in two pieces) until its last message is a ``role: tool`` result.

Run it alone: ``python bench/fake_upstream.py --port 9000`` (prints ``READY <port>`` when listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
from typing import Any

from aiohttp import web

#: Model calls received (a one-element list, so handlers can count in place).
CALLS = web.AppKey("calls", list)
_WORDS = ["fake", "upstream", "says", "hello", "to", "the", "gateway"]


def _usage(model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any] | None:
    if model == "no-usage":
        return None
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if model == "cached":
        usage["prompt_tokens_details"] = {"cached_tokens": prompt_tokens // 2}
    return usage


async def _scripted(model: str) -> web.Response | None:
    if model.startswith("fail-"):
        status = int(model[5:])
        headers = {"Retry-After": "2"} if status == 429 else None
        return web.json_response({"error": {"message": f"scripted {status}", "type": "fake"}}, status=status,
                                 headers=headers)
    if model.startswith("slow-"):
        await asyncio.sleep(int(model[5:]) / 1000)
    return None


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = "".join(m.get("content") or "" for m in body.get("messages", []) if isinstance(m.get("content"), str))
    return max(1, len(text) // 4)


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call to answer with: the first offered tool, unless the last message already carries a tool's result."""
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools or (messages and messages[-1].get("role") == "tool") or body.get("tool_choice") == "none":
        return None
    name = (tools[0].get("function") or {}).get("name", "tool")
    return {"id": "call_fake_0", "type": "function", "function": {"name": name, "arguments": '{"fake": true}'}}


async def _stream_tool_call(resp: web.StreamResponse, model: str, call: dict[str, Any]) -> None:
    arguments = call["function"]["arguments"]
    pieces = [{"index": 0, "id": call["id"], "type": "function",
               "function": {"name": call["function"]["name"], "arguments": ""}},
              {"index": 0, "function": {"arguments": arguments[:5]}},
              {"index": 0, "function": {"arguments": arguments[5:]}}]
    for piece in pieces:
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")


def _count(request: web.Request) -> None:
    request.app[CALLS][0] += 1  # calls received: what a provider would bill (the fault suite compares)


async def chat(request: web.Request) -> web.StreamResponse:
    _count(request)
    body = await request.json()
    model = body.get("model", "")
    scripted = await _scripted(model)
    if scripted is not None:
        return scripted
    words = _WORDS[: max(1, min(len(_WORDS), int(body.get("max_tokens") or len(_WORDS))))]
    call = _tool_call(body)
    if call is not None:
        words = []
    usage = _usage(model, _prompt_tokens(body), len(words) or 5)
    finish = "stop" if call is None else "tool_calls"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(words) if call is None else None}
        if call is not None:
            message["tool_calls"] = [call]
        out: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                               "choices": [{"index": 0, "finish_reason": finish, "message": message}]}
        if usage:
            out["usage"] = usage
        return web.Response(body=json.dumps(out).encode(), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, word in enumerate(words):
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [
            {"index": 0, "delta": {"content": (" " if i else "") + word}, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    if call is not None:
        await _stream_tool_call(resp, model, call)
    last = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    await resp.write(b"data: " + json.dumps(last).encode() + b"\n\n")
    if usage and (body.get("stream_options") or {}).get("include_usage"):
        final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [],
                 "usage": usage}
        await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def embeddings(request: web.Request) -> web.Response:
    _count(request)
    body = await request.json()
    model = body.get("model", "")
    scripted = await _scripted(model)
    if scripted is not None:
        return scripted
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else inputs
    data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, float(len(t))]}
            for i, t in enumerate(inputs)]
    tokens = sum(max(1, len(t) // 4) for t in inputs)
    out: dict[str, Any] = {"object": "list", "data": data, "model": model}
    usage = _usage(model, tokens, 0)
    if usage:
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return web.json_response(out)


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": "fake-chat", "object": "model", "owned_by": "fake"},
        {"id": "fake-embed", "object": "model", "owned_by": "fake"}]})


def make_app() -> web.Application:
    app = web.Application()
    app[CALLS] = [0]
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream:
    """The fake upstream in a background thread (tests): ``.url`` is its ``…/v1`` base."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._app = make_app()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-upstream")

    @property
    def calls(self) -> int:
        """Model calls received so far (chat and embeddings)."""
        return self._app[CALLS][0]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = args.port or free_port()

    async def _ready(_app: web.Application) -> None:
        print(f"READY {port}", flush=True)

    app = make_app()
    app.on_startup.append(_ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()

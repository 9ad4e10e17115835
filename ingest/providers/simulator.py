"""SIMULATOR — not a model. A deterministic stand-in used by ``modelmeter demo`` and the benchmarks only.

It answers every operation with text, vectors or images derived from a seed and the request, and reports
Converse-like usage counted from the input (about four characters a token), so the rest of the path (events,
pricing, reports) sees realistic shapes without any model or account. A chat that carries tools is answered with a
``toolUse`` block (``stopReason`` ``tool_use``) until the tool's result comes back (``simulator_tools.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

from ingest.providers.base import ModelRequest, ModelResult, StreamChunk, Usage
from ingest.providers.simulator_tools import tool_to_call, tool_use_block

_WORDS = ("the", "model", "answer", "cost", "team", "usage", "token", "simulated", "gateway", "budget", "report",
          "lake", "price", "event", "stream", "request", "daily", "metered", "chargeback", "forecast")
# A 1×1 transparent PNG: generated "images" are this, labelled by their metadata, never real pictures.
_PIXEL_PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()

DEFAULT_MODELS = (
    "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "meta.llama3-8b-instruct-v1:0", "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3",
    "amazon.titan-image-generator-v2:0", "amazon.nova-canvas-v1:0", "stability.stable-diffusion-xl-v1",
)


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _input_text(request: ModelRequest) -> str:
    parts: list[str] = [request.system or ""]
    for message in request.messages or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content or []:
            if isinstance(block, dict):
                parts.append(block["text"] if isinstance(block.get("text"), str) else json.dumps(block)[:2000])
    if request.prompt is not None:
        parts.append(request.prompt if isinstance(request.prompt, str) else json.dumps(request.prompt))
    if request.body and not parts[1:]:
        parts.append(json.dumps(request.body))
    return "\n".join(p for p in parts if p)


class SimulatorProvider:
    """The labelled simulator. ``latency`` seconds per call (plus ``per_token_latency`` per streamed token)."""

    name = "simulator"

    def __init__(self, *, seed: int = 7, latency: float = 0.0, per_token_latency: float = 0.0,
                 region: str | None = None, models: tuple[str, ...] = DEFAULT_MODELS, embedding_dim: int = 16):
        self.seed = seed
        self.latency = latency
        self.per_token_latency = per_token_latency
        self.region = region
        self.models = models
        self.embedding_dim = embedding_dim

    async def list_models(self) -> list[dict[str, Any]]:
        return [{"model_id": m, "provider_name": "simulator", "modalities": _modalities(m)} for m in self.models]

    def _rng(self, request: ModelRequest, text: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}|{request.model_id}|{text}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _answer(self, request: ModelRequest, text: str) -> list[str]:
        rng = self._rng(request, text)
        max_tokens = request.parameters.get("maxTokens") or request.parameters.get("max_new_tokens") or 64
        try:
            limit = max(1, int(max_tokens))
        except (TypeError, ValueError):
            limit = 64
        # Answers use about 40 % of the allowed tokens (log-normal), like chat models asked for a short answer.
        # Capped at 4,096 like real models' output limits, whatever a client asks for.
        limit = min(limit, 4096)
        n = min(limit, max(1, round(rng.lognormvariate(math.log(max(limit * 0.4, 8)), 0.5))))
        return [rng.choice(_WORDS) for _ in range(n)]

    async def invoke(self, request: ModelRequest) -> ModelResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        text = _input_text(request)
        if request.operation in ("embeddings", "image_embeddings"):
            return self._embedding(request, text)
        if request.operation == "image":
            return self._images(request, text)
        tool_use = self._tool_use(request, text)
        if tool_use is not None:
            return ModelResult(tool_use=[tool_use], stop_reason="tool_use", usage=_tool_usage(request, text, tool_use))
        words = self._answer(request, text)
        return ModelResult(text="[simulated] " + " ".join(words), stop_reason="end_turn",
                           usage=Usage(input_tokens=_counted_input(request, text), output_tokens=len(words)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        if self.latency:
            await asyncio.sleep(self.latency)
        text = _input_text(request)
        tool_use = self._tool_use(request, text)
        if tool_use is not None:  # one piece: the route splits its arguments into the deltas its clients expect
            yield StreamChunk(tool_use=[tool_use])
            yield StreamChunk(stop_reason="tool_use", usage=_tool_usage(request, text, tool_use))
            return
        words = self._answer(request, text)
        yield StreamChunk(text="[simulated]")
        for word in words:
            if self.per_token_latency:
                await asyncio.sleep(self.per_token_latency)
            yield StreamChunk(text=" " + word)
        yield StreamChunk(stop_reason="end_turn",
                          usage=Usage(input_tokens=_counted_input(request, text), output_tokens=len(words)))

    def _tool_use(self, request: ModelRequest, text: str) -> dict[str, Any] | None:
        """The ``toolUse`` block of a chat that should call a tool now, else ``None`` (answer in text)."""
        if request.operation != "chat":
            return None
        spec = tool_to_call(request, text)
        return None if spec is None else tool_use_block(spec, seed=self.seed, model_id=request.model_id, text=text)

    def _embedding(self, request: ModelRequest, text: str) -> ModelResult:
        digest = hashlib.sha256(f"{self.seed}|{text}".encode()).digest() * ((self.embedding_dim * 4) // 32 + 1)
        values = struct.unpack(f">{self.embedding_dim}i", digest[:self.embedding_dim * 4])
        return ModelResult(embedding=[round(v / 2**31, 6) for v in values],
                           usage=Usage(input_tokens=_tokens(text) if request.operation == "embeddings" else 0,
                                       input_image_count=1 if request.operation == "image_embeddings" else 0))

    def _images(self, request: ModelRequest, text: str) -> ModelResult:
        body = request.body or {}
        params: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        config = params.get("imageGenerationConfig") or body.get("imageGenerationConfig") or {}
        if not isinstance(config, dict):
            config = {}
        stability = "text_prompts" in body
        source = params if stability else config
        count = _int(source.get("numberOfImages") or source.get("samples"), 1, 1, 5)
        width = _int(source.get("width"), 1024, 64, 4096)
        height = _int(source.get("height"), 1024, 64, 4096)
        quality = "premium" if str(config.get("quality", "standard")).lower() == "premium" else "standard"
        usage = Usage(image_count=count, image_width=width, image_height=height, image_quality=quality)
        if stability:
            artifacts = [{"base64": _PIXEL_PNG, "seed": self.seed + i, "finishReason": "SUCCESS"} for i in range(count)]
            return ModelResult(artifacts=artifacts, usage=usage)
        return ModelResult(images=[_PIXEL_PNG] * count, usage=usage)

    async def aclose(self) -> None:
        return None


def _counted_input(request: ModelRequest, text: str) -> int:
    """Input tokens: the conversation, plus the tool definitions, which models bill as input too."""
    if not request.tool_config:
        return _tokens(text)
    return _tokens(text + "\n" + json.dumps(request.tool_config, sort_keys=True))


def _tool_usage(request: ModelRequest, text: str, tool_use: dict[str, Any]) -> Usage:
    # what the model wrote is the call: its name and input, counted like text
    written = tool_use["toolUse"]["name"] + json.dumps(tool_use["toolUse"]["input"])
    return Usage(input_tokens=_counted_input(request, text), output_tokens=_tokens(written))


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None and not isinstance(value, bool) else default
    except (TypeError, ValueError):
        number = default
    return min(high, max(low, number))


def _modalities(model_id: str) -> list[str]:
    if "embed" in model_id:
        return ["EMBEDDING"]
    if any(k in model_id for k in ("image", "canvas", "stable-diffusion")):
        return ["IMAGE"]
    return ["TEXT"]

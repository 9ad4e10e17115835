"""The one small interface every model provider implements.

Handlers (seed routes, /v1 routes) translate their HTTP request into a :class:`ModelRequest`, call
``provider.invoke`` (or ``provider.stream``), and turn the :class:`ModelResult` into both the HTTP response and the
usage event. Providers know nothing about HTTP, tenants or events; they raise :mod:`common.errors` errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Usage:
    """What one call consumed, as the provider reported it (``token_source='estimated'`` only when it did not)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0  # written with the default 5-minute TTL
    cache_write_1h_input_tokens: int = 0  # written with a 1-hour TTL (disjoint from the 5-minute count)
    image_count: int = 0  # images generated
    input_image_count: int = 0  # images sent and billed per image (Titan Multimodal Embeddings)
    image_width: int | None = None
    image_height: int | None = None
    image_quality: str | None = None
    token_source: str = "exact"
    service_tier: str | None = None  # what the provider billed (e.g. provisioned for a provisioned-throughput ARN)


@dataclass
class ModelRequest:
    """A provider-neutral request.

    Attributes:
        model_id: as the tenant named it (base id, inference profile, ARN, endpoint name).
        operation: ``chat``, ``text``, ``embeddings``, ``image``, ``image_embeddings``.
        messages: Converse-shaped messages ``[{"role", "content": [{"text"} | {"image"} | {"document"} …]}]``
            for ``chat``; ``None`` otherwise.
        prompt: the text prompt for ``text``; the input text (or base64 image) for embeddings.
        system: system prompt, if any.
        parameters: inference parameters (``maxTokens``, ``temperature``, ``topP``, ``stopSequences`` …).
        additional_model_fields: passed through to the model (Converse ``additionalModelRequestFields``).
        tool_config: Converse ``toolConfig``.
        body: the raw request body, for providers/operations that pass it through (images, SageMaker).
        model_arn: a custom/provisioned model ARN to invoke instead of ``model_id``.
        extra: anything provider-specific (e.g. ``InferenceComponentName``).
    """

    model_id: str
    operation: str
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    additional_model_fields: dict[str, Any] | None = None
    tool_config: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    model_arn: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def prompt_text(self) -> str:
        """``prompt`` when it is text, else the text blocks of ``messages`` joined (what a native body sends and a
        token estimate counts)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "".join(b.get("text", "") for m in self.messages or [] for b in m.get("content", [])
                       if isinstance(b, dict) and isinstance(b.get("text"), str))


@dataclass
class ModelResult:
    """A provider-neutral result.

    Attributes:
        text: generated text (chat/text), or ``None``.
        tool_use: Converse ``toolUse`` content blocks when the model asked for a tool.
        embedding: the vector for embeddings.
        images: base64 images (Titan/Nova Canvas shape); ``artifacts`` for Stability-shaped responses.
        stop_reason: the provider's stop reason, if any.
        usage: what the call consumed.
        raw: the provider's decoded response, for pass-through shapes (SageMaker JumpStart, images).
    """

    text: str | None = None
    tool_use: list[dict[str, Any]] | None = None
    embedding: list[float] | None = None
    images: list[str] | None = None
    artifacts: list[dict[str, Any]] | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    raw: Any = None


@dataclass
class StreamChunk:
    """One piece of a streamed answer: a text delta, and on the last chunk the usage.

    ``tool_use``: Converse ``toolUse`` blocks completed in this piece (whole, ``input`` decoded); the route turns
    them into its own deltas (OpenAI ``tool_calls``)."""

    text: str = ""
    usage: Usage | None = None
    stop_reason: str | None = None
    tool_use: list[dict[str, Any]] | None = None


class Provider(Protocol):
    """A model provider. ``name`` is the event's ``provider`` field; ``region`` its ``region`` (or ``None``)."""

    name: str
    region: str | None

    async def list_models(self) -> list[dict[str, Any]]:
        """Models this provider offers: ``[{"model_id": …, "provider_name": …, "modalities": […]}]``."""
        ...

    async def invoke(self, request: ModelRequest) -> ModelResult:
        """One complete call. Raises ``common.errors`` errors (``UpstreamError``, ``UpstreamThrottled`` …)."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """A streamed chat call; the last chunk carries the usage. Errors as for :meth:`invoke`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

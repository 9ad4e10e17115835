"""The usage event of one request (schema v1), built from what the handler learned; no prompt or completion text."""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from common.contracts import COUNT_FIELDS, SCHEMA_VERSION
from ingest.providers.base import ModelRequest, Usage


def estimate_tokens(text: str | None) -> int:
    """Rough token count (≈ 4 characters a token) for providers that report nothing; marked ``estimated``."""
    return max(1, (len(text) + 3) // 4) if text else 0


# Ids need to be unique, not secret (the long-poll claim checks the team): a generator seeded once from the OS
# saves two getrandom system calls per request, which showed up in profiles of the gateway under load.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))  # a forked worker must not repeat ids


def placeholder_usage(request: ModelRequest) -> Usage:
    """What a call is billed if its outcome is never learned (the process died): the input estimated from the
    prompt, no output (a lower bound: what the model produced is unknown), one image for an image request."""
    text = "" if request.operation == "image_embeddings" else (request.system or "") + request.prompt_text()
    return Usage(input_tokens=estimate_tokens(text), image_count=1 if request.operation == "image" else 0,
                 token_source="estimated")


def new_uuid() -> str:
    """A random (version 4) UUID as text."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def new_request_id() -> str:
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


def _iso_ms(ts: datetime) -> str:
    """``common.contracts.format_time`` without strftime (a few µs saved per request); UTC assumed when naive."""
    if ts.tzinfo is not None and ts.utcoffset():
        ts = ts.astimezone(UTC)
    return (f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}."
            f"{ts.microsecond // 1000:03d}Z")


def billed_tier(*, model_id: str, usage: Usage | None) -> str:
    """The tier a call is billed in: what the provider reported; else ``provisioned`` for a Bedrock
    provisioned-throughput ARN (billed per model-unit hour, not per token, so finance must not see it priced as
    on-demand tokens); else ``on_demand``."""
    if usage is not None and usage.service_tier:
        return usage.service_tier
    return "provisioned" if ":provisioned-model/" in model_id else "on_demand"


def build_event(*, request_id: str, event_time: datetime, team_id: str, api_key_id: str | None,
                business_unit: str | None, provider: str, region: str | None, model_id: str, operation: str,
                status: str, http_status: int | None, usage: Usage | None, streaming: bool,
                latency_ms: int | None, service_tier: str | None = None, event_id: str | None = None,
                cost_usd: str | None = None, refusal_reason: str | None = None) -> dict[str, Any]:
    """One event as a JSON-ready dict; ``usage=None`` (the call never reached a model) counts zero tokens.

    ``service_tier`` defaults to :func:`billed_tier`; ``event_id`` to a new UUID (a call that wrote a placeholder
    passes the placeholder's, so that the two are one event to the dedupe)."""
    u = usage or Usage()
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id or new_uuid(),
        "request_id": request_id,
        "event_time": _iso_ms(event_time),
        "team_id": team_id,
        "api_key_id": api_key_id,
        "business_unit": business_unit,
        "provider": provider,
        "region": region,
        "model_id": model_id or "unknown",
        "operation": operation,
        "status": status,
        "http_status": http_status,
        **{name: getattr(u, name) for name in COUNT_FIELDS},  # the billable units (common.contracts)
        "image_width": u.image_width,
        "image_height": u.image_height,
        "image_quality": u.image_quality,
        "token_source": u.token_source,
        "streaming": streaming,
        "service_tier": service_tier or billed_tier(model_id=model_id, usage=usage),
        "latency_ms": latency_ms,
        "cost_usd": cost_usd,
        "refusal_reason": refusal_reason,
    }

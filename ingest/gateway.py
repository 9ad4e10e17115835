"""What every gateway handler shares: the per-app :class:`Gateway`, the per-request :class:`Call` that emits exactly
one usage event, and reading and writing JSON on the hot path. Knows nothing of routes (``routes_seed``,
``routes_v1``) or of how errors become responses (``ingest.http``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import Request
from starlette.responses import Response

from common.errors import BadRequest, PayloadTooLarge, ServiceError
from ingest import fastjson
from ingest.auth import authenticate
from ingest.budget import BudgetGuard
from ingest.limits import LimitTracker
from ingest.ports import EventEmitter, KeyRecord, LongPollStore, Team, TenantRegistry
from ingest.pricing import GatewayPricer
from ingest.providers.base import ModelRequest, Provider, Usage
from ingest.providers.registry import ProviderRouter
from ingest.usage import build_event, new_request_id, new_uuid, placeholder_usage

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
#: How long a seed async ("streaming: true") result waits to be polled (the seed's client polls for 120 s).
LONGPOLL_TTL_SECONDS = 900
#: Response header carrying the request id (the usage event's ``request_id``), on successes and errors alike.
REQUEST_ID_HEADER = "x-request-id"


def utc_now() -> datetime:
    return datetime.now(UTC)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response without pydantic on the way (the hot path)."""
    return Response(fastjson.dumps(content), status_code=status_code, headers=headers, media_type="application/json")


class AsyncRunner(Protocol):
    """Where a seed async ("streaming: true") call's model call runs when not in this process (Lambda: a worker
    invocation, ``ingest/async_worker.py``): the start then answers at once, whatever the model's time."""

    async def start(self, call: Call, body: Any) -> None:
        """Park ``call``'s long-poll item and pass the call to the worker, which emits its one usage event.

        Raises:
            common.errors.ServiceError: the call was not handed over (no model call; the start's event says why).
        """
        ...


@dataclass
class Gateway:
    """What every handler needs; one per app (``app.state.gateway``)."""

    registry: TenantRegistry
    providers: ProviderRouter
    emitter: EventEmitter
    longpoll: LongPollStore
    business_unit: str | None
    clock: Callable[[], datetime]
    max_body_bytes: int
    limits: LimitTracker
    #: budgets and fleet-wide daily tokens (ingest/budget.py): checked before the model is called, counted after
    budget: BudgetGuard | None = None
    background: set[asyncio.Task] = field(default_factory=set)
    #: prices each final event's ``cost_usd`` (``None``: no catalog configured, ``cost_usd`` null)
    pricer: GatewayPricer | None = None
    #: seed async calls go to a worker (Lambda); ``None``: they run in this process after the response (``spawn``)
    async_runner: AsyncRunner | None = None

    def begin(self, secret: str | None, *, streaming: bool = False) -> Call:
        """Authenticate; from here on the request gets exactly one usage event (see :class:`Call`)."""
        key, team = authenticate(self.registry, secret)
        return Call(gw=self, request_id=new_request_id(), key=key, team=team, started=time.perf_counter(),
                    streaming=streaming)

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the seed async calls still running (Lambda: before returning); ``True`` if none is left."""
        if self.background:
            await asyncio.wait(list(self.background), timeout=timeout)
        return not self.background

    def spawn(self, coro: Any) -> asyncio.Task:
        """Run work after the response (seed async flow); kept referenced until done, awaited on shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task


@dataclass
class Call:
    """One authenticated request. :meth:`finish` emits its usage event, at most once whatever happens."""

    gw: Gateway
    request_id: str
    key: KeyRecord
    team: Team
    started: float
    model_id: str = "unknown"
    model_arn: str | None = None
    operation: str = "chat"
    streaming: bool = False
    provider: Provider | None = None
    finished: bool = False
    event_id: str = field(default_factory=new_uuid)

    def respond(self, content: Any, status_code: int = 200) -> Response:
        return json_response(content, status_code, {REQUEST_ID_HEADER: self.request_id})

    def route(self, request: ModelRequest) -> Provider:
        """The provider of ``request``; and, as the call is about to be sent, its placeholder in the spool's journal
        (billed with estimated counts if the process dies before the provider answers)."""
        provider = self.check(request)
        self.gw.emitter.open_call(self._event(status="unknown", http_status=None, usage=placeholder_usage(
            request), latency_ms=None))
        return provider

    def check(self, request: ModelRequest) -> Provider:
        """The provider of ``request`` and the checks before a model call, journaling nothing: a call handed to a
        worker (:class:`AsyncRunner`) is journaled where its model call runs."""
        self.provider = provider = self.gw.providers.resolve(self.model_id, model_arn=self.model_arn)
        self.gw.emitter.admit()  # fail-closed: a call whose usage could not be recorded gets 503, no model call
        if self.gw.budget is not None:  # over the budget (block mode) or the daily tokens: 429, no model call
            self.gw.budget.check(self.team)
        return provider

    def finish(self, *, status: str, http_status: int | None, usage: Usage | None = None,
               refusal_reason: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        event = self._event(status=status, http_status=http_status, usage=usage,
                            latency_ms=int((time.perf_counter() - self.started) * 1000),
                            refusal_reason=refusal_reason)
        if self.gw.pricer is not None:  # the final event only: the placeholder stays unpriced
            event["cost_usd"] = self.gw.pricer.cost_usd(event)
        self.gw.emitter.emit(event)
        if self.gw.budget is not None:  # one store transaction: cost, tokens, one request; alerts it crosses
            self.gw.budget.record(self.team, event, pricer=self.gw.pricer)

    def fail(self, exc: BaseException, *, usage: Usage | None = None) -> None:
        """Emit the event of a request that ended with ``exc`` (before the error becomes the HTTP response);
        ``usage``: what the provider already did before the failure (billed, not lost)."""
        if isinstance(exc, Exception):
            exc.request_id = self.request_id  # type: ignore[attr-defined]  # → the x-request-id header
        if isinstance(exc, ServiceError):
            self.finish(status=exc.event_status, http_status=exc.status_code, refusal_reason=exc.refusal_reason,
                        usage=usage)
        elif isinstance(exc, asyncio.CancelledError):
            self.finish(status="client_error", http_status=None, usage=usage)  # the client went away mid-call
        else:
            self.finish(status="upstream_error", http_status=500, usage=usage)

    def _event(self, *, status: str, http_status: int | None, usage: Usage | None, latency_ms: int | None,
               refusal_reason: str | None = None) -> dict[str, Any]:
        provider = self.provider or self._best_effort_provider()
        return build_event(
            request_id=self.request_id, event_time=self.gw.clock(), team_id=self.team.team_id,
            api_key_id=self.key.api_key_id, business_unit=self.team.business_unit or self.gw.business_unit,
            provider=provider.name if provider else "simulator", region=provider.region if provider else None,
            model_id=self.model_arn or self.model_id, operation=self.operation, status=status,
            http_status=http_status, usage=usage, streaming=self.streaming, latency_ms=latency_ms,
            event_id=self.event_id, refusal_reason=refusal_reason)

    def _best_effort_provider(self) -> Provider | None:
        try:
            return self.gw.providers.resolve(self.model_id, model_arn=self.model_arn)
        except ServiceError:
            providers = self.gw.providers.providers()
            return providers[0] if providers else None


async def read_json(request: Request, gw: Gateway) -> Any:
    """The request body as JSON, refusing bodies over ``max_body_bytes`` (413) and malformed JSON (400)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > gw.max_body_bytes:
        raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > gw.max_body_bytes:
            raise PayloadTooLarge(f"request body over {gw.max_body_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return fastjson.loads(raw)  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8 text") from None
    except fastjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
                         ) from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None



"""The gateway's ASGI application: seed-compatible routes, OpenAI-compatible ``/v1`` routes, one usage event each.

``create_app`` wires the seams (tenant registry, providers, emitter, long-poll store) into a FastAPI app that runs
under uvicorn (``modelmeter serve``) and in Lambda (Mangum) alike. Handlers stay thin (see ``routes_seed`` and
``routes_v1``); this module holds what they share: the per-request :class:`Call` that emits exactly one usage event,
and the single place where errors become HTTP responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from common.contracts import Team
from common.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, ServiceError, Unauthorized
from ingest import fastjson
from ingest.auth import authenticate
from ingest.limits import LimitTracker
from ingest.ports import EventEmitter, KeyRecord, LongPollStore, TenantRegistry
from ingest.providers.base import ModelRequest, Provider, Usage
from ingest.providers.registry import ProviderRouter
from ingest.usage import build_event, new_request_id, new_uuid, placeholder_usage

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
#: How long a seed async ("streaming: true") result waits to be polled (the seed's client polls for 120 s).
LONGPOLL_TTL_SECONDS = 900
#: Response header carrying the request id (the usage event's ``request_id``), on successes and errors alike.
REQUEST_ID_HEADER = "x-request-id"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response without pydantic on the way (the hot path)."""
    return Response(fastjson.dumps(content), status_code=status_code, headers=headers, media_type="application/json")


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
    background: set[asyncio.Task] = field(default_factory=set)

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
        self.provider = self.gw.providers.resolve(self.model_id, model_arn=self.model_arn)
        self.gw.emitter.admit()  # fail-closed: a call whose usage could not be recorded gets 503, no model call
        self.gw.emitter.open_call(self._event(status="unknown", http_status=None, usage=placeholder_usage(
            request), latency_ms=None))
        return self.provider

    def finish(self, *, status: str, http_status: int | None, usage: Usage | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        event = self._event(status=status, http_status=http_status, usage=usage,
                            latency_ms=int((time.perf_counter() - self.started) * 1000))
        if usage is not None:
            self.gw.limits.record_tokens(self.team.team_id, usage.input_tokens + usage.output_tokens
                                         + usage.cache_read_input_tokens + usage.cache_write_input_tokens)
        self.gw.emitter.emit(event)

    def fail(self, exc: BaseException) -> None:
        """Emit the event of a request that ended with ``exc`` (before the error becomes the HTTP response)."""
        if isinstance(exc, Exception):
            exc.request_id = self.request_id  # type: ignore[attr-defined]  # → the x-request-id header
        if isinstance(exc, ServiceError):
            self.finish(status=exc.event_status, http_status=exc.status_code)
        elif isinstance(exc, asyncio.CancelledError):
            self.finish(status="client_error", http_status=None)  # the client went away mid-call
        else:
            self.finish(status="upstream_error", http_status=500)

    def _event(self, *, status: str, http_status: int | None, usage: Usage | None, latency_ms: int | None
               ) -> dict[str, Any]:
        provider = self.provider or self._best_effort_provider()
        return build_event(
            request_id=self.request_id, event_time=self.gw.clock(), team_id=self.team.team_id,
            api_key_id=self.key.api_key_id, business_unit=self.team.business_unit or self.gw.business_unit,
            provider=provider.name if provider else "simulator", region=provider.region if provider else None,
            model_id=self.model_arn or self.model_id, operation=self.operation, status=status,
            http_status=http_status, usage=usage, streaming=self.streaming, latency_ms=latency_ms,
            event_id=self.event_id)

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


# --- errors → HTTP, in exactly one place -----------------------------------------------------------------------

def _is_v1(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def error_response(request: Request, exc: ServiceError) -> Response:
    """``{"error": {"type", "message"}}`` on /v1; the seed's ``{"message"}`` (plus ``type``) on seed routes."""
    headers = {}
    request_id = getattr(exc, "request_id", None)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(round(exc.retry_after))))
    if _is_v1(request):
        status = 401 if isinstance(exc, Unauthorized) else exc.status_code  # what the openai SDK expects
        body: dict[str, Any] = {"error": {"type": exc.error_type, "message": exc.message, "code": exc.error_type,
                                          "param": None}}
        return json_response(body, status, headers)
    message = "Forbidden" if isinstance(exc, Unauthorized) else exc.message  # the seed's exact 403 body
    return json_response({"message": message, "type": exc.error_type}, exc.status_code, headers)


def unexpected_response(request: Request, exc: Exception) -> Response:
    """A bug or an unforeseen failure: a generic JSON 500, never a stack trace; the log keeps the details."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = ServiceError("internal error; the gateway logged the details")
    error.request_id = getattr(exc, "request_id", None)  # type: ignore[attr-defined]
    return error_response(request, error)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = ServiceError(str(exc.detail))
        error.status_code, error.error_type = exc.status_code, "not_found_error" if exc.status_code == 404 \
            else "invalid_request_error"
        return error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, BadRequest("invalid request: " + "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_response(request, exc)


# --- the app ---------------------------------------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]
#: Requests with more headers, or more header bytes, are refused with 431 (the HTTP parser itself sets no limit).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024


def _headers_too_large(headers: list[tuple[bytes, bytes]]) -> bool:
    return len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES


class GatewayApp(FastAPI):
    """FastAPI, with the hot routes dispatched straight to their handlers.

    FastAPI's per-request machinery (dependency solving, its middleware stack) cost about as much as all of the
    gateway's own work per request (measured in-process: ~430 µs before, see docs/gateway.md). The hot routes read
    the raw request themselves anyway, so they skip it, keep the one error mapping (:func:`error_response`) and
    still appear in the OpenAPI document; every other path (docs, openapi.json, 404s …) goes through FastAPI.
    """

    fast_routes: dict[tuple[str, str], Endpoint]

    def add_fast_route(self, path: str, endpoint: Endpoint, *, method: str, **openapi: Any) -> None:
        self.add_api_route(path, endpoint, methods=[method], **openapi)  # documented, and the fallback
        self.fast_routes[(method, path)] = endpoint

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _headers_too_large(scope["headers"]):
            await error_response(Request(scope, receive), HeadersTooLarge(
                f"request headers over the limit ({MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)"))(
                scope, receive, send)
            return
        endpoint = self.fast_routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" \
            else None
        if endpoint is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except ServiceError as exc:
            response = error_response(request, exc)
        except Exception as exc:  # noqa: BLE001 - the catch-all of the fast path, as FastAPI's handler is for the rest
            response = unexpected_response(request, exc)
        await response(scope, receive, send)


def create_app(*, registry: TenantRegistry, providers: ProviderRouter, emitter: EventEmitter,
               longpoll: LongPollStore, business_unit: str | None = None, clock: Callable[[], datetime] = _utc_now,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The gateway as an ASGI app.

    Args:
        registry: teams and API keys.
        providers: model id → provider.
        emitter: where usage events go (one per authenticated request).
        longpoll: results of the seed's async flow.
        business_unit: the deployment unit written into every event (a team's own setting wins).
        clock: the UTC clock of ``event_time``; injectable so the demo can replay a week of traffic.
        max_body_bytes: larger request bodies are refused with 413.
    """
    gw = Gateway(registry=registry, providers=providers, emitter=emitter, longpoll=longpoll,
                 business_unit=business_unit, clock=clock, max_body_bytes=max_body_bytes,
                 limits=LimitTracker(clock=clock))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await gw.drain(timeout=30)  # seed async calls still running: let them finish and bill
        await providers.aclose()

    app = GatewayApp(title="modelmeter gateway", version="1.0.0", lifespan=lifespan,
                  description="Multi-tenant foundation-model gateway: seed-compatible and OpenAI-compatible routes; "
                              "every authenticated request becomes exactly one usage event.")
    app.state.gateway = gw
    app.fast_routes = {}
    _install_error_handlers(app)

    from ingest import routes_seed, routes_v1  # after Gateway/Call exist: the routes import them

    routes_seed.register(app, gw)
    routes_v1.register(app, gw)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # A platform's health check: 503 while usage cannot be spooled (calls may be refused), with the reason.
        usage = emitter.status()
        healthy = usage.get("spool") == "ok"
        return json_response({"status": "ok" if healthy else "degraded", "usage": usage}, 200 if healthy else 503)

    return app

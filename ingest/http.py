"""Errors → HTTP, in exactly one place, and the ASGI app class whose hot routes skip FastAPI's machinery."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from common.errors import BadRequest, HeadersTooLarge, ServiceError, Unauthorized
from ingest.gateway import REQUEST_ID_HEADER, json_response

log = logging.getLogger(__name__)

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
                                          "param": None, **exc.details}}
        return json_response(body, status, headers)
    message = "Forbidden" if isinstance(exc, Unauthorized) else exc.message  # the seed's exact 403 body
    return json_response({"message": message, "type": exc.error_type, **exc.details}, exc.status_code, headers)


def unexpected_response(request: Request, exc: Exception) -> Response:
    """A bug or an unforeseen failure: a generic JSON 500, never a stack trace; the log keeps the details."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = ServiceError("internal error; the gateway logged the details")
    error.request_id = getattr(exc, "request_id", None)  # type: ignore[attr-defined]
    return error_response(request, error)


def install_error_handlers(app: FastAPI) -> None:
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



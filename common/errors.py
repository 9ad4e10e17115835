"""modelmeter's errors: ``UserError`` for the commands, and the gateway's service errors.

Domain packages raise these; the commands layer (``modelmeter.cli``) turns a ``UserError`` into one line on stderr
and exit status 1, and the gateway maps a ``ServiceError`` to HTTP in exactly one place (``ingest.app``).

Every service error is terminal (retrying the same request cannot help) or transient (it may succeed later); only
transient errors are retried, by the gateway towards providers and sinks, never by re-billing a tenant.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix (bad input, missing data); a command prints it as one line, exit status 1."""


class ServiceError(Exception):
    """A failure with an HTTP status and a message safe to show the tenant (no internals, no stack trace)."""

    status_code = 500
    error_type = "internal_error"
    transient = False
    #: the usage event's ``status`` for a request that ended with this error
    event_status = "upstream_error"

    #: the usage event's ``refusal_reason`` when the gateway itself refused the call (None: not a refusal)
    refusal_reason: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, refusal_reason: str | None = None,
                 details: dict[str, object] | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if refusal_reason is not None:
            self.refusal_reason = refusal_reason
        #: extra JSON fields of the error body (e.g. a budget refusal's budget, spend and reset time)
        self.details = details or {}


class BadRequest(ServiceError):
    status_code = 400
    error_type = "invalid_request_error"
    event_status = "client_error"


class Unauthorized(ServiceError):
    """Bad or missing API key. The seed answers 403 ``{"message": "Forbidden"}``; /v1 answers 401."""

    status_code = 403
    error_type = "authentication_error"
    event_status = "client_error"


class Forbidden(ServiceError):
    status_code = 403
    error_type = "permission_error"
    event_status = "client_error"


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found_error"
    event_status = "client_error"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "invalid_request_error"
    event_status = "client_error"


class Throttled(ServiceError):
    """The tenant is over one of its limits (429 with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_error"
    transient = True
    event_status = "throttled"


class UpstreamThrottled(Throttled):
    """The model provider throttled us."""


class UpstreamError(ServiceError):
    status_code = 502
    error_type = "upstream_error"
    transient = True
    event_status = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    error_type = "upstream_timeout"


class UpstreamClientError(ServiceError):
    """The provider refused the request as invalid (e.g. a Bedrock ValidationException): the tenant's fault."""

    status_code = 400
    error_type = "invalid_request_error"
    event_status = "client_error"


class ServiceUnavailable(ServiceError):
    """The gateway cannot record usage durably right now, so it calls no model (fail-closed; 503 with Retry-After)."""

    status_code = 503
    error_type = "service_unavailable"
    transient = True
    event_status = "upstream_error"


class HeadersTooLarge(ServiceError):
    """Too many request headers, or too many bytes of them (431)."""

    status_code = 431
    error_type = "invalid_request_error"
    event_status = "client_error"

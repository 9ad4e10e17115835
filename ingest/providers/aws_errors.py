"""Map botocore failures of a model call (Bedrock, SageMaker) to the gateway's errors, in one place.

The tenant sees a clear message and the right status (throttled 429, timeout 504, refused 4xx, anything else 502);
the provider's own message is kept only when it is about the tenant's request (a validation error), never for
server-side failures, whose text can carry account ids or ARNs.
"""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from common.errors import (
    ServiceError,
    UpstreamClientError,
    UpstreamError,
    UpstreamThrottled,
    UpstreamTimeout,
)

# Error codes as the services spell them (Converse/InvokeModel use PascalCase, ConverseStream's in-stream exceptions
# use camelCase, e.g. ``throttlingException``), compared case-insensitively.
_THROTTLED = {"throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception", "throttling"}
_TIMEOUT = {"modeltimeoutexception"}
_CLIENT = {"validationexception", "accessdeniedexception", "resourcenotfoundexception", "validationerror"}
_NOT_FOUND_STATUS = {"resourcenotfoundexception": 404, "accessdeniedexception": 403}
# Provider messages name ARNs and account ids ("Endpoint x of account 123456789012 not found"): not the tenant's.
_ARN = re.compile(r"arn:aws[\w-]*:\S+")
_ACCOUNT = re.compile(r"\b\d{12}\b")


def safe_message(message: str) -> str:
    """A provider's message with ARNs and account ids taken out."""
    return _ACCOUNT.sub("<account>", _ARN.sub("<arn>", message)).strip()


def map_client_error(exc: ClientError, *, provider: str, model_id: str) -> ServiceError:
    """The gateway error for a botocore ``ClientError`` (includes in-stream ``EventStreamError``)."""
    err = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    code = str(err.get("Code") or "").lower()
    message = str(err.get("Message") or "")
    if code in _THROTTLED:
        return UpstreamThrottled(f"{provider} throttled the call to {model_id}; retry later", retry_after=1.0)
    if code in _TIMEOUT:
        return UpstreamTimeout(f"{provider} model {model_id} timed out")
    if code in _CLIENT:
        refused = UpstreamClientError(f"{provider} refused the request for {model_id}: {safe_message(message) or code}")
        refused.status_code = _NOT_FOUND_STATUS.get(code, 400)
        return refused
    return UpstreamError(f"{provider} failed to serve {model_id} ({err.get('Code') or 'unknown error'})")


def map_boto_error(exc: Exception, *, provider: str, model_id: str) -> ServiceError:
    """The gateway error for any exception raised by a boto3 model call."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ClientError):
        return map_client_error(exc, provider=provider, model_id=model_id)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return UpstreamTimeout(f"{provider} model {model_id} did not answer in time")
    if isinstance(exc, EndpointConnectionError):
        return UpstreamError(f"{provider} endpoint for {model_id} is unreachable")
    if isinstance(exc, BotoCoreError):
        return UpstreamError(f"{provider} call to {model_id} failed ({type(exc).__name__})")
    return UpstreamError(f"{provider} call to {model_id} failed")

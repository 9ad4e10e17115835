"""Seed-compatible routes (DESIGN.md "seed API"): ``GET /list_foundation_models``, ``POST /invoke_model``.

A client written for the AWS guidance this replaces works unchanged: same query parameters, the same lower-case
headers (``x-api-key``, ``team_id``, ``messages_api``, ``streaming``, ``type``), the same one-element-array
responses and the same async ("streaming") long-poll flow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response

from common.errors import BadRequest, ServiceError
from ingest.auth import authenticate, check_model_allowed, check_team_header
from ingest.gateway import LONGPOLL_TTL_SECONDS, REQUEST_ID_HEADER, Call, Gateway, json_response, read_json
from ingest.http import GatewayApp
from ingest.openapi_docs import SEED_INVOKE, SEED_LIST
from ingest.providers.base import ModelRequest, ModelResult, Provider, Usage

log = logging.getLogger(__name__)

#: Pauses between attempts to park a result (on top of the store client's own retries): brief, since it runs in
#: the time an invocation keeps back for delivering the call's event (ingest/async_worker.py).
PARK_RETRY_DELAYS = (0.1, 0.3)

_OPERATIONS = {None: None, "": None, "embeddings": "embeddings", "embeddings-image": "image_embeddings",
               "image": "image"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _operation(headers: Any) -> str:
    kind = headers.get("type")
    if kind not in _OPERATIONS:
        raise BadRequest(f"unknown type header {kind!r}: use embeddings, embeddings-image or image")
    return _OPERATIONS[kind] or ("chat" if _truthy(headers.get("messages_api")) else "text")


def _messages(inputs: Any) -> list[dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("with messages_api, inputs must be a non-empty list of {role, content} messages")
    for i, message in enumerate(inputs):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"inputs[{i}] must be an object with a role")
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = [{"text": content}]
        elif not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
            raise BadRequest(f"inputs[{i}].content must be a string or a list of content blocks")
    return inputs


def _dict_field(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise BadRequest(f"{name} must be an object")
    return value


def build_request(call: Call, body: Any) -> ModelRequest:
    """The provider-neutral request of a seed body; refuses wrong shapes and types with 400."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    params = _dict_field(body, "parameters") or {}
    request = ModelRequest(model_id=call.model_id, operation=call.operation, parameters=dict(params),
                           model_arn=call.model_arn, body=body)
    inputs = body.get("inputs")
    if call.operation == "image":
        prompt = (body.get("textToImageParams") or {}).get("text") if isinstance(
            body.get("textToImageParams"), dict) else None
        prompts = body.get("text_prompts")
        if prompt is None and isinstance(prompts, list) and prompts and isinstance(prompts[0], dict):
            prompt = prompts[0].get("text")
        if prompt is None and isinstance(inputs, str):
            prompt = inputs
        if not isinstance(prompt, str):
            raise BadRequest("an image request needs textToImageParams.text, text_prompts[].text or inputs")
        request.prompt = prompt
    elif call.operation == "chat":
        request.messages = _messages(inputs)
        system = params.get("system")
        if system is not None and not isinstance(system, str):
            raise BadRequest("parameters.system must be a string")
        request.system = system
        request.parameters.pop("system", None)
        request.additional_model_fields = _dict_field(body, "additional_model_fields")
        request.tool_config = _dict_field(body, "tool_config")
    elif isinstance(inputs, str) or (call.operation == "text" and isinstance(inputs, dict)):
        request.prompt = inputs  # a dict is a SageMaker payload, passed through
    else:
        raise BadRequest("inputs must be a string" + (" (or an object for SageMaker)" if call.operation == "text"
                                                      else ""))
    if "InferenceComponentName" in params:
        request.extra["InferenceComponentName"] = request.parameters.pop("InferenceComponentName")
    for name in ("maxTokens", "max_new_tokens"):
        value = request.parameters.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BadRequest(f"parameters.{name} must be a positive integer")
    return request


def shape_result(result: ModelResult, operation: str) -> dict[str, Any]:
    """The seed's response element for a result."""
    if operation in ("embeddings", "image_embeddings"):
        return {"embedding": result.embedding or []}
    if operation == "image":
        return {"artifacts": result.artifacts} if result.artifacts is not None else {"images": result.images or []}
    if result.tool_use:
        return {"generated_text": result.tool_use}
    if result.text is None and result.raw is not None:
        return {"generated_text": result.raw}
    return {"generated_text": result.text or ""}


def error_result(exc: BaseException) -> dict[str, Any]:
    """What a poll of a failed async call gets: the status and JSON body its synchronous twin would answer."""
    if isinstance(exc, ServiceError):
        return {"status": exc.status_code, "body": {"message": exc.message, "type": exc.error_type}}
    return {"status": 500, "body": {"message": "internal error; the gateway logged the details",
                                    "type": "internal_error"}}


async def run_async(gw: Gateway, call: Call, provider: Provider, request: ModelRequest) -> bool:
    """The model call of the async flow, after the response (or in the worker): bill it, then park the result for
    one claim. ``True`` if the model answered."""
    try:
        result = await provider.invoke(request)
    except Exception as exc:  # noqa: BLE001 - the task must record the outcome whatever it is
        await fail_async(gw, call, exc)
        return False
    await finish_async(gw, call, result)
    return True


async def finish_async(gw: Gateway, call: Call, result: ModelResult, *, write_by: WriteDeadline | None = None) -> None:
    """Emit the answered call's event, then park its result for one poll (``write_by``: see :func:`park_result`)."""
    call.finish(status="ok", http_status=200, usage=result.usage)
    await park_result(gw, call.request_id, {"status": 200, "body": [shape_result(result, call.operation)]},
                      write_by=write_by)


async def fail_async(gw: Gateway, call: Call, exc: BaseException, *, usage: Usage | None = None,
                     write_by: WriteDeadline | None = None) -> None:
    """Emit the failed call's event (``usage``: what the provider did before it failed), then park its error."""
    call.fail(exc, usage=usage)
    await park_result(gw, call.request_id, error_result(exc), write_by=write_by)


@dataclass(frozen=True)
class WriteDeadline:
    """When the long-poll write must be over (``time.monotonic()``) and the longest one attempt can take (its
    client's connect + read timeouts × attempts): the worker's reserve keeps the later flush phases their share."""

    at: float
    attempt_seconds: float

    def allows_attempt(self, *, after: float = 0.0) -> bool:
        """Whether an attempt started ``after`` seconds from now would end by the deadline."""
        return time.monotonic() + after + self.attempt_seconds <= self.at


async def park_result(gw: Gateway, request_id: str, result: dict[str, Any], *,
                      write_by: WriteDeadline | None = None) -> bool:
    """Complete the long-poll item, retried briefly; ``False`` (logged, never raised) if the store kept failing.

    It runs after the call's event was emitted: an exception here would skip the end-of-invocation delivery of
    that event (the Lambda handler) or die unseen in a background task. A result that could not be parked leaves
    the item ``running``: polls see "not ready" until it expires, then 404; the call is billed all the same.
    With ``write_by``, no attempt starts unless its worst case ends by the deadline (a hanging table would
    otherwise take 3 tries × the client's attempt time out of the event's delivery).
    """
    pause: float | None = 0.0
    for attempt, pause in enumerate((*PARK_RETRY_DELAYS, None), start=1):
        if write_by is not None and not write_by.allows_attempt():
            break
        try:
            gw.longpoll.complete(request_id, result=result)
            return True
        except Exception as exc:  # noqa: BLE001 - any store failure: the event is out, the poll result is not
            log.warning("long-poll result of %s not written (%s), attempt %d/%d", request_id,
                        type(exc).__name__, attempt, len(PARK_RETRY_DELAYS) + 1)
        if pause is None or (write_by is not None and not write_by.allows_attempt(after=pause)):
            break  # the last try, or no time for a pause and another whole attempt inside the worker's share
        await asyncio.sleep(pause)
    log.error("long-poll result of %s lost%s: its polls see 'not ready' until the item expires; the call's usage "
              "event was emitted", request_id, "" if pause is None else " (no time left for another try)")
    return False


def _poll(gw: Gateway, call: Call, request_id: str) -> Response:
    claimed = gw.longpoll.claim(request_id, team_id=call.team.team_id)
    # A poll is not a model call: the model call's own event (emitted when it finished) bills it, exactly once.
    call.finished = True
    if claimed is None:  # still running: the header names the call being waited for, not this poll (no event)
        return json_response([{"request_id": request_id}], 200, {REQUEST_ID_HEADER: request_id})
    return json_response(claimed["body"], claimed["status"], {REQUEST_ID_HEADER: request_id})


async def invoke_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    headers, query = request.headers, request.query_params
    streaming = _truthy(headers.get("streaming"))
    call = gw.begin(headers.get("x-api-key"), streaming=streaming)
    call.model_id = query.get("model_id") or "unknown"
    call.model_arn = query.get("model_arn") or None
    try:
        call.operation = _operation(headers)
        check_team_header(call.team, headers.get("team_id"), required=True)
        if query.get("requestId"):
            return _poll(gw, call, query["requestId"])
        if not query.get("model_id"):
            raise BadRequest("missing model_id query parameter")
        check_model_allowed(call.team, call.model_id, call.model_arn)
        gw.limits.check(call.team.team_id, call.team.limits)
        body = await read_json(request, gw)
        model_request = build_request(call, body)
        if streaming and call.operation in ("chat", "text") and gw.async_runner is not None:
            call.check(model_request)  # refused here (429, 503 …) before anything is handed over
            await gw.async_runner.start(call, body)
            call.finished = True  # its one event is the worker's, emitted when the model call ends
            return call.respond([{"request_id": call.request_id}])
        provider = call.route(model_request)
        if streaming and call.operation in ("chat", "text"):
            gw.longpoll.start(call.request_id, team_id=call.team.team_id, ttl_seconds=LONGPOLL_TTL_SECONDS)
            gw.spawn(run_async(gw, call, provider, model_request))
            return call.respond([{"request_id": call.request_id}])
        call.streaming = False  # embeddings and images have no async flow: answered at once
        result = await provider.invoke(model_request)
        call.finish(status="ok", http_status=200, usage=result.usage)
        return call.respond([shape_result(result, call.operation)])
    except BaseException as exc:
        call.fail(exc)
        raise


async def list_foundation_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    # Listing models calls no model, so it has no usage event; it still needs a valid key.
    authenticate(gw.registry, request.headers.get("x-api-key"))
    models = await gw.providers.list_models()
    summaries = [{
        "modelId": m["model_id"], "modelName": m.get("model_name", m["model_id"]),
        "providerName": m.get("provider_name"), "inputModalities": m.get("input_modalities", ["TEXT"]),
        "outputModalities": m.get("modalities", ["TEXT"]), "responseStreamingSupported": True,
    } for m in models]
    return json_response([{"modelSummaries": summaries}])


def register(app: GatewayApp, gw: Gateway) -> None:
    app.add_fast_route("/list_foundation_models", list_foundation_models, method="GET", openapi_extra=SEED_LIST,
                       summary="List the foundation models (seed API)", tags=["seed"])
    app.add_fast_route("/invoke_model", invoke_model, method="POST", openapi_extra=SEED_INVOKE,
                       summary="Invoke a model (seed API)", tags=["seed"])

"""OpenAPI descriptions of the routes (``openapi_extra``), kept apart so handlers stay thin and pydantic-free.

The handlers read the raw request themselves (one JSON parse, no model validation on the hot path) so FastAPI
cannot infer these; they are written here once and exported to ``docs/openapi.json``.
"""

from __future__ import annotations

from typing import Any

_ERROR_SEED = {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
               "required": ["message"]}
_ERROR_V1 = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["type", "message"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "code": {"type": ["string", "null"]},
                   "param": {"type": ["string", "null"]}}}}}


def _errors(schema: dict[str, Any], *codes: int) -> dict[str, Any]:
    text = {400: "malformed request", 401: "missing or invalid API key", 403: "bad key, other team or model not "
            "allowed", 404: "unknown model or request id", 413: "request body too large",
            429: "over a team limit, over the team's monthly budget (block mode: the body adds budget_usd, "
                 "spend_usd, period and resets_at) or throttled upstream (Retry-After)", 502: "upstream failure",
            503: "usage or spend cannot be recorded or checked right now (Retry-After)", 504: "upstream timeout"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": schema}}} for c in codes}


def _header(name: str, description: str, *, required: bool = False, enum: list[str] | None = None
            ) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


_KEY = _header("x-api-key", "the team's API key", required=True)

SEED_LIST: dict[str, Any] = {
    "parameters": [_KEY],
    "responses": {"200": {"description": "a one-element array holding the model list", "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object", "properties": {
            "modelSummaries": {"type": "array", "items": {"type": "object"}}}}}}}}, **_errors(_ERROR_SEED, 403)},
}

_MESSAGE = {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"type": "string", "enum": ["user", "assistant"]},
    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}

SEED_INVOKE: dict[str, Any] = {
    "parameters": [
        {"name": "model_id", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1},
         "description": "model as invoked: base id, inference profile, ARN or SageMaker endpoint name"},
        {"name": "model_arn", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "custom or provisioned model ARN"},
        {"name": "requestId", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "poll the result of an async (streaming: true) call"},
        _KEY,
        _header("team_id", "the caller's team; must be the key's team", required=True),
        _header("messages_api", "true: inputs are Converse messages", enum=["true", "false"]),
        _header("streaming", "true: async flow (returns request_id; poll with requestId)", enum=["true", "false"]),
        _header("type", "operation other than text/chat", enum=["embeddings", "embeddings-image", "image"]),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "inputs": {"description": "prompt text, Converse messages, embeddings text or base64 image",
                       "oneOf": [{"type": "string"}, {"type": "array", "items": _MESSAGE}, {"type": "object"}]},
            "parameters": {"type": "object", "properties": {
                "maxTokens": {"type": "integer", "minimum": 1}, "temperature": {"type": "number"},
                "topP": {"type": "number"}, "stopSequences": {"type": "array", "items": {"type": "string"}},
                "system": {"type": "string"}}},
            "additional_model_fields": {"type": "object"},
            "tool_config": {"type": "object"},
            "textToImageParams": {"type": "object", "properties": {"text": {"type": "string"}}},
            "text_prompts": {"type": "array", "items": {"type": "object"}},
        }}}}},
    "responses": {"200": {"description": "a one-element array: generated_text, embedding, images, artifacts or "
                                         "request_id", "content": {"application/json": {"schema": {
                                             "type": "array", "minItems": 1, "maxItems": 1,
                                             "items": {"type": "object"}}}}},
                  **_errors(_ERROR_SEED, 400, 403, 404, 413, 429, 502, 504)},
}

_BEARER = _header("Authorization", "Bearer <API key>", required=True)

V1_MODELS: dict[str, Any] = {
    "parameters": [_BEARER],
    "responses": {"200": {"description": "the models", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {
            "type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"}}}}}}}}},
        **_errors(_ERROR_V1, 401)},
}

V1_CHAT: dict[str, Any] = {
    "parameters": [_BEARER],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"],
                                                                   "properties": {"role": {"type": "string"}}}},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number"}, "top_p": {"type": "number"},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        }}}}},
    "responses": {"200": {"description": "a chat.completion, or text/event-stream chunks when stream is true",
                          "content": {"application/json": {"schema": {"type": "object"}},
                                      "text/event-stream": {"schema": {"type": "string"}}}},
                  **_errors(_ERROR_V1, 400, 401, 403, 404, 413, 429, 502, 504)},
}

V1_EMBEDDINGS: dict[str, Any] = {
    "parameters": [_BEARER],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "input"],
        "properties": {"model": {"type": "string", "minLength": 1},
                       "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                       "encoding_format": {"type": "string", "enum": ["float", "base64"]}}}}}},
    "responses": {"200": {"description": "the embeddings", "content": {"application/json": {
        "schema": {"type": "object"}}}}, **_errors(_ERROR_V1, 400, 401, 403, 404, 413, 429, 502, 504)},
}

_USAGE = {"type": "object", "required": ["team_id", "period", "spend_usd", "budget_mode"], "properties": {
    "team_id": {"type": "string"},
    "period": {"type": "string", "description": "the budget period: the fiscal month, named by its first day"},
    "period_start": {"type": "string", "format": "date"}, "period_end": {"type": "string", "format": "date"},
    "resets_at": {"type": "string", "format": "date-time", "description": "when the next period starts (UTC)"},
    "calendar": {"type": "object", "description": "the reporting calendar periods and days are counted in",
                 "properties": {"timezone": {"type": "string"}, "fiscal_month_start_day": {"type": "integer"}}},
    "spend_usd": {"type": "string", "description": "month-to-date spend, decimal USD"},
    "budget_usd": {"type": ["string", "null"]}, "remaining_usd": {"type": ["string", "null"]},
    "budget_mode": {"type": "string", "enum": ["alert", "block"]},
    "alert_at": {"type": "array", "items": {"type": "integer"}},
    "thresholds_crossed": {"type": "array", "items": {"type": "integer"}},
    "alerts_raised": {"type": "array", "items": {"type": "integer"}},
    "requests": {"type": "integer"}, "day": {"type": "string", "format": "date"},
    "daily_tokens_used": {"type": "integer"}, "daily_tokens_limit": {"type": ["integer", "null"]},
    "daily_requests": {"type": "integer"}, "day_resets_at": {"type": "string", "format": "date-time"},
    "spend_store": {"type": ["string", "null"]}}}

V1_USAGE: dict[str, Any] = {
    "parameters": [_BEARER],
    "responses": {"200": {"description": "the calling team's budget period", "content": {
        "application/json": {"schema": _USAGE}}}, **_errors(_ERROR_V1, 401, 403, 503)},
}

SEED_USAGE: dict[str, Any] = {
    "parameters": [_KEY, _header("team_id", "the caller's team; when given, must be the key's team")],
    "responses": {"200": {"description": "the calling team's budget period", "content": {
        "application/json": {"schema": _USAGE}}}, **_errors(_ERROR_SEED, 403, 503)},
}

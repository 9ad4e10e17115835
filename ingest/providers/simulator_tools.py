"""SIMULATOR — tool use for the labelled simulator (``ingest/providers/simulator.py``). Not a model.

When a chat request carries tools (a Converse ``toolConfig``: ``tools[].toolSpec{name, description,
inputSchema.json}`` and ``toolChoice``), the simulator asks for one of them with a deterministic ``toolUse`` block
whose ``input`` satisfies the tool's JSON Schema: every required property, with a value of the right type (enum,
const, format, bounds and lengths respected; ``pattern`` is not). Once the conversation's last user message carries
a ``toolResult``, it answers in text, so a client's round trip (call → run the tool → send its result → answer)
works end to end, as against Bedrock Converse:
https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from typing import Any

from ingest.providers.base import ModelRequest

#: Nesting depth beyond which a schema is answered with an empty value (a recursive schema must still end).
_MAX_DEPTH = 8
_FORMATS = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "time": "00:00:00Z",
            "email": "simulated@example.com", "uri": "https://example.com/simulated",
            "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "192.0.2.1", "hostname": "simulated.example.com"}


def tool_specs(tool_config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The well-formed ``toolSpec`` entries of a Converse ``toolConfig`` (others are ignored, as a model would)."""
    tools = (tool_config or {}).get("tools")
    if not isinstance(tools, list):
        return []
    specs = [t.get("toolSpec") for t in tools if isinstance(t, dict)]
    return [s for s in specs if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"]]


def has_tool_result(request: ModelRequest) -> bool:
    """Whether the last user message answers a tool call (then the simulator answers in text)."""
    users = [m for m in request.messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    return isinstance(content, list) and any(isinstance(b, dict) and "toolResult" in b for b in content)


def tool_to_call(request: ModelRequest, text: str) -> dict[str, Any] | None:
    """The ``toolSpec`` the simulator asks for, or ``None`` when it answers in text.

    ``toolChoice`` ``{"tool": {"name"}}`` names it; otherwise (``auto``, ``any`` or none) the tool whose name and
    description share the most words with the conversation, the first one on a tie. A simulator asks for a tool
    whenever it may: the demo and the tests then cover the round trip, which a real model does at its discretion.
    """
    specs = tool_specs(request.tool_config)
    if not specs or has_tool_result(request):
        return None
    choice = (request.tool_config or {}).get("toolChoice")
    named = choice.get("tool") if isinstance(choice, dict) else None
    if isinstance(named, dict):
        for spec in specs:
            if spec["name"] == named.get("name"):
                return spec
    words = set(_words(text))
    return max(specs, key=lambda s: len(words & set(_words(f"{s['name']} {s.get('description') or ''}"))))


def tool_use_block(spec: dict[str, Any], *, seed: int, model_id: str, text: str) -> dict[str, Any]:
    """A Converse ``toolUse`` content block for ``spec``: an id shaped like Bedrock's (``tooluse_`` + 22
    characters), the same for the same seed, model and conversation, and an ``input`` that satisfies the schema."""
    digest = hashlib.sha256(f"{seed}|{model_id}|{spec['name']}|{text}".encode()).digest()
    tool_use_id = "tooluse_" + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    schema = (spec.get("inputSchema") or {}).get("json") if isinstance(spec.get("inputSchema"), dict) else None
    if isinstance(schema, str):  # Converse accepts the schema as a JSON document too
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = None
    value = example_value(schema if isinstance(schema, dict) else {"type": "object"}, "input")
    return {"toolUse": {"toolUseId": tool_use_id, "name": spec["name"],
                        "input": value if isinstance(value, dict) else {}}}


def example_value(schema: Any, name: str, depth: int = 0) -> Any:
    """A value satisfying ``schema`` (JSON Schema), derived from the property's ``name`` so it reads naturally:
    objects hold their required properties only (what a client's ``tool(**input)`` accepts)."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return f"simulated {name}"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update({**part, "required": [*merged.get("required", []), *part.get("required", [])]})
        return example_value(merged, name, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        properties = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        return {key: example_value(properties.get(key, {}), key, depth + 1) for key in required}
    if kind == "array":
        count = max(_int(schema.get("minItems"), 0), min(1, _int(schema.get("maxItems"), 1)))
        return [example_value(schema.get("items", {}), name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first type that is not null
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    return "array" if "items" in schema else "string"


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """1, moved inside ``minimum``/``maximum`` and the exclusive bounds (draft 4's boolean ones are ignored)."""
    low, high = _bound(schema.get("minimum")), _bound(schema.get("maximum"))
    ex_low, ex_high = _bound(schema.get("exclusiveMinimum")), _bound(schema.get("exclusiveMaximum"))
    if integer:
        low = max(x for x in (math.ceil(low) if low is not None else None,
                              math.floor(ex_low) + 1 if ex_low is not None else None, -math.inf) if x is not None)
        high = min(x for x in (math.floor(high) if high is not None else None,
                               math.ceil(ex_high) - 1 if ex_high is not None else None, math.inf) if x is not None)
        return int(min(max(1, low), high)) if low <= high else int(low)
    if ex_low is not None and ex_high is not None:
        return (ex_low + ex_high) / 2
    value = 1.0
    if ex_low is not None and value <= ex_low:
        value = ex_low + 1
    if ex_high is not None and value >= ex_high:
        value = ex_high - 1
    value = max(value, low) if low is not None else value
    return float(min(value, high) if high is not None else value)


def _bound(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _string(schema: dict[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), f"simulated {name}")
    low, high = _int(schema.get("minLength"), 0), schema.get("maxLength")
    text = text.ljust(low, "x")
    return text[:high] if isinstance(high, int) and not isinstance(high, bool) and high >= low else text


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower().replace("_", " ")) if len(w) > 2]

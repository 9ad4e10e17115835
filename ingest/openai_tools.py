"""OpenAI tool calling ↔ Converse tool use, for the /v1 routes (``ingest/routes_v1.py``).

Requests: ``tools[].function{name, description, parameters}`` and ``tool_choice`` become a Converse ``toolConfig``;
an assistant message's ``tool_calls`` become ``toolUse`` blocks and ``role: tool`` messages ``toolResult`` blocks of
one user message, as Converse wants them. Answers: ``toolUse`` blocks become ``message.tool_calls``, or, streamed,
``delta.tool_calls`` pieces (the id and name first, then the arguments in fragments) that the ``openai`` SDK
assembles by ``index``. Shapes: https://platform.openai.com/docs/api-reference/chat and
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolConfiguration.html
"""

from __future__ import annotations

import json
from typing import Any

from common.errors import BadRequest

#: Characters of a tool call's arguments per streamed delta (what a model's token-by-token stream looks like).
ARGUMENT_PIECE = 32
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


def converse_tool_config(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    """The Converse ``toolConfig`` of a chat body's ``tools`` and ``tool_choice``; ``None`` when it offers none.

    ``tool_choice`` ``none`` offers no tool (Converse has no "none"); ``required`` is Converse ``any``; a named
    function must be one of ``tools``. Wrong shapes → 400 naming the field.
    """
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of {type: function, function: {name, parameters}}")
    specs = [_tool_spec(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if not specs or tool_choice == "none":
        return None
    config: dict[str, Any] = {"tools": [{"toolSpec": spec} for spec in specs]}
    if tool_choice in (None, "auto"):
        return config
    if tool_choice == "required":
        config["toolChoice"] = {"any": {}}
        return config
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise BadRequest("tool_choice must be none, auto, required or {type: function, function: {name}}")
    if name not in {spec["name"] for spec in specs}:
        raise BadRequest(f"tool_choice names {name!r}, which is not one of tools")
    config["toolChoice"] = {"tool": {"name": name}}
    return config


def _tool_spec(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise BadRequest(f"{where} must be {{type: function, function: {{name, parameters}}}}")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise BadRequest(f"{where}.function needs a non-empty name")
    parameters = function.get("parameters", _EMPTY_SCHEMA)
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}.function.parameters must be a JSON Schema object")
    spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": parameters}}
    if isinstance(function.get("description"), str) and function["description"]:
        spec["description"] = function["description"]
    return spec


def tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls`` as Converse ``toolUse`` blocks (``arguments`` decoded from JSON)."""
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise BadRequest(f"{where}.tool_calls must be a list")
    blocks = []
    for i, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str) or not isinstance(
                function.get("name"), str):
            raise BadRequest(f"{where}.tool_calls[{i}] needs an id and a function with a name")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            raise BadRequest(f"{where}.tool_calls[{i}].function.arguments must be a JSON object in a string") from None
        if not isinstance(arguments, dict):
            raise BadRequest(f"{where}.tool_calls[{i}].function.arguments must be a JSON object in a string")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": function["name"], "input": arguments}})
    return blocks


def tool_result_block(message: dict[str, Any], text_blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """A ``role: tool`` message as a Converse ``toolResult`` block (its text parts are the result's content)."""
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise BadRequest(f"{where}: a tool message needs the tool_call_id it answers")
    if any("text" not in b for b in text_blocks):
        raise BadRequest(f"{where}: a tool message holds text parts only")
    return {"toolResult": {"toolUseId": tool_call_id, "content": text_blocks or [{"text": ""}]}}


def openai_tool_calls(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Converse ``toolUse`` blocks as an OpenAI message's ``tool_calls``."""
    calls = []
    for i, block in enumerate(blocks):
        use = block.get("toolUse", block)
        calls.append({"id": use.get("toolUseId", f"call_{i}"), "type": "function",
                      "function": {"name": use.get("name"), "arguments": _arguments(use.get("input"))}})
    return calls


def tool_call_deltas(blocks: list[dict[str, Any]], *, first_index: int) -> tuple[list[dict[str, Any]], int]:
    """The streamed ``delta`` objects of ``blocks`` (call ``first_index`` onwards), and the argument characters
    they carry (what the call is billed on if the stream breaks)."""
    deltas, chars = [], 0
    for offset, call in enumerate(openai_tool_calls(blocks)):
        index = first_index + offset
        arguments = call["function"]["arguments"]
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for start in range(0, len(arguments), ARGUMENT_PIECE):
            deltas.append({"tool_calls": [{"index": index,
                                           "function": {"arguments": arguments[start:start + ARGUMENT_PIECE]}}]})
        chars += len(arguments)
    return deltas, chars


def _arguments(value: Any) -> str:
    # a model whose input was not valid JSON left it as text (ConverseStreamState): pass that text on as is
    return value if isinstance(value, str) else json.dumps(value if value is not None else {})

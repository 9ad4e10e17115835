"""Bedrock request bodies and response readers, per model family (no I/O here: pure, table-testable functions).

Shapes follow the Bedrock user guide's "inference request parameters and response fields" pages: Converse
(``output.message.content``, ``usage``), ConverseStream events (``contentBlockDelta``, ``messageStop``, ``metadata``),
InvokeModel bodies for Titan/Cohere embeddings, Titan/Nova Canvas and Stability images, and the text models that
are called natively, whose token counts come from the ``X-Amzn-Bedrock-*-Token-Count`` headers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from common.errors import BadRequest
from ingest.providers.base import Usage

# Converse ``inferenceConfig`` keys, and the native spellings tenants send in seed ``parameters`` for the same thing.
_INFERENCE_ALIASES = {
    "maxTokens": "maxTokens", "max_tokens": "maxTokens", "max_new_tokens": "maxTokens",
    "maxTokenCount": "maxTokens", "max_gen_len": "maxTokens", "max_tokens_to_sample": "maxTokens",
    "temperature": "temperature",
    "topP": "topP", "top_p": "topP",
    "stopSequences": "stopSequences", "stop_sequences": "stopSequences", "stop": "stopSequences",
}
# Content blocks whose ``source.bytes`` the seed sends as base64 text; boto3 wants raw bytes.
_BINARY_BLOCKS = ("image", "document", "video")


def split_inference_params(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split seed ``parameters`` into Converse ``inferenceConfig`` and model-specific extra fields."""
    config: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in parameters.items():
        if key == "system":
            continue
        target = _INFERENCE_ALIASES.get(key)
        if target is None:
            extra[key] = value
        elif target == "stopSequences" and isinstance(value, str):
            config[target] = [value]
        else:
            config[target] = value
    return config, extra


def _decode_b64(value: Any, where: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64") from None


def converse_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as boto3 wants them: base64 ``source.bytes`` of image/document/video blocks decoded to bytes."""
    out = []
    for m_index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise BadRequest(f"inputs[{m_index}] must be an object with a 'content' list")
        content = []
        for c_index, block in enumerate(message["content"]):
            if not isinstance(block, dict):
                raise BadRequest(f"inputs[{m_index}].content[{c_index}] must be an object")
            if "image_url" in block:  # an OpenAI content part, as the /v1 route passes it on
                block = _image_url_block(block["image_url"], f"messages[{m_index}].content[{c_index}].image_url")
            kind = next((k for k in _BINARY_BLOCKS if k in block), None)
            source = block.get(kind, {}).get("source") if kind else None
            if isinstance(source, dict) and "bytes" in source:
                where = f"inputs[{m_index}].content[{c_index}].{kind}.source.bytes"
                block = {**block, kind: {**block[kind], "source": {**source, "bytes": _decode_b64(source["bytes"],
                                                                                                     where)}}}
            content.append(block)
        out.append({**message, "content": content})
    return out


def _image_url_block(image_url: Any, where: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` part (a ``data:image/<fmt>;base64,`` URL) as a Converse image block.

    Bedrock cannot fetch URLs, so anything but inline data is refused with a clear 400.
    """
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    prefix, _, data = str(url or "").partition(";base64,")
    if not prefix.startswith("data:image/") or not data:
        raise BadRequest(f"{where} must be a data:image/<format>;base64,… URL (Bedrock cannot fetch remote images)")
    fmt = prefix.removeprefix("data:image/").lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in ("png", "jpeg", "gif", "webp"):
        raise BadRequest(f"{where}: image format {fmt!r} is not supported; use png, jpeg, gif or webp")
    return {"image": {"format": fmt, "source": {"bytes": _decode_b64(data, where)}}}


def converse_usage(usage: Mapping[str, Any] | None) -> Usage:
    """Converse ``usage`` → :class:`Usage`. Bedrock's ``inputTokens`` already excludes cache reads and writes.

    ``cacheWriteInputTokens`` is every cache write; ``cacheDetails`` (``[{"ttl": "1h" | "5m", "inputTokens"}]``,
    when the model reports it) breaks it down by TTL, which Anthropic models price differently: the 1-hour part is
    ``cache_write_1h_input_tokens``, the rest ``cache_write_input_tokens`` (the two are disjoint)."""
    usage = usage or {}
    writes = int(usage.get("cacheWriteInputTokens") or 0)
    one_hour = sum(int(d.get("inputTokens") or 0) for d in usage.get("cacheDetails") or ()
                   if isinstance(d, Mapping) and d.get("ttl") == "1h")
    one_hour = min(one_hour, writes) if writes else one_hour
    return Usage(
        input_tokens=int(usage.get("inputTokens") or 0),
        output_tokens=int(usage.get("outputTokens") or 0),
        cache_read_input_tokens=int(usage.get("cacheReadInputTokens") or 0),
        cache_write_input_tokens=max(0, writes - one_hour),
        cache_write_1h_input_tokens=one_hour,
    )


def converse_output(response: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """Text and ``toolUse`` blocks of a Converse response's ``output.message``."""
    content = (response.get("output") or {}).get("message", {}).get("content") or []
    texts = [block["text"] for block in content if "text" in block]
    tools = [{"toolUse": block["toolUse"]} for block in content if "toolUse" in block]
    return ("".join(texts) if texts else None), (tools or None)


class ConverseStreamState:
    """Folds ConverseStream events into text deltas, tool calls, the stop reason and the final usage."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.stop_reason: str | None = None
        self.tool_use: list[dict[str, Any]] = []
        self._tool_inputs: dict[int, list[str]] = {}

    def feed(self, event: Mapping[str, Any]) -> str:
        """Take one stream event; return the text it adds ("" for none).

        Raises:
            KeyError-free by design: unknown events (future additions) are ignored.
        """
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if tool:
                self.tool_use.append({"toolUse": {**tool, "input": {}}})
                self._tool_inputs[start.get("contentBlockIndex", 0)] = []
            return ""
        if "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if "toolUse" in delta:
                self._tool_inputs.setdefault(block.get("contentBlockIndex", 0), []).append(
                    delta["toolUse"].get("input", ""))
            return delta.get("text", "")
        if "contentBlockStop" in event:
            self._close_tool(event["contentBlockStop"].get("contentBlockIndex", 0))
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = converse_usage(event["metadata"].get("usage"))
        return ""

    def _close_tool(self, index: int) -> None:
        parts = self._tool_inputs.pop(index, None)
        if parts is None or not self.tool_use:
            return
        raw = "".join(parts)
        try:
            self.tool_use[-1]["toolUse"]["input"] = json.loads(raw) if raw else {}
        except ValueError:
            self.tool_use[-1]["toolUse"]["input"] = raw


# --- InvokeModel: text models called natively ---------------------------------------------------------------------

def native_text_body(model_id: str, prompt: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The InvokeModel body of a text completion for a model family that is called natively."""
    family = model_family(model_id)
    params = dict(parameters)
    if family == "amazon":
        return {"inputText": prompt, "textGenerationConfig": params}
    if family == "anthropic":
        params.setdefault("max_tokens_to_sample", 512)
        return {"prompt": f"\n\nHuman: {prompt}\n\nAssistant:", **params}
    if family == "ai21":
        return {"prompt": prompt, **params}
    return {"prompt": prompt, **params}  # meta, mistral, cohere command, and most others


def native_text_output(payload: Mapping[str, Any]) -> tuple[str, Usage | None]:
    """Generated text (and body-reported token counts, when the family reports them) of a native text response."""
    if "results" in payload:  # amazon titan text
        first = payload["results"][0] if payload["results"] else {}
        titan = Usage(input_tokens=int(payload.get("inputTextTokenCount") or 0),
                      output_tokens=int(first.get("tokenCount") or 0))
        return first.get("outputText", ""), titan
    if "generation" in payload:  # meta llama
        usage: Usage | None = None
        if "prompt_token_count" in payload:
            usage = Usage(input_tokens=int(payload["prompt_token_count"] or 0),
                          output_tokens=int(payload.get("generation_token_count") or 0))
        return payload["generation"], usage
    if "completion" in payload:  # anthropic text completions
        return payload["completion"], None
    if "outputs" in payload:  # mistral
        return "".join(o.get("text", "") for o in payload["outputs"]), None
    if "generations" in payload:  # cohere command
        return "".join(g.get("text", "") for g in payload["generations"]), None
    if "completions" in payload:  # ai21 jurassic
        return "".join(c.get("data", {}).get("text", "") for c in payload["completions"]), None
    return payload.get("outputText") or payload.get("text") or "", None


def native_stream_text(chunk: Mapping[str, Any]) -> str:
    """Text of one InvokeModelWithResponseStream chunk, whatever the family."""
    for key in ("outputText", "generation", "completion", "text"):
        if isinstance(chunk.get(key), str):
            return chunk[key]
    if chunk.get("type") == "content_block_delta":  # anthropic messages
        return (chunk.get("delta") or {}).get("text", "")
    if "outputs" in chunk:
        return "".join(o.get("text", "") for o in chunk["outputs"])
    return ""


def invocation_metrics_usage(chunk: Mapping[str, Any]) -> Usage | None:
    """Usage from the ``amazon-bedrock-invocationMetrics`` Bedrock adds to the last chunk of a native stream."""
    metrics = chunk.get("amazon-bedrock-invocationMetrics")
    if not isinstance(metrics, Mapping):
        return None
    return Usage(
        input_tokens=int(metrics.get("inputTokenCount") or 0),
        output_tokens=int(metrics.get("outputTokenCount") or 0),
        cache_read_input_tokens=int(metrics.get("cacheReadInputTokenCount") or 0),
        cache_write_input_tokens=int(metrics.get("cacheWriteInputTokenCount") or 0),
    )


def header_usage(headers: Mapping[str, str] | None) -> Usage | None:
    """Usage from InvokeModel's ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` headers.

    botocore lower-cases the names in ``ResponseMetadata.HTTPHeaders``; ``None`` when neither header is there.
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    inp = headers.get("x-amzn-bedrock-input-token-count")
    out = headers.get("x-amzn-bedrock-output-token-count")
    if inp is None and out is None:
        return None
    return Usage(input_tokens=int(inp or 0), output_tokens=int(out or 0))


def model_family(model_id: str) -> str:
    """``anthropic`` for ``anthropic.claude…``, ``us.anthropic.claude…`` (inference profiles) and the like."""
    base = model_id.rsplit("/", 1)[-1]  # an ARN's last segment
    parts = base.split(".")
    if len(parts) > 2 and parts[0] in ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"):
        parts = parts[1:]
    return parts[0] if parts else base


# --- embeddings -------------------------------------------------------------------------------------------------

def embedding_body(model_id: str, text: Any, parameters: Mapping[str, Any], *, image: bool) -> dict[str, Any]:
    """InvokeModel body for text embeddings (Titan ``inputText``, Cohere ``texts``) or image embeddings."""
    if image:
        if not isinstance(text, str) or not text:
            raise BadRequest("'inputs' must be a base64 image for image embeddings")
        _decode_b64(text, "inputs")  # refuse a non-image early, with a clear message
        return {"inputImage": text, **dict(parameters)}
    if not isinstance(text, str) or not text:
        raise BadRequest("'inputs' must be a non-empty string for embeddings")
    if model_family(model_id) == "cohere":
        return {"texts": [text], "input_type": parameters.get("input_type", "search_document"),
                **{k: v for k, v in parameters.items() if k != "input_type"}}
    return {"inputText": text, **dict(parameters)}


def embedding_output(payload: Mapping[str, Any]) -> tuple[list[float], int | None]:
    """The vector and the body-reported input token count (Titan's ``inputTextTokenCount``; Cohere has none)."""
    if "embedding" in payload:
        return list(payload["embedding"]), payload.get("inputTextTokenCount")
    embeddings = payload.get("embeddings")
    if isinstance(embeddings, dict):  # cohere v3 with embedding_types: {"float": [[…]]}
        embeddings = next(iter(embeddings.values()), [])
    if embeddings:
        return list(embeddings[0]), None
    return [], None


# --- images -------------------------------------------------------------------------------------------------------

def image_body(model_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The native image-generation body from the seed's shape (``parameters`` flattened into the top level)."""
    if not isinstance(body, Mapping):
        raise BadRequest("the image request body must be a JSON object")
    native = {k: v for k, v in body.items() if k not in ("parameters", "inputs")}
    params = body.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise BadRequest("'parameters' must be an object")
    native.update(params)
    if model_family(model_id) == "amazon":
        native.setdefault("taskType", "TEXT_IMAGE")
        if "textToImageParams" not in native and isinstance(body.get("inputs"), str):
            native["textToImageParams"] = {"text": body["inputs"]}
    elif "text_prompts" not in native and "prompt" not in native and isinstance(body.get("inputs"), str):
        native["prompt"] = body["inputs"]
    return native


def image_usage(model_id: str, native: Mapping[str, Any], payload: Mapping[str, Any]) -> Usage:
    """Images generated, their size and quality (what image prices depend on)."""
    images = payload.get("images") or []
    artifacts = payload.get("artifacts") or []
    count = len(images) or len(artifacts)
    if model_family(model_id) == "amazon":
        config = native.get("imageGenerationConfig") or {}
        # Titan Image Generator v2 and Nova Canvas default to 1024x1024 at standard quality.
        return Usage(image_count=count, image_width=int(config.get("width", 1024)),
                     image_height=int(config.get("height", 1024)),
                     image_quality=str(config.get("quality", "standard")).lower())
    width, height = native.get("width"), native.get("height")
    steps = native.get("steps")
    # Bedrock prices SDXL by steps: up to 50 is "standard", more is "premium".
    quality = None if steps is None else ("premium" if int(steps) > 50 else "standard")
    return Usage(image_count=count, image_width=int(width) if width else None,
                 image_height=int(height) if height else None, image_quality=quality)

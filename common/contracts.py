"""Usage event, schema version 1: the one definition.

Everything else derives from ``FIELDS``: the Parquet schema of the raw lake, the JSON Schema in ``docs/``,
the Glue columns in ``infra/``, the validation suite in ``transforms/`` and the SQL staging model. A test proves
they agree. Change this only by adding fields (see DESIGN.md: names are relied on by others).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

PROVIDERS = ("bedrock", "sagemaker", "openai_compatible", "simulator")
OPERATIONS = ("chat", "text", "embeddings", "image", "image_embeddings")
#: ``unknown``: the call reached the provider but its outcome was never learned (the gateway process died); counts
#: are then estimated. The gateway writes such a placeholder with the call's own event_id (DESIGN.md).
STATUSES = ("ok", "client_error", "upstream_error", "throttled", "unknown")
TOKEN_SOURCES = ("exact", "estimated")
SERVICE_TIERS = ("on_demand", "batch", "flex", "priority", "provisioned")
IMAGE_QUALITIES = ("standard", "premium")

#: How far in the future an event_time may lie before the event is refused (clock skew allowance).
MAX_FUTURE_SKEW = timedelta(days=1)
#: Most tokens (per count field) and images one event may report: a thousand times the largest context window and
#: far more images than one call makes. A larger count is a broken producer, and is quarantined, not priced.
MAX_TOKENS_PER_EVENT = 10**9
MAX_IMAGES_PER_EVENT = 10**4


@dataclass(frozen=True)
class Field:
    """One field of the usage event.

    Attributes:
        name: the JSON key and the Parquet/Glue column name.
        kind: ``string``, ``int``, ``bigint``, ``bool`` or ``timestamp`` (ISO-8601 UTC string in JSON).
        required: must be present and non-null in every event.
        default: value used when an optional field is absent.
        allowed: accepted values, for enumerations.
        minimum: smallest accepted number, for counts.
        maximum: largest accepted number, for counts: far above any real request, and low enough that every
            cost of one event fits the transform's 64-bit pico-dollar arithmetic (``pricing_catalog.model``).
        description: what the field means (exported to the JSON Schema and the Glue column comment).
    """

    name: str
    kind: str
    required: bool = False
    default: Any = None
    allowed: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""

    @property
    def nullable(self) -> bool:
        return not self.required and self.default is None


FIELDS: tuple[Field, ...] = (
    Field("schema_version", "int", required=True, description="Schema version of this event; 1."),
    Field("event_id", "string", required=True, description="Unique id of this event (UUID); the dedupe key."),
    Field("request_id", "string", required=True, description="The gateway's request id (one event per request)."),
    Field("event_time", "timestamp", required=True,
          description="When the request finished and its usage was known, ISO-8601 UTC."),
    Field("team_id", "string", required=True, description="The tenant, taken from the API key server-side."),
    Field("api_key_id", "string", description="A non-secret id/hash of the API key; never the key."),
    Field("business_unit", "string", description="The deployment unit."),
    Field("provider", "string", required=True, allowed=PROVIDERS, description="Model provider."),
    Field("region", "string", description="AWS region of the call."),
    Field("model_id", "string", required=True,
          description="Model as invoked: base id, inference-profile id, ARN or endpoint name."),
    Field("operation", "string", required=True, allowed=OPERATIONS, description="Kind of call."),
    Field("status", "string", required=True, allowed=STATUSES, description="Outcome of the request."),
    Field("http_status", "int", description="HTTP status returned to the tenant."),
    Field("input_tokens", "bigint", default=0, minimum=0, maximum=MAX_TOKENS_PER_EVENT,
          description="Input tokens billed at the plain input rate (cached tokens are not in here)."),
    Field("output_tokens", "bigint", default=0, minimum=0, maximum=MAX_TOKENS_PER_EVENT,
          description="Output tokens."),
    Field("cache_read_input_tokens", "bigint", default=0, minimum=0, maximum=MAX_TOKENS_PER_EVENT,
          description="Input tokens read from cache."),
    Field("cache_write_input_tokens", "bigint", default=0, minimum=0, maximum=MAX_TOKENS_PER_EVENT,
          description="Input tokens written to cache."),
    Field("image_count", "bigint", default=0, minimum=0, maximum=MAX_IMAGES_PER_EVENT,
          description="Images generated."),
    Field("image_width", "int", minimum=0, description="Width of generated images in pixels."),
    Field("image_height", "int", minimum=0, description="Height of generated images in pixels."),
    Field("image_quality", "string", allowed=IMAGE_QUALITIES, description="Quality of generated images."),
    Field("token_source", "string", default="exact", allowed=TOKEN_SOURCES,
          description="exact (provider-reported) or estimated."),
    Field("streaming", "bool", default=False, description="Whether the response was streamed."),
    Field("service_tier", "string", default="on_demand", allowed=SERVICE_TIERS, description="Service tier billed."),
    Field("latency_ms", "bigint", minimum=0, description="End-to-end latency in milliseconds."),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
COUNT_FIELDS: tuple[str, ...] = (
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "image_count",
)

#: Hive partition keys of the raw lake (directory names, not columns inside the files).
PARTITION_KEYS: tuple[str, ...] = ("dt", "hour")

_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}
_GLUE_TYPES = {"string": "string", "int": "int", "bigint": "bigint", "bool": "boolean", "timestamp": "timestamp"}
_SQL_TYPES = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "bool": "BOOLEAN",
              "timestamp": "TIMESTAMP WITH TIME ZONE"}
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def arrow_schema() -> pa.Schema:
    """The Parquet schema of ``raw/usage_events`` files (partition keys excluded)."""
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.kind], nullable=not f.required, metadata={"description": f.description})
         for f in FIELDS],
        metadata={"modelmeter.schema_version": str(SCHEMA_VERSION)},
    )


def glue_columns() -> list[dict[str, str]]:
    """Glue/Hive columns of the raw table, in order: ``[{"name", "type", "comment"}]``."""
    return [{"name": f.name, "type": _GLUE_TYPES[f.kind], "comment": f.description} for f in FIELDS]


def sql_columns() -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` pairs, for the SQL staging model and its tests."""
    return [(f.name, _SQL_TYPES[f.kind]) for f in FIELDS]


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one event as JSON; exported to ``docs/usage_event.schema.json``."""
    props: dict[str, Any] = {}
    for f in FIELDS:
        if f.kind == "timestamp":
            spec: dict[str, Any] = {"type": "string", "format": "date-time"}
        elif f.kind in ("int", "bigint"):
            spec = {"type": "integer"}
            if f.minimum is not None:
                spec["minimum"] = f.minimum
            if f.maximum is not None:
                spec["maximum"] = f.maximum
        elif f.kind == "bool":
            spec = {"type": "boolean"}
        else:
            spec = {"type": "string"}
            if f.required:
                spec["minLength"] = 1
        if f.allowed:
            spec["enum"] = list(f.allowed)
        if f.name == "schema_version":
            spec["const"] = SCHEMA_VERSION
        if f.default is not None:
            spec["default"] = f.default
        if f.nullable:
            spec = {"anyOf": [spec, {"type": "null"}]}
        spec["description"] = f.description
        props[f.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://modelmeter.dev/schemas/usage_event/v1.json",
        "title": "modelmeter usage event, schema version 1",
        "type": "object",
        "required": list(REQUIRED),
        "properties": props,
        "additionalProperties": True,
    }


def format_time(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2026-11-25T13:45:01.123Z``."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 instant that carries a UTC offset (``Z`` or ``+hh:mm``); returns an aware UTC datetime.

    Raises:
        ValueError: not ISO-8601, or no offset (a naive time is ambiguous, so it is refused).
    """
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        raise ValueError("has no time zone; write it in UTC with a trailing Z")
    return ts.astimezone(UTC)


class EventError(ValueError):
    """An event that does not follow schema v1; ``problems`` lists every problem found, one sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _check_value(f: Field, value: Any) -> tuple[Any, str | None]:
    """Coerce one present, non-null value; return ``(value, problem)``."""
    if f.kind == "timestamp":
        if not isinstance(value, str):
            return None, f"{f.name} must be an ISO-8601 UTC string, got {_kind_of(value)}"
        try:
            return parse_time(value), None
        except ValueError as exc:
            msg = str(exc) if "time zone" in str(exc) else "is not an ISO-8601 instant"
            return None, f"{f.name} {value!r} {msg}"
    if f.kind in ("int", "bigint"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)  # 12.0 from a JSON encoder that writes floats: same number, no information lost
            else:
                return None, f"{f.name} must be an integer, got {_kind_of(value)} {value!r}"
        limit = _INT32_MAX if f.kind == "int" else _INT64_MAX
        if abs(value) > limit:
            return None, f"{f.name} {value} is out of range"
        return value, None
    if f.kind == "bool":
        if not isinstance(value, bool):
            return None, f"{f.name} must be true or false, got {_kind_of(value)} {value!r}"
        return value, None
    if not isinstance(value, str):
        return None, f"{f.name} must be a string, got {_kind_of(value)}"
    return value, None


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", float: "a number",
            int: "an integer", type(None): "null"}.get(type(value), type(value).__name__)


def parse_event(obj: Any) -> dict[str, Any]:
    """Check the structure of one decoded JSON event and return it as a row of ``arrow_schema()``.

    Structural checks only: an object, ``schema_version`` 1, required fields present and not null, every known
    field of the right type. Unknown fields are ignored, absent optional fields take their default.
    Value rules (enumerations, non-negative counts, future times) are :func:`value_problems`, which the
    transform applies to every row however it arrived.

    Raises:
        EventError: with every problem found.
    """
    if not isinstance(obj, Mapping):
        raise EventError([f"an event must be a JSON object, got {_kind_of(obj)}"])
    version = obj.get("schema_version")
    if version is None:
        raise EventError(["schema_version is missing"])
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise EventError([f"unknown schema_version {version!r} (this reader knows {SCHEMA_VERSION})"])
    row: dict[str, Any] = {}
    problems: list[str] = []
    for f in FIELDS:
        value = obj.get(f.name)
        if value is None:
            if f.required:
                problems.append(f"{f.name} is missing" if f.name not in obj else f"{f.name} is null")
            row[f.name] = f.default
            continue
        row[f.name], problem = _check_value(f, value)
        if problem:
            problems.append(problem)
        elif f.kind == "string" and f.required and not value.strip():
            problems.append(f"{f.name} is empty")
    if problems:
        raise EventError(problems)
    return row


def value_problems(row: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """Value rules of schema v1 for a structurally valid row; an empty list means valid.

    The transform expresses the same rules in SQL (Great Expectations on DuckDB); tests prove both agree.
    """
    problems: list[str] = []
    for f in FIELDS:
        value = row.get(f.name)
        if value is None:
            continue
        if f.allowed and value not in f.allowed:
            problems.append(f"{f.name} {value!r} is not one of {', '.join(f.allowed)}")
        if f.minimum is not None and value < f.minimum:
            problems.append(f"{f.name} {value} is negative")
        if f.maximum is not None and value > f.maximum:
            problems.append(f"{f.name} {value} is more than {f.maximum} (no single request has that many)")
    problem = future_problem(row, now=now)
    return problems + ([problem] if problem else [])


def future_problem(row: Mapping[str, Any], *, now: datetime | None = None) -> str | None:
    """Why the row's ``event_time`` is refused as too far ahead (more than a day after ``now``), or None.

    Ingest applies this rule itself (the others are the transform's): such an event would land in a ``dt=``
    partition no scheduled transform reaches yet, so it would wait there unseen instead of being set aside."""
    ts = row.get("event_time")
    now = now or datetime.now(UTC)
    if isinstance(ts, datetime) and ts > now + MAX_FUTURE_SKEW:
        return f"event_time {format_time(ts)} is more than a day in the future"
    return None


def to_json(row: Mapping[str, Any]) -> str:
    """One event row as a JSON line (times as ISO-8601 UTC strings)."""
    out = {k: (format_time(v) if isinstance(v, datetime) else v) for k, v in row.items()}
    return json.dumps(out, separators=(",", ":"), sort_keys=False)


# --- Quarantine rows (DESIGN.md: rejected rows + reason + source file and line/row) ---------------------------

QUARANTINE_STAGES = ("ingest", "transform")


def quarantine_arrow_schema() -> pa.Schema:
    """Parquet schema of ``quarantine/usage_events/dt=…`` files; ``dt`` is the event's date when known.

    ``raw`` keeps the rejected line or row as it was (JSON text), so nothing is lost and it can be replayed.
    """
    return pa.schema([
        pa.field("event_id", pa.string(), metadata={"description": "event_id when it could be read"}),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), metadata={"description": "event_time when readable"}),
        pa.field("team_id", pa.string(), metadata={"description": "team_id when it could be read"}),
        pa.field("reason", pa.string(), nullable=False, metadata={"description": "why the row was refused"}),
        pa.field("stage", pa.string(), nullable=False, metadata={"description": "ingest or transform"}),
        pa.field("source_file", pa.string(), metadata={"description": "file the row came from"}),
        pa.field("source_line", pa.int64(), metadata={"description": "1-based line (JSONL) or row (Parquet)"}),
        pa.field("raw", pa.string(), metadata={"description": "the rejected line or row, as it was"}),
        pa.field("quarantined_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ])


if __name__ == "__main__":  # python -m common.contracts > docs/usage_event.schema.json
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))

"""Usage event, schema version 1: the one definition.

Everything else derives from ``FIELDS``: the Parquet schema of the raw lake, the JSON Schema in ``docs/``,
the Glue columns in ``infra/``, the validation suite in ``transforms/`` and the SQL staging model. A test proves
they agree. Change this only by adding fields (see DESIGN.md: names are relied on by others).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from common.constants import MONEY_PRECISION, MONEY_SCALE

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


# --- Billable units: one entry per counted thing that is priced ------------------------------------------------

@dataclass(frozen=True)
class BillableUnit:
    """One billable unit, and every name it goes by on the way from the event to the bill.

    Adding a unit is one entry in :data:`UNITS` (plus the pricing rule it needs in ``pricing_catalog``): the event
    field, the Parquet/Glue/JSON Schema columns, the validation rules, the price table, the curated cost column, the
    report, the FOCUS meter and the QuickSight columns all derive from it.

    Attributes:
        count_field: the usage event's count field, also the curated count column (``input_tokens``).
        dimension: the price catalog's / price sheet's dimension that prices it (``input_tokens``, ``images``).
        cost_column: the curated cost column (``input_cost``).
        count_description: what the count means (event field, Glue comment).
        cost_description: what the cost column holds.
        max_per_event: the largest count one event may report (a larger one is quarantined).
        max_unit_price_usd: the highest unit price the catalog accepts for it (see ``pricing_catalog.model``).
        focus_meter: FOCUS ``SkuMeter`` of its rows in the FOCUS export.
        focus_unit: FOCUS ``PricingUnit`` / ``ConsumedUnit``.
    """

    count_field: str
    dimension: str
    cost_column: str
    count_description: str
    cost_description: str
    max_per_event: int
    max_unit_price_usd: Decimal
    focus_meter: str
    focus_unit: str

    @property
    def is_tokens(self) -> bool:
        return self.focus_unit == "Tokens"

    @property
    def unit_price_column(self) -> str:
        """The day's price table's unit price of this unit, in whole pico-dollars (``unit_input_tokens``)."""
        return f"unit_{self.count_field}"

    @property
    def pico_column(self) -> str:
        """The cost in whole pico-dollars, as ``marts/usage_cost_pico.sql`` computes it (``input_pico``)."""
        return self.cost_column.removesuffix("_cost") + "_pico"


UNITS: tuple[BillableUnit, ...] = (
    BillableUnit("input_tokens", "input_tokens", "input_cost",
                 "Input tokens billed at the plain input rate (cached tokens are not in here).",
                 "Cost of input_tokens, USD.", MAX_TOKENS_PER_EVENT, Decimal("0.001"), "Input Tokens", "Tokens"),
    BillableUnit("output_tokens", "output_tokens", "output_cost", "Output tokens.", "Cost of output_tokens, USD.",
                 MAX_TOKENS_PER_EVENT, Decimal("0.001"), "Output Tokens", "Tokens"),
    BillableUnit("cache_read_input_tokens", "cache_read_input_tokens", "cache_read_cost",
                 "Input tokens read from cache.", "Cost of cache_read_input_tokens, USD.", MAX_TOKENS_PER_EVENT,
                 Decimal("0.001"), "Cache Read Input Tokens", "Tokens"),
    BillableUnit("cache_write_input_tokens", "cache_write_input_tokens", "cache_write_cost",
                 "Input tokens written to cache (with the default, 5-minute TTL; 1-hour writes are "
                 "cache_write_1h_input_tokens).", "Cost of cache_write_input_tokens, USD.", MAX_TOKENS_PER_EVENT,
                 Decimal("0.001"), "Cache Write Input Tokens", "Tokens"),
    BillableUnit("image_count", "images", "image_cost", "Images generated.", "Cost of generated images, USD.",
                 MAX_IMAGES_PER_EVENT, Decimal(100), "Images", "Images"),
    BillableUnit("input_image_count", "input_images", "input_image_cost",
                 "Images sent as input and billed per image (e.g. Titan Multimodal Embeddings); images a model "
                 "bills as input tokens are counted there instead.", "Cost of input_image_count, USD.",
                 MAX_IMAGES_PER_EVENT, Decimal(100), "Input Images", "Images"),
    BillableUnit("cache_write_1h_input_tokens", "cache_write_1h_input_tokens", "cache_write_1h_cost",
                 "Input tokens written to cache with a 1-hour TTL (disjoint from cache_write_input_tokens, the "
                 "5-minute writes).", "Cost of cache_write_1h_input_tokens, USD.", MAX_TOKENS_PER_EVENT,
                 Decimal("0.001"), "Cache Write 1h Input Tokens", "Tokens"),
)
UNIT_OF_COUNT: dict[str, BillableUnit] = {u.count_field: u for u in UNITS}
UNIT_OF_DIMENSION: dict[str, BillableUnit] = {u.dimension: u for u in UNITS}
#: The event's count fields, in order.
COUNT_FIELDS: tuple[str, ...] = tuple(u.count_field for u in UNITS)
#: The catalog's dimensions, in order; those that count tokens.
DIMENSIONS: tuple[str, ...] = tuple(u.dimension for u in UNITS)
TOKEN_DIMENSIONS: tuple[str, ...] = tuple(u.dimension for u in UNITS if u.is_tokens)
#: Dimensions priced by one unit price (every one but generated images, which are priced by size and quality class).
SCALAR_DIMENSIONS: tuple[str, ...] = tuple(u.dimension for u in UNITS if u.count_field != "image_count")
#: event count field → catalog dimension; curated cost column → event count field.
DIMENSION_OF: dict[str, str] = {u.count_field: u.dimension for u in UNITS}
COST_OF: dict[str, str] = {u.cost_column: u.count_field for u in UNITS}
#: The curated cost columns, in order, then their sum.
COST_COLUMNS: tuple[str, ...] = (*COST_OF, "total_cost")


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
    *(Field(u.count_field, "bigint", default=0, minimum=0, maximum=u.max_per_event, description=u.count_description)
      for u in UNITS),
    Field("image_width", "int", minimum=0, description="Width of generated images in pixels."),
    Field("image_height", "int", minimum=0, description="Height of generated images in pixels."),
    Field("image_quality", "string", allowed=IMAGE_QUALITIES, description="Quality of generated images."),
    Field("token_source", "string", default="exact", allowed=TOKEN_SOURCES,
          description="exact (provider-reported) or estimated."),
    Field("streaming", "bool", default=False, description="Whether the response was streamed."),
    Field("service_tier", "string", default="on_demand", allowed=SERVICE_TIERS, description="Service tier billed."),
    Field("latency_ms", "bigint", minimum=0, description="End-to-end latency in milliseconds."),
    Field("cost_usd", "string",
          description="The call's cost at the gateway, USD, as a decimal string (null when unpriced), from the same "
                      "unit prices as the transform, whose figure is the one of record."),
    Field("refusal_reason", "string",
          description="Why the gateway refused the call: budget, rate_limit, token_quota, allowlist, team_mismatch; "
                      "null when it did not refuse it."),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

#: Hive partition keys of the raw lake (directory names, not columns inside the files).
PARTITION_KEYS: tuple[str, ...] = ("dt", "hour")

MONEY = pa.decimal128(MONEY_PRECISION, MONEY_SCALE)
MONEY_SQL = f"DECIMAL({MONEY_PRECISION},{MONEY_SCALE})"

#: Column kind → Arrow type: the one map every table's Parquet, Glue and SQL types derive from (:func:`glue_type`,
#: :func:`sql_type`). Raw events carry milliseconds; DuckDB writes the curated tables' timestamps in microseconds.
KIND_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "timestamp_us": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "money": MONEY,
}


def glue_type(dtype: pa.DataType) -> str:
    """The Hive/Glue type of a pyarrow type (the types our Parquet files use)."""
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_int64(dtype) or pa.types.is_uint32(dtype):
        return "bigint"
    if pa.types.is_integer(dtype):
        return "int" if dtype.bit_width == 32 else ("smallint" if dtype.bit_width == 16 else "tinyint")
    if pa.types.is_floating(dtype):
        return "double" if dtype.bit_width == 64 else "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype):
        return "string"
    raise ValueError(f"no Glue type for pyarrow type {dtype}: add it to common.contracts.glue_type")


def sql_type(dtype: pa.DataType) -> str:
    """The DuckDB type of a pyarrow type (as the SQL staging model and the views declare it)."""
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP WITH TIME ZONE" if dtype.tz else "TIMESTAMP"
    return {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN", "date": "DATE",
            "double": "DOUBLE"}[glue_type(dtype)]


def glue_columns_of(schema: pa.Schema, *, skip: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Glue columns of an Arrow schema, in order: ``[{"name", "type", "comment"}]`` (``skip``: partition keys)."""
    return [{"name": f.name, "type": glue_type(f.type), "comment": (f.metadata or {}).get(b"description", b"").decode()}
            for f in schema if f.name not in skip]


_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def arrow_schema() -> pa.Schema:
    """The Parquet schema of ``raw/usage_events`` files (partition keys excluded)."""
    return pa.schema(
        [pa.field(f.name, KIND_ARROW[f.kind], nullable=not f.required, metadata={"description": f.description})
         for f in FIELDS],
        metadata={"modelmeter.schema_version": str(SCHEMA_VERSION)},
    )


def glue_columns() -> list[dict[str, str]]:
    """Glue/Hive columns of the raw table, in order: ``[{"name", "type", "comment"}]``."""
    return glue_columns_of(arrow_schema())


def sql_columns() -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` pairs, for the SQL staging model and its tests."""
    return [(f.name, sql_type(KIND_ARROW[f.kind])) for f in FIELDS]


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


# --- Value rules: one list, rendered three ways -----------------------------------------------------------------
# The Python checks below (ingest and the gateway's sink), the transform's SQL quarantine and its Great Expectations
# suite (``transforms.rules``) all come from :func:`value_rules`; tests prove the renderings agree.

#: What a rule checks: the kinds :func:`transforms.rules` knows how to render as SQL and as an expectation.
RULE_CHECKS = ("known_version", "present", "not_empty", "allowed", "minimum", "maximum", "not_future",
               "in_partition")


@dataclass(frozen=True)
class ValueRule:
    """One rule every stored event must keep.

    Attributes:
        name: ``<column>_<check>``: the key of its count in the transform's manifest.
        column: the checked field.
        check: one of :data:`RULE_CHECKS`.
        values: the accepted values (``allowed``) or the one known version (``known_version``).
        bound: the limit of ``minimum`` / ``maximum``.
    """

    name: str
    column: str
    check: str
    values: tuple[Any, ...] = ()
    bound: int | None = None

    def problem(self, row: Mapping[str, Any], *, now: datetime, day: Any = None) -> str | None:
        """Why ``row`` breaks the rule (the sentence a quarantine row states), or ``None``.

        ``day`` (a date) is only needed by ``in_partition``; ``now`` by ``not_future``.
        """
        value = row.get(self.column)
        c = self.column
        if self.check == "present":
            return f"{c} is missing" if value is None else None
        if value is None:
            return None
        if self.check == "known_version":
            return None if value in self.values else f"unknown schema_version {value} (this reader knows " \
                                                     f"{self.values[0]})"
        if self.check == "not_empty":
            return f"{c} is empty" if value == "" else None
        if self.check == "allowed":
            # quoted as the SQL rendering quotes it (transforms/rules.py), whatever the value holds
            return None if value in self.values else f"{c} '{value}' is not one of {', '.join(self.values)}"
        if self.check == "minimum":
            return f"{c} {value} is negative" if value < (self.bound or 0) else None
        if self.check == "maximum":
            assert self.bound is not None
            return f"{c} {value} is more than {self.bound} (no single request has that many)" \
                if value > self.bound else None
        if self.check == "not_future":
            return f"{c} {format_time(value)} is more than a day in the future" \
                if isinstance(value, datetime) and value > now + MAX_FUTURE_SKEW else None
        if self.check == "in_partition":
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return None if start <= value < start + timedelta(days=1) else \
                f"{c} {format_time(value)} is not in partition dt={day.isoformat()}"
        raise ValueError(f"unknown rule check {self.check!r}")


def value_rules() -> list[ValueRule]:
    """Every value rule of schema v1, derived from :data:`FIELDS`, in the order their reasons are listed."""
    out = [ValueRule("schema_version_known", "schema_version", "known_version", values=(SCHEMA_VERSION,))]
    for f in FIELDS:
        c = f.name
        if f.required:
            out.append(ValueRule(f"{c}_present", c, "present"))
            if f.kind == "string":
                out.append(ValueRule(f"{c}_not_empty", c, "not_empty"))
        if f.allowed:
            out.append(ValueRule(f"{c}_allowed", c, "allowed", values=f.allowed))
        if f.minimum is not None:
            out.append(ValueRule(f"{c}_not_negative", c, "minimum", bound=f.minimum))
        if f.maximum is not None:
            out.append(ValueRule(f"{c}_not_too_large", c, "maximum", bound=f.maximum))
    out.append(ValueRule("event_time_not_future", "event_time", "not_future"))
    out.append(ValueRule("event_time_in_partition", "event_time", "in_partition"))
    return out


#: The rules on values (not on structure, which :func:`parse_event` checks) that hold for an event whatever its
#: partition: what ``value_problems`` checks.
_VALUE_CHECKS = ("allowed", "minimum", "maximum", "not_future")


def value_problems(row: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """Value rules of schema v1 for a structurally valid row; an empty list means valid.

    The transform renders the same rules (:func:`value_rules`) in SQL and as Great Expectations; tests prove all
    three agree.
    """
    now = now or datetime.now(UTC)
    problems = [r.problem(row, now=now) for r in _VALUE_RULES if r.check in _VALUE_CHECKS]
    return [p for p in problems if p]


def future_problem(row: Mapping[str, Any], *, now: datetime | None = None) -> str | None:
    """Why the row's ``event_time`` is refused as too far ahead (more than a day after ``now``), or None.

    Ingest applies this rule itself (the others are the transform's): such an event would land in a ``dt=``
    partition no scheduled transform reaches yet, so it would wait there unseen instead of being set aside."""
    return _FUTURE_RULE.problem(row, now=now or datetime.now(UTC))


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


# --- Curated tables (DESIGN.md "Curated tables") ---------------------------------------------------------------
# ``usage_cost`` and ``team_model_daily``: one definition for the transform's writer, the Glue columns in ``infra/``
# and the SQL views. Counts and enumerations reuse the event's fields; money is DECIMAL(38,12) USD. Both tables are
# partitioned by ``dt`` (the usage date, a directory, not a column inside the files); ``usage_date`` repeats it.

#: Hive partition key of both curated tables (``dt=YYYY-MM-DD``).
CURATED_PARTITION_KEY = "dt"


@dataclass(frozen=True)
class CuratedColumn:
    """One curated column: name, kind (a key of :data:`KIND_ARROW`), nullability and what it means (exported as
    the Glue column comment)."""

    name: str
    kind: str
    nullable: bool = True
    description: str = ""


def _from_event(name: str) -> CuratedColumn:
    """A column copied from the usage event (same name, kind and meaning)."""
    f = BY_NAME[name]
    kind = "timestamp_us" if f.kind == "timestamp" else f.kind  # as DuckDB writes it
    return CuratedColumn(f.name, kind, nullable=not f.required and f.default is None, description=f.description)


_USAGE_DATE = CuratedColumn("usage_date", "date", nullable=False,
                            description="UTC date of event_time (the dt partition).")
_PRICE_VERSION = CuratedColumn("price_version", "string",
                               description="Pricing catalog version that priced the row(s).")

_MONEY_DESCRIPTIONS = {**{u.cost_column: u.cost_description for u in UNITS},
                       "total_cost": "Sum of the other cost columns, USD."}

#: usage_cost's money (DESIGN.md): each dimension priced on its own, the total the sum of what was priced.
_UNPRICED_UNIT = " 0 when not used; NULL when used without a price."
_USAGE_COST_MONEY = {"total_cost": "Sum of the priced cost columns, USD: a lower bound when priced is false; NULL "
                                   "when nothing the event used had a price."}

USAGE_COST: tuple[CuratedColumn, ...] = (
    _from_event("event_id"),
    _from_event("event_time"),
    _USAGE_DATE,
    *(_from_event(n) for n in ("team_id", "api_key_id", "business_unit", "provider", "region", "model_id",
                               "operation", "status", "service_tier")),
    *(_from_event(n) for n in COUNT_FIELDS),
    _PRICE_VERSION,
    *(CuratedColumn(n, "money", description=_USAGE_COST_MONEY.get(n, _MONEY_DESCRIPTIONS[n] + _UNPRICED_UNIT))
      for n in COST_COLUMNS),
    CuratedColumn("priced", "bool", nullable=False,
                  description="True when every dimension the event used has a price; false lists the others in "
                              "unpriced_dimensions (their cost NULL, the priced ones kept)."),
    CuratedColumn("unpriced_dimensions", "string",
                  description="Catalog dimensions the event used without a price, comma-separated in billable-unit "
                              "order; NULL when priced ('' when its model has no price and it used nothing)."),
    _from_event("refusal_reason"),
)

TEAM_MODEL_DAILY: tuple[CuratedColumn, ...] = (
    _USAGE_DATE,
    _from_event("team_id"),
    _from_event("model_id"),
    CuratedColumn("invocations", "bigint", nullable=False, description="Valid, deduped events (requests)."),
    *(CuratedColumn(n, "bigint", nullable=False, description=f"Sum of {n}.") for n in COUNT_FIELDS),
    *(CuratedColumn(n, "money", nullable=False,
                    description=_MONEY_DESCRIPTIONS[n] + " The priced part (usage without a price is not in it).")
      for n in COST_COLUMNS),
    CuratedColumn("unpriced_invocations", "bigint", nullable=False,
                  description="Events with priced false: some dimension they used had no price (what they used "
                              "without a price is not in the costs, their priced dimensions are)."),
    _PRICE_VERSION,
    CuratedColumn("unpriced_dimensions", "string",
                  description="Catalog dimensions some event used without a price, comma-separated in "
                              "billable-unit order; NULL when every event was priced."),
)

CURATED_TABLES: dict[str, tuple[CuratedColumn, ...]] = {"usage_cost": USAGE_COST, "team_model_daily": TEAM_MODEL_DAILY}


def curated_arrow_schema(table: str) -> pa.Schema:
    """The Parquet schema of ``curated/<table>/dt=…`` files (the ``dt`` partition key excluded)."""
    return pa.schema([pa.field(c.name, KIND_ARROW[c.kind], nullable=c.nullable,
                               metadata={"description": c.description}) for c in CURATED_TABLES[table]])


def curated_glue_columns(table: str) -> list[dict[str, str]]:
    """Glue/Hive columns of a curated table, in order: ``[{"name", "type", "comment"}]`` (partition ``dt`` apart)."""
    return glue_columns_of(curated_arrow_schema(table))


def curated_sql_columns(table: str) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` pairs of a curated table."""
    return [(c.name, sql_type(KIND_ARROW[c.kind])) for c in CURATED_TABLES[table]]


# --- The organisation: teams (the tenant registry's records, ``reference/teams`` in the lake) ------------------

#: The one team-id rule (CLI, registries, QuickSight row-level security, the deployment config): 1-64 letters,
#: digits, ``.``, ``_`` or ``-``, starting with a letter or digit.
TEAM_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Ids no team may have: ``unallocated`` is the chargeback's line for what no allocation rule claims (DESIGN.md).
RESERVED_TEAM_IDS: tuple[str, ...] = ("unallocated",)


def team_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a team id, or ``None``."""
    if not isinstance(value, str) or not TEAM_ID_PATTERN.fullmatch(value):
        return (f"{value!r} is not a team id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
                f"digit")
    if value in RESERVED_TEAM_IDS:
        return f"{value!r} is reserved (the chargeback's line for costs no rule allocates); choose another team id"
    return None


@dataclass(frozen=True)
class Limits:
    """Per-team limits; ``None`` means unlimited."""

    requests_per_second: float | None = None
    daily_tokens: int | None = None


@dataclass(frozen=True)
class CostCenterSpan:
    """From ``effective_from`` (a UTC day; ``None``: since always) the team is charged to ``cost_center``."""

    effective_from: date | None
    cost_center: str | None


#: What a team's monthly budget does (DESIGN.md "Spend controls"): ``alert`` only alerts; ``block`` also refuses
#: calls (429) once the fiscal month's spend has reached it.
BUDGET_MODES: tuple[str, ...] = ("alert", "block")
#: Alert thresholds, percent of the monthly budget: the default, and the accepted range.
DEFAULT_ALERT_AT: tuple[int, ...] = (50, 80, 100)
ALERT_AT_RANGE: tuple[int, int] = (1, 1000)


def alert_at_problem(thresholds: tuple[int, ...]) -> str | None:
    """Why ``thresholds`` are not usable alert thresholds (whole percentages from 1 to 1000), or None."""
    low, high = ALERT_AT_RANGE
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, int) or not low <= t <= high:
            return f"alert threshold {t!r} is not a whole percentage from {low} to {high}"
    return None


@dataclass(frozen=True)
class Team:
    """A tenant. ``allowed_models`` are fnmatch patterns over the model id as invoked (``*`` = any).

    The organisation is dated: ``cost_center_history`` holds the team's cost centres with the UTC day each took
    effect, oldest first (empty: ``cost_center`` since always). ``cost_center`` is the latest assignment; what a
    day or a billing period is charged to is :meth:`cost_center_on` that day.

    ``budget_mode`` (:data:`BUDGET_MODES`) and ``alert_at`` (percent of ``monthly_budget_usd``, ascending) are the
    spend controls of the gateway (``ingest/spend.py``); they do nothing without a budget.
    """

    team_id: str
    cost_center: str | None = None
    monthly_budget_usd: Decimal | None = None
    allowed_models: tuple[str, ...] = ("*",)
    limits: Limits = field(default_factory=Limits)
    business_unit: str | None = None
    cost_center_history: tuple[CostCenterSpan, ...] = ()
    budget_mode: str = "alert"
    alert_at: tuple[int, ...] = DEFAULT_ALERT_AT

    def spans(self) -> tuple[CostCenterSpan, ...]:
        """The history, never empty: ``(since always, cost_center)`` for a team that never moved."""
        return self.cost_center_history or (CostCenterSpan(None, self.cost_center),)

    def cost_center_on(self, day: date) -> str | None:
        """The cost centre in force on ``day`` (``None`` before the team's first dated assignment)."""
        current: str | None = None
        for span in self.spans():
            if span.effective_from is None or span.effective_from <= day:
                current = span.cost_center
        return current

    def moved(self, cost_center: str | None, *, effective_from: date | None) -> Team:
        """This team charged to ``cost_center`` from ``effective_from`` on (``None``: since always, rewriting the
        history); an assignment of the same day is replaced, earlier ones are kept."""
        if effective_from is None:
            spans: list[CostCenterSpan] = [CostCenterSpan(None, cost_center)]
        else:
            kept = [s for s in self.spans() if s.effective_from != effective_from]
            if not self.cost_center_history and self.cost_center is None:
                kept = []  # never assigned: nothing was in force before
            spans = sorted([*kept, CostCenterSpan(effective_from, cost_center)],
                           key=lambda s: s.effective_from or date.min)
        return replace(self, cost_center=spans[-1].cost_center, cost_center_history=tuple(spans))

    def history_json(self) -> list[dict[str, str | None]]:
        """The history as JSON values (both registries store it so)."""
        return [{"effective_from": s.effective_from.isoformat() if s.effective_from else None,
                 "cost_center": s.cost_center} for s in self.cost_center_history]


def history_from_json(values: list[dict[str, Any]] | None) -> tuple[CostCenterSpan, ...]:
    """The inverse of :meth:`Team.history_json`."""
    return tuple(CostCenterSpan(date.fromisoformat(v["effective_from"]) if v.get("effective_from") else None,
                                v.get("cost_center")) for v in values or ())


def teams_schema() -> pa.Schema:
    """Parquet schema of ``reference/teams/teams.parquet``: one row per team and cost-centre assignment."""
    return pa.schema([
        pa.field("team_id", pa.string(), nullable=False, metadata={"description": "The tenant."}),
        pa.field("cost_center", pa.string(),
                 metadata={"description": "Cost centre charged for the team from effective_from to effective_to."}),
        pa.field("monthly_budget_usd", MONEY,
                 metadata={"description": "Monthly (fiscal-month) budget, USD; NULL when none."}),
        pa.field("business_unit", pa.string(), metadata={"description": "Deployment or business unit."}),
        pa.field("effective_from", pa.date32(),
                 metadata={"description": "First UTC day of this assignment; NULL: since always."}),
        pa.field("effective_to", pa.date32(),
                 metadata={"description": "Day the next assignment starts (exclusive); NULL: still in force."}),
        pa.field("is_current", pa.bool_(),
                 metadata={"description": "The team's latest assignment (one row per team; NULL in files written "
                                          "before the organisation was dated, which hold one row per team)."}),
    ])



# --- Finance: the AWS bill, and what the month-end close makes of it (DESIGN.md "Finance") --------------------

#: A usage quantity of the bill (tokens, images, hours): exact, like money.
QUANTITY = pa.decimal128(MONEY_PRECISION, MONEY_SCALE)

#: CUR 2.0 columns an import needs; a file without one of them is refused, naming them.
CUR_REQUIRED_COLUMNS: tuple[str, ...] = (
    "bill_billing_period_start_date", "line_item_usage_account_id", "line_item_line_item_type",
    "line_item_usage_start_date", "line_item_usage_end_date", "line_item_product_code", "line_item_usage_type",
    "line_item_operation", "line_item_usage_amount", "line_item_unblended_cost", "line_item_currency_code",
)
#: CUR 2.0 columns read when the export has them (``product`` and ``resource_tags`` are maps).
CUR_OPTIONAL_COLUMNS: tuple[str, ...] = (
    "bill_billing_period_end_date", "bill_invoice_id", "bill_billing_entity", "line_item_resource_id",
    "line_item_net_unblended_cost", "line_item_iam_principal", "line_item_line_item_description", "pricing_unit",
    "product_region_code", "product", "resource_tags",
)


def cur_lines_schema() -> pa.Schema:
    """An imported CUR snapshot's rows (``billing/cur/billing_period=P/snapshot=S/lines.parquet``).

    CUR 2.0's own column names for what the bill says (costs exact at 10 decimals, as AWS writes them, in
    DECIMAL(38,12)); ``billing_period``, ``region``, ``line_cost`` and the source columns are the importer's.
    """
    def f(name: str, dtype: pa.DataType, description: str, nullable: bool = True) -> pa.Field:
        return pa.field(name, dtype, nullable=nullable, metadata={"description": description})

    ts = KIND_ARROW["timestamp_us"]
    return pa.schema([
        f("billing_period", pa.string(), "YYYY-MM of bill_billing_period_start_date (UTC).", False),
        f("bill_billing_period_start_date", ts, "Start of the billing period (UTC).", False),
        f("bill_invoice_id", pa.string(), "Invoice id; blank until the bill is final."),
        f("bill_billing_entity", pa.string(), "AWS or AWS Marketplace."),
        f("line_item_usage_account_id", pa.string(), "Linked account that used it.", False),
        f("line_item_line_item_type", pa.string(), "Usage, Credit, Refund, Fee, Tax, …", False),
        f("line_item_usage_start_date", ts, "Start of the line's usage (UTC, inclusive).", False),
        f("line_item_usage_end_date", ts, "End of the line's usage (UTC, exclusive).", False),
        f("line_item_product_code", pa.string(), "AmazonBedrock, AmazonSageMaker, …", False),
        f("line_item_usage_type", pa.string(), "e.g. USE1-Claude3.5Sonnet-input-tokens.", False),
        f("line_item_operation", pa.string(), "e.g. InvokeModelInference."),
        f("line_item_resource_id", pa.string(), "ARN of the resource, when the export includes resources."),
        f("line_item_iam_principal", pa.string(), "Caller identity (Bedrock IAM principal attribution)."),
        f("line_item_line_item_description", pa.string(), "AWS's description of the line."),
        f("region", pa.string(), "AWS region: product_region_code, else product['region']."),
        f("pricing_unit", pa.string(), "Unit of line_item_usage_amount (1K tokens, 1M tokens, Hrs, …)."),
        f("line_item_usage_amount", QUANTITY, "Usage in pricing_unit units.", False),
        f("line_item_unblended_cost", MONEY, "Unblended cost (currency of the line).", False),
        f("line_item_net_unblended_cost", MONEY, "Net unblended cost, when the export has it."),
        f("line_cost", MONEY, "What the line costs in scope: net unblended where present, else unblended.", False),
        f("line_item_currency_code", pa.string(), "Currency of the costs.", False),
        f("resource_tags", pa.string(), "The line's resource tags, as a JSON object."),
        f("source_file", pa.string(), "The export file the line came from.", False),
        f("source_row", pa.int64(), "1-based row (Parquet) or line (CSV) in source_file.", False),
    ])


#: Where every dollar of a billing period's in-scope bill goes (DESIGN.md "Reconciliation"); a line may be split.
RECONCILIATION_CATEGORIES: tuple[str, ...] = (
    "matched", "price_variance", "unmetered_usage", "metered_not_billed", "non_usage", "time_based", "unmapped",
)


def reconciliation_schema() -> pa.Schema:
    """``curated/reconciliation/billing_period=P/reconciliation.parquet``: one row per key and category.

    ``billed_cost`` summed over every row is the period's in-scope bill, exactly; ``metered_not_billed`` rows carry
    metered list cost and no billed cost.
    """
    return pa.schema([
        pa.field("billing_period", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False, metadata={"description": "one of RECONCILIATION_CATEGORIES"}),
        pa.field("usage_date", pa.date32(), metadata={"description": "UTC day (the period's first for monthly lines)"}),
        pa.field("region", pa.string()),
        pa.field("model_id", pa.string(), metadata={"description": "catalog model id the line maps to"}),
        pa.field("dimension", pa.string(), metadata={"description": "catalog dimension, or the time-based kind"}),
        pa.field("service_tier", pa.string()),
        pa.field("usage_type", pa.string(), metadata={"description": "the bill's usage type(s) of the key"}),
        pa.field("line_item_type", pa.string()),
        pa.field("billed_quantity", QUANTITY, metadata={"description": "tokens, images or hours"}),
        pa.field("metered_quantity", QUANTITY),
        pa.field("billed_cost", MONEY, nullable=False, metadata={"description": "the bill's dollars in this row"}),
        pa.field("metered_list_cost", MONEY, nullable=False, metadata={"description": "list cost the gateway metered"}),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("usage_account_id", pa.string(),
                 metadata={"description": "the linked AWS account(s) of the row's lines (comma-separated)"}),
        # time_based rows at list (docs/finance.md section 3); NULL on every other row and in older files
        pa.field("list_basis", pa.string(), metadata={"description": "bill (its billed hours valued) or "
                                                                    "configuration (configured capacity without a "
                                                                    "bill line: no billed cost)"}),
        pa.field("capacity", pa.string(), metadata={"description": "the capacity.yaml entry the row is for"}),
        pa.field("price_key", pa.string(), metadata={"description": "catalog model id or SageMaker instance type"}),
        pa.field("commitment", pa.string(), metadata={"description": "no_commitment, one_month or six_months"}),
        pa.field("list_quantity", QUANTITY, metadata={"description": "model-unit or instance hours valued"}),
        pa.field("list_unit_price", MONEY, metadata={"description": "USD per model unit or instance per hour"}),
        pa.field("list_value", MONEY, metadata={"description": "list_quantity × list_unit_price (NULL: unpriced)"}),
    ])


#: ``team_id`` of the chargeback row that carries what no allocation rule claims.
UNALLOCATED = RESERVED_TEAM_IDS[0]


def chargeback_schema() -> pa.Schema:
    """``curated/chargeback/billing_period=P/version=N/chargeback.parquet`` (DESIGN.md "Chargeback of record")."""
    return pa.schema([
        pa.field("billing_period", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("cost_center", pa.string()),
        pa.field("team_id", pa.string(), nullable=False),
        pa.field("metered_list_cost", MONEY, nullable=False, metadata={"description": "metered usage at list price"}),
        pa.field("price_adjustment", MONEY, nullable=False,
                 metadata={"description": "the bill's price for that usage minus list (discounts, unbilled usage)"}),
        pa.field("allocated_shared_cost", MONEY, nullable=False,
                 metadata={"description": "shares of credits, fees, time-based and unmetered charges, by rule"}),
        pa.field("chargeback_cost", MONEY, nullable=False,
                 metadata={"description": "what the cost centre is charged, in cents (rows add up to the bill)"}),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("rules", pa.string(), metadata={"description": "allocation rules that gave this row a share"}),
        pa.field("purpose", pa.string(),
                 metadata={"description": "chargeback (a run of `chargeback`) or restatement (a run of `restate` "
                                          "on the closed period); NULL in files written before: chargeback"}),
        # the version's inputs, as its manifest.json has them (NULL in files written before they were copied here)
        pa.field("restates_version", pa.int32(), metadata={"description": "the closed version a restatement restates"}),
        pa.field("created_at", pa.string(), metadata={"description": "when the version was computed (ISO, UTC)"}),
        pa.field("cur_snapshot", pa.string(), metadata={"description": "the CUR snapshot it reconciles"}),
        pa.field("cur_final", pa.bool_(), metadata={"description": "whether that snapshot was final (invoiced)"}),
        pa.field("price_versions", pa.string(), metadata={"description": "catalog versions of the metered usage"}),
    ])


#: What a period event does: ``close`` freezes a chargeback version as the period's record; ``reopen`` undoes it.
PERIOD_ACTIONS: tuple[str, ...] = ("close", "reopen")


def period_events_schema() -> pa.Schema:
    """``curated/period_events/billing_period=P/event-NNNNNN.parquet``: one row per close or reopening, never
    rewritten; a period's state is its latest event (none: open)."""
    return pa.schema([
        pa.field("billing_period", pa.string(), nullable=False),
        pa.field("seq", pa.int32(), nullable=False, metadata={"description": "1, 2, … within the period"}),
        pa.field("action", pa.string(), nullable=False, metadata={"description": "close | reopen"}),
        pa.field("version", pa.int32(), metadata={"description": "the chargeback version closed (close only)"}),
        pa.field("reason", pa.string(), metadata={"description": "why (required to reopen)"}),
        pa.field("at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("by", pa.string(), metadata={"description": "who ran the command (the OS user)"}),
        pa.field("cur_snapshot", pa.string(), metadata={"description": "the closed version's CUR snapshot"}),
        pa.field("cur_final", pa.bool_(), metadata={"description": "false: closed on a bill AWS may still restate"}),
        pa.field("adjustments", pa.string(),
                 metadata={"description": "restatement ids posted into this period when it was closed"}),
    ])


def adjustments_schema() -> pa.Schema:
    """``curated/adjustments/billing_period=P/<restatement id>.parquet``: restatement lines of an earlier, closed
    period posted into period P (an open one), per cost centre × team. Each money column is restated − booked
    before; ``chargeback_cost`` (cents) is the line's amount."""
    money = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost", "closed_cost",
             "restated_cost")
    return pa.schema([
        pa.field("billing_period", pa.string(), nullable=False, metadata={"description": "the period posted into"}),
        pa.field("corrects_period", pa.string(), nullable=False, metadata={"description": "the period restated"}),
        pa.field("restatement", pa.string(), nullable=False,
                 metadata={"description": "<corrected period>-r<N>: one per posted restatement"}),
        pa.field("closed_version", pa.int32(), nullable=False),
        pa.field("restated_version", pa.int32(), nullable=False),
        pa.field("cost_center", pa.string()),
        pa.field("team_id", pa.string(), nullable=False),
        *(pa.field(m, MONEY, nullable=False) for m in money),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("posted_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ])


_VALUE_RULES = value_rules()
_FUTURE_RULE = next(r for r in _VALUE_RULES if r.check == "not_future")


if __name__ == "__main__":  # python -m common.contracts > docs/usage_event.schema.json
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))

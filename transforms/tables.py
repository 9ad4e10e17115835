"""The curated tables' schemas: ``usage_cost`` and ``team_model_daily`` (DESIGN.md "Curated tables").

One definition for the transform's writer, the Glue columns in ``infra/`` and the SQL views: derive from
``USAGE_COST`` / ``TEAM_MODEL_DAILY``, never re-list columns. Counts and enumerations reuse the event schema
(``common.contracts.FIELDS``); money is DECIMAL(38,12) USD. Both tables are partitioned by ``dt`` (the usage date,
a directory, not a column inside the files); ``usage_date`` repeats it as a real column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from common.constants import MONEY_PRECISION, MONEY_SCALE
from common.contracts import BY_NAME, COUNT_FIELDS, quarantine_arrow_schema

MONEY = pa.decimal128(MONEY_PRECISION, MONEY_SCALE)
MONEY_SQL = f"DECIMAL({MONEY_PRECISION},{MONEY_SCALE})"

#: Cost columns, in order, and the count column each one prices (``total_cost`` is their sum).
COST_OF: dict[str, str] = {
    "input_cost": "input_tokens",
    "output_cost": "output_tokens",
    "cache_read_cost": "cache_read_input_tokens",
    "cache_write_cost": "cache_write_input_tokens",
    "image_cost": "image_count",
}
COST_COLUMNS: tuple[str, ...] = (*COST_OF, "total_cost")

#: Hive partition key of both curated tables (``dt=YYYY-MM-DD``).
PARTITION_KEY = "dt"


@dataclass(frozen=True)
class Column:
    """One curated column: name, kind (``string``, ``int``, ``bigint``, ``bool``, ``timestamp``, ``date``,
    ``money``), nullability and what it means (exported as the Glue column comment)."""

    name: str
    kind: str
    nullable: bool = True
    description: str = ""


# DuckDB writes TIMESTAMP WITH TIME ZONE as UTC microseconds (raw events carry milliseconds; nothing is lost).
_ARROW = {"string": pa.string(), "int": pa.int32(), "bigint": pa.int64(), "bool": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(), "money": MONEY}
_GLUE = {"string": "string", "int": "int", "bigint": "bigint", "bool": "boolean", "timestamp": "timestamp",
         "date": "date", "money": f"decimal({MONEY_PRECISION},{MONEY_SCALE})"}
_SQL = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP WITH TIME ZONE", "date": "DATE", "money": MONEY_SQL}


def _event(name: str) -> Column:
    """A column copied from the usage event (same name, kind and meaning)."""
    f = BY_NAME[name]
    return Column(f.name, f.kind, nullable=not f.required and f.default is None, description=f.description)


_USAGE_DATE = Column("usage_date", "date", nullable=False, description="UTC date of event_time (the dt partition).")
_PRICE_VERSION = Column("price_version", "string", description="Pricing catalog version that priced the row(s).")

_MONEY_DESCRIPTIONS = {
    "input_cost": "Cost of input_tokens, USD.",
    "output_cost": "Cost of output_tokens, USD.",
    "cache_read_cost": "Cost of cache_read_input_tokens, USD.",
    "cache_write_cost": "Cost of cache_write_input_tokens, USD.",
    "image_cost": "Cost of generated images, USD.",
    "total_cost": "Sum of the other cost columns, USD.",
}

USAGE_COST: tuple[Column, ...] = (
    _event("event_id"),
    _event("event_time"),
    _USAGE_DATE,
    *(_event(n) for n in ("team_id", "api_key_id", "business_unit", "provider", "region", "model_id",
                          "operation", "status", "service_tier")),
    *(_event(n) for n in COUNT_FIELDS),
    _PRICE_VERSION,
    *(Column(n, "money", description=_MONEY_DESCRIPTIONS[n] + " NULL when unpriced.") for n in COST_COLUMNS),
    Column("priced", "bool", nullable=False, description="False when no price applied (cost columns NULL)."),
)

TEAM_MODEL_DAILY: tuple[Column, ...] = (
    _USAGE_DATE,
    _event("team_id"),
    _event("model_id"),
    Column("invocations", "bigint", nullable=False, description="Valid, deduped events (requests)."),
    *(Column(n, "bigint", nullable=False, description=f"Sum of {n}.") for n in COUNT_FIELDS),
    *(Column(n, "money", nullable=False, description=_MONEY_DESCRIPTIONS[n] + " Priced events only.")
      for n in COST_COLUMNS),
    Column("unpriced_invocations", "bigint", nullable=False, description="Events with no price (not in the costs)."),
    _PRICE_VERSION,
)

TABLES: dict[str, tuple[Column, ...]] = {"usage_cost": USAGE_COST, "team_model_daily": TEAM_MODEL_DAILY}


def arrow_schema(table: str) -> pa.Schema:
    """The Parquet schema of ``curated/<table>/dt=…`` files (the ``dt`` partition key excluded)."""
    return pa.schema([pa.field(c.name, _ARROW[c.kind], nullable=c.nullable,
                               metadata={"description": c.description}) for c in TABLES[table]])


def glue_columns(table: str) -> list[dict[str, str]]:
    """Glue/Hive columns of a curated table, in order: ``[{"name", "type", "comment"}]`` (partition ``dt`` apart)."""
    return [{"name": c.name, "type": _GLUE[c.kind], "comment": c.description} for c in TABLES[table]]


def sql_columns(table: str) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` pairs of a curated table."""
    return [(c.name, _SQL[c.kind]) for c in TABLES[table]]


def quarantine_schema() -> pa.Schema:
    """The quarantine table is the event schema's (``common.contracts.quarantine_arrow_schema``), reused as is."""
    return quarantine_arrow_schema()

"""Glue table definitions derived from the one schema of each table (never listed here by hand).

- raw usage events: :func:`common.contracts.glue_columns`;
- quarantine: :func:`common.contracts.quarantine_arrow_schema`;
- curated tables: :func:`common.contracts.curated_glue_columns` (tests check it against the Arrow schemas);
- teams reference table: :func:`common.contracts.teams_schema`.

Partition keys are directory names (``dt=…/hour=…``), not columns inside the files, so they are dropped from the
columns and declared as partition keys with Athena partition projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from common import constants as c
from common import contracts as event_schema
from common.contracts import glue_columns_of


@dataclass(frozen=True)
class TableSpec:
    """One Glue table of the lake.

    Attributes:
        name: Glue table name (``common.constants.TABLE_*``).
        prefix: lake-relative prefix of its files.
        columns: ``[{"name", "type", "comment"}]`` in file order.
        partitions: hive partition keys: ``("dt", "hour")`` (raw), ``("dt",)`` (daily tables) or ``()``.
        description: the table comment.
    """

    name: str
    prefix: str
    columns: list[dict[str, str]]
    partitions: tuple[str, ...] = ("dt",)
    description: str = ""


def arrow_columns(schema: pa.Schema) -> list[dict[str, str]]:
    """Glue columns of a pyarrow schema, without the partition keys."""
    return glue_columns_of(schema, skip=event_schema.PARTITION_KEYS)


def lake_tables() -> list[TableSpec]:
    """Every Glue table of the lake: raw, quarantine, curated usage_cost and team_model_daily."""
    return [
        TableSpec(c.TABLE_RAW, c.RAW_EVENTS, event_schema.glue_columns(), partitions=("dt", "hour"),
                  description=f"Usage events as delivered by Firehose (schema v{event_schema.SCHEMA_VERSION})."),
        TableSpec(c.TABLE_QUARANTINE, c.QUARANTINE_EVENTS, arrow_columns(event_schema.quarantine_arrow_schema()),
                  description="Rejected events with the reason."),
        TableSpec(c.TABLE_USAGE_COST, c.CURATED_USAGE_COST, event_schema.curated_glue_columns(c.TABLE_USAGE_COST),
                  description="One row per valid, deduped event with its prices and costs (USD)."),
        TableSpec(c.TABLE_TEAM_MODEL_DAILY, c.CURATED_TEAM_MODEL_DAILY,
                  event_schema.curated_glue_columns(c.TABLE_TEAM_MODEL_DAILY),
                  description="Per usage_date x team x model rollup (USD)."),
        TableSpec(c.TABLE_TEAMS, c.REFERENCE_TEAMS, arrow_columns(event_schema.teams_schema()), partitions=(),
                  description="Teams: cost centres and budgets, from the tenant registry (read by the views)."),
        TableSpec(c.TABLE_RECONCILIATION, c.CURATED_RECONCILIATION,
                  glue_columns_of(event_schema.reconciliation_schema(), skip=("billing_period",)),
                  partitions=("billing_period",),
                  description="The bill (CUR 2.0) beside the metered usage: every billed dollar in one category."),
        TableSpec(c.TABLE_CHARGEBACK, c.CURATED_CHARGEBACK,
                  glue_columns_of(event_schema.chargeback_schema(), skip=("billing_period", "version")),
                  partitions=("billing_period", "version"),
                  description="Chargeback versions per billing period, in cents that add up to the invoice."),
        TableSpec(c.TABLE_PERIOD_EVENTS, c.CURATED_PERIOD_EVENTS,
                  glue_columns_of(event_schema.period_events_schema(), skip=("billing_period",)),
                  partitions=("billing_period",),
                  description="Closes and reopenings of billing periods (append-only; the latest one holds)."),
        TableSpec(c.TABLE_ADJUSTMENTS, c.CURATED_ADJUSTMENTS,
                  glue_columns_of(event_schema.adjustments_schema(), skip=("billing_period",)),
                  partitions=("billing_period",),
                  description="Restatement lines of closed periods, posted into the next open billing period."),
    ]

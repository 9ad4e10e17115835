"""Render the views for an engine, and open the lake in DuckDB with every view created.

``sql/views/<name>.sql`` are written once in Athena's SQL with the fragments and helpers every model uses
(:mod:`sql.models`); sqlglot renders them for Athena (Trino) and DuckDB. ``VIEWS`` lists them in dependency order (a
view only reads tables and views listed before it). A view may also be a mart regrouped (:data:`REGROUPED`), so a
rollup is defined once.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from sqlglot import exp

from common.constants import (
    CURATED_ADJUSTMENTS,
    CURATED_CHARGEBACK,
    CURATED_PERIOD_EVENTS,
    CURATED_RECONCILIATION,
    CURATED_TEAM_MODEL_DAILY,
    CURATED_USAGE_COST,
    QUARANTINE_EVENTS,
    REFERENCE_TEAMS,
    TABLE_ADJUSTMENTS,
    TABLE_CHARGEBACK,
    TABLE_PERIOD_EVENTS,
    TABLE_QUARANTINE,
    TABLE_RECONCILIATION,
    TABLE_TEAM_MODEL_DAILY,
    TABLE_TEAMS,
    TABLE_USAGE_COST,
)
from common.contracts import (
    adjustments_schema,
    chargeback_schema,
    period_events_schema,
    quarantine_arrow_schema,
    reconciliation_schema,
    teams_schema,
)
from common.contracts import curated_arrow_schema as curated_schema
from common.lake import Lake
from sql import models
from sql.config import ReportingConfig
from sql.dialect import Dialect

#: Views in dependency order.
VIEWS: tuple[str, ...] = (
    "usage_local",
    "team_model_daily_local",
    "priced_usage_daily",
    "chargeback_monthly",
    "unit_cost_by_model",
    "daily_trend",
    "top_spenders",
    "fastest_growers",
    "unpriced_usage",
    "quarantine_summary",
    "budget_burn",
    "reconciliation_summary",
    "chargeback_of_record",
    "period_status",
    "chargeback_versions",
)

#: Views that are a mart read from another relation and grouped by other keys: the rollup is defined once, in
#: ``sql/marts/team_model_daily.sql``. team_model_daily_local is curated team_model_daily counted by the day in the
#: reporting time zone; its fiscal month and the team's cost centre are keys too (each follows from the day or the
#: team, so the groups are the same).
REGROUPED: dict[str, models.Regrouped] = {
    "team_model_daily_local": models.Regrouped(
        model="marts/team_model_daily", inputs={"usage_cost_day": "usage_local"},
        keys=("local_date", "fiscal_month_start", "team_id", "cost_center", "model_id")),
}

SOURCE_DIALECT: Dialect = models.SOURCE_DIALECTS["views"]


def views() -> list[str]:
    """View names, in dependency order."""
    return list(VIEWS)


def source_tree(name: str) -> exp.Expr:
    """The parsed source (Athena SQL, fragments filled, helpers not yet expanded) of one view."""
    if name in REGROUPED:
        return REGROUPED[name].tree()
    return models.parse(f"views/{name}")


def render_view(name: str, *, dialect: Dialect, config: ReportingConfig | None = None, pretty: bool = True) -> str:
    """``CREATE OR REPLACE VIEW <name> AS …`` for one view in ``dialect``."""
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}: the views are {', '.join(VIEWS)}")
    config = config or ReportingConfig.from_env()
    create = exp.Create(this=exp.to_table(name), kind="VIEW", replace=True, expression=source_tree(name))
    return models.to_sql(create, dialect=dialect, config=config, pretty=pretty)


def render_views(*, dialect: Dialect, config: ReportingConfig | None = None) -> dict[str, str]:
    """Every view as ``name → CREATE OR REPLACE VIEW …`` in ``dialect``, in dependency order."""
    config = config or ReportingConfig.from_env()
    return {name: render_view(name, dialect=dialect, config=config) for name in VIEWS}


def table_sources() -> dict[str, tuple[str, pa.Schema]]:
    """Base tables the views read: ``table name → (lake prefix, Arrow schema)``."""
    return {
        TABLE_USAGE_COST: (CURATED_USAGE_COST, curated_schema("usage_cost")),
        TABLE_TEAM_MODEL_DAILY: (CURATED_TEAM_MODEL_DAILY, curated_schema("team_model_daily")),
        TABLE_QUARANTINE: (QUARANTINE_EVENTS, quarantine_arrow_schema()),
        TABLE_TEAMS: (REFERENCE_TEAMS, teams_schema()),
        TABLE_RECONCILIATION: (CURATED_RECONCILIATION, reconciliation_schema()),
        TABLE_CHARGEBACK: (CURATED_CHARGEBACK, chargeback_schema()),
        TABLE_PERIOD_EVENTS: (CURATED_PERIOD_EVENTS, period_events_schema()),
        TABLE_ADJUSTMENTS: (CURATED_ADJUSTMENTS, adjustments_schema()),
    }


def _dataset(lake: Lake, prefix: str, schema: pa.Schema) -> pads.Dataset:
    # An explicit schema keeps the types exact (DECIMAL(38,12), TIMESTAMPTZ) and makes an absent table an empty one.
    files = lake.list_files(prefix)
    if not files:
        return pads.dataset(pa.Table.from_batches([], schema=schema))
    return pads.dataset(files, schema=schema, format="parquet", filesystem=lake.fs)


def connect(*, lake: Lake, config: ReportingConfig | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB over the lake: the base tables (``usage_cost``, ``team_model_daily``,
    ``quarantine_usage_events``, ``teams``) as views over its Parquet, then every view of :data:`VIEWS`.

    Works on a local folder or an S3 lake alike (pyarrow reads the files, DuckDB scans them as Arrow).
    """
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")  # casts of TIMESTAMPTZ must not depend on the machine's zone
    for table, (prefix, schema) in table_sources().items():
        con.register(f"__{table}_arrow", _dataset(lake, prefix, schema))
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM "__{table}_arrow"')
    for sql in render_views(dialect="duckdb", config=config).values():
        con.execute(sql)
    return con



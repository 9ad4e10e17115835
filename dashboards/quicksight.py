"""The QuickSight chargeback dashboard as code: data source, datasets, row-level security and the dashboard.

:func:`build_definitions` returns keyword arguments shaped exactly as boto3's ``quicksight`` client takes them
(``create_data_source``, ``create_data_set``, ``create_dashboard``); the infrastructure deploys them with
``AwsCustomResource`` and the tests validate them against botocore's QuickSight service model. Nothing here calls
AWS, so it runs at synthesis time.

Datasets are ``RelationalTable`` reads of the Athena views rendered from ``sql/views`` (one dataset per view), in
``DIRECT_QUERY`` mode so the dashboard always shows what the views say. Every dataset with a ``team_id`` column
carries a row-level-security (RLS) dataset: QuickSight shows a reader only the rows whose ``team_id`` the rules grant.
The owners (``principals``) get a rule with a NULL ``team_id``, which QuickSight reads as "every team"; team leads
(``rls_principals``) get one rule per team they lead. Anyone without a rule sees no rows: the safe default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from common.contracts import COST_COLUMNS, UNITS, team_id_problem

DATA_SOURCE_ID = "modelmeter-athena"
DASHBOARD_ID = "modelmeter-chargeback"
RLS_DATA_SET_ID = "modelmeter-rls-team"
DATA_SET_ID_PREFIX = "modelmeter-"
TEAM_COLUMN = "team_id"
ATHENA_CATALOG = "AwsDataCatalog"
TAGS = [{"Key": "app", "Value": "modelmeter"}]

# Column types as QuickSight reads them (InputColumnDataType), plus FLOAT for ratios: DECIMAL with the FLOAT
# subtype. Money is DECIMAL with the FIXED subtype, which QuickSight keeps exact.
ColumnType = Literal["STRING", "INTEGER", "DECIMAL", "FLOAT", "DATETIME", "BOOLEAN"]
VisualKind = Literal["kpi", "bar", "line", "table"]

# The billable units' count and cost columns, as every view that carries them lists them (common.contracts.UNITS).
_COUNTS: tuple[tuple[str, ColumnType], ...] = tuple((u.count_field, "INTEGER") for u in UNITS)
_COSTS: tuple[tuple[str, ColumnType], ...] = tuple((c, "DECIMAL") for c in COST_COLUMNS)

# One dataset per view: its columns as QuickSight types. tests/dashboards/test_quicksight.py proves these agree
# with the views (names and types, run on DuckDB over the fixture lake) and prints the right spec when they don't.
VIEW_COLUMNS: dict[str, tuple[tuple[str, ColumnType], ...]] = {
    "usage_local": (
        ("event_id", "STRING"), ("team_id", "STRING"), ("cost_center", "STRING"), ("business_unit", "STRING"),
        ("provider", "STRING"), ("region", "STRING"), ("model_id", "STRING"), ("operation", "STRING"),
        ("status", "STRING"), ("refusal_reason", "STRING"), ("service_tier", "STRING"), ("event_time", "DATETIME"),
        ("usage_date", "DATETIME"), ("local_date", "DATETIME"), ("fiscal_month_start", "DATETIME"), *_COUNTS,
        ("priced", "BOOLEAN"),
        ("unpriced_dimensions", "STRING"), ("price_version", "STRING"), *_COSTS,
    ),
    "team_model_daily_local": (  # curated team_model_daily's columns, by local day (one definition: its mart)
        ("local_date", "DATETIME"), ("fiscal_month_start", "DATETIME"), ("team_id", "STRING"),
        ("cost_center", "STRING"), ("model_id", "STRING"), ("invocations", "INTEGER"), *_COUNTS, *_COSTS,
        ("unpriced_invocations", "INTEGER"), ("price_version", "STRING"), ("unpriced_dimensions", "STRING"),
    ),
    "priced_usage_daily": (
        ("usage_date", "DATETIME"), ("team_id", "STRING"), ("cost_center", "STRING"), ("provider", "STRING"),
        ("region", "STRING"), ("service_tier", "STRING"), ("model_id", "STRING"), ("price_version", "STRING"),
        ("invocations", "INTEGER"), *_COUNTS, *_COSTS,
    ),
    "chargeback_monthly": (
        ("fiscal_month_start", "DATETIME"), ("fiscal_month_end", "DATETIME"), ("cost_center", "STRING"),
        ("team_id", "STRING"), ("invocations", "INTEGER"), *_COUNTS, ("unpriced_invocations", "INTEGER"), *_COSTS,
    ),
    "unit_cost_by_model": (
        ("fiscal_month_start", "DATETIME"), ("model_id", "STRING"), ("invocations", "INTEGER"),
        ("input_tokens", "INTEGER"), ("output_tokens", "INTEGER"), ("cache_read_input_tokens", "INTEGER"),
        ("cache_write_input_tokens", "INTEGER"), ("total_tokens", "INTEGER"), ("image_count", "INTEGER"),
        ("input_cost", "DECIMAL"), ("output_cost", "DECIMAL"), ("token_cost", "DECIMAL"), ("image_cost", "DECIMAL"),
        ("total_cost", "DECIMAL"), ("usd_per_1m_input_tokens", "DECIMAL"), ("usd_per_1m_output_tokens", "DECIMAL"),
        ("usd_per_1m_tokens", "DECIMAL"), ("usd_per_image", "DECIMAL"),
    ),
    "daily_trend": (
        ("local_date", "DATETIME"), ("fiscal_month_start", "DATETIME"), ("invocations", "INTEGER"),
        ("total_tokens", "INTEGER"), ("image_count", "INTEGER"), ("unpriced_invocations", "INTEGER"),
        ("total_cost", "DECIMAL"), ("month_to_date_cost", "DECIMAL"),
    ),
    "top_spenders": (
        ("fiscal_month_start", "DATETIME"), ("team_id", "STRING"), ("cost_center", "STRING"),
        ("total_cost", "DECIMAL"), ("month_total_cost", "DECIMAL"), ("spend_rank", "INTEGER"),
        ("share_of_month", "FLOAT"),
    ),
    "fastest_growers": (
        ("team_id", "STRING"), ("as_of_date", "DATETIME"), ("last_7d_cost", "DECIMAL"), ("prior_7d_cost", "DECIMAL"),
        ("growth_cost", "DECIMAL"), ("growth_ratio", "FLOAT"), ("growth_rank", "INTEGER"),
    ),
    "unpriced_usage": (
        ("local_date", "DATETIME"), ("team_id", "STRING"), ("provider", "STRING"), ("region", "STRING"),
        ("model_id", "STRING"), ("operation", "STRING"), ("service_tier", "STRING"),
        ("unpriced_dimensions", "STRING"), ("invocations", "INTEGER"), *_COUNTS,
    ),
    "quarantine_summary": (
        ("local_date", "DATETIME"), ("stage", "STRING"), ("reason", "STRING"), ("rejected_rows", "INTEGER"),
        ("teams", "INTEGER"), ("first_quarantined_at", "DATETIME"), ("last_quarantined_at", "DATETIME"),
    ),
    "budget_burn": (
        ("fiscal_month_start", "DATETIME"), ("fiscal_month_end", "DATETIME"), ("team_id", "STRING"),
        ("cost_center", "STRING"), ("as_of_date", "DATETIME"), ("days_elapsed", "INTEGER"),
        ("days_in_month", "INTEGER"), ("monthly_budget_usd", "DECIMAL"), ("spend_to_date", "DECIMAL"),
        ("forecast_month_end", "DECIMAL"), ("budget_remaining", "DECIMAL"), ("budget_used_ratio", "FLOAT"),
        ("forecast_over_budget", "BOOLEAN"),
    ),
    "reconciliation_summary": (
        ("billing_period", "STRING"), ("category", "STRING"), ("item", "STRING"), ("team_id", "STRING"),
        ("billed_quantity", "DECIMAL"), ("metered_quantity", "DECIMAL"), ("billed_cost", "DECIMAL"),
        ("metered_list_cost", "DECIMAL"), ("currency", "STRING"),
    ),
    "chargeback_of_record": (
        ("billing_period", "STRING"), ("version", "INTEGER"), ("period_status", "STRING"), ("line_type", "STRING"),
        ("corrects_period", "STRING"), ("cost_center", "STRING"), ("team_id", "STRING"),
        ("metered_list_cost", "DECIMAL"), ("price_adjustment", "DECIMAL"), ("allocated_shared_cost", "DECIMAL"),
        ("chargeback_cost", "DECIMAL"), ("currency", "STRING"), ("rules", "STRING"),
    ),
    "period_status": (
        ("billing_period", "STRING"), ("period_status", "STRING"), ("closed_version", "INTEGER"),
        ("last_action", "STRING"), ("last_reason", "STRING"), ("last_event_at", "DATETIME"),
        ("last_event_by", "STRING"), ("cur_snapshot", "STRING"), ("cur_final", "BOOLEAN"),
    ),
    "chargeback_versions": (
        ("billing_period", "STRING"), ("version", "INTEGER"), ("purpose", "STRING"), ("restates_version", "INTEGER"),
        ("of_record", "BOOLEAN"), ("cost_center", "STRING"), ("team_id", "STRING"), ("created_at", "STRING"),
        ("cur_snapshot", "STRING"), ("cur_final", "BOOLEAN"), ("price_versions", "STRING"),
        ("chargeback_cost", "DECIMAL"), ("currency", "STRING"),
    ),
}

_OWNER_ACTIONS = {
    "data_source": ["quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions",
                    "quicksight:PassDataSource", "quicksight:UpdateDataSource", "quicksight:DeleteDataSource",
                    "quicksight:UpdateDataSourcePermissions"],
    "data_set": ["quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
                 "quicksight:DescribeIngestion", "quicksight:ListIngestions", "quicksight:UpdateDataSet",
                 "quicksight:DeleteDataSet", "quicksight:CreateIngestion", "quicksight:CancelIngestion",
                 "quicksight:UpdateDataSetPermissions"],
    "dashboard": ["quicksight:DescribeDashboard", "quicksight:ListDashboardVersions",
                  "quicksight:UpdateDashboardPermissions", "quicksight:QueryDashboard", "quicksight:UpdateDashboard",
                  "quicksight:DeleteDashboard", "quicksight:DescribeDashboardPermissions",
                  "quicksight:UpdateDashboardPublishedVersion"],
}
_READER_ACTIONS = ["quicksight:DescribeDashboard", "quicksight:ListDashboardVersions", "quicksight:QueryDashboard"]

_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:\d{12}:(user|group)/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class Visual:
    """One visual of the dashboard, as data. Measures are summed; a table shows its columns unaggregated.

    Attributes:
        kind: ``kpi``, ``bar``, ``line`` or ``table``.
        visual_id: unique in the dashboard.
        title: what the reader sees.
        view: the view (dataset) it reads.
        measures: numeric columns, summed (``kpi``, ``bar``, ``line``).
        category: the bar's category or the line's x axis (a date column for lines).
        color: an optional series split (one line or bar colour per value).
        columns: the table's columns, in order.
        counts: columns whose rows are counted (``COUNT``), after the summed measures: how many events, say.
        only: rows the visual keeps: ``(column, values)`` (a filter scoped to this visual), e.g. a period's own
            chargeback lines apart from its adjustment lines.
    """

    kind: VisualKind
    visual_id: str
    title: str
    view: str
    measures: tuple[str, ...] = ()
    category: str | None = None
    color: str | None = None
    columns: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    only: tuple[str, tuple[str, ...]] | None = None

    def referenced_columns(self) -> tuple[str, ...]:
        named = (*self.measures, *self.counts, self.category, self.color, *self.columns,
                 self.only[0] if self.only else None)
        return tuple(c for c in named if c)


@dataclass(frozen=True)
class Sheet:
    sheet_id: str
    name: str
    visuals: tuple[Visual, ...]


_K: VisualKind = "kpi"
_B: VisualKind = "bar"
_L: VisualKind = "line"
_T: VisualKind = "table"

# The chargeback dashboard. The layout is data so that the tests can check every reference.
# Money visuals read team-scoped views only (RLS applies), so a team lead never sees another team's spend; the
# exceptions are unit prices per model and the quarantine counts, which carry no team's spend.
SHEETS: tuple[Sheet, ...] = (
    Sheet("overview", "Overview", (
        Visual(_K, "kpi-spend", "Total spend (USD)", "chargeback_monthly", measures=("total_cost",)),
        Visual(_K, "kpi-invocations", "Invocations", "chargeback_monthly", measures=("invocations",)),
        Visual(_K, "kpi-unpriced", "Unpriced invocations", "chargeback_monthly",
               measures=("unpriced_invocations",)),
        Visual(_B, "overview-by-team", "Spend by team", "chargeback_monthly", measures=("total_cost",),
               category="team_id"),
        Visual(_L, "overview-daily", "Daily spend", "team_model_daily_local", measures=("total_cost",),
               category="local_date"),
    )),
    Sheet("by-team", "By team", (
        Visual(_T, "team-chargeback", "Chargeback by fiscal month, cost centre and team", "chargeback_monthly",
               columns=("fiscal_month_start", "cost_center", "team_id"),
               measures=("invocations", "input_tokens", "output_tokens", "unpriced_invocations", "total_cost")),
        Visual(_B, "team-by-cost-center", "Spend by cost centre", "chargeback_monthly", measures=("total_cost",),
               category="cost_center"),
        Visual(_T, "team-top-spenders", "Top spenders per month", "top_spenders",
               columns=("fiscal_month_start", "spend_rank", "team_id", "cost_center", "total_cost")),
    )),
    Sheet("by-model", "By model", (
        Visual(_B, "model-spend", "Spend by model", "team_model_daily_local", measures=("total_cost",),
               category="model_id"),
        Visual(_T, "model-by-team", "Team × model", "team_model_daily_local", columns=("team_id", "model_id"),
               measures=("invocations", "input_tokens", "output_tokens", "image_count", "total_cost")),
        Visual(_T, "model-unpriced", "Unpriced usage (the dimensions without a price)", "unpriced_usage",
               columns=("team_id", "provider", "model_id", "operation", "unpriced_dimensions"),
               measures=("invocations", "input_tokens", "output_tokens")),
    )),
    Sheet("trend", "Trend", (
        Visual(_L, "trend-by-team", "Daily spend by team", "team_model_daily_local", measures=("total_cost",),
               category="local_date", color="team_id"),
        Visual(_T, "trend-growers", "Fastest growers (last 7 days against the 7 before)", "fastest_growers",
               columns=("growth_rank", "team_id", "last_7d_cost", "prior_7d_cost", "growth_cost", "growth_ratio")),
    )),
    Sheet("unit-costs", "Unit costs", (
        Visual(_T, "unit-costs", "Effective unit cost per model", "unit_cost_by_model",
               columns=("fiscal_month_start", "model_id", "usd_per_1m_input_tokens", "usd_per_1m_output_tokens",
                        "usd_per_1m_tokens", "usd_per_image")),
        Visual(_T, "unit-quarantine", "Rejected events (quarantine)", "quarantine_summary",
               columns=("local_date", "stage", "reason", "rejected_rows")),
    )),
    # the invoice's months (billing periods). chargeback_of_record has team_id, so RLS applies to all its lines: a
    # team lead sees their own teams' charge lines and adjustment lines, never another team's nor unallocated.
    # reconciliation_summary is company-wide: its team_id is NULL, so RLS shows it to the owners only.
    Sheet("month-end-close", "Month-end close", (
        Visual(_T, "close-periods", "Billing periods: open or closed, version of record, own and adjustment lines",
               "chargeback_of_record", columns=("billing_period", "period_status", "version", "line_type",
                                                "corrects_period"),
               measures=("chargeback_cost",)),
        Visual(_T, "close-chargeback", "Chargeback of record: each period's own lines (they add up to its invoice)",
               "chargeback_of_record", columns=("billing_period", "period_status", "version", "cost_center",
                                                "team_id", "rules"),
               measures=("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost"),
               only=("line_type", ("charge",))),
        Visual(_T, "close-adjustments", "Adjustment lines: restatements of earlier closed periods, by the period "
               "they correct", "chargeback_of_record", columns=("billing_period", "corrects_period", "rules",
                                                                "cost_center", "team_id"),
               measures=("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost"),
               only=("line_type", ("adjustment",))),
        Visual(_B, "close-by-cost-center", "Invoice-true chargeback by cost centre (own lines)",
               "chargeback_of_record", measures=("chargeback_cost",), category="cost_center",
               only=("line_type", ("charge",))),
        Visual(_T, "close-period-status", "Billing periods: closed or open, who closed or reopened them, why",
               "period_status", columns=("billing_period", "period_status", "closed_version", "last_action",
                                         "last_reason", "last_event_at", "last_event_by", "cur_final")),
        Visual(_T, "close-versions", "Chargeback versions and their inputs (of record marked)", "chargeback_versions",
               columns=("billing_period", "version", "purpose", "restates_version", "of_record", "created_at",
                        "cur_snapshot", "cur_final", "price_versions"), measures=("chargeback_cost",)),
        Visual(_B, "close-categories", "Where the bill's dollars go (reconciliation)", "reconciliation_summary",
               measures=("billed_cost", "metered_list_cost"), category="category"),
        Visual(_T, "close-by-model", "Billed against metered by model", "reconciliation_summary",
               columns=("billing_period", "category", "item"), measures=("billed_cost", "metered_list_cost")),
    )),
    Sheet("budget-burn", "Budget burn", (
        Visual(_B, "burn-spend", "Spend to date by month and team", "budget_burn", measures=("spend_to_date",),
               category="fiscal_month_start", color="team_id"),
        Visual(_B, "burn-forecast", "Month-end forecast against budget", "budget_burn",
               measures=("forecast_month_end", "monthly_budget_usd"), category="team_id"),
        Visual(_T, "burn-table", "Budget burn", "budget_burn",
               columns=("fiscal_month_start", "team_id", "cost_center", "monthly_budget_usd", "spend_to_date",
                        "forecast_month_end", "budget_remaining", "budget_used_ratio", "forecast_over_budget")),
        # Refused calls: events with status throttled (429: a block-mode budget reached, a daily token or rate
        # limit, or the provider throttling), told apart by refusal_reason (NULL: the provider throttled).
        Visual(_B, "burn-refused", "Refused calls (429) by team", "usage_local", counts=("event_id",),
               category="team_id", only=("status", ("throttled",))),
        Visual(_T, "burn-refused-table", "Refused calls (429) by fiscal month, team and reason", "usage_local",
               columns=("fiscal_month_start", "team_id", "cost_center", "refusal_reason"), counts=("event_id",),
               only=("status", ("throttled",))),
    )),
)

# Columns of views without team_id that the dashboard may show to everyone (no team's spend in them).
UNSCOPED_COLUMNS: dict[str, frozenset[str]] = {
    "unit_cost_by_model": frozenset({"fiscal_month_start", "model_id", "usd_per_1m_input_tokens",
                                     "usd_per_1m_output_tokens", "usd_per_1m_tokens", "usd_per_image"}),
    "quarantine_summary": frozenset({"local_date", "stage", "reason", "rejected_rows"}),
    "period_status": frozenset({"billing_period", "period_status", "closed_version", "last_action", "last_reason",
                                "last_event_at", "last_event_by", "cur_snapshot", "cur_final"}),
}


def quicksight_type(duckdb_type: str) -> ColumnType:
    """The QuickSight column type of a view column, from its DuckDB type (``DESCRIBE``)."""
    t = duckdb_type.upper()
    if t in ("VARCHAR", "TEXT"):
        return "STRING"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"):
        return "INTEGER"
    if t.startswith("DECIMAL"):
        return "DECIMAL"
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return "FLOAT"
    if t.startswith(("DATE", "TIMESTAMP")):
        return "DATETIME"
    if t == "BOOLEAN":
        return "BOOLEAN"
    raise ValueError(f"no QuickSight type for DuckDB type {duckdb_type}")


def data_set_id(view: str) -> str:
    return DATA_SET_ID_PREFIX + view.replace("_", "-")


def _arn(*, partition: str = "aws", region: str, account: str, kind: str, resource_id: str) -> str:
    return f"arn:{partition}:quicksight:{region}:{account}:{kind}/{resource_id}"


def _permissions(principals: Iterable[str], actions: list[str]) -> list[dict[str, Any]]:
    return [{"Principal": p, "Actions": list(actions)} for p in principals]


def _check_principals(principals: Sequence[str], rls_principals: dict[str, list[str]]) -> None:
    for arn in [*principals, *rls_principals]:
        if not _PRINCIPAL_ARN.match(arn):
            raise ValueError(f"{arn!r} is not a QuickSight user or group ARN "
                             "(arn:aws:quicksight:REGION:ACCOUNT:user/NAMESPACE/NAME or …:group/NAMESPACE/NAME)")
    for arn, teams in rls_principals.items():
        for team in teams:
            if team_id_problem(team):
                raise ValueError(f"team id {team!r} for {arn} is not a valid team id")


def _data_source(*, account: str, workgroup: str, principals: Sequence[str]) -> dict[str, Any]:
    return {
        "AwsAccountId": account,
        "DataSourceId": DATA_SOURCE_ID,
        "Name": "modelmeter (Athena)",
        "Type": "ATHENA",
        "DataSourceParameters": {"AthenaParameters": {"WorkGroup": workgroup}},
        "Permissions": _permissions(principals, _OWNER_ACTIONS["data_source"]),
        "SslProperties": {"DisableSsl": False},
        "Tags": TAGS,
    }


def _sql_literal(value: str | None) -> str:
    # Values were validated against strict patterns (ARNs, team ids); doubling quotes is the belt to those braces.
    return "CAST(NULL AS varchar)" if value is None else "'" + value.replace("'", "''") + "'"


def rls_rules(*, principals: Sequence[str], rls_principals: dict[str, list[str]]) -> list[tuple[str | None, ...]]:
    """The RLS rule rows ``(UserARN, GroupARN, team_id)``: owners see every team (NULL), leads their teams."""
    rows: list[tuple[str | None, ...]] = []
    grants = [(p, None) for p in principals] + [(p, t) for p, teams in rls_principals.items() for t in teams]
    for arn, team in grants:
        is_group = ":group/" in arn
        row = (None if is_group else arn, arn if is_group else None, team)
        if row not in rows:  # QuickSight ignores duplicate rules; we don't write them
            rows.append(row)
    return rows


def rls_sql(rows: Sequence[tuple[str | None, ...]]) -> str:
    """Athena SQL listing the rules (a VALUES table: no extra table to deploy or keep in sync)."""
    values = ",\n  ".join("(" + ", ".join(_sql_literal(v) for v in row) + ")" for row in rows)
    return f'select * from (values\n  {values}\n) as rules("UserARN", "GroupARN", {TEAM_COLUMN})'


def _rls_data_set(*, account: str, data_source_arn: str, principals: Sequence[str],
                  rls_principals: dict[str, list[str]]) -> dict[str, Any]:
    rows = rls_rules(principals=principals, rls_principals=rls_principals)
    return {
        "AwsAccountId": account,
        "DataSetId": RLS_DATA_SET_ID,
        "Name": "modelmeter RLS: who sees which team",
        "PhysicalTableMap": {"rules": {"CustomSql": {
            "DataSourceArn": data_source_arn,
            "Name": "rls_team_rules",
            "SqlQuery": rls_sql(rows),
            "Columns": [{"Name": "UserARN", "Type": "STRING"}, {"Name": "GroupARN", "Type": "STRING"},
                        {"Name": TEAM_COLUMN, "Type": "STRING"}],
        }}},
        "ImportMode": "SPICE",  # rules are small and change only on deploy
        "UseAs": "RLS_RULES",
        "Permissions": _permissions(principals, _OWNER_ACTIONS["data_set"]),
        "Tags": TAGS,
    }


def _input_column(name: str, kind: ColumnType) -> dict[str, Any]:
    if kind == "FLOAT":
        return {"Name": name, "Type": "DECIMAL", "SubType": "FLOAT"}
    if kind == "DECIMAL":
        return {"Name": name, "Type": "DECIMAL", "SubType": "FIXED"}
    return {"Name": name, "Type": kind}


def _view_data_set(*, view: str, account: str, glue_database: str, data_source_arn: str, rls_arn: str,
                   principals: Sequence[str]) -> dict[str, Any]:
    columns = VIEW_COLUMNS[view]
    params: dict[str, Any] = {
        "AwsAccountId": account,
        "DataSetId": data_set_id(view),
        "Name": f"modelmeter {view}",
        # physical table ids allow letters, digits and hyphens only
        "PhysicalTableMap": {view.replace("_", "-"): {"RelationalTable": {
            "DataSourceArn": data_source_arn,
            "Catalog": ATHENA_CATALOG,
            "Schema": glue_database,
            "Name": view,
            "InputColumns": [_input_column(name, kind) for name, kind in columns],
        }}},
        "ImportMode": "DIRECT_QUERY",
        "Permissions": _permissions(principals, _OWNER_ACTIONS["data_set"]),
        "Tags": TAGS,
    }
    if any(name == TEAM_COLUMN for name, _ in columns):
        params["RowLevelPermissionDataSet"] = {
            "Arn": rls_arn, "PermissionPolicy": "GRANT_ACCESS", "FormatVersion": "VERSION_2", "Status": "ENABLED"}
    return params


def _column(view: str, name: str) -> dict[str, str]:
    return {"DataSetIdentifier": view, "ColumnName": name}


def _currency(name: str) -> dict[str, Any]:
    # Cents for spend; unit prices (USD per image, per 1 M tokens) need more places to be readable.
    places = 6 if name.startswith("usd_per") else 2
    return {"FormatConfiguration": {"CurrencyDisplayFormatConfiguration": {
        "Symbol": "USD", "DecimalPlacesConfiguration": {"DecimalPlaces": places}}}}


def _measure(visual: Visual, name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"FieldId": f"{visual.visual_id}.{name}", "Column": _column(visual.view, name),
                             "AggregationFunction": {"SimpleNumericalAggregation": "SUM"}}
    if _column_type(visual.view, name) == "DECIMAL":
        field["FormatConfiguration"] = _currency(name)
    return {"NumericalMeasureField": field}


def _count(visual: Visual, name: str) -> dict[str, Any]:
    return {"CategoricalMeasureField": {"FieldId": f"{visual.visual_id}.{name}.count",
                                        "Column": _column(visual.view, name), "AggregationFunction": "COUNT"}}


def _field_id(measure: dict[str, Any]) -> str:
    return str(next(iter(measure.values()))["FieldId"])


def _unaggregated(visual: Visual, name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"FieldId": f"{visual.visual_id}.{name}", "Column": _column(visual.view, name)}
    if _column_type(visual.view, name) == "DECIMAL":
        field["FormatConfiguration"] = {"NumberFormatConfiguration": _currency(name)}
    return field


def _dimension(visual: Visual, name: str) -> dict[str, Any]:
    field = {"FieldId": f"{visual.visual_id}.{name}", "Column": _column(visual.view, name)}
    kind = _column_type(visual.view, name)
    if kind == "DATETIME":
        granularity = "MONTH" if name.startswith("fiscal_month") else "DAY"
        return {"DateDimensionField": {**field, "DateGranularity": granularity}}
    if kind in ("INTEGER", "DECIMAL", "FLOAT"):  # e.g. a version number to group by
        return {"NumericalDimensionField": field}
    return {"CategoricalDimensionField": field}


def _column_type(view: str, name: str) -> ColumnType:
    return dict(VIEW_COLUMNS[view])[name]


def _title(text: str) -> dict[str, Any]:
    return {"Visibility": "VISIBLE", "FormatText": {"PlainText": text}}


def _visual(visual: Visual) -> dict[str, Any]:
    """The API shape of one visual (``Visual`` union member)."""
    base = {"VisualId": visual.visual_id, "Title": _title(visual.title)}
    measures = [_measure(visual, m) for m in visual.measures] + [_count(visual, c) for c in visual.counts]
    if visual.kind == "kpi":
        return {"KPIVisual": {**base, "ChartConfiguration": {"FieldWells": {"Values": measures}}}}
    if visual.kind == "table" and measures:  # grouped by its columns, measures summed
        grouped = {"TableAggregatedFieldWells": {"GroupBy": [_dimension(visual, c) for c in visual.columns],
                                                 "Values": measures}}
        return {"TableVisual": {**base, "ChartConfiguration": {"FieldWells": grouped}}}
    if visual.kind == "table":  # rows as the view has them
        values = [_unaggregated(visual, c) for c in visual.columns]
        return {"TableVisual": {**base, "ChartConfiguration": {
            "FieldWells": {"TableUnaggregatedFieldWells": {"Values": values}}}}}
    wells: dict[str, Any] = {"Category": [_dimension(visual, visual.category or "")], "Values": measures}
    if visual.color:
        wells["Colors"] = [_dimension(visual, visual.color)]
    if visual.kind == "bar":
        sort = {"CategorySort": [{"FieldSort": {"FieldId": _field_id(measures[0]), "Direction": "DESC"}}]}
        return {"BarChartVisual": {**base, "ChartConfiguration": {
            "FieldWells": {"BarChartAggregatedFieldWells": wells}, "SortConfiguration": sort,
            "Orientation": "HORIZONTAL", "BarsArrangement": "CLUSTERED"}}}
    return {"LineChartVisual": {**base, "ChartConfiguration": {
        "FieldWells": {"LineChartAggregatedFieldWells": wells}, "Type": "LINE"}}}


MONTH_FILTER_ID = "fiscal-month"
MONTH_FILTER_SOURCE = ("chargeback_monthly", "fiscal_month_start")


def _month_filter_group() -> dict[str, Any]:
    """A fiscal-month range filter over every dataset with a ``fiscal_month_start`` column, on every sheet.

    Its control sits on the overview sheet; unset, it filters nothing.
    """
    view, column = MONTH_FILTER_SOURCE
    return {"FilterGroupId": f"{MONTH_FILTER_ID}-group", "CrossDataset": "ALL_DATASETS", "Status": "ENABLED",
            "ScopeConfiguration": {"AllSheets": {}},
            "Filters": [{"TimeRangeFilter": {
                "FilterId": MONTH_FILTER_ID, "Column": _column(view, column), "NullOption": "ALL_VALUES",
                "IncludeMinimum": True, "IncludeMaximum": True, "TimeGranularity": "MONTH"}}]}


def _visual_filter_groups() -> list[dict[str, Any]]:
    """One filter group per visual with ``only``: the rows it keeps, scoped to that visual alone."""
    groups = []
    for sheet in SHEETS:
        for visual in sheet.visuals:
            if visual.only is None:
                continue
            column, values = visual.only
            groups.append({
                "FilterGroupId": f"{visual.visual_id}-only", "CrossDataset": "SINGLE_DATASET", "Status": "ENABLED",
                "ScopeConfiguration": {"SelectedSheets": {"SheetVisualScopingConfigurations": [{
                    "SheetId": sheet.sheet_id, "Scope": "SELECTED_VISUALS", "VisualIds": [visual.visual_id]}]}},
                "Filters": [{"CategoryFilter": {
                    "FilterId": f"{visual.visual_id}-{column.replace('_', '-')}",
                    "Column": _column(visual.view, column),
                    "Configuration": {"FilterListConfiguration": {
                        "MatchOperator": "CONTAINS", "CategoryValues": list(values),
                        "NullOption": "NON_NULLS_ONLY"}}}}]})
    return groups


def _month_control() -> dict[str, Any]:
    return {"DateTimePicker": {"FilterControlId": f"{MONTH_FILTER_ID}-control", "Title": "Fiscal months",
                               "SourceFilterId": MONTH_FILTER_ID, "Type": "DATE_RANGE", "CommitMode": "AUTO"}}


def _sheet(sheet: Sheet) -> dict[str, Any]:
    # A 36-column grid: KPIs in a row of small tiles, charts and tables at full width.
    elements, row, col = [], 0, 0
    for visual in sheet.visuals:
        span, height = (12, 4) if visual.kind == "kpi" else (36, 12)
        if col + span > 36 or visual.kind != "kpi":
            row, col = (row + (4 if col else 0)), 0
        elements.append({"ElementId": visual.visual_id, "ElementType": "VISUAL", "ColumnIndex": col,
                         "ColumnSpan": span, "RowIndex": row, "RowSpan": height})
        if visual.kind == "kpi":
            col += span
        else:
            row += height
    definition = {"SheetId": sheet.sheet_id, "Name": sheet.name, "Title": sheet.name, "ContentType": "INTERACTIVE",
                  "Visuals": [_visual(v) for v in sheet.visuals],
                  "Layouts": [{"Configuration": {"GridLayout": {"Elements": elements}}}]}
    if sheet is SHEETS[0]:
        definition["FilterControls"] = [_month_control()]
    return definition


def _dashboard(*, ids: dict[str, str], principals: Sequence[str], readers: Sequence[str]) -> dict[str, Any]:
    used = sorted({v.view for s in SHEETS for v in s.visuals})
    declarations = [{"Identifier": view, "DataSetArn": _arn(**ids, kind="dataset", resource_id=data_set_id(view))}
                    for view in used]
    account = ids["account"]
    enabled = {"AvailabilityStatus": "ENABLED"}
    return {
        "AwsAccountId": account,
        "DashboardId": DASHBOARD_ID,
        "Name": "modelmeter chargeback",
        "Permissions": _permissions(principals, _OWNER_ACTIONS["dashboard"])
        + _permissions([r for r in readers if r not in principals], _READER_ACTIONS),
        "Definition": {"DataSetIdentifierDeclarations": declarations, "Sheets": [_sheet(s) for s in SHEETS],
                       "FilterGroups": [_month_filter_group(), *_visual_filter_groups()]},
        "DashboardPublishOptions": {"AdHocFilteringOption": enabled, "ExportToCSVOption": enabled,
                                    "SheetControlsOption": {"VisibilityState": "EXPANDED"}},
        "ValidationStrategy": {"Mode": "STRICT"},
        "VersionDescription": "modelmeter chargeback (generated by dashboards/quicksight.py)",
        "Tags": TAGS,
    }


def build_definitions(*, aws_account_id: str, region: str, athena_workgroup: str, glue_database: str,
                      principals: list[str], rls_principals: dict[str, list[str]] | None = None,
                      partition: str = "aws") -> dict[str, Any]:
    """Every QuickSight resource of the chargeback dashboard, as boto3 ``quicksight`` call arguments.

    Args:
        aws_account_id: the 12-digit account that owns the QuickSight resources.
        region: the QuickSight (and Athena) region.
        athena_workgroup: the Athena workgroup QuickSight queries through.
        glue_database: the Glue database holding the curated tables and the views.
        principals: QuickSight user or group ARNs that own everything and see every team.
        rls_principals: team leads: QuickSight user or group ARN → the team ids they may see.
        partition: the AWS partition of the ARNs (``aws``, ``aws-cn``, ``aws-us-gov``).

    Returns:
        ``data_source`` (for ``create_data_source``), ``rls_data_set`` and ``data_sets`` (a list, for
        ``create_data_set``; create the RLS dataset first), ``dashboard`` (for ``create_dashboard``).

    Raises:
        ValueError: a principal is not a QuickSight user/group ARN, or a team id is malformed.
    """
    rls_principals = dict(rls_principals or {})
    if not principals:
        raise ValueError("at least one owner principal is needed (nobody could manage the dashboard otherwise)")
    _check_principals(principals, rls_principals)
    account, ids = aws_account_id, {"partition": partition, "region": region, "account": aws_account_id}
    source_arn = _arn(**ids, kind="datasource", resource_id=DATA_SOURCE_ID)
    rls_arn = _arn(**ids, kind="dataset", resource_id=RLS_DATA_SET_ID)
    return {
        "data_source": _data_source(account=account, workgroup=athena_workgroup, principals=principals),
        "rls_data_set": _rls_data_set(account=account, data_source_arn=source_arn, principals=principals,
                                      rls_principals=rls_principals),
        "data_sets": [_view_data_set(view=view, account=account, glue_database=glue_database,
                                     data_source_arn=source_arn, rls_arn=rls_arn, principals=principals)
                      for view in VIEW_COLUMNS],
        "dashboard": _dashboard(ids=ids, principals=principals, readers=list(rls_principals)),
    }

"""The QuickSight definitions: valid API calls (botocore's model, moto), columns that exist, RLS that restricts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import duckdb
import pytest
import sqlglot
from botocore.model import Shape
from botocore.validate import ParamValidator
from moto import mock_aws

from common.contracts import STATUSES
from dashboards import quicksight as qs
from sql.render import views
from tests.fixture_lake import FixtureFacts

ACCOUNT = "123456789012"
REGION = "us-east-1"
FINANCE = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/finance"
ALICE = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/alice"
WEST_LEADS = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/west-leads"


@pytest.fixture(scope="module")
def defs() -> dict[str, Any]:
    return qs.build_definitions(aws_account_id=ACCOUNT, region=REGION, athena_workgroup="modelmeter",
                                glue_database="modelmeter_lake", principals=[FINANCE],
                                rls_principals={ALICE: ["team-alpha"], WEST_LEADS: ["team-west", "team-beta"]})


def _calls(defs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("CreateDataSource", defs["data_source"]), ("CreateDataSet", defs["rls_data_set"]),
            *[("CreateDataSet", ds) for ds in defs["data_sets"]], ("CreateDashboard", defs["dashboard"])]


def _model():
    return botocore.session.get_session().get_service_model("quicksight")


def test_every_call_validates_against_botocores_quicksight_model(defs: dict[str, Any]) -> None:
    model = _model()
    for operation, params in _calls(defs):
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), f"{operation} {params.get('DataSetId', '')}:\n{report.generate_report()}"


def _constraint_errors(shape: Shape, value: Any, path: str) -> Iterator[str]:
    """What botocore's validator leaves to the service: enums, patterns, maximum lengths and sizes."""
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in value.items():
            yield from _constraint_errors(shape.members[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} items > max {meta['max']}"
        for i, item in enumerate(value):
            yield from _constraint_errors(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            yield from _constraint_errors(shape.key, key, f"{path} key {key!r}")
            yield from _constraint_errors(shape.value, item, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} not one of {shape.enum}"
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} characters > max {meta['max']}"
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            yield f"{path}: {value!r} does not match {meta['pattern']}"
    elif shape.type_name in ("integer", "long") and "max" in meta and value > meta["max"]:
        yield f"{path}: {value} > max {meta['max']}"


def test_every_call_meets_the_models_enums_patterns_and_lengths(defs: dict[str, Any]) -> None:
    model = _model()
    errors = [e for operation, params in _calls(defs)
              for e in _constraint_errors(model.operation_model(operation).input_shape, params, operation)]
    assert errors == []


def test_moto_accepts_every_create_call(defs: dict[str, Any]) -> None:
    # moto 5.2.5 implements create/describe/list for data sources and dashboards, and create_data_set (it keeps
    # only the id and name: no describe_data_set, no describe_dashboard_definition).
    with mock_aws():
        client = boto3.client("quicksight", region_name=REGION)
        source = client.create_data_source(**defs["data_source"])
        assert source["CreationStatus"] == "CREATION_SUCCESSFUL"
        for params in [defs["rls_data_set"], *defs["data_sets"]]:
            assert client.create_data_set(**params)["DataSetId"] == params["DataSetId"]
        dashboard = client.create_dashboard(**defs["dashboard"])
        assert dashboard["CreationStatus"] == "CREATION_SUCCESSFUL"

        described = client.describe_data_source(AwsAccountId=ACCOUNT, DataSourceId=qs.DATA_SOURCE_ID)["DataSource"]
        assert described["Type"] == "ATHENA"
        assert described["DataSourceParameters"] == {"AthenaParameters": {"WorkGroup": "modelmeter"}}
        listed = client.list_dashboards(AwsAccountId=ACCOUNT)["DashboardSummaryList"]
        assert [d["DashboardId"] for d in listed] == [qs.DASHBOARD_ID]


def test_one_dataset_per_view_in_the_glue_database(defs: dict[str, Any]) -> None:
    assert list(qs.VIEW_COLUMNS) == views()
    tables = [next(iter(ds["PhysicalTableMap"].values()))["RelationalTable"] for ds in defs["data_sets"]]
    assert [t["Name"] for t in tables] == views()
    assert {t["Schema"] for t in tables} == {"modelmeter_lake"}
    assert {t["DataSourceArn"] for t in tables} == {f"arn:aws:quicksight:{REGION}:{ACCOUNT}:datasource/"
                                                    f"{qs.DATA_SOURCE_ID}"}


def test_dataset_columns_are_the_views_columns_with_matching_types(con: duckdb.DuckDBPyConnection) -> None:
    # GIVEN every view created in DuckDB over the fixture lake
    # WHEN the declared dataset columns are compared with what the views return
    # THEN names, order and QuickSight types agree (the message shows the spec to paste when they don't)
    actual = {view: tuple((name, qs.quicksight_type(kind)) for name, kind, *_ in con.execute(
        f'DESCRIBE "{view}"').fetchall()) for view in views()}
    for view in views():
        assert qs.VIEW_COLUMNS[view] == actual[view], f"{view}: the views now say {actual[view]}"


def _column_refs(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        if set(node) == {"DataSetIdentifier", "ColumnName"}:
            yield node
        for value in node.values():
            yield from _column_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _column_refs(value)


def test_every_visual_column_is_declared_and_exists_in_its_dataset(defs: dict[str, Any]) -> None:
    definition = defs["dashboard"]["Definition"]
    declared = {d["Identifier"]: d["DataSetArn"] for d in definition["DataSetIdentifierDeclarations"]}
    columns_by_arn = {f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{ds['DataSetId']}":
                      {c["Name"] for c in next(iter(ds["PhysicalTableMap"].values()))["RelationalTable"][
                          "InputColumns"]} for ds in defs["data_sets"]}
    refs = list(_column_refs([definition["Sheets"], definition["FilterGroups"]]))
    assert len(refs) > 40
    for ref in refs:
        assert ref["DataSetIdentifier"] in declared, ref
        assert ref["ColumnName"] in columns_by_arn[declared[ref["DataSetIdentifier"]]], ref


def test_sheets_visuals_and_layout_are_consistent(defs: dict[str, Any]) -> None:
    sheets = defs["dashboard"]["Definition"]["Sheets"]
    assert [s["Name"] for s in sheets] == ["Overview", "By team", "By model", "Trend", "Unit costs",
                                                 "Month-end close", "Budget burn"]
    kinds = {next(iter(v)) for s in sheets for v in s["Visuals"]}
    assert kinds == {"KPIVisual", "BarChartVisual", "LineChartVisual", "TableVisual"}
    visual_ids = [next(iter(v.values()))["VisualId"] for s in sheets for v in s["Visuals"]]
    assert len(visual_ids) == len(set(visual_ids))
    for sheet in sheets:
        ids = [next(iter(v.values()))["VisualId"] for v in sheet["Visuals"]]
        elements = sheet["Layouts"][0]["Configuration"]["GridLayout"]["Elements"]
        assert [e["ElementId"] for e in elements] == ids
        assert all(e["ColumnIndex"] + e["ColumnSpan"] <= 36 for e in elements)


def test_rls_applies_to_every_team_scoped_dataset_and_only_those(defs: dict[str, Any]) -> None:
    rls_arn = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{qs.RLS_DATA_SET_ID}"
    assert defs["rls_data_set"]["UseAs"] == "RLS_RULES"
    for ds in defs["data_sets"]:
        view = next(iter(ds["PhysicalTableMap"].values()))["RelationalTable"]["Name"]
        scoped = any(name == "team_id" for name, _ in qs.VIEW_COLUMNS[view])
        if scoped:
            assert ds["RowLevelPermissionDataSet"] == {"Arn": rls_arn, "PermissionPolicy": "GRANT_ACCESS",
                                                       "FormatVersion": "VERSION_2", "Status": "ENABLED"}
        else:
            assert "RowLevelPermissionDataSet" not in ds, view


def test_dashboard_money_comes_from_team_scoped_views_only() -> None:
    for sheet in qs.SHEETS:
        for visual in sheet.visuals:
            if any(name == "team_id" for name, _ in qs.VIEW_COLUMNS[visual.view]):
                continue
            leaked = set(visual.referenced_columns()) - qs.UNSCOPED_COLUMNS.get(visual.view, frozenset())
            assert not leaked, f"{visual.visual_id} shows {leaked} of {visual.view}, which has no RLS"


def test_rls_rules_restrict_rows_as_quicksight_would(defs: dict[str, Any], con: duckdb.DuckDBPyConnection,
                                                     facts: FixtureFacts) -> None:
    # GIVEN the RLS dataset's Athena SQL, transpiled to DuckDB and run beside the views
    sql = defs["rls_data_set"]["PhysicalTableMap"]["rules"]["CustomSql"]["SqlQuery"]
    rules = con.execute(sqlglot.transpile(sql, read="athena", write="duckdb")[0]).fetchall()
    assert sorted(rules, key=str) == sorted([(None, FINANCE, None), (ALICE, None, "team-alpha"),
                                             (None, WEST_LEADS, "team-west"), (None, WEST_LEADS, "team-beta")],
                                            key=str)
    con.execute("CREATE TABLE rls AS " + sqlglot.transpile(sql, read="athena", write="duckdb")[0])

    # WHEN each principal's rows of chargeback_monthly are filtered the way QuickSight applies GRANT_ACCESS rules
    #      (a NULL team_id in a rule means every team)
    def spend_seen_by(principal: str) -> dict[str, Any]:
        return dict(con.execute(
            """select c.team_id, sum(c.total_cost) from chargeback_monthly c
               where exists (select 1 from rls r where coalesce(r."UserARN", r."GroupARN") = ?
                             and (r.team_id is null or r.team_id = c.team_id))
               group by c.team_id""", [principal]).fetchall())

    # THEN finance sees every team, Alice only alpha, the west leads west and beta, an unknown user nothing
    by_team = facts.cost_by_team()
    assert spend_seen_by(FINANCE) == by_team
    assert spend_seen_by(ALICE) == {"team-alpha": by_team["team-alpha"]}
    assert spend_seen_by(WEST_LEADS) == {t: by_team[t] for t in ("team-west", "team-beta")}
    assert spend_seen_by(f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/mallory") == {}


def test_team_leads_can_read_the_dashboard_but_not_manage_it(defs: dict[str, Any]) -> None:
    permissions = {p["Principal"]: p["Actions"] for p in defs["dashboard"]["Permissions"]}
    assert "quicksight:UpdateDashboard" in permissions[FINANCE]
    assert permissions[ALICE] == ["quicksight:DescribeDashboard", "quicksight:ListDashboardVersions",
                                  "quicksight:QueryDashboard"]
    for ds in defs["data_sets"]:
        assert [p["Principal"] for p in ds["Permissions"]] == [FINANCE]


@pytest.mark.parametrize(("principals", "rls", "message"), [
    ([], None, "at least one owner"),
    (["arn:aws:iam::123456789012:user/bob"], None, "is not a QuickSight user or group ARN"),
    ([FINANCE], {ALICE: ["team'; drop table x; --"]}, "is not a valid team id"),
])
def test_bad_principals_are_refused_with_a_clear_message(principals: list[str], rls: dict[str, list[str]] | None,
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qs.build_definitions(aws_account_id=ACCOUNT, region=REGION, athena_workgroup="wg", glue_database="db",
                             principals=principals, rls_principals=rls)


def test_arns_follow_the_partition() -> None:
    china = "arn:aws-cn:quicksight:cn-north-1:123456789012:group/default/finance"
    defs = qs.build_definitions(aws_account_id=ACCOUNT, region="cn-north-1", athena_workgroup="wg",
                                glue_database="db", principals=[china], partition="aws-cn")
    arns = [d["DataSetArn"] for d in defs["dashboard"]["Definition"]["DataSetIdentifierDeclarations"]]
    arns += [defs["data_sets"][0]["RowLevelPermissionDataSet"]["Arn"]]
    assert arns and all(a.startswith("arn:aws-cn:quicksight:cn-north-1:123456789012:dataset/") for a in arns)


def test_filter_controls_point_at_defined_filters_on_a_column_every_dataset_types_alike(
        defs: dict[str, Any]) -> None:
    definition = defs["dashboard"]["Definition"]
    filters = {next(iter(f.values()))["FilterId"]: next(iter(f.values()))
               for group in definition["FilterGroups"] for f in group["Filters"]}
    controls = [next(iter(c.values())) for s in definition["Sheets"] for c in s.get("FilterControls", [])]
    assert controls and all(c["SourceFilterId"] in filters for c in controls)
    # a cross-dataset filter matches columns by name: they must have one type wherever they appear
    for group in (g for g in definition["FilterGroups"] if "AllSheets" in g["ScopeConfiguration"]):
        assert group["CrossDataset"] == "ALL_DATASETS"
        for f in group["Filters"]:
            name = next(iter(f.values()))["Column"]["ColumnName"]
            types = {dict(cols)[name] for cols in qs.VIEW_COLUMNS.values() if name in dict(cols)}
            assert types == {"DATETIME"}, name


def test_visual_filters_keep_only_their_visuals_rows(defs: dict[str, Any]) -> None:
    # GIVEN the filter groups scoped to one visual (e.g. a period's own lines apart from its adjustment lines)
    definition = defs["dashboard"]["Definition"]
    visuals = {(s["SheetId"], next(iter(v.values()))["VisualId"]): next(iter(v.values()))
               for s in definition["Sheets"] for v in s["Visuals"]}
    scoped = [g for g in definition["FilterGroups"] if "SelectedSheets" in g["ScopeConfiguration"]]
    expected = {v.visual_id: v.only for s in qs.SHEETS for v in s.visuals if v.only}
    assert {v for v in expected} == {"close-chargeback", "close-adjustments", "close-by-cost-center",
                                     "burn-refused", "burn-refused-table"}
    assert len(scoped) == len(expected)
    for group in scoped:
        # THEN each filters one column of its visual's own dataset, to the values the layout names, on that visual
        [scope] = group["ScopeConfiguration"]["SelectedSheets"]["SheetVisualScopingConfigurations"]
        [visual_id] = scope["VisualIds"]
        assert scope["Scope"] == "SELECTED_VISUALS" and (scope["SheetId"], visual_id) in visuals
        assert group["CrossDataset"] == "SINGLE_DATASET"
        [f] = [f["CategoryFilter"] for f in group["Filters"]]
        column, values = expected[visual_id]
        view = next(v.view for s in qs.SHEETS for v in s.visuals if v.visual_id == visual_id)
        assert f["Column"] == {"DataSetIdentifier": view, "ColumnName": column}
        assert f["Configuration"]["FilterListConfiguration"]["CategoryValues"] == list(values)
    refused = {v.only for s in qs.SHEETS for v in s.visuals if v.only and v.view == "usage_local"}
    assert refused == {("status", ("throttled",))}  # a status the event contract allows
    assert "throttled" in STATUSES
    lines = {v.only[1] for s in qs.SHEETS for v in s.visuals if v.only and v.only[0] == "line_type"}
    assert lines == {("charge",), ("adjustment",)}  # the chargeback view's line types, and only those

"""In AWS the tenant table is the registry and the source of truth: a dated move made with the command survives a
re-deploy (the deploy only seeds) and reaches ``reference/teams`` through the transform Lambda's refresh.

The deploy's seeding is replayed from the synthesized template: each ``Custom::ModelmeterTeam``'s ``Create`` and
``Update`` SDK calls are made as the AwsCustomResource handler makes them (the call's parameters, its error codes
ignored), against moto's server (DynamoDB and S3 over real HTTP, real boto3 and pyarrow clients).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from common.constants import DYNAMO_PARTITION_KEY, ENV_LAKE, ENV_TENANTS, REFERENCE_TEAMS
from common.contracts import Team
from common.lake import Lake
from ingest.dynamo import DynamoTenantRegistry
from modelmeter.cli import main
from tests.infra.bare_stacks import research
from tests.infra.conftest import Assembly
from transforms import lambda_handler


def _resolve(value: Any, table: str) -> str:
    """A CloudFormation string (``Fn::Join`` of text and the table's ``Ref``/import) with the table's name in."""
    if isinstance(value, str):
        return value
    (fn, args), = value.items()
    if fn == "Fn::Join":
        separator, parts = args
        return separator.join(_resolve(p, table) for p in parts)
    if fn in ("Ref", "Fn::ImportValue"):
        return table
    raise AssertionError(f"unexpected {fn} in a team record's call")


def _seed_calls(bare: Assembly, table: str, event: str) -> dict[str, dict[str, Any]]:
    """The ``event`` (Create or Update) call of each team's record, by team id."""
    calls = {}
    for record in bare.resources("bare-gateway", "Custom::ModelmeterTeam"):
        call = json.loads(_resolve(record["Properties"][event], table))
        calls[call["parameters"]["Item"]["team_id"]["S"]] = call
    return calls


def _run_custom_resource_call(client: Any, call: dict[str, Any]) -> str:
    """What the AwsCustomResource handler does with one SDK call: make it; an error whose code matches
    ``ignoreErrorCodesMatching`` is ignored (the resource still succeeds), any other fails the deploy."""
    assert call["service"] == "DynamoDB"
    method = getattr(client, re.sub(r"([A-Z])", r"_\1", call["action"]).lower())
    try:
        method(**call["parameters"])
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if call.get("ignoreErrorCodesMatching") and re.search(call["ignoreErrorCodesMatching"], code):
            return f"ignored {code}"
        raise
    return "written"


@pytest.fixture
def tenant_table(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tenant table of this test's own, as infra/ creates it, on the moto server."""
    for name in (ENV_TENANTS, ENV_LAKE):
        monkeypatch.delenv(name, raising=False)
    name = f"tenants-{uuid.uuid4().hex[:12]}"
    boto3.client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": DYNAMO_PARTITION_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": DYNAMO_PARTITION_KEY, "KeyType": "HASH"}])
    return name


@pytest.mark.slow
def test_a_dated_move_made_with_the_command_survives_a_redeploy_and_the_transform_refresh(
        bare: Assembly, tenant_table: str, s3_lake_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = boto3.client("dynamodb")
    team = research().teams[0]
    old_cc = team.cost_center
    key = {DYNAMO_PARTITION_KEY: {"S": f"team#{team.team_id}"}}
    # GIVEN the first deploy: every config team seeded into the tenant table
    first = _seed_calls(bare, tenant_table, "Create")
    assert {t: _run_custom_resource_call(client, call) for t, call in first.items()} == \
        {t.team_id: "written" for t in research().teams}
    seeded = DynamoTenantRegistry(table_name=tenant_table, client=client).get_team(team.team_id)
    assert seeded is not None and seeded.cost_center == old_cc and not seeded.cost_center_history
    # WHEN finance moves the team to another cost centre from 2026-11-15, against the deployed registry and lake
    assert main(["tenants", "add", team.team_id, "--cost-center", "CC-MOVED", "--from", "2026-11-15",
                 "--tenants", f"dynamodb://{tenant_table}", "--lake", s3_lake_uri]) == 0
    assert f"earlier days stay with cost centre {old_cc}" in capsys.readouterr().err
    moved = client.get_item(TableName=tenant_table, Key=key)["Item"]
    # and the unit is deployed again: an update of every team record (say its config changed), then a create
    # (say the stack was re-created over the retained table)
    for event in ("Update", "Create"):
        again = _seed_calls(bare, tenant_table, event)
        assert {t: _run_custom_resource_call(client, call) for t, call in again.items()} == \
            {t.team_id: "ignored ConditionalCheckFailedException" for t in research().teams}
    # THEN the team's item is exactly as the command left it
    assert client.get_item(TableName=tenant_table, Key=key)["Item"] == moved
    # and the transform Lambda's refresh rewrites reference/teams from the table with the dated rows
    lake = Lake.open(s3_lake_uri)
    (written,) = lake.list_files(REFERENCE_TEAMS)  # the command wrote it too: prove that the refresh does
    lake.delete(written)
    refreshed = lambda_handler._refresh_teams(lake, tenant_table)
    assert refreshed is not None and len(refreshed) == len(research().teams)
    (teams_file,) = lake.list_files(REFERENCE_TEAMS)
    rows = [r for r in pq.read_table(teams_file, filesystem=lake.fs).to_pylist() if r["team_id"] == team.team_id]
    budget = Decimal(team.monthly_budget_usd).quantize(Decimal("1e-12")) if team.monthly_budget_usd else None
    assert rows == [
        {"team_id": team.team_id, "cost_center": old_cc, "monthly_budget_usd": budget, "business_unit": "bare",
         "effective_from": None, "effective_to": date(2026, 11, 15), "is_current": False},
        {"team_id": team.team_id, "cost_center": "CC-MOVED", "monthly_budget_usd": budget, "business_unit": "bare",
         "effective_from": date(2026, 11, 15), "effective_to": None, "is_current": True}]
    # and the registry answers the old cost centre for an earlier day, the new one from the move on
    registry: Team | None = DynamoTenantRegistry(table_name=tenant_table, client=client).get_team(team.team_id)
    assert registry is not None
    assert registry.cost_center_on(date(2026, 11, 14)) == old_cc
    assert registry.cost_center_on(date(2026, 11, 15)) == "CC-MOVED"

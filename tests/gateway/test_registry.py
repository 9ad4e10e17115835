"""The tenant registry a command works against (``ingest.registry.open_registry``), and the DynamoDB registry's
dated organisation: moto (``mock_aws``) behind real boto3, the commands called in-process (``modelmeter.cli.main``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from common.constants import DYNAMO_PARTITION_KEY, ENV_LAKE, ENV_TENANTS, REFERENCE_TEAMS
from common.contracts import CostCenterSpan, Limits, Team
from common.errors import UserError
from common.lake import Lake
from ingest.dynamo import DynamoTenantRegistry
from ingest.ports import hash_key
from ingest.registry import open_registry
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main

REGION = "eu-west-1"
TABLE = "modelmeter-research-tenants"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region (no test can reach an account), and no registry or lake from the caller."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", ENV_TENANTS, ENV_LAKE):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db() -> Iterator[Any]:
    """The tenant table as infra/ creates it (partition key ``pk``), in moto."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": DYNAMO_PARTITION_KEY, "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": DYNAMO_PARTITION_KEY, "KeyType": "HASH"}])
        yield client


def _item(db: Any, team_id: str) -> dict[str, Any]:
    return db.get_item(TableName=TABLE, Key={DYNAMO_PARTITION_KEY: {"S": f"team#{team_id}"}})["Item"]


# --- which registry ---------------------------------------------------------------------------------------------

def test_without_a_dynamodb_uri_the_registry_is_the_local_file_it_always_was(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    beside = open_registry(tenants=None, lake=str(tmp_path / "lake"))
    assert isinstance(beside, LocalTenantRegistry) and beside.location == str(tmp_path / "tenants.json")
    named = open_registry(tenants=str(tmp_path / "t.json"), lake=None)
    assert isinstance(named, LocalTenantRegistry) and named.location == str(tmp_path / "t.json")
    monkeypatch.setenv(ENV_TENANTS, str(tmp_path / "env.json"))
    assert open_registry(tenants=None, lake=None).location == str(tmp_path / "env.json")


def test_dynamodb_uri_opens_the_tenant_table_from_the_option_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry = open_registry(tenants=f"dynamodb://{TABLE}", lake="s3://bucket/lake")
    assert isinstance(registry, DynamoTenantRegistry) and registry.table_name == TABLE
    assert registry.location == f"dynamodb://{TABLE} ({REGION})"
    monkeypatch.setenv(ENV_TENANTS, "dynamodb://other-table")
    from_env = open_registry(tenants=None, lake=None)
    assert isinstance(from_env, DynamoTenantRegistry) and from_env.table_name == "other-table"
    # --tenants wins over the environment
    assert open_registry(tenants=str(Path("t.json")), lake=None).location == "t.json"


@pytest.mark.parametrize("given", ["dynamodb:tenants", "dynamodb://", "dynamodb://a b", "DynamoDB:/tenants",
                                   "dynamodb://x"])
def test_a_malformed_dynamodb_registry_is_refused_not_taken_for_a_file(given: str) -> None:
    with pytest.raises(UserError, match="write dynamodb://TABLE"):
        open_registry(tenants=given, lake=None)


def test_without_a_region_or_a_table_the_command_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(UserError, match="no AWS region is configured"):
        open_registry(tenants=f"dynamodb://{TABLE}", lake=None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():  # no table created
        assert main(["tenants", "list", "--tenants", "dynamodb://missing-table"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"modelmeter tenants list: tenant registry dynamodb://missing-table ({REGION}): no "
                                f"such table (check the name and the region) (ResourceNotFoundException)"]


def test_the_s3_lake_message_names_the_dynamodb_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tenants", "list", "--lake", "s3://bucket/lake"]) == 1
    assert "dynamodb://TABLE" in capsys.readouterr().err


# --- the DynamoDB registry's items --------------------------------------------------------------------------------

MOVED = Team(team_id="search", cost_center="CC-3", monthly_budget_usd=Decimal("1500.123456789012"),
             allowed_models=("anthropic.*",), limits=Limits(requests_per_second=0.5, daily_tokens=10**6),
             business_unit="retail",
             cost_center_history=(CostCenterSpan(None, "CC-1"), CostCenterSpan(date(2026, 10, 1), None),
                                  CostCenterSpan(date(2026, 11, 15), "CC-3")))


def test_the_history_is_a_list_of_maps_on_the_team_item_and_round_trips_with_the_exact_budget(db: Any) -> None:
    registry = DynamoTenantRegistry(table_name=TABLE, client=db)
    registry.put_team(MOVED)
    registry.put_team(Team(team_id="ads", cost_center="CC-9"))
    # THEN the item holds the history as maps: ISO days, an absent effective_from (since always) or cost centre
    item = _item(db, "search")
    assert item["cost_center_history"] == {"L": [
        {"M": {"cost_center": {"S": "CC-1"}}},
        {"M": {"effective_from": {"S": "2026-10-01"}}},
        {"M": {"effective_from": {"S": "2026-11-15"}, "cost_center": {"S": "CC-3"}}}]}
    assert item["cost_center"] == {"S": "CC-3"} and item["monthly_budget_usd"] == {"N": "1500.123456789012"}
    assert "cost_center_history" not in _item(db, "ads")  # never moved: no history, its cost centre since always
    # and every field reads back as written, whichever way it is read
    fresh = DynamoTenantRegistry(table_name=TABLE, client=db)
    assert fresh.get_team("search") == MOVED
    assert fresh.list_teams() == [Team(team_id="ads", cost_center="CC-9"), MOVED]
    assert MOVED.cost_center_on(date(2026, 9, 30)) == "CC-1" and MOVED.cost_center_on(date(2026, 10, 2)) is None


def test_a_seeded_item_without_history_reads_as_its_cost_centre_since_always(db: Any) -> None:
    # GIVEN a team item as the deploy seeds it (infra TeamRecords: no history, no revision)
    db.put_item(TableName=TABLE, Item={DYNAMO_PARTITION_KEY: {"S": "team#ops"}, "kind": {"S": "team"},
                                       "team_id": {"S": "ops"}, "cost_center": {"S": "CC-7"},
                                       "monthly_budget_usd": {"N": "25000.00"}, "business_unit": {"S": "research"},
                                       "allowed_models": {"L": [{"S": "*"}]}})
    team = DynamoTenantRegistry(table_name=TABLE, client=db).get_team("ops")
    assert team == Team(team_id="ops", cost_center="CC-7", monthly_budget_usd=Decimal("25000.00"),
                        business_unit="research")
    assert team.spans() == (CostCenterSpan(None, "CC-7"),) and team.cost_center_on(date(2020, 1, 1)) == "CC-7"


def test_two_commands_changing_one_team_at_once_cannot_lose_a_change(db: Any) -> None:
    # GIVEN two commands that read the same team
    DynamoTenantRegistry(table_name=TABLE, client=db).put_team(Team(team_id="search", cost_center="CC-1"))
    first, second = (DynamoTenantRegistry(table_name=TABLE, client=db) for _ in range(2))
    a, b = first.get_team("search"), second.get_team("search")
    assert a is not None and b is not None
    # WHEN both write their move
    first.put_team(a.moved("CC-2", effective_from=date(2026, 11, 1)))
    # THEN the second is refused rather than overwriting the first's history, and the first's move stands
    with pytest.raises(UserError, match="changed in dynamodb://.* after it was read"):
        second.put_team(b.moved("CC-3", effective_from=date(2026, 11, 20)))
    assert [s.cost_center for s in DynamoTenantRegistry(table_name=TABLE, client=db).get_team("search").spans()] \
        == ["CC-1", "CC-2"]
    # and once it reads again, its change applies on top
    again = second.get_team("search")
    second.put_team(again.moved("CC-3", effective_from=date(2026, 11, 20)))
    assert [s.cost_center for s in second.get_team("search").spans()] == ["CC-1", "CC-2", "CC-3"]
    # a team read as absent must still be absent when it is written (no overwrite of one created meanwhile)
    assert first.get_team("new") is None
    second.put_team(Team(team_id="new", cost_center="CC-5"))
    with pytest.raises(UserError, match="team new changed"):
        first.put_team(Team(team_id="new", cost_center="CC-6"))


# --- the commands against DynamoDB -----------------------------------------------------------------------------

def test_tenants_add_list_and_keys_create_work_against_the_dynamodb_registry(
        db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tenants = f"dynamodb://{TABLE}"
    lake = str(tmp_path / "lake")
    # GIVEN a team registered in the tenant table, then moved to another cost centre from 2026-11-15
    assert main(["tenants", "add", "search", "--cost-center", "CC-1", "--monthly-budget", "1200.50",
                 "--allow", "anthropic.*", "--tenants", tenants, "--lake", lake]) == 0
    assert main(["tenants", "add", "search", "--cost-center", "CC-2", "--from", "2026-11-15",
                 "--tenants", tenants, "--lake", lake]) == 0
    err = capsys.readouterr().err
    assert f"team search updated in dynamodb://{TABLE} ({REGION})" in err
    assert "cost centre CC-2 from 2026-11-15 (UTC); earlier days stay with cost centre CC-1" in err
    # WHEN a key is created for it
    assert main(["keys", "create", "search", "--tenants", tenants]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert out == secret + "\n" and "Authorization: Bearer" in err
    # THEN the table holds the dated team and only the key's hash, and the key resolves to the team
    registry = DynamoTenantRegistry(table_name=TABLE, client=db, cache_seconds=0)
    team = registry.get_team("search")
    assert team is not None and team.monthly_budget_usd == Decimal("1200.50")
    assert team.cost_center_on(date(2026, 11, 14)) == "CC-1" and team.cost_center_on(date(2026, 11, 15)) == "CC-2"
    assert secret not in repr(db.scan(TableName=TABLE)["Items"])
    found = registry.lookup_key(secret)
    assert found is not None and found[1] == team and found[0].key_hash == hash_key(secret)
    # and the lake's reference/teams has the dated rows
    (teams_file,) = Lake.open(lake).list_files(REFERENCE_TEAMS)
    assert [(r["cost_center"], r["effective_from"], r["effective_to"], r["is_current"])
            for r in pq.read_table(teams_file).to_pylist()] == [
        ("CC-1", None, date(2026, 11, 15), False), ("CC-2", date(2026, 11, 15), None, True)]
    # and tenants list shows the team with its live key
    assert main(["tenants", "list", "--tenants", tenants]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split("\t") == ["search", "CC-2", "1200.50", "anthropic.*", "-", "-", found[0].api_key_id]


def test_keys_create_for_a_team_not_in_the_dynamodb_registry_names_the_table(
        db: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "nobody", "--tenants", f"dynamodb://{TABLE}"]) == 1
    assert f"no team 'nobody' in dynamodb://{TABLE} ({REGION})" in capsys.readouterr().err
    assert db.scan(TableName=TABLE)["Items"] == []


def test_without_a_lake_a_dynamodb_registry_leaves_reference_teams_to_the_transform(
        db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["tenants", "add", "ops", "--cost-center", "CC-7", "--tenants", f"dynamodb://{TABLE}"]) == 0
    assert "reference/teams not rewritten: no --lake" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # no ./lake nobody reads
    team = DynamoTenantRegistry(table_name=TABLE, client=db).get_team("ops")
    assert team is not None and team.spans() == (CostCenterSpan(None, "CC-7"),)

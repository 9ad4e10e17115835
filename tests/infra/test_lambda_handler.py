"""transforms.lambda_handler: which days a run covers, clear refusals, and a real run on a local lake."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from common import constants as c
from common.contracts import format_time, parse_event
from common.lake import Lake
from ingest.sink import LocalParquetSink
from transforms import lambda_handler
from transforms.lambda_handler import TransformEventError, days_for


def test_a_scheduled_run_covers_yesterday_and_today_in_utc() -> None:
    # 01:00 at UTC+05:00 is still the previous day in UTC
    now = datetime(2026, 11, 25, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    assert days_for({"source": "schedule"}, now=now) == (date(2026, 11, 23), date(2026, 11, 24))
    assert days_for(None, now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC)) == (date(2025, 12, 31), date(2026, 1, 1))


def test_dates_in_the_event_are_used_as_given() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert days_for({"date_from": "2026-11-01", "date_to": "2026-11-03"}, now=now) == \
        (date(2026, 11, 1), date(2026, 11, 3))


@pytest.mark.parametrize(("event", "message"), [
    ({"date_from": "2026-11-01"}, "date_from is given without date_to"),
    ({"date_to": "2026-11-01"}, "date_to is given without date_from"),
    ({"date_from": "2026-11-05", "date_to": "2026-11-01"}, "date_to 2026-11-01 is before date_from 2026-11-05"),
    ({"date_from": "yesterday", "date_to": "2026-11-01"}, "date_from 'yesterday' is not a date: write YYYY-MM-DD"),
    ({"date_from": "2026-01-01", "date_to": "2026-03-01"}, "is more than 31 days"),
])
def test_a_bad_event_is_refused_with_a_clear_message(event: dict, message: str) -> None:
    with pytest.raises(TransformEventError, match=message):
        days_for(event, now=datetime(2026, 11, 25, tzinfo=UTC))


def test_an_engine_this_build_cannot_run_and_a_missing_lake_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TransformEventError, match="the engines are duckdb and glue"):
        lambda_handler.run({}, environ={c.ENV_TRANSFORM_ENGINE: "athena", c.ENV_LAKE: str(tmp_path)})
    with pytest.raises(TransformEventError, match=f"{c.ENV_LAKE} is not set"):
        lambda_handler.run({}, environ={})


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    function_name: str = "modelmeter-research-transform"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:modelmeter-research-transform"
    aws_request_id: str = "6f1c2a4e-0000-4000-8000-000000000001"


def _event(i: int, when: datetime, **extra: object) -> dict:
    return parse_event({"schema_version": 1, "event_id": f"evt-{i}", "request_id": f"req-{i}",
                        "event_time": format_time(when), "team_id": "search", "provider": "bedrock",
                        "region": "us-east-1", "model_id": "amazon.nova-lite-v1:0", "operation": "chat",
                        "status": "ok", "input_tokens": 1000, "output_tokens": 200, **extra})


def _tenant_table() -> str:
    """A DynamoDB tenant table (moto) holding one team that moved cost centre on 2026-11-21, as the registry writes
    it."""
    import boto3

    from common.contracts import Team
    from ingest.dynamo import DynamoTenantRegistry

    client = boto3.client("dynamodb", region_name="eu-west-1")
    client.create_table(TableName="tenants", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": c.DYNAMO_PARTITION_KEY, "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": c.DYNAMO_PARTITION_KEY, "AttributeType": "S"}])
    team = Team(team_id="search", cost_center="CC-1002", monthly_budget_usd=Decimal("1500.00"),
                business_unit="research")
    DynamoTenantRegistry(table_name="tenants", client=client).put_team(
        team.moved("CC-2002", effective_from=date(2026, 11, 21)))
    return "tenants"


@pytest.mark.slow
def test_handler_transforms_the_days_and_emits_curated_and_quarantined_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from moto import mock_aws

    for name, value in (("AWS_DEFAULT_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        _run_handler_on_a_local_lake(tmp_path, monkeypatch, capsys, tenant_table=_tenant_table())


def _run_handler_on_a_local_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str], *, tenant_table: str) -> None:
    # GIVEN a lake with three good events and one with negative tokens over two days, and a tenant table
    lake = Lake.open(tmp_path / "lake")
    day1 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    rows = [_event(1, day1), _event(2, day1 + timedelta(hours=3)), _event(3, day1 + timedelta(days=1)),
            _event(4, day1 + timedelta(days=1, hours=1), input_tokens=-5)]
    LocalParquetSink(lake).write_rows(rows)
    monkeypatch.setenv(c.ENV_LAKE, lake.uri)
    monkeypatch.setenv(c.ENV_BUSINESS_UNIT, "research")
    monkeypatch.setenv(c.ENV_TENANT_TABLE, tenant_table)
    # WHEN the Lambda entry point runs for those days
    result = lambda_handler.handler({"date_from": "2026-11-20", "date_to": "2026-11-21"}, LambdaContext())
    # THEN both days are transformed, the bad row quarantined, and the counts emitted as CloudWatch metrics (EMF)
    assert result["days"] == ["2026-11-20", "2026-11-21"]
    assert result["counts"]["written"] == 3 and result["counts"]["quarantined"] == 1
    assert lake.list_files(c.CURATED_USAGE_COST, "dt=2026-11-21")
    # and reference/teams was refreshed from the tenant table (what the views join for cost centres and budgets),
    # one row per dated assignment: the move of 2026-11-21 leaves 2026-11-20 with the old cost centre
    import pyarrow.parquet as pq

    assert result["teams"] == 1
    (teams_file,) = lake.list_files(c.REFERENCE_TEAMS)
    same = {"team_id": "search", "monthly_budget_usd": Decimal("1500.000000000000"), "business_unit": "research"}
    assert pq.read_table(teams_file).to_pylist() == [
        {**same, "cost_center": "CC-1002", "effective_from": None, "effective_to": date(2026, 11, 21),
         "is_current": False},
        {**same, "cost_center": "CC-2002", "effective_from": date(2026, 11, 21), "effective_to": None,
         "is_current": True}]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (blob,) = [b for b in emf if c.METRIC_CURATED_EVENTS in b]
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == c.METRICS_NAMESPACE
    assert set(directive["Dimensions"][0]) == {"service", "business_unit"}
    assert blob["service"] == lambda_handler.SERVICE and blob["business_unit"] == "research"
    assert blob[c.METRIC_CURATED_EVENTS] == [3.0] and blob[c.METRIC_QUARANTINED_EVENTS] == [1.0]

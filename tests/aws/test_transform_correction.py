"""The correction of the gateway's spend counters in AWS, and ``modelmeter budget show`` against the deployed store.

The scheduled transform Lambda (``transforms.lambda_handler.handler``) on an ``s3://`` lake, with the tenant table, the
counters table, the budget-alert topic and EventBridge on moto's server (real HTTP; pyarrow and boto3 both follow
``AWS_ENDPOINT_URL``), set up as ``infra/constructs/spend_controls.py`` deploys them: after the run, every team's
counter of each fiscal month the days touch equals the curated figure, and the thresholds the correction crosses are
alerted once. Then ``budget show`` reads the same counters with ``--spend dynamodb://TABLE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from common import constants as c
from common.calendar import Calendar
from common.contracts import Team, format_time, parse_event
from common.lake import Lake
from ingest.budget import crossed
from ingest.dynamo import DynamoTenantRegistry
from ingest.sink import LocalParquetSink
from ingest.spend import PICO_PER_USD
from ingest.spend_dynamo import DynamoSpendStore
from modelmeter.cli import main
from tests.aws.conftest import REGION, create_table
from transforms import lambda_handler

TENANTS, SPEND = "modelmeter-tenants", "modelmeter-spend"
NOVEMBER, DECEMBER = "2026-11-01", "2026-12-01"
#: Three nova-lite calls of 1,000 + 200 tokens cost about $0.000324: 50 % and 80 % of this budget, not 100 %.
SEARCH = Team(team_id="search", cost_center="CC-42", monthly_budget_usd=Decimal("0.0004"), budget_mode="block",
              alert_at=(50, 80, 100))
OPS = Team(team_id="ops", cost_center="CC-7", monthly_budget_usd=Decimal("100"))


@dataclass
class LambdaContext:
    function_name: str = "modelmeter-research-transform"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelmeter-research-transform"
    aws_request_id: str = "6f1c2a4e-0000-4000-8000-000000000002"


def _event(i: int, team: str, when: datetime) -> dict[str, Any]:
    return parse_event({"schema_version": 1, "event_id": f"evt-{i}", "request_id": f"req-{i}",
                        "event_time": format_time(when), "team_id": team, "provider": "bedrock",
                        "region": REGION, "model_id": "amazon.nova-lite-v1:0", "operation": "chat",
                        "status": "ok", "input_tokens": 1000, "output_tokens": 200})


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                               WaitTimeSeconds=0).get("Messages", [])]


def _curated_pico(lake: Lake) -> dict[tuple[str, str], int]:
    """Each team's spend per fiscal month (UTC calendar months here) read straight from ``curated/usage_cost``."""
    out: dict[tuple[str, str], int] = {}
    for path in lake.list_files(c.CURATED_USAGE_COST):
        for row in pq.read_table(path, filesystem=lake.fs).to_pylist():
            key = (row["team_id"], row["event_time"].astimezone(UTC).strftime("%Y-%m-01"))
            out[key] = out.get(key, 0) + int(Decimal(row["total_cost"]) * PICO_PER_USD)
    return out


@pytest.mark.slow
def test_after_the_lambda_transform_run_the_counters_equal_the_curated_figures(
        s3_lake_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clients = {s: boto3.client(s) for s in ("dynamodb", "sns", "sqs", "events")}
    ddb, sqs = clients["dynamodb"], clients["sqs"]
    create_table(ddb, TENANTS)
    create_table(ddb, SPEND, ttl=True)
    topic = clients["sns"].create_topic(Name="modelmeter-research-budget-alerts")["TopicArn"]
    finops_url, finops_arn = _queue(sqs, "finops")
    clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=finops_arn)
    platform_url, platform_arn = _queue(sqs, "platform")
    clients["events"].put_rule(Name="budget", EventPattern=json.dumps({
        "source": [c.ALERT_EVENT_SOURCE], "detail-type": [c.ALERT_EVENT_DETAIL_TYPE]}))
    clients["events"].put_targets(Rule="budget", Targets=[{"Id": "platform", "Arn": platform_arn}])
    registry = DynamoTenantRegistry(table_name=TENANTS, client=ddb)
    for team in (SEARCH, OPS):
        registry.put_team(team)
    # GIVEN the transform Lambda's environment as the stack sets it (transform_job.py, spend_controls.py)
    for key, value in {c.ENV_LAKE: s3_lake_uri, c.ENV_TENANT_TABLE: TENANTS, c.ENV_SPEND_TABLE: SPEND,
                       c.ENV_ALERT_TOPIC_ARN: topic, c.ENV_ALERT_EVENT_BUS: "default", c.ENV_BUSINESS_UNIT: "research",
                       c.ENV_REPORTING_TZ: "UTC", c.ENV_FISCAL_MONTH_START: "1"}.items():
        monkeypatch.setenv(key, value)
    # and raw events over a month end: three calls of search on 30 November, one of ops on each side of midnight
    lake = Lake.open(s3_lake_uri)
    last = datetime(2026, 11, 30, 20, tzinfo=UTC)
    LocalParquetSink(lake).write_rows([
        _event(1, "search", last), _event(2, "search", last + timedelta(hours=1)),
        _event(3, "search", last + timedelta(hours=2)), _event(4, "ops", last + timedelta(minutes=5)),
        _event(5, "ops", last + timedelta(hours=5))])
    # and the gateway's running figures, which the curated tables will contradict: search counted one call only and
    # alerted 50 % already (say two events arrived late), a team with no curated usage counted something
    store = DynamoSpendStore(table_name=SPEND, client=ddb)
    store.add("search", period=NOVEMBER, day="2026-11-30", spend_pico=108 * 10**6, tokens=1200)
    assert store.first_alert("search", period=NOVEMBER, threshold=50)
    store.add("gone", period=NOVEMBER, day="2026-11-29", spend_pico=5, tokens=1)
    capsys.readouterr()

    # WHEN the scheduled transform runs for both days
    result = lambda_handler.handler({"date_from": "2026-11-30", "date_to": "2026-12-01"}, LambdaContext())

    # THEN each team's counter of both fiscal months equals the curated figure, and a team without usage has 0
    assert result["days"] == ["2026-11-30", "2026-12-01"] and result["counts"]["written"] == 5
    curated = _curated_pico(lake)
    assert set(curated) == {("search", NOVEMBER), ("ops", NOVEMBER), ("ops", DECEMBER)}
    for (team_id, period), pico in curated.items():
        assert store.read(team_id, period=period, day=period).spend_pico == pico > 0
    assert store.read("gone", period=NOVEMBER, day=NOVEMBER).spend_pico == 0
    correction = result["spend_correction"]
    assert [p["period"] for p in correction["periods"]] == [NOVEMBER, DECEMBER]
    assert all(p["corrected"] for p in correction["periods"])
    assert correction["store"] == f"dynamodb://{SPEND}" and "error" not in correction
    # AND the thresholds the corrected figure crosses that were not alerted yet go out once, to SNS and EventBridge
    new = [t for t in crossed(SEARCH, curated[("search", NOVEMBER)]) if t != 50]
    assert new == [80]  # the case is really exercised: 50 was raised by the gateway, 100 is not reached
    alerts = [json.loads(m["Message"]) for m in _received(sqs, finops_url)]
    assert [(a["team_id"], a["threshold_pct"], a["source"]) for a in alerts] == [("search", 80, "transform correction")]
    assert Decimal(alerts[0]["spend_usd"]) * PICO_PER_USD == curated[("search", NOVEMBER)]
    assert [e["detail"] for e in _received(sqs, platform_url)] == alerts
    assert store.alerts("search", period=NOVEMBER) == (50, 80)
    # AND the run's metrics are emitted (no failure metric)
    out = capsys.readouterr().out
    assert c.METRIC_CURATED_EVENTS in out and c.METRIC_SPEND_STORE_ERRORS not in out

    # WHEN the gateway counts another call and the next scheduled run comes THEN the figure is the curated one again,
    # and nothing is alerted twice
    store.add("search", period=NOVEMBER, day="2026-11-30", spend_pico=7, tokens=1)
    lambda_handler.handler({"date_from": "2026-11-30", "date_to": "2026-12-01"}, LambdaContext())
    assert store.read("search", period=NOVEMBER, day=NOVEMBER).spend_pico == curated[("search", NOVEMBER)]
    assert _received(sqs, finops_url) == [] and _received(sqs, platform_url) == []

    # AND `modelmeter budget show` reads the same counters from the deployed store
    capsys.readouterr()
    assert main(["budget", "show", "--tenants", f"dynamodb://{TENANTS}", "--spend", f"dynamodb://{SPEND}",
                 "--format", "json"]) == 0
    shown = {r["team_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(shown) >= {"search", "ops"}
    assert all(r["spend_store"] == f"dynamodb://{SPEND}" for r in shown.values())


def test_a_correction_that_cannot_reach_the_counters_fails_the_run_after_its_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        # GIVEN a counters table that does not exist (say, another unit's name)
        for key, value in {c.ENV_LAKE: str(tmp_path / "lake"), c.ENV_SPEND_TABLE: "modelmeter-spend-gone",
                           c.ENV_BUSINESS_UNIT: "research"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv(c.ENV_TENANT_TABLE, raising=False)
        LocalParquetSink(Lake.open(tmp_path / "lake")).write_rows([_event(1, "ops", datetime(2026, 11, 20, 9,
                                                                                             tzinfo=UTC))])
        capsys.readouterr()
        # WHEN the transform runs THEN the day is written, the run fails naming the store, and the metrics are out
        with pytest.raises(lambda_handler.SpendCorrectionError, match="modelmeter-spend-gone"):
            lambda_handler.handler({"date_from": "2026-11-20", "date_to": "2026-11-20"}, LambdaContext())
        assert Lake.open(tmp_path / "lake").list_files(c.CURATED_USAGE_COST, "dt=2026-11-20")
        docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        (doc,) = [d for d in docs if c.METRIC_CURATED_EVENTS in d]
        assert doc[c.METRIC_CURATED_EVENTS] == [1.0] and doc[c.METRIC_SPEND_STORE_ERRORS][0] >= 1
        assert doc["service"] == c.SERVICE_TRANSFORM


# --- budget show against the deployed store ----------------------------------------------------------------------

@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in (c.ENV_TENANTS, c.ENV_LAKE, c.ENV_SPEND_TABLE, c.ENV_REPORTING_TZ, c.ENV_FISCAL_MONTH_START):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_table(ddb, TENANTS)
        create_table(ddb, SPEND, ttl=True)
        registry = DynamoTenantRegistry(table_name=TENANTS, client=ddb)
        for team in (SEARCH, OPS):
            registry.put_team(team)
        now = datetime.now(UTC)
        period, day = Calendar().period(now).key, Calendar().day(now).key
        store = DynamoSpendStore(table_name=SPEND, client=ddb)
        store.add("search", period=period, day=day, spend_pico=3 * 10**8, tokens=1200)  # $0.0003: 75 %
        store.first_alert("search", period=period, threshold=50)
        store.add("stray", period=period, day=day, spend_pico=10**12, tokens=1)  # counted, not in the registry
        yield period


def test_budget_show_reads_the_deployed_counters_with_spend_dynamodb(deployed: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "show", "search", "--tenants", f"dynamodb://{TENANTS}", "--spend", f"dynamodb://{SPEND}",
                 "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["period"], shown["spend_usd"], shown["budget_usd"], shown["remaining_usd"]) == (
        deployed, "0.0003", "0.0004", "0.0001")
    assert (shown["thresholds_crossed"], shown["alerts_raised"], shown["daily_tokens_used"]) == ([50], [50], 1200)
    assert shown["budget_mode"] == "block" and shown["spend_store"] == f"dynamodb://{SPEND}"
    # every team: the registry's and the ones the counters hold
    assert main(["budget", "show", "--tenants", f"dynamodb://{TENANTS}", "--spend", f"dynamodb://{SPEND}"]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.splitlines()]
    assert rows[0][0] == "team_id" and [r[0] for r in rows[1:]] == ["ops", "search", "stray"]
    assert f"counters in dynamodb://{SPEND}" in captured.err


def test_budget_show_takes_the_counters_table_from_the_lambdas_variable(deployed: str,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(c.ENV_SPEND_TABLE, SPEND)  # a bare table name, as the Lambdas have it
    assert main(["budget", "show", "search", "--tenants", f"dynamodb://{TENANTS}", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["spend_usd"] == "0.0003"


@pytest.mark.parametrize(("spend", "message"), [
    (None, "--spend dynamodb://TABLE"),  # a deployed registry and no counters named
    ("dynamodb://modelmeter-spend-gone", "spend store dynamodb://modelmeter-spend-gone: cannot read"),
    ("dynamodb:/x", "write dynamodb://TABLE"),
])
def test_budget_show_without_a_usable_deployed_store_says_so_in_one_line(
        deployed: str, capsys: pytest.CaptureFixture[str], spend: str | None, message: str) -> None:
    args = ["budget", "show", "--tenants", f"dynamodb://{TENANTS}", *(["--spend", spend] if spend else [])]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

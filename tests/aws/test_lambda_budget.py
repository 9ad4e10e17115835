"""Budgets in Lambda: real API Gateway proxy events through ``handler`` with the spend counters in (moto) DynamoDB
and the alerts to (moto) SNS and EventBridge, as ``infra/constructs/spend_controls.py`` deploys them. A block-mode
team crosses its budget over two calls, each threshold alerts once, the third call is refused with 429 and still
billed as a usage event, another container sees the same spend, and a store or alert outage shows in the metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common import constants as c
from common.calendar import Calendar
from common.contracts import Team
from ingest import lambda_handler
from ingest.budget import ceiling_pico
from ingest.dynamo import DynamoTenantRegistry
from ingest.lambda_handler import GatewaySettings, build_runtime, handler
from ingest.spend import PICO_PER_USD
from tests.aws.conftest import BUCKET, REGION, STREAM, create_table, load_event
from tests.aws.test_lambda import CLAUDE, LambdaContext

SPEND_TABLE = "modelmeter-spend"
#: What one stubbed Converse call counts (tests/aws/events/converse_response.json) ...
COUNTS = {"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": 1536, "cache_write_input_tokens": 512}
#: ... and costs a block-mode team without a price: each unit at the catalog's ceiling (ingest/budget.py).
CALL_PICO = ceiling_pico(COUNTS)
#: A budget one and a half calls wide: the first call crosses 50 %, the second 100 %, the third is refused.
BUDGET_PICO = CALL_PICO * 3 // 2


@dataclass
class Aws:
    secret: str
    stubber: Stubber
    bedrock: Any
    clients: dict[str, Any]
    queues: dict[str, str]
    spool_root: Path
    runtimes: list[Any]

    def new_container(self) -> Any:
        """Another Lambda container: its own runtime (memory, spool), built from the environment as it is now."""
        settings = GatewaySettings.from_env().model_copy(
            update={"spool_dir": str(self.spool_root / f"spool-{len(self.runtimes)}")})
        runtime = build_runtime(settings=settings, bedrock_client=self.bedrock)
        self.runtimes.append(runtime)
        lambda_handler.set_runtime(runtime)
        return runtime

    def call(self, name: str, **overrides: Any) -> dict[str, Any]:
        event = json.loads(json.dumps(load_event(name)).replace("${API_KEY}", self.secret))
        event.update(overrides)
        return handler(event, LambdaContext())

    def converse(self) -> None:
        self.stubber.add_response("converse", load_event("converse_response"), {
            "modelId": CLAUDE, "messages": ANY, "system": ANY, "inferenceConfig": ANY})

    def received(self, queue: str) -> list[dict[str, Any]]:
        sqs = self.clients["sqs"]
        return [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=self.queues[queue],
                                                                   MaxNumberOfMessages=10).get("Messages", [])]

    def firehose_events(self) -> list[dict[str, Any]]:
        s3 = self.clients["s3"]
        bodies = [s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode()
                  for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        return [json.loads(line) for body in bodies for line in body.splitlines() if line]


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        clients = {s: boto3.client(s, region_name=REGION) for s in ("dynamodb", "s3", "firehose", "sns", "sqs",
                                                                    "events")}
        ddb = clients["dynamodb"]
        for table in ("modelmeter-tenants", SPEND_TABLE):
            create_table(ddb, table, ttl=table == SPEND_TABLE)
        create_table(ddb, "modelmeter-longpoll", ttl=True)
        clients["s3"].create_bucket(Bucket=BUCKET)
        clients["firehose"].create_delivery_stream(
            DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                                "BucketARN": f"arn:aws:s3:::{BUCKET}"})
        topic = clients["sns"].create_topic(Name="modelmeter-research-budget-alerts")["TopicArn"]
        finops_url, finops_arn = _queue(clients["sqs"], "finops")
        clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=finops_arn)
        platform_url, platform_arn = _queue(clients["sqs"], "platform")
        clients["events"].put_rule(Name="budget", EventPattern=json.dumps({
            "source": [c.ALERT_EVENT_SOURCE], "detail-type": [c.ALERT_EVENT_DETAIL_TYPE]}))
        clients["events"].put_targets(Rule="budget", Targets=[{"Id": "platform", "Arn": platform_arn}])
        # the gateway's environment as the stack sets it
        env = {c.ENV_TENANT_TABLE: "modelmeter-tenants", c.ENV_LONGPOLL_TABLE: "modelmeter-longpoll",
               c.ENV_FIREHOSE_STREAM: STREAM, c.ENV_SPOOL_DIR: str(tmp_path / "spool"),
               c.ENV_BUSINESS_UNIT: "research", c.ENV_SPEND_TABLE: SPEND_TABLE, c.ENV_ALERT_TOPIC_ARN: topic,
               c.ENV_ALERT_EVENT_BUS: "default", c.ENV_REPORTING_TZ: "UTC", c.ENV_FISCAL_MONTH_START: "1",
               "POWERTOOLS_METRICS_NAMESPACE": c.METRICS_NAMESPACE}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        registry = DynamoTenantRegistry(table_name="modelmeter-tenants", client=ddb)
        registry.put_team(Team(team_id="search", cost_center="CC-42", allowed_models=("anthropic.*",),
                               monthly_budget_usd=Decimal(BUDGET_PICO) / PICO_PER_USD, budget_mode="block",
                               alert_at=(50, 100)))
        _record, secret = registry.create_key("search")
        bedrock = boto3.client("bedrock-runtime", region_name=REGION)
        with Stubber(bedrock) as stubber:
            runtime = build_runtime(settings=GatewaySettings.from_env(), bedrock_client=bedrock)
            lambda_handler.set_runtime(runtime)
            try:
                yield (aws := Aws(secret=secret, stubber=stubber, bedrock=bedrock, clients=clients,
                                  queues={"finops": finops_url, "platform": platform_url}, spool_root=tmp_path,
                                  runtimes=[runtime]))
            finally:
                for each in aws.runtimes:
                    each.emitter.close(timeout=1)
                lambda_handler.set_runtime(None)


def _emf(out: str, name: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed that carry metric ``name``."""
    found = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            if any(m["Name"] == name for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]):
                found.append(doc)
    return found


def test_a_block_mode_team_crosses_its_budget_alerts_once_per_threshold_and_is_then_refused(aws: Aws) -> None:
    period = Calendar().period(datetime.now(UTC))
    # WHEN the first call finishes THEN its (ceiling) cost is counted in DynamoDB and the 50 % alert goes out
    aws.converse()
    assert aws.call("apigw_rest_invoke_model")["statusCode"] == 200
    item = aws.clients["dynamodb"].get_item(TableName=SPEND_TABLE, Key={
        c.DYNAMO_PARTITION_KEY: {"S": f"spend#search#{period.key}"}})["Item"]
    assert int(item["spend_pico"]["N"]) == CALL_PICO and item["alerted"] == {"NS": ["50"]}
    (sns_50,) = aws.received("finops")
    alert_50 = json.loads(sns_50["Message"])
    assert (alert_50["team_id"], alert_50["threshold_pct"], alert_50["period"]) == ("search", 50, period.key)
    assert sns_50["MessageAttributes"]["alert_id"]["Value"] == f"search:{period.key}:50"
    assert [e["detail"] for e in aws.received("platform")] == [alert_50]

    # WHEN the second call, admitted under the budget, finishes THEN the 100 % alert goes out, once
    aws.converse()
    assert aws.call("apigw_rest_invoke_model")["statusCode"] == 200
    (sns_100,) = aws.received("finops")
    assert json.loads(sns_100["Message"])["threshold_pct"] == 100
    assert [e["detail"]["threshold_pct"] for e in aws.received("platform")] == [100]

    # WHEN a third call starts THEN it is refused before any model call, with the budget in its JSON body
    refused = aws.call("apigw_rest_invoke_model")
    aws.stubber.assert_no_pending_responses()
    assert refused["statusCode"] == 429
    body = json.loads(refused["body"])
    assert "monthly budget" in json.dumps(body) and str(period.resets_at.date()) in json.dumps(body)
    # AND every call, refused or not, left its usage event in Firehose
    events = aws.firehose_events()
    assert sorted((e["status"], e.get("refusal_reason") or "") for e in events) == [
        ("ok", ""), ("ok", ""), ("throttled", "budget")]
    # AND nothing more was alerted
    assert aws.received("finops") == [] and aws.received("platform") == []

    # WHEN another container starts (a new runtime, its own memory) THEN it sees the same spend and refuses too
    aws.new_container()
    assert aws.call("apigw_rest_invoke_model")["statusCode"] == 429

    # AND the team's own view through /v1/usage says where it stands
    usage = aws.call("apigw_rest_list_models", path="/v1/usage")
    assert usage["statusCode"] == 200, usage
    report = json.loads(usage["body"])
    assert report["thresholds_crossed"] == [50, 100] and report["alerts_raised"] == [50, 100]
    assert "spend_store" not in report and report["budget_mode"] == "block"  # the table is the operator's to know
    assert Decimal(report["spend_usd"]) * PICO_PER_USD == 2 * CALL_PICO


def test_an_unreachable_store_refuses_block_mode_and_counts_the_error(aws: Aws, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a container whose counters table cannot be reached
    monkeypatch.setenv(c.ENV_SPEND_TABLE, "modelmeter-spend-gone")
    aws.new_container()
    capsys.readouterr()
    # WHEN the block-mode team calls THEN it is refused (fail closed) and the metric the alarm reads is emitted
    response = aws.call("apigw_rest_invoke_model")
    assert response["statusCode"] == 503
    (doc,) = _emf(capsys.readouterr().out, c.METRIC_SPEND_STORE_ERRORS)
    assert sum(doc[c.METRIC_SPEND_STORE_ERRORS]) >= 1  # EMF values are lists
    assert (doc["service"], doc["business_unit"]) == (c.SERVICE_GATEWAY, "research")
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == c.METRICS_NAMESPACE
    (event,) = aws.firehose_events()  # refused, and still billed as an event (no model was called)
    assert (event["http_status"], event["refusal_reason"], event["input_tokens"]) == (503, "budget", 0)


def test_an_alert_that_cannot_be_delivered_is_kept_for_the_next_invocation_and_counted(
        aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a container whose topic does not exist (say, deleted by hand)
    monkeypatch.setenv(c.ENV_ALERT_TOPIC_ARN, f"arn:aws:sns:{REGION}:123456789012:gone")
    runtime = aws.new_container()
    capsys.readouterr()
    # WHEN a call crosses 50 % THEN the event still goes to EventBridge, SNS fails, and the failure is a metric
    aws.converse()
    assert aws.call("apigw_rest_invoke_model")["statusCode"] == 200
    assert [e["detail"]["threshold_pct"] for e in aws.received("platform")] == [50]
    (doc,) = _emf(capsys.readouterr().out, c.METRIC_ALERT_DELIVERY_FAILURES)
    assert sum(doc[c.METRIC_ALERT_DELIVERY_FAILURES]) == 1 and doc["business_unit"] == "research"
    assert runtime.alerts is not None and runtime.alerts.status()["queued"] == 1

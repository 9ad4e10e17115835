"""A gateway unit on moto for the hand-off tests: tables, the lake bucket, Firehose → S3, the hand-off queue and its
dead-letter queue, a team with a key, Bedrock on a Stubber; and the drain run as Lambda's SQS event source mapping
runs it (receive, invoke with the real record shape, delete what the handler did not report as failed)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common.constants import (
    ENV_FIREHOSE_STREAM,
    ENV_FLUSH_SECONDS,
    ENV_HANDOFF_QUEUE_URL,
    ENV_LONGPOLL_TABLE,
    ENV_SPOOL_DIR,
    ENV_TENANT_TABLE,
)
from common.contracts import Team
from ingest import handoff_drain, lambda_handler
from ingest.dynamo import DynamoTenantRegistry
from ingest.firehose import firehose_deliverer
from ingest.handoff import HandoffQueue, call_seconds
from ingest.lambda_handler import GatewaySettings, Runtime, build_runtime, handler
from tests.aws.conftest import BUCKET, REGION, STREAM, create_table, load_event, partial_put
from tests.aws.test_lambda import CLAUDE, LambdaContext

TENANTS, LONGPOLL = "modelmeter-tenants", "modelmeter-longpoll"
#: The tests' Firehose and SQS clients: like the Lambda's (ingest.handoff.CLIENT_CONFIG: one attempt, retries in our
#: loops) with a tenth of its timeouts, so a hanging service costs 0.3 s a call; the deadlines reserve exactly that.
TEST_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=0.1, read_timeout=0.2)
TEST_CALL_SECONDS = call_seconds(TEST_CONFIG)
#: Each delivery phase of an invocation (MODELMETER_FLUSH_SECONDS): long enough for a few attempts, short for a test.
FLUSH_SECONDS = "0.6"


def short_client(service: str, **kwargs: Any) -> Any:
    return boto3.client(service, region_name=REGION, config=TEST_CONFIG, **kwargs)


class RefusingFirehose:
    """Wraps a real (moto) Firehose client: records for which ``refuse(data)`` is true are refused with Firehose's
    real partial-failure response (tests/aws/events/firehose_put_record_batch_partial.json); the rest go through."""

    def __init__(self, client: Any, refuse: Any = lambda data: False) -> None:
        self.client, self.refuse = client, refuse
        self.calls: list[int] = []

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(len(Records))
        refused = [bool(self.refuse(r["Data"])) for r in Records]
        return partial_put(self.client, DeliveryStreamName, Records, refused)


@dataclass
class ClockContext(LambdaContext):
    """A Lambda context whose remaining time runs down with the real clock, from ``remaining_ms`` at creation."""

    remaining_ms: int = 25_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms - (time.monotonic() - self.started) * 1000)


@dataclass
class Unit:
    secret: str
    stubber: Stubber
    bedrock: Any
    s3: Any
    sqs: Any
    firehose: Any
    queue_url: str
    dlq_url: str
    spool: Path
    ddb: Any
    runtime: Runtime | None = None
    containers: list[Path] = field(default_factory=list)

    def container(self, *, firehose: Any = None, sqs: Any = None, dynamodb: Any = None,
                  flush_seconds: float | None = None) -> Runtime:
        """A new container, with a spool of its own as in Lambda, installed as the handler's (the previous one is
        left as it is: never invoked again)."""
        self.containers.append(self.spool / f"container-{len(self.containers)}")
        settings = GatewaySettings.from_env().model_copy(update={
            "spool_dir": str(self.containers[-1]), **({"flush_seconds": flush_seconds} if flush_seconds else {})})
        self.runtime = build_runtime(settings=settings, bedrock_client=self.bedrock, firehose=firehose or self.firehose,
                                     sqs=sqs or self.sqs, dynamodb=dynamodb, call_seconds=TEST_CALL_SECONDS)
        lambda_handler.set_runtime(self.runtime)
        return self.runtime

    def kill_container(self) -> None:
        """The container is never invoked again: its runtime is dropped unclosed and its spool is gone."""
        assert self.runtime is not None
        shutil.rmtree(self.runtime.emitter.spool_dir)
        self.runtime = None
        lambda_handler.set_runtime(None)

    def expect_converse(self, times: int = 1) -> None:
        for _ in range(times):
            self.stubber.add_response("converse", load_event("converse_response"), {
                "modelId": CLAUDE, "messages": ANY, "system": ANY, "inferenceConfig": ANY})

    def call(self, *, context: Any = None, streaming: bool = False, **overrides: Any) -> dict[str, Any]:
        """The seed's messages call through API Gateway's REST proxy event."""
        event = json.loads(json.dumps(load_event("apigw_rest_invoke_model")).replace("${API_KEY}", self.secret))
        if streaming:
            event["headers"]["streaming"] = "true"
            event["multiValueHeaders"]["streaming"] = ["true"]
        event.update(overrides)
        return handler(event, context or LambdaContext())

    def lake_ids(self) -> Counter[str]:
        """event_id → copies in the lake bucket (moto's Firehose writes each batch as one object)."""
        return Counter(e["event_id"] for e in self.lake_events())

    def lake_events(self) -> list[dict[str, Any]]:
        events = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                body = self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
                events += [json.loads(line) for line in body.splitlines() if line]
        return events

    def queued(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.queue_url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, *, firehose: Any = None, rounds: int = 10) -> list[dict[str, Any]]:
        """Run the drain Lambda like its event source mapping does, up to ``rounds`` batches; the responses."""
        handoff_drain.set_drain(handoff_drain.Drain(
            deliver=firehose_deliverer(stream_name=STREAM, client=firehose or self.firehose, base_delay=0.001),
            queue=HandoffQueue(queue_url=self.queue_url, client=self.sqs),
            dead_letters=HandoffQueue(queue_url=self.dlq_url, client=self.sqs), requeue_delay_seconds=0))
        responses = []
        try:
            for _ in range(rounds):
                got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                               MessageAttributeNames=["All"], AttributeNames=["All"])
                messages = got.get("Messages", [])
                if not messages:
                    break
                response = handoff_drain.handler({"Records": [self._record(m) for m in messages]}, LambdaContext())
                responses.append(response)
                failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                for m in messages:
                    if m["MessageId"] in failed:  # visible again at once: the test does not wait out the timeout
                        self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                                           VisibilityTimeout=0)
                    else:
                        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        finally:
            handoff_drain.set_drain(None)
        return responses

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """An SQS message as the event source mapping hands it to Lambda (tests/aws/events/sqs_handoff_event.json)."""
        record = dict(load_event("sqs_handoff_event")["Records"][0])
        record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"],
                      md5OfBody=message["MD5OfBody"], attributes=message.get("Attributes", {}),
                      eventSourceARN=self.sqs.get_queue_attributes(
                          QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
                      messageAttributes={name: {"stringValue": a.get("StringValue"), "stringListValues": [],
                                                "binaryListValues": [], "dataType": a["DataType"]}
                                         for name, a in message.get("MessageAttributes", {}).items()})
        return record


@contextmanager
def open_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    """The unit on moto, its handler's runtime built like Lambda's (only Bedrock injected)."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_table(ddb, TENANTS)
        create_table(ddb, LONGPOLL, ttl=True)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        firehose = short_client("firehose")
        firehose.create_delivery_stream(
            DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                                "BucketARN": f"arn:aws:s3:::{BUCKET}"})
        sqs = short_client("sqs")
        dlq_url = sqs.create_queue(QueueName="modelmeter-usage-handoff-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(QueueName="modelmeter-usage-handoff", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "20"})})["QueueUrl"]
        env = {ENV_TENANT_TABLE: TENANTS, ENV_LONGPOLL_TABLE: LONGPOLL, ENV_FIREHOSE_STREAM: STREAM,
               ENV_HANDOFF_QUEUE_URL: queue_url, ENV_SPOOL_DIR: str(tmp_path / "spool"),
               ENV_FLUSH_SECONDS: FLUSH_SECONDS,
               "MODELMETER_BUSINESS_UNIT": "retail", "POWERTOOLS_METRICS_NAMESPACE": "modelmeter"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        registry = DynamoTenantRegistry(table_name=TENANTS, client=ddb)
        registry.put_team(Team(team_id="search", cost_center="CC-42", allowed_models=("anthropic.*",)))
        _, secret = registry.create_key("search")
        bedrock = boto3.client("bedrock-runtime", region_name=REGION)
        with Stubber(bedrock) as stubber:
            unit = Unit(secret=secret, stubber=stubber, bedrock=bedrock, s3=s3, sqs=sqs, firehose=firehose,
                        queue_url=queue_url, dlq_url=dlq_url, spool=tmp_path / "spool", ddb=ddb)
            try:
                yield unit
            finally:
                lambda_handler.set_runtime(None)


def request_id(response: dict[str, Any]) -> str:
    return {k.lower(): v for k, v in response["headers"].items()}["x-request-id"]


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a service that hangs."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections.append(conn)  # held open, never answered

    def close(self) -> None:
        self._sock.close()
        for conn in self.connections:
            conn.close()

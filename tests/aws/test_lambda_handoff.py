"""The gateway Lambda's durable hand-off (ingest/handoff.py): real API Gateway proxy events through ``handler`` with
moto's DynamoDB, Firehose → S3 and SQS. Whatever Firehose does not take by the end of an invocation goes to the
hand-off queue; a call whose events neither took is answered 503; after the drain, every call answered 200 has its
event in the lake exactly once, even when its container is never invoked again."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from common.constants import ENV_FIREHOSE_STREAM, ENV_HANDOFF_QUEUE_URL, ENV_LONGPOLL_TABLE, ENV_TENANT_TABLE
from ingest.firehose import encode_record
from ingest.handoff import (
    FORMAT,
    FORMAT_ATTRIBUTE,
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    MAX_BODY_BYTES,
    HandoffQueue,
    usage_not_recorded,
)
from ingest.lambda_handler import GatewaySettings
from tests.aws.handoff_env import RefusingFirehose, Unit, open_unit, request_id
from tests.aws.test_firehose import FlakyFirehose, make_events


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    with open_unit(tmp_path, monkeypatch) as opened:
        yield opened


class FlakySqs:
    """Wraps a real (moto) SQS client: ``fail(call_no, entry_id)`` picks entries to refuse with SQS's real
    ``Failed`` shape; ``outage`` makes every call fail as a whole (``RequestThrottled``). Records each call's ids."""

    def __init__(self, client: Any, fail: Any = lambda call, entry: False) -> None:
        self.client, self.fail, self.outage = client, fail, False
        self.calls: list[list[str]] = []
        self.meta = client.meta

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        call_no = len(self.calls)
        self.calls.append([e["Id"] for e in Entries])
        if self.outage:
            raise ClientError({"Error": {"Code": "RequestThrottled", "Message": "Request is throttled."},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "SendMessageBatch")
        refused = [e for e in Entries if self.fail(call_no, e["Id"])]
        sent = [e for e in Entries if e not in refused]
        real = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=sent) if sent else {"Successful": []}
        return {"Successful": real.get("Successful", []),
                "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError",
                            "Message": "We encountered an internal error. Please try again."} for e in refused]}


def queued_events(unit: Unit) -> list[dict[str, Any]]:
    """Every event in the hand-off queue (messages received, then made visible again)."""
    events, handles = [], []
    while True:
        got = unit.sqs.receive_message(QueueUrl=unit.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                       MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        for message in got:
            assert message["MessageAttributes"][FORMAT_ATTRIBUTE]["StringValue"] == FORMAT
            assert len(message["Body"].encode()) <= MAX_BODY_BYTES
            events += [json.loads(line) for line in message["Body"].splitlines()]
            handles.append(message["ReceiptHandle"])
    for handle in handles:
        unit.sqs.change_message_visibility(QueueUrl=unit.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return events


def emitted(out: str, name: str) -> list[Any]:
    """The values of metric ``name`` in Powertools' EMF lines on stdout."""
    docs = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [v for doc in docs if name in doc for v in (doc[name] if isinstance(doc[name], list) else [doc[name]])]


def test_firehose_outage_hands_every_answered_call_to_the_queue_and_the_drain_lands_each_once(
        unit: Unit, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a container whose Firehose is down (PutRecordBatch fails as a whole, every attempt)
    flaky = FlakyFirehose(unit.firehose)
    flaky.outage = True
    unit.container(firehose=flaky)
    unit.expect_converse(times=4)
    # WHEN four calls are served
    responses = [unit.call() for _ in range(4)]
    # THEN each is answered 200, its event went to the queue, and nothing is left in the container's spool
    assert [r["statusCode"] for r in responses] == [200] * 4
    assert unit.lake_ids() == Counter()
    assert sorted(e["request_id"] for e in queued_events(unit)) == sorted(request_id(r) for r in responses)
    assert unit.runtime is not None and unit.runtime.emitter.pending_events() == 0
    assert emitted(capsys.readouterr().out, "UsageEventsHandedOff") == [1, 1, 1, 1]
    # AND the container is never invoked again (its /tmp is gone) before the drain runs
    unit.kill_container()
    results = unit.drain()
    assert all(r == {"batchItemFailures": []} for r in results)
    # THEN every answered call's event is in the lake exactly once, and the queue is empty
    landed = unit.lake_events()
    assert Counter(e["request_id"] for e in landed) == Counter({request_id(r): 1 for r in responses})
    assert {(e["status"], e["input_tokens"], e["output_tokens"]) for e in landed} == {("ok", 12, 9)}
    assert unit.queued() == 0


def test_neither_firehose_nor_the_queue_answers_503_and_keeps_the_event_for_later(unit: Unit) -> None:
    # GIVEN Firehose down and the queue throttling every call
    flaky, sqs = FlakyFirehose(unit.firehose), FlakySqs(unit.sqs)
    flaky.outage = sqs.outage = True
    runtime = unit.container(firehose=flaky, sqs=sqs)
    unit.expect_converse(times=2)
    # WHEN a call is served
    refused = unit.call()
    # THEN it is not answered as a success: a JSON 503 in the seed's error shape, with Retry-After and its request id
    assert refused["statusCode"] == 503
    assert json.loads(refused["body"])["type"] == "usage_not_recorded"
    assert refused["headers"]["retry-after"] == "5" and request_id(refused)
    assert "generated_text" not in refused["body"]
    # AND its event stays in the container's spool
    assert runtime.emitter.pending_events() == 1 and unit.queued() == 0
    # WHEN the same container is invoked again with Firehose back
    flaky.outage = False
    served = unit.call()
    # THEN that call is a success and the spooled event went out with it: each exactly once
    assert served["statusCode"] == 200
    assert Counter(e["request_id"] for e in unit.lake_events()) == Counter(
        {request_id(refused): 1, request_id(served): 1})
    assert runtime.emitter.pending_events() == 0


def test_firehose_taking_part_of_a_backlog_sends_only_the_rest_to_the_queue(unit: Unit) -> None:
    # GIVEN a container with two events spooled (both calls answered 503: Firehose and the queue were down)
    refusing, sqs = RefusingFirehose(unit.firehose, refuse=lambda data: True), FlakySqs(unit.sqs)
    sqs.outage = True
    runtime = unit.container(firehose=refusing, sqs=sqs)
    unit.expect_converse(times=3)
    early = [unit.call(), unit.call()]
    assert [r["statusCode"] for r in early] == [503, 503]
    # WHEN the queue is back and Firehose keeps refusing only the first call's record (its real partial failure)
    stuck = request_id(early[0])
    sqs.outage = False
    assert runtime.delivery is not None  # a phase long enough for the refused record's attempts and the two after
    runtime.delivery.phase_seconds = 1.5
    refusing.refuse = lambda data: stuck.encode() in data
    served = unit.call()
    # THEN the call is a success; Firehose kept what it accepted, only the refused event went to the queue
    assert served["statusCode"] == 200
    in_lake, in_queue = unit.lake_ids(), queued_events(unit)
    assert len(in_lake) == 2 and len(in_queue) == 1
    assert in_queue[0]["event_id"] not in in_lake
    # AND after the drain (Firehose healthy) every event is in the lake exactly once
    unit.drain()
    landed = Counter(e["request_id"] for e in unit.lake_events())
    assert landed == Counter({stuck: 1, request_id(early[1]): 1, request_id(served): 1})


def test_queue_resends_only_the_entries_sqs_failed(unit: Unit) -> None:
    # GIVEN 900 small events (two messages: 500 events at most each, ~200 KiB in all: one SendMessageBatch) and SQS
    # failing entry "1" once
    sqs = FlakySqs(unit.sqs, fail=lambda call, entry: call == 0 and entry == "1")
    waits: list[float] = []
    events = make_events(900)
    # WHEN they are handed off
    left = HandoffQueue(queue_url=unit.queue_url, client=sqs, sleep=waits.append).send(events)
    # THEN only the failed entry was sent again, after one jittered backoff, and each event is queued exactly once
    assert left == []
    assert sqs.calls == [["0", "1"], ["1"]]
    assert len(waits) == 1 and 0 <= waits[0] <= 0.05
    assert Counter(e["event_id"] for e in queued_events(unit)) == Counter({e["event_id"]: 1 for e in events})


def test_messages_and_batches_stay_within_the_sqs_limits(unit: Unit) -> None:
    # GIVEN events of ~3 KiB each: a message holds ~80 of them, a batch of 256 KiB only one such message
    sqs = FlakySqs(unit.sqs)
    events = make_events(400, pad=3000)
    sent: list[list[dict[str, Any]]] = []
    real = sqs.send_message_batch

    def recording(**kwargs: Any) -> dict[str, Any]:
        sent.append(kwargs["Entries"])
        return real(**kwargs)

    sqs.send_message_batch = recording  # type: ignore[method-assign]
    assert HandoffQueue(queue_url=unit.queue_url, client=sqs).send(events) == []
    # THEN no message is over the body limit, no call over ten entries or 256 KiB, and nothing is lost or doubled
    bodies = [entry["MessageBody"].encode() for batch in sent for entry in batch]
    assert max(len(b) for b in bodies) <= MAX_BODY_BYTES
    assert all(len(batch) <= MAX_BATCH_ENTRIES for batch in sent)
    assert all(sum(len(e["MessageBody"].encode()) for e in batch) <= MAX_BATCH_BYTES for batch in sent)
    assert b"".join(bodies) == b"".join(encode_record(e) for e in events)  # each line is the Firehose record
    assert len(queued_events(unit)) == 400


def test_sender_fault_entries_are_not_retried_and_stay_undelivered(unit: Unit) -> None:
    # GIVEN SQS refusing the one entry as the sender's fault (the real shape of SendMessageBatch's Failed list)
    stubbed = HandoffQueue(queue_url=unit.queue_url, client=unit.sqs, sleep=lambda _: None)
    events = make_events(2)
    with Stubber(unit.sqs) as stubber:
        stubber.add_response("send_message_batch", {"Successful": [], "Failed": [
            {"Id": "0", "SenderFault": True, "Code": "InvalidParameterValue",
             "Message": "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes."}]})
        # WHEN they are handed off
        left = stubbed.send(events)
        # THEN they come back (they stay in the spool) after one call: no retry can fix the sender's fault
        stubber.assert_no_pending_responses()
    assert left == events


def test_an_event_too_big_for_a_message_is_kept_back(unit: Unit) -> None:
    events = make_events(3)
    events[1]["note"] = "x" * MAX_BODY_BYTES
    left = HandoffQueue(queue_url=unit.queue_url, client=unit.sqs).send(events)
    assert left == [events[1]]
    assert {e["event_id"] for e in queued_events(unit)} == {events[0]["event_id"], events[2]["event_id"]}


def test_the_503_has_the_openai_error_shape_on_v1() -> None:
    original = {"statusCode": 200, "headers": {"x-request-id": "req-9", "content-type": "text/event-stream"},
                "multiValueHeaders": {}, "body": "data: …", "isBase64Encoded": False}
    replaced = usage_not_recorded(original, path="/v1/chat/completions")
    assert replaced["statusCode"] == 503 and replaced["headers"]["x-request-id"] == "req-9"
    assert replaced["headers"]["content-type"] == "application/json"
    error = json.loads(replaced["body"])["error"]
    assert (error["type"], error["code"]) == ("usage_not_recorded", "usage_not_recorded")


def test_settings_read_the_handoff_queue() -> None:
    base = {ENV_TENANT_TABLE: "t", ENV_LONGPOLL_TABLE: "l", ENV_FIREHOSE_STREAM: "f"}
    assert GatewaySettings.from_env(base).handoff_queue_url is None
    url = f"https://sqs.us-east-1.amazonaws.com/123456789012/q-{uuid.uuid4().hex[:6]}"
    assert GatewaySettings.from_env({**base, ENV_HANDOFF_QUEUE_URL: url}).handoff_queue_url == url


def test_without_a_queue_a_success_firehose_did_not_take_is_answered_503(unit: Unit, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a container with no hand-off queue configured, and Firehose down
    monkeypatch.delenv(ENV_HANDOFF_QUEUE_URL)
    flaky = FlakyFirehose(unit.firehose)
    flaky.outage = True
    runtime = unit.container(firehose=flaky)
    assert runtime.delivery is not None and runtime.delivery.queue is None
    unit.expect_converse()
    capsys.readouterr()
    # WHEN a call is served
    response = unit.call()
    # THEN it is answered 503, its event kept in the spool, and the invocation's metrics say so
    assert response["statusCode"] == 503 and runtime.emitter.pending_events() == 1
    out = capsys.readouterr().out
    assert emitted(out, "UsageNotRecorded") == [1] and emitted(out, "UsageEventsSpooled") == [1]
    assert emitted(out, "UsageEventsHandedOff") == []

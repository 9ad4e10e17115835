"""The drain Lambda (ingest/handoff_drain.py) as its SQS event source mapping runs it, on moto's SQS and Firehose → S3:
each queued event lands in the lake once, a partial Firehose failure re-queues only the refused events, a Firehose
outage reports the messages in ``batchItemFailures``, and what is not usage is kept aside with its reason."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.constants import ENV_FIREHOSE_STREAM, ENV_HANDOFF_QUEUE_URL
from ingest import handoff_drain
from ingest.firehose import firehose_deliverer
from ingest.handoff import FORMAT, FORMAT_ATTRIBUTE, HandoffQueue
from tests.aws.conftest import STREAM, load_event
from tests.aws.handoff_env import RefusingFirehose, Unit, open_unit
from tests.aws.test_firehose import FlakyFirehose, make_events
from tests.aws.test_lambda import LambdaContext


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    with open_unit(tmp_path, monkeypatch) as opened:
        yield opened


def test_the_real_shaped_sqs_event_lands_its_events_in_the_lake(unit: Unit) -> None:
    # GIVEN the SQS event Lambda delivers for one hand-off message of two events
    event = load_event("sqs_handoff_event")
    handoff_drain.set_drain(handoff_drain.Drain(deliver=firehose_deliverer(stream_name=STREAM, client=unit.firehose),
                                                queue=HandoffQueue(queue_url=unit.queue_url, client=unit.sqs)))
    try:
        # WHEN the drain handles it
        response = handoff_drain.handler(event, LambdaContext())
    finally:
        handoff_drain.set_drain(None)
    # THEN no message failed and both events are in the lake, as written
    assert response == {"batchItemFailures": []}
    assert [(e["request_id"], e["input_tokens"]) for e in unit.lake_events()] == [("req-1", 12), ("req-2", 30)]


def test_a_partial_firehose_failure_requeues_only_the_refused_events(unit: Unit) -> None:
    # GIVEN a message of 300 events and a Firehose that refuses every 7th record, every time
    events = make_events(300)
    refused = {e["event_id"] for i, e in enumerate(events) if i % 7 == 0}
    assert HandoffQueue(queue_url=unit.queue_url, client=unit.sqs).send(events) == []
    stubborn = RefusingFirehose(unit.firehose, refuse=lambda data: json.loads(data)["event_id"] in refused)
    # WHEN the drain runs one batch
    (first,) = unit.drain(firehose=stubborn, rounds=1)
    # THEN the message is done (not failed), the accepted events are in the lake, the refused ones re-queued alone
    assert first == {"batchItemFailures": []}
    assert set(unit.lake_ids()) == {e["event_id"] for e in events} - refused
    assert unit.queued() == 1
    # AND once Firehose takes them, every event is in the lake exactly once
    unit.drain()
    assert unit.lake_ids() == Counter({e["event_id"]: 1 for e in events})
    assert unit.queued() == 0


def test_a_firehose_outage_reports_the_messages_as_failed_and_keeps_them(unit: Unit) -> None:
    # GIVEN two queued messages and Firehose down (ServiceUnavailableException on every call)
    queue = HandoffQueue(queue_url=unit.queue_url, client=unit.sqs)
    assert queue.send(make_events(3)) == [] and queue.send(make_events(2)) == []
    down = FlakyFirehose(unit.firehose)
    down.outage = True
    # WHEN the drain runs one batch
    (response,) = unit.drain(firehose=down, rounds=1)
    # THEN both messages are in batchItemFailures (SQS retries them, then dead-letters them), nothing was re-queued
    assert len(response["batchItemFailures"]) == 2
    assert unit.queued() == 2 and unit.lake_ids() == Counter()
    # AND when Firehose is back they land, once each
    unit.drain()
    assert sum(unit.lake_ids().values()) == 5 and unit.queued() == 0


def test_lines_that_are_not_usage_are_kept_aside_with_their_reason(unit: Unit) -> None:
    # GIVEN a hand-off message whose second line is cut and whose third is JSON but no event
    good = make_events(2)
    body = "\n".join([json.dumps(good[0]), '{"schema_version":1,"event_id":"cut', '["not", "an", "event"]',
                      json.dumps(good[1])]) + "\n"
    unit.sqs.send_message(QueueUrl=unit.queue_url, MessageBody=body, MessageAttributes={
        FORMAT_ATTRIBUTE: {"DataType": "String", "StringValue": FORMAT}})
    # AND a message of another format altogether
    unit.sqs.send_message(QueueUrl=unit.queue_url, MessageBody="hello")
    # WHEN the drain runs
    responses = unit.drain()
    # THEN the good events are in the lake, both messages are done, and the bad lines wait in the dead-letter
    # queue with the reason and the message they came from
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert set(unit.lake_ids()) == {e["event_id"] for e in good}
    got = unit.sqs.receive_message(QueueUrl=unit.dlq_url, MaxNumberOfMessages=10,
                                   MessageAttributeNames=["All"])["Messages"]
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in got)
    assert len(reasons) == 2
    assert reasons[0].startswith("line 2: not JSON") and "line 3: not a usage event" in reasons[0]
    assert reasons[1] == f"message attribute {FORMAT_ATTRIBUTE} is None, not {FORMAT!r}"
    kept = {m["Body"] for m in got}
    assert kept == {'{"schema_version":1,"event_id":"cut\n["not", "an", "event"]', "hello"}
    assert all(m["MessageAttributes"]["source_message_id"]["StringValue"] for m in got)
    assert unit.queued() == 0


def test_a_misconfigured_drain_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_FIREHOSE_STREAM, ENV_HANDOFF_QUEUE_URL):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError) as raised:
        handoff_drain.Drain.from_env()
    assert ENV_FIREHOSE_STREAM in str(raised.value) and ENV_HANDOFF_QUEUE_URL in str(raised.value)

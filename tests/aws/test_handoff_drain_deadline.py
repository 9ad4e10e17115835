"""The drain Lambda (ingest/handoff_drain.py) against its invocation's remaining time, on moto's SQS and Firehose → S3
and a Firehose that hangs on 127.0.0.1: it returns before its timeout, the messages it could not finish or start come
back through ``batchItemFailures``, and the ones it delivered are not among them (so none is sent twice)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.constants import ENV_FIREHOSE_STREAM, ENV_HANDOFF_DLQ_URL, ENV_HANDOFF_QUEUE_URL
from ingest import handoff_drain
from ingest.handoff import RETURN_MARGIN_SECONDS, HandoffQueue
from tests.aws.conftest import STREAM
from tests.aws.handoff_env import TEST_CALL_SECONDS, ClockContext, Unit, open_unit, short_client
from tests.aws.test_firehose import make_events

MESSAGES = 6


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    with open_unit(tmp_path, monkeypatch) as opened:
        yield opened


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A Firehose endpoint on 127.0.0.1 that accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for conn in held:
        conn.close()


class SlowFirehose:
    """A real (moto) Firehose client whose every call takes ``seconds`` more (within one call's worst case)."""

    def __init__(self, client: Any, seconds: float) -> None:
        self.client, self.seconds = client, seconds

    def put_record_batch(self, **kwargs: Any) -> Any:
        time.sleep(self.seconds)
        return self.client.put_record_batch(**kwargs)


def env(unit: Unit) -> dict[str, str]:
    return {ENV_FIREHOSE_STREAM: STREAM, ENV_HANDOFF_QUEUE_URL: unit.queue_url, ENV_HANDOFF_DLQ_URL: unit.dlq_url}


def queued_batch(unit: Unit) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``MESSAGES`` hand-off messages of two events each, as one SQS event; message id → its event ids."""
    events = make_events(2 * MESSAGES)
    queue = HandoffQueue(queue_url=unit.queue_url, client=unit.sqs)
    for n in range(MESSAGES):
        assert queue.send(events[2 * n:2 * n + 2]) == []
    got = unit.sqs.receive_message(QueueUrl=unit.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   AttributeNames=["All"])["Messages"]
    assert len(got) == MESSAGES
    records = [unit._record(m) for m in got]
    ids = {r["messageId"]: [json.loads(line)["event_id"] for line in r["body"].splitlines()] for r in records}
    return {"Records": records}, ids


def run(drain: handoff_drain.Drain, event: dict[str, Any], context: ClockContext) -> set[str]:
    handoff_drain.set_drain(drain)
    try:
        response = handoff_drain.handler(event, context)
    finally:
        handoff_drain.set_drain(None)
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def test_a_hanging_firehose_returns_every_message_before_the_function_times_out(unit: Unit, hanging_url: str) -> None:
    # GIVEN the drain built as in Lambda (clients of a tenth of the real timeouts), Firehose hanging, 4 s left
    drain = handoff_drain.Drain.from_env(env(unit), firehose=short_client("firehose", endpoint_url=hanging_url),
                                         sqs=unit.sqs, call_seconds=TEST_CALL_SECONDS)
    event, ids = queued_batch(unit)
    context = ClockContext(remaining_ms=4000)
    # WHEN it handles a batch of six messages (4 attempts x 0.3 s each: 7.2 s if each were tried to the end)
    failed = run(drain, event, context)
    # THEN it answered with time left for Lambda to take the answer, every message reported for a retry
    assert context.get_remaining_time_in_millis() >= RETURN_MARGIN_SECONDS * 1000 * 0.5
    assert failed == set(ids)
    assert unit.lake_ids() == Counter()


def test_messages_left_when_time_is_short_are_retried_and_the_delivered_ones_are_not(unit: Unit) -> None:
    # GIVEN a Firehose taking 0.25 s a call and an invocation with 3 s left: time for some of six messages
    drain = handoff_drain.Drain.from_env(env(unit), firehose=SlowFirehose(unit.firehose, 0.25), sqs=unit.sqs,
                                         call_seconds=TEST_CALL_SECONDS)
    event, ids = queued_batch(unit)
    context = ClockContext(remaining_ms=3000)
    # WHEN the batch is handled
    failed = run(drain, event, context)
    # THEN it returned in time; the messages not done are reported, and the lake holds exactly the others' events
    assert context.get_remaining_time_in_millis() > 0
    done = set(ids) - failed
    assert failed and done, (failed, done)
    assert unit.lake_ids() == Counter({event_id: 1 for m in done for event_id in ids[m]})
    # AND once SQS sends back only the reported ones (the delivered ones deleted), every event is in the lake once
    for record in event["Records"]:
        if record["messageId"] in done:
            unit.sqs.delete_message(QueueUrl=unit.queue_url, ReceiptHandle=record["receiptHandle"])
        else:
            unit.sqs.change_message_visibility(QueueUrl=unit.queue_url, ReceiptHandle=record["receiptHandle"],
                                               VisibilityTimeout=0)
    unit.drain()
    assert unit.lake_ids() == Counter({event_id: 1 for m in ids for event_id in ids[m]})
    assert unit.queued() == 0


def test_a_message_is_not_started_once_its_calls_could_not_end_in_time(unit: Unit) -> None:
    # GIVEN an invocation whose remaining time is less than the return margin and one message's calls
    calls: list[int] = []

    class Counting:
        def put_record_batch(self, **kwargs: Any) -> Any:
            calls.append(len(kwargs["Records"]))
            return unit.firehose.put_record_batch(**kwargs)

    drain = handoff_drain.Drain.from_env(env(unit), firehose=Counting(), sqs=unit.sqs)
    event, ids = queued_batch(unit)
    # WHEN it handles the batch THEN no call is made and every message is reported
    assert run(drain, event, ClockContext(remaining_ms=2000)) == set(ids)
    assert calls == [] and unit.lake_ids() == Counter()

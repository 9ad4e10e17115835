"""The fault suite's AWS cases, with the gateway Lambda's handler in-process on moto (DynamoDB, Firehose → S3, SQS):
Firehose that hangs mid-flush, an invocation about to time out, PutRecordBatch partial failures and throttling in
their exact shapes (botocore's Stubber), DynamoDB throttling on the long-poll table, and containers that are never
invoked again. Every call answered 200 has exactly one event in the lake once the drain has run.

Each case adds a row to the table printed at the end of the run (tests/faults/conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ingest.firehose import encode_record
from ingest.routes_seed import PARK_RETRY_DELAYS
from tests.aws.conftest import REGION, STREAM, load_event
from tests.aws.handoff_env import (
    LONGPOLL,
    ClockContext,
    HangingServer,
    Unit,
    open_unit,
    request_id,
    short_client,
)
from tests.aws.test_firehose import FlakyFirehose, make_events

from .harness import Outcome, tally

THROTTLED = ("The level of configured provisioned throughput for the table was exceeded. Consider increasing your "
             "provisioning level with the UpdateTable API.")


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with open_unit(tmp_path, monkeypatch) as opened:
        yield opened


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


class Switch:
    """A client whose calls go to ``current`` (a service that hangs, then recovers, under the same container)."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


def outcome(response: dict[str, Any]) -> Outcome:
    return Outcome(kind="seed_text", status=response["statusCode"], request_id=request_id(response),
                   body=response["body"].encode())


def _clean(row: dict[str, Any]) -> None:
    assert (row["lost"], row["duplicated"], row["leaked"]) == (0, 0, 0), row


def test_firehose_hanging_mid_flush_hands_the_events_to_the_queue_within_the_invocation(
        unit: Unit, hanging: HangingServer) -> None:
    # GIVEN a container whose Firehose endpoint accepts connections and never answers, and 6 s left in the invocation
    unit.container(firehose=short_client("firehose", endpoint_url=hanging.url))
    unit.expect_converse(times=3)
    contexts = [ClockContext(remaining_ms=6000) for _ in range(3)]
    # WHEN three calls are served
    responses = [unit.call(context=context) for context in contexts]
    # THEN each is a success, returned before its invocation's time ran out, with its event handed to the queue
    assert [r["statusCode"] for r in responses] == [200, 200, 200]
    assert all(context.get_remaining_time_in_millis() > 0 for context in contexts)
    assert hanging.connections, "Firehose was tried first"
    assert unit.queued() >= 1 and unit.lake_ids() == {}
    # AND the container is never invoked again; the drain (with Firehose healthy) lands every event once
    unit.kill_container()
    unit.drain()
    events = unit.lake_events()
    row = tally("lambda: firehose hangs mid-flush", [outcome(r) for r in responses], events)
    _clean(row)
    assert row["events"] == 3


def test_an_invocation_running_out_of_time_is_not_answered_as_a_success(unit: Unit, hanging: HangingServer) -> None:
    # GIVEN Firehose and the queue both hanging, and an invocation with 3 s left when the model call is done
    firehose = Switch(short_client("firehose", endpoint_url=hanging.url))
    sqs = Switch(short_client("sqs", endpoint_url=hanging.url))
    unit.container(firehose=firehose, sqs=sqs)
    unit.expect_converse()
    context = ClockContext(remaining_ms=3000)
    # WHEN the call is served
    response = unit.call(context=context)
    # THEN the handler returns before Lambda would kill it, with a JSON 503 instead of the text
    assert context.get_remaining_time_in_millis() > 0
    assert response["statusCode"] == 503 and json.loads(response["body"])["type"] == "usage_not_recorded"
    assert response["headers"]["retry-after"] == "5"
    # AND the event is still in the spool (it goes out if the container is invoked again)
    assert unit.runtime is not None and unit.runtime.emitter.pending_events() == 1
    # WHEN the same container is invoked again with both services back
    firehose.current, sqs.current = unit.firehose, unit.sqs
    unit.expect_converse()
    served = unit.call()
    # THEN both events are in the lake once; only the second call was answered with its text
    assert served["statusCode"] == 200
    row = tally("lambda: out of time mid-flush", [outcome(response), outcome(served)], unit.lake_events())
    _clean(row)
    assert row["events"] == 2 and row["refused_503"] == 1


def test_putrecordbatch_partial_failures_and_throttling_resend_only_what_failed(unit: Unit) -> None:
    # GIVEN three events and Firehose answering, in order: record 1 refused (FailedPutCount), ThrottlingException,
    # LimitExceededException, record 1 refused again: the exact shapes botocore parses
    events = make_events(3)
    records = [encode_record(e) for e in events]
    firehose = short_client("firehose")
    partial = load_event("firehose_put_record_batch_partial")
    with Stubber(firehose) as stub:
        stub.add_response("put_record_batch", {"FailedPutCount": 1, "Encrypted": False, "RequestResponses": [
            partial["RequestResponses"][0], partial["RequestResponses"][1],
            {"RecordId": "49655221380476538713939829962212087436549224356539752451"}]},
            {"DeliveryStreamName": STREAM, "Records": [{"Data": r} for r in records]})
        for code in ("ThrottlingException", "LimitExceededException"):
            stub.add_client_error("put_record_batch", service_error_code=code, service_message="Rate exceeded",
                                  http_status_code=400,
                                  expected_params={"DeliveryStreamName": STREAM, "Records": [{"Data": records[1]}]})
        stub.add_response("put_record_batch",
                          {"FailedPutCount": 1, "RequestResponses": [partial["RequestResponses"][1]]},
                          {"DeliveryStreamName": STREAM, "Records": [{"Data": records[1]}]})
        runtime = unit.container(firehose=firehose)
        delivery = runtime.delivery
        assert delivery is not None
        # WHEN the Lambda's delivery sends them to Firehose, then what is left to the queue
        left = delivery(events)
        stub.assert_no_pending_responses()  # four calls; after the first, only record 1 was sent again
    delivery.route = "queue"
    assert delivery(left) == []
    # THEN only the refused event went to the queue, and each event was accepted by exactly one service
    assert [e["event_id"] for e in left] == [events[1]["event_id"]]
    assert delivery.accepted == {e["event_id"] for e in events} and delivery.handed_off == 1
    unit.drain()
    assert unit.lake_ids() == {events[1]["event_id"]: 1}  # the other two went to (stubbed) Firehose, not twice


class ThrottledLongPoll:
    """The gateway's DynamoDB client (moto) whose writes to the long-poll table are throttled while ``on``: those
    calls go to a Stubber-backed client, so the exception is the one botocore raises for DynamoDB's real error."""

    def __init__(self, client: Any, operations: tuple[str, ...]) -> None:
        self._client, self._operations, self.on = client, operations, False
        self.throttled: list[str] = []
        self._failing = boto3.client("dynamodb", region_name=REGION)
        self._stub = Stubber(self._failing)
        self._stub.activate()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name not in self._operations:
            return real

        def call(**kwargs: Any) -> Any:
            if not self.on or kwargs.get("TableName") != LONGPOLL:
                return real(**kwargs)
            self.throttled.append(name)
            self._stub.add_client_error(name, service_error_code="ProvisionedThroughputExceededException",
                                        service_message=THROTTLED, http_status_code=400)
            return getattr(self._failing, name)(**kwargs)

        return call


def test_dynamodb_throttling_on_the_long_poll_table_answers_json_and_bills_once(unit: Unit) -> None:
    ddb = ThrottledLongPoll(unit.ddb, operations=("put_item", "delete_item"))
    unit.container(dynamodb=ddb)
    # GIVEN the long-poll table throttling writes: the seed async start cannot park its call
    ddb.on = True
    unit.expect_converse()
    start = unit.call(streaming=True)
    # THEN the start answers a JSON error (no stack trace) and the model was not called
    assert start["statusCode"] == 503 and "message" in json.loads(start["body"])
    assert {k.lower(): v for k, v in start["headers"].items()}["retry-after"] == "1"
    assert "Traceback" not in start["body"] and ddb.throttled == ["put_item"]
    with pytest.raises(AssertionError):
        unit.stubber.assert_no_pending_responses()  # the queued Converse answer was never asked for
    # GIVEN the table healthy for a start (the model runs within the invocation), then throttling the claim
    ddb.on = False
    started = unit.call(streaming=True)
    assert started["statusCode"] == 200
    rid = json.loads(started["body"])[0]["request_id"]
    event = load_event("apigw_rest_invoke_model")
    poll = {"queryStringParameters": {**event["queryStringParameters"], "requestId": rid},
            "multiValueQueryStringParameters": {**event["multiValueQueryStringParameters"], "requestId": [rid]},
            "body": "{}"}
    ddb.on = True
    throttled_poll = unit.call(streaming=True, **poll)
    assert throttled_poll["statusCode"] == 503 and "message" in json.loads(throttled_poll["body"])
    # WHEN the table recovers, the next poll gets the text, once
    ddb.on = False
    polled = unit.call(streaming=True, **poll)
    assert json.loads(polled["body"]) == [{"generated_text": "Paris is the capital of France."}]
    # THEN the model call is billed exactly once (12 input tokens in all); the refused start and the failed poll
    # have an event each (every authenticated request does), with no tokens
    events = unit.lake_events()
    by_request = {e["request_id"]: e for e in events}
    assert [e["request_id"] for e in events].count(rid) == 1
    assert by_request[rid]["input_tokens"] == 12 and sum(e["input_tokens"] for e in events) == 12
    for refused in (start, throttled_poll):
        assert (by_request[request_id(refused)]["status"], by_request[request_id(refused)]["input_tokens"]) == (
            "upstream_error", 0)
    calls = [outcome(start), Outcome(kind="seed_async", status=200, request_id=rid, body=started["body"].encode()),
             outcome(throttled_poll), outcome(polled)]
    row = tally("lambda: long-poll table throttled", calls, events)
    _clean(row)


def test_containers_never_invoked_again_lose_no_answered_call(unit: Unit) -> None:
    # GIVEN Firehose that is down for every other invocation, and containers that die after four calls each
    answered = []
    for container in range(3):
        flaky = FlakyFirehose(unit.firehose)
        unit.container(firehose=flaky)
        unit.expect_converse(times=4)
        for i in range(4):
            flaky.outage = (container + i) % 2 == 0
            answered.append(unit.call())
        unit.kill_container()
    # WHEN the drain runs
    unit.drain()
    # THEN every call was answered 200 and has exactly one event in the lake
    assert {r["statusCode"] for r in answered} == {200}
    row = tally("lambda: containers die, firehose flaps", [outcome(r) for r in answered], unit.lake_events())
    _clean(row)
    assert row["events"] == 12


def test_dynamodb_throttling_the_long_poll_result_write_still_delivers_the_call_once(unit: Unit) -> None:
    # GIVEN the long-poll table throttling its result writes (UpdateItem) while a seed async call runs
    ddb = ThrottledLongPoll(unit.ddb, operations=("update_item",))
    unit.container(dynamodb=ddb)
    unit.expect_converse()
    ddb.on = True
    # WHEN the call starts, its model answers and its event is emitted, but the result cannot be parked
    started = unit.call(streaming=True)
    ddb.on = False
    # THEN the start is answered and the write was tried again briefly, never raised out of the invocation
    assert started["statusCode"] == 200, started
    rid = json.loads(started["body"])[0]["request_id"]
    assert ddb.throttled == ["update_item"] * (1 + len(PARK_RETRY_DELAYS))
    # AND the poll sees "not ready" (the item stays pending until it expires): the result is lost, not the usage
    event = load_event("apigw_rest_invoke_model")
    poll = unit.call(streaming=True, body="{}",
                     queryStringParameters={**event["queryStringParameters"], "requestId": rid},
                     multiValueQueryStringParameters={**event["multiValueQueryStringParameters"], "requestId": [rid]})
    assert json.loads(poll["body"]) == [{"request_id": rid}]
    # AND once the container is gone and the drain has run, the call has exactly one event, with its tokens
    unit.kill_container()
    unit.drain()
    events = unit.lake_events()
    assert [(e["status"], e["input_tokens"]) for e in events if e["request_id"] == rid] == [("ok", 12)]
    row = tally("lambda: long-poll result write throttled",
                [Outcome(kind="seed_async", status=200, request_id=rid, body=started["body"].encode())], events)
    _clean(row)

"""Budget alerts in AWS (ingest/alerts_aws.py): SNS and EventBridge through moto end to end (an SQS queue subscribed
to the topic, an EventBridge rule into another queue), and failures through botocore's Stubber with the services'
real error and partial-failure shapes."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common.calendar import Calendar
from common.constants import ALERT_EVENT_DETAIL_TYPE, ALERT_EVENT_SOURCE
from common.contracts import Team
from ingest.alerts_aws import AwsAlerts, alert_id, events_entry, sns_publish_args
from ingest.budget import alert_of
from tests.aws.conftest import REGION

TOPIC = f"arn:aws:sns:{REGION}:123456789012:modelmeter-research-budget-alerts"
CALENDAR = Calendar(timezone="Europe/Berlin", fiscal_month_start_day=1)
TEAM = Team(team_id="search", cost_center="CC-1002", monthly_budget_usd=Decimal("25.00"), budget_mode="block",
            alert_at=(50, 80, 100))


def an_alert(threshold: int = 80, spend_pico: int = 20_500_000_000_000) -> dict[str, Any]:
    period = CALENDAR.period_of_day(date(2026, 11, 25))
    return alert_of(TEAM, threshold=threshold, spend_pico=spend_pico, period=period, calendar=CALENDAR,
                    source="gateway")


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
        "Messages", [])]


def test_an_alert_reaches_the_topics_subscribers_and_the_default_bus_as_the_same_json() -> None:
    with mock_aws():
        sns, sqs, events = (boto3.client(s, region_name=REGION) for s in ("sns", "sqs", "events"))
        topic = sns.create_topic(Name="modelmeter-research-budget-alerts")["TopicArn"]
        subscriber, subscriber_arn = _queue(sqs, "finops")
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=subscriber_arn)
        platform, platform_arn = _queue(sqs, "platform")
        events.put_rule(Name="budget", EventPattern=json.dumps({"source": [ALERT_EVENT_SOURCE],
                                                                "detail-type": [ALERT_EVENT_DETAIL_TYPE]}))
        events.put_targets(Rule="budget", Targets=[{"Id": "platform", "Arn": platform_arn}])
        sink = AwsAlerts(topic_arn=topic, event_bus="default", sns=sns, events=events)
        alert = an_alert()

        # WHEN the guard hands the alert over THEN nothing is sent yet (no network on the request's path)
        sink.deliver(alert)
        assert _received(sqs, subscriber) == [] and sink.status() == {"delivered": 0, "failed": 0, "dropped": 0,
                                                                     "queued": 1}
        # WHEN the handler flushes after the response THEN both destinations have it, once
        assert sink.flush(timeout=5) == 0
        (notification,) = _received(sqs, subscriber)
        assert json.loads(notification["Message"]) == alert  # the "default" message: the alert's JSON
        assert notification["Subject"] == "modelmeter budget: search reached 80% of 25 USD"
        assert notification["MessageAttributes"]["team_id"] == {"Type": "String", "Value": "search"}
        assert notification["MessageAttributes"]["threshold_pct"] == {"Type": "Number", "Value": "80"}
        assert notification["MessageAttributes"]["alert_id"]["Value"] == "search:2026-11-01:80"
        (event,) = _received(sqs, platform)
        assert event["source"] == "modelmeter" and event["detail-type"] == "BudgetThresholdCrossed"
        assert event["detail"] == alert
        assert sink.status() == {"delivered": 1, "failed": 0, "dropped": 0, "queued": 0}
        assert sink.flush(timeout=5) == 0 and _received(sqs, subscriber) == []  # never sent twice


def test_the_message_shapes() -> None:
    alert = an_alert(threshold=100, spend_pico=25_000_000_000_000)
    args = sns_publish_args(alert, topic_arn=TOPIC)
    assert args["MessageStructure"] == "json" and len(args["Subject"]) <= 100
    message = json.loads(args["Message"])
    assert json.loads(message["default"]) == alert
    assert "Team search has reached 100% of its monthly budget." in message["email"]
    assert "Spent: 25 USD of 25 USD (fiscal month 2026-11-01 to 2026-11-30" in message["email"]
    assert "calls are refused once the budget is reached" in message["email"]
    assert {k: v["StringValue"] for k, v in args["MessageAttributes"].items()} == {
        "team_id": "search", "threshold_pct": "100", "budget_mode": "block", "period": "2026-11-01",
        "alert_id": "search:2026-11-01:100"}
    entry = events_entry(alert, event_bus="default")
    assert entry == {"Source": "modelmeter", "DetailType": "BudgetThresholdCrossed", "EventBusName": "default",
                     "Detail": json.dumps(alert, sort_keys=True, separators=(",", ":"))}
    assert alert_id(alert) == "search:2026-11-01:100"
    assert alert["alert"] == "budget_threshold_crossed" and alert["period_end"] == "2026-11-30"


# --- failures, with the services' real shapes (Stubber) -----------------------------------------------------------

PUBLISHED = {"MessageId": "2f0b6e4b-3f9c-5a1e-9e4e-8b7a6c5d4e3f"}
PUT = {"FailedEntryCount": 0, "Entries": [{"EventId": "11710aed-b79e-4468-a20b-bb3c0c3b4860"}]}
# PutEvents answers 200 with the entry's failure in the body (EventBridge API reference, PutEventsResultEntry).
PUT_PARTIAL = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure",
                                                   "ErrorMessage": "Internal service error."}]}


@pytest.fixture
def stubbed() -> Any:
    sns = boto3.client("sns", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    with Stubber(sns) as sns_stub, Stubber(events) as events_stub:
        yield sns, sns_stub, events, events_stub


def _sink(stubbed: Any, **kwargs: Any) -> tuple[AwsAlerts, list[float]]:
    sns, _, events, _ = stubbed
    waits: list[float] = []
    return AwsAlerts(topic_arn=TOPIC, event_bus="default", sns=sns, events=events, sleep=waits.append,
                     **kwargs), waits


def test_throttling_and_a_failed_entry_are_retried_and_each_destination_gets_it_once(stubbed: Any) -> None:
    _, sns_stub, _, events_stub = stubbed
    alert = an_alert()
    # SNS throttles twice (error code Throttled, HTTP 429), then accepts
    for _ in range(2):
        sns_stub.add_client_error("publish", service_error_code="Throttled", http_status_code=429,
                                  service_message="Rate exceeded")
    sns_stub.add_response("publish", PUBLISHED, sns_publish_args(alert, topic_arn=TOPIC))
    # EventBridge fails the entry once, then accepts
    events_stub.add_response("put_events", PUT_PARTIAL, {"Entries": [events_entry(alert, event_bus="default")]})
    events_stub.add_response("put_events", PUT, {"Entries": ANY})
    sink, waits = _sink(stubbed)
    sink.deliver(alert)
    assert sink.flush(timeout=30) == 0
    sns_stub.assert_no_pending_responses()
    events_stub.assert_no_pending_responses()
    assert len(waits) == 3 and all(0 <= w <= 0.4 for w in waits)
    assert sink.status()["delivered"] == 1 and sink.status()["failed"] == 0


def test_an_outage_keeps_the_alert_for_the_next_flush_counts_it_and_never_resends_what_was_accepted(
        stubbed: Any) -> None:
    _, sns_stub, _, events_stub = stubbed
    alert = an_alert()
    sns_stub.add_response("publish", PUBLISHED)  # SNS accepts at once
    for _ in range(2):  # EventBridge is down for this whole flush
        events_stub.add_client_error("put_events", service_error_code="InternalException", http_status_code=500)
    sink, _ = _sink(stubbed, attempts=2)
    sink.deliver(alert)
    assert sink.flush(timeout=30) == 1
    assert sink.status() == {"delivered": 0, "failed": 1, "dropped": 0, "queued": 1}
    # the next invocation's flush: only EventBridge is tried again
    events_stub.add_response("put_events", PUT, {"Entries": [events_entry(alert, event_bus="default")]})
    assert sink.flush(timeout=30) == 0
    sns_stub.assert_no_pending_responses()
    events_stub.assert_no_pending_responses()
    assert sink.status() == {"delivered": 1, "failed": 1, "dropped": 0, "queued": 0}


def test_a_terminal_error_is_not_retried_within_a_flush(stubbed: Any) -> None:
    _, sns_stub, _, events_stub = stubbed
    sns_stub.add_client_error("publish", service_error_code="AuthorizationError", http_status_code=403,
                              service_message="not authorized to perform: SNS:Publish")
    events_stub.add_response("put_events", PUT)
    sink, waits = _sink(stubbed)
    sink.deliver(an_alert())
    assert sink.flush(timeout=30) == 1 and waits == []
    assert sink.status()["queued"] == 1  # kept: a fixed role delivers it with a later flush


def test_a_flush_stops_retrying_at_its_deadline(stubbed: Any) -> None:
    _, sns_stub, _, events_stub = stubbed
    sns_stub.add_client_error("publish", service_error_code="Throttled", http_status_code=429)
    events_stub.add_response("put_events", PUT)
    sink, waits = _sink(stubbed, first_backoff=60.0)
    sink.deliver(an_alert())
    started = time.monotonic()
    assert sink.flush(timeout=0.5) == 1
    assert time.monotonic() - started < 1.0 and waits == []


def test_a_background_thread_delivers_when_not_in_lambda() -> None:
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        sink = AwsAlerts(topic_arn=topic, sns=sns, start=True)
        sink.deliver(an_alert())
        deadline = time.monotonic() + 5
        while sink.status()["delivered"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        sink.close(timeout=2)
        assert sink.status() == {"delivered": 1, "failed": 0, "dropped": 0, "queued": 0}


def test_a_sink_needs_a_destination() -> None:
    with pytest.raises(ValueError, match="needs an SNS topic, an EventBridge bus, or both"):
        AwsAlerts(topic_arn=None, event_bus=None)


def test_the_alert_names_its_period_in_the_reporting_calendar() -> None:
    alert = an_alert()
    assert alert["calendar"] == {"timezone": "Europe/Berlin", "fiscal_month_start_day": 1}
    # the Berlin fiscal month resets at local midnight, 23:00 UTC the day before
    assert alert["resets_at"] == datetime(2026, 11, 30, 23, 0, tzinfo=UTC).isoformat().replace("+00:00", "Z")

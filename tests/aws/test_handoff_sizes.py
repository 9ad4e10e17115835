"""The hand-off's SendMessageBatch calls on moto's SQS (ingest/handoff.py): SQS counts each message's attributes in a
call's 256 KiB, so two messages whose bodies alone fit one call are sent in two."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.firehose import encode_record
from ingest.handoff import MAX_BATCH_BYTES, MAX_BODY_BYTES, HandoffQueue, attribute_bytes
from tests.aws.handoff_env import Unit, open_unit


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Unit]:
    with open_unit(tmp_path, monkeypatch) as opened:
        yield opened


def event_of(size: int, event_id: str) -> dict[str, Any]:
    """A usage event whose Firehose record (one line of a message) is exactly ``size`` bytes."""
    event = {"event_id": event_id, "note": ""}
    event["note"] = "x" * (size - len(encode_record(event)))
    assert len(encode_record(event)) == size
    return event


def test_a_call_counts_its_messages_attributes(unit: Unit) -> None:
    # GIVEN a full message and a small one whose bodies add up to 24 bytes under a call's limit
    events = [event_of(MAX_BODY_BYTES, "big"), event_of(MAX_BATCH_BYTES - MAX_BODY_BYTES - 24, "small")]
    calls: list[list[dict[str, Any]]] = []

    class Recording:
        def send_message_batch(self, **kwargs: Any) -> Any:
            calls.append(kwargs["Entries"])
            return unit.sqs.send_message_batch(**kwargs)

    # WHEN they are handed off
    assert HandoffQueue(queue_url=unit.queue_url, client=Recording()).send(events) == []
    # THEN no call is over 256 KiB counting bodies and attributes as SQS does, so each message went on its own
    sizes = [sum(len(e["MessageBody"].encode()) + attribute_bytes(e["MessageAttributes"]) for e in call)
             for call in calls]
    assert len(calls) == 2 and max(sizes) <= MAX_BATCH_BYTES, sizes
    # AND both events are queued once, as written
    got = unit.sqs.receive_message(QueueUrl=unit.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["event_id"] for m in got) == ["big", "small"]

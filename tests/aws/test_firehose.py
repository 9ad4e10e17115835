"""Firehose delivery through moto (Firehose → S3, delivered synchronously): chunking, partial failures, a full
outage, a restart from the spool, and every event in S3 exactly once in the end."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ingest.emit import Emitter
from ingest.firehose import MAX_BATCH_BYTES, chunk_records, encode_record, firehose_deliverer, firehose_emitter
from tests.aws.conftest import BUCKET, REGION, STREAM, partial_put


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        firehose = boto3.client("firehose", region_name=REGION)
        firehose.create_delivery_stream(
            DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-delivery",
                "BucketARN": f"arn:aws:s3:::{BUCKET}", "Prefix": "raw/usage_events/",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60}})
        yield firehose, s3


def delivered_ids(s3: Any) -> Counter[str]:
    """event_id → times it is in the bucket (moto writes one object per PutRecordBatch, records concatenated)."""
    seen: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            data = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            seen.update(json.loads(line)["event_id"] for line in data.splitlines() if line)
    return seen


def make_events(n: int, *, pad: int = 0) -> list[dict[str, Any]]:
    return [{"schema_version": 1, "event_id": str(uuid.uuid4()), "request_id": f"req-{i}",
             "event_time": "2026-11-25T13:45:01.123Z", "team_id": "team-a", "provider": "bedrock",
             "model_id": "amazon.nova-lite-v1:0", "operation": "chat", "status": "ok", "input_tokens": i,
             **({"note": "x" * pad} if pad else {})} for i in range(n)]


class FlakyFirehose:
    """Wraps a real (moto) client: ``fail(call_no, record_no)`` picks records to refuse, with Firehose's real
    partial-failure response shape; ``outage`` makes every call fail as a whole."""

    def __init__(self, client: Any, fail: Callable[[int, int], bool] = lambda c, r: False):
        self.client = client
        self.fail = fail
        self.outage = False
        self.calls: list[int] = []  # records per call

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        call_no = len(self.calls)
        self.calls.append(len(Records))
        if self.outage:
            raise ClientError({"Error": {"Code": "ServiceUnavailableException", "Message": "Slow down."}},
                              "PutRecordBatch")
        refused = [self.fail(call_no, i) for i in range(len(Records))]
        return partial_put(self.client, DeliveryStreamName, Records, refused)


def test_chunks_respect_record_and_byte_limits() -> None:
    small = [b"x" * 100] * 1200
    assert [len(c) for c in chunk_records(small)] == [500, 500, 200]
    big = [b"x" * (600 * 1024)] * 10  # 6 fit in 4 MiB
    chunks = chunk_records(big)
    assert [len(c) for c in chunks] == [6, 4]
    assert all(sum(len(big[i]) for i in c) <= MAX_BATCH_BYTES for c in chunks)
    assert encode_record({"a": 1}) == b'{"a":1}\n'


def test_all_events_land_once_in_batches_of_at_most_500(aws: tuple[Any, Any]) -> None:
    firehose, s3 = aws
    flaky = FlakyFirehose(firehose)
    events = make_events(1200)
    assert firehose_deliverer(stream_name=STREAM, client=flaky)(events) == []
    assert flaky.calls == [500, 500, 200]
    assert delivered_ids(s3) == Counter({e["event_id"]: 1 for e in events})


def test_partial_failure_resends_only_the_failed_records(aws: tuple[Any, Any]) -> None:
    # GIVEN Firehose refusing every 7th record of each first attempt
    firehose, s3 = aws
    flaky = FlakyFirehose(firehose, fail=lambda call, rec: call == 0 and rec % 7 == 0)
    waits: list[float] = []
    events = make_events(300)
    # WHEN the batch is delivered
    left = firehose_deliverer(stream_name=STREAM, client=flaky, sleep=waits.append)(events)
    # THEN only the 43 refused records were sent again, after one jittered backoff, and each event landed once
    assert left == []
    assert flaky.calls == [300, 43]
    assert len(waits) == 1 and 0 <= waits[0] <= 0.05
    assert delivered_ids(s3) == Counter({e["event_id"]: 1 for e in events})


def test_records_still_failing_after_max_attempts_are_handed_back(aws: tuple[Any, Any]) -> None:
    firehose, s3 = aws
    flaky = FlakyFirehose(firehose, fail=lambda call, rec: rec == 0)  # the first record of every call fails
    events = make_events(5)
    left = firehose_deliverer(stream_name=STREAM, client=flaky, max_attempts=3, sleep=lambda _: None)(events)
    # Attempt 1 refuses event 0 (accepts 1-4); attempts 2 and 3 send only event 0, refused again.
    assert [e["event_id"] for e in left] == [events[0]["event_id"]]
    assert flaky.calls == [5, 1, 1]
    assert delivered_ids(s3) == Counter({e["event_id"]: 1 for e in events[1:]})


def test_oversized_event_is_kept_back_not_sent(aws: tuple[Any, Any]) -> None:
    firehose, s3 = aws
    events = make_events(3)
    events[1]["note"] = "x" * (1100 * 1024)
    left = firehose_deliverer(stream_name=STREAM, client=firehose)(events)
    assert left == [events[1]]
    assert set(delivered_ids(s3)) == {events[0]["event_id"], events[2]["event_id"]}


def test_outage_then_recovery_and_restart_from_spool_delivers_exactly_once(aws: tuple[Any, Any],
                                                                           tmp_path: Path) -> None:
    # GIVEN an emitter whose Firehose first refuses some records, then goes down entirely
    firehose, s3 = aws
    spool = tmp_path / "spool"
    flaky = FlakyFirehose(firehose, fail=lambda call, rec: call == 0 and rec % 5 == 0)
    emitter = Emitter(deliver=firehose_deliverer(stream_name=STREAM, client=flaky, max_attempts=1,
                                                 sleep=lambda _: None),
                      spool_dir=spool, start=False, max_backoff=0.05)
    first = make_events(250)
    for event in first:
        emitter.emit(event)
    assert emitter.flush(timeout=5)  # partial failure on call 0, the refused 50 go out on the next pass
    flaky.outage = True
    second = make_events(120)
    for event in second:
        emitter.emit(event)
    # WHEN the sink is down at shutdown
    assert emitter.close(timeout=0.3) is False
    assert emitter.pending_events() == 120
    # AND the gateway restarts on the same spool with Firehose back
    flaky.outage = False
    restarted = firehose_emitter(stream_name=STREAM, spool_dir=spool, client=flaky, start=False)
    assert restarted.flush(timeout=5)
    restarted.close()
    # THEN every event is in S3 exactly once
    counts = delivered_ids(s3)
    assert counts == Counter({e["event_id"]: 1 for e in first + second})

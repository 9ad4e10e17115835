"""A real gateway process, real HTTP traffic, real faults: every answered call has exactly one usage event, no
response holds anything but its own call's answer, the process recovers, and nothing is counted twice.

Each case adds a row to the table printed at the end of the run (tests/faults/conftest.py).
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from bench.fake_upstream import FakeUpstream
from ingest.app import create_app
from ingest.firehose import firehose_emitter
from ingest.longpoll import MemoryLongPollStore
from ingest.providers.registry import build_router
from ingest.server import start_background
from ingest.tenants import LocalTenantRegistry
from tests.aws.conftest import BUCKET, REGION, STREAM
from tests.aws.test_firehose import FlakyFirehose

from .harness import (
    MODELMETER,
    GatewayProcess,
    call,
    fill_disk,
    immutable,
    lake_events,
    make_tenants,
    run_traffic,
    tally,
    tiny_disk,
)

pytestmark = pytest.mark.slow

MIX = (("v1_chat", "fake-chat"), ("v1_stream", "fake-chat"), ("seed_text", "fake-chat"), ("v1_chat", "fail-500"),
       ("seed_text", "fail-429"), ("v1_chat", "slow-50"))


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as fake:
        yield fake


def _plan(gw: GatewayProcess, keys: dict[str, str], n: int, start: int = 0, mix=MIX):
    teams = sorted(keys)
    return [functools.partial(call, gw.url, keys[teams[i % len(teams)]], teams[i % len(teams)],
                              mix[i % len(mix)][0], mix[i % len(mix)][1], i) for i in range(start, start + n)]


def _wait_healthy(gw: GatewayProcess, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while gw.health()["status"] != "ok":
        assert time.monotonic() < deadline, gw.health()
        time.sleep(0.1)


def _assert_clean(row: dict) -> None:
    assert (row["lost"], row["duplicated"], row["leaked"]) == (0, 0, 0), row


def test_sigkill_with_calls_in_flight_bills_every_call_the_provider_received(tmp_path, upstream):
    # GIVEN a gateway in front of an upstream, with 20 quick calls answered
    keys = make_tenants(tmp_path / "tenants.json")
    gw = GatewayProcess(lake=tmp_path / "lake", tenants=tmp_path / "tenants.json", upstream=upstream.url).start()
    before = upstream.calls
    quick = run_traffic(_plan(gw, keys, 20, mix=(("v1_chat", "fake-chat"), ("seed_text", "fake-chat"))))
    # AND 10 synchronous calls and 20 async starts (already answered with their request_id) at a slow model
    slow_sync = _plan(gw, keys, 10, start=100, mix=(("v1_chat", "slow-8000"),))
    pool = ThreadPoolExecutor(10)
    pending = [pool.submit(c) for c in slow_sync]
    started = run_traffic(_plan(gw, keys, 20, start=200, mix=(("seed_async", "slow-8000"),)))
    deadline = time.monotonic() + 15
    while upstream.calls - before < 50:
        assert time.monotonic() < deadline, f"upstream got {upstream.calls - before} of 50 calls"
        time.sleep(0.05)
    # WHEN the gateway is killed (SIGKILL) while the provider works on 30 calls, then started again and stopped
    gw.kill()
    sync_outcomes = [f.result() for f in pending]
    pool.shutdown()
    restarted = GatewayProcess(lake=gw.lake, tenants=gw.tenants, upstream=upstream.url).start()
    code, stderr = restarted.stop()
    # THEN the 50 calls the provider received have one event each: 20 ok, 30 unknown with estimated counts
    events = lake_events(gw.lake)
    assert code == 0, stderr
    statuses = Counter(e["status"] for e in events)
    assert statuses == Counter({"ok": 20, "unknown": 30}) and upstream.calls - before == 50
    assert all(e["token_source"] == "estimated" and e["input_tokens"] > 0 for e in events if e["status"] == "unknown")
    assert {o.request_id for o in started} <= {e["request_id"] for e in events if e["status"] == "unknown"}
    assert not any(o.answered for o in sync_outcomes)
    row = tally("SIGKILL, 30 calls at the provider", quick + started + sync_outcomes, events,
                unknown=statuses["unknown"])
    _assert_clean(row)
    # AND the transform counts each of them once
    day = datetime.now(UTC).date().isoformat()
    subprocess.run([*MODELMETER, "transform", "--lake", str(gw.lake), "--from", day, "--to", day], check=True,
                   capture_output=True, timeout=300)
    curated = duckdb.sql(
        f"select count(*), count(distinct event_id) from read_parquet('{gw.lake}/curated/usage_cost/**/*.parquet')"
    ).fetchone()
    assert curated == (50, 50)


def test_a_spool_folder_that_refuses_renames_leaks_nothing_and_loses_nothing(tmp_path, upstream):
    # GIVEN a gateway serving a mix of calls (quick, streamed, failing upstream, throttled upstream, slow)
    keys = make_tenants(tmp_path / "tenants.json")
    gw = GatewayProcess(lake=tmp_path / "lake", tenants=tmp_path / "tenants.json", upstream=upstream.url).start()
    spool = gw.lake / "_spool" / "gateway"
    # WHEN its spool folder refuses renames and new files for the length of 600 calls (several rotations)
    with immutable(spool):
        during = run_traffic(_plan(gw, keys, 600))
    # AND then works again
    _wait_healthy(gw)
    after = run_traffic(_plan(gw, keys, 60, start=1000))
    code, stderr = gw.stop()
    # THEN every answered call has its one event, no answer holds another call's data, and the process exits 0
    assert code == 0, stderr
    assert all(o.status in (200, 429, 502) for o in during + after), Counter(o.status for o in during + after)
    row = tally("spool refuses renames", during + after, lake_events(gw.lake))
    _assert_clean(row)
    assert row["events"] == 660


def test_an_unwritable_raw_folder_keeps_events_spooled_until_it_works(tmp_path, upstream):
    keys = make_tenants(tmp_path / "tenants.json")
    raw = tmp_path / "lake" / "raw" / "usage_events"
    raw.mkdir(parents=True)
    gw = GatewayProcess(lake=tmp_path / "lake", tenants=tmp_path / "tenants.json", upstream=upstream.url).start()
    # GIVEN a raw folder that refuses new partitions while 200 calls are answered
    with immutable(raw):
        during = run_traffic(_plan(gw, keys, 200))
        time.sleep(1.0)
        assert lake_events(gw.lake) == []  # nothing landed, nothing lost: it waits in the spool
    # WHEN it works again and the gateway stops
    code, stderr = gw.stop()
    # THEN all 200 events land, once each
    assert code == 0, stderr
    row = tally("raw folder unwritable", during, lake_events(gw.lake))
    _assert_clean(row)
    assert row["events"] == 200


def test_a_full_disk_refuses_calls_with_503_json_then_recovers(tmp_path, upstream):
    keys = make_tenants(tmp_path / "tenants.json")
    with tiny_disk(tmp_path / "disk", size="2m") as disk:
        gw = GatewayProcess(lake=disk / "lake", tenants=tmp_path / "tenants.json", upstream=upstream.url,
                            env={"MODELMETER_SPOOL_MAX_BACKLOG": "40"}).start()
        before = run_traffic(_plan(gw, keys, 30))
        # GIVEN the disk under both the spool and the lake fills up
        filler = fill_disk(disk)
        # WHEN 300 calls come
        during = run_traffic(_plan(gw, keys, 300, start=100))
        health = gw.health()
        # THEN at most 40 are served from memory (refusals are events too), the rest refused with a JSON 503
        refused = [o for o in during if o.status == 503]
        served = [o for o in during if o.status != 503]
        assert 1 <= len(served) <= 40 and len(refused) == 300 - len(served), Counter(o.status for o in during)
        assert all(o.body.startswith(b"{") and b"cannot record usage" in o.body for o in refused)
        assert health["status"] == "degraded" and health["usage"]["spool"] == "failing"
        # WHEN the disk has room again
        filler.unlink()
        _wait_healthy(gw)
        after = run_traffic(_plan(gw, keys, 30, start=1000))
        code, stderr = gw.stop()
        events = lake_events(gw.lake)
    # THEN calls are served again, every answered call has one event, and the process exits 0
    assert code == 0, stderr
    assert all(o.status != 503 for o in after)
    row = tally("disk full (tmpfs)", before + during + after, events)
    _assert_clean(row)


def test_a_second_gateway_on_the_same_lake_is_one_clear_line(tmp_path, upstream):
    make_tenants(tmp_path / "tenants.json")
    gw = GatewayProcess(lake=tmp_path / "lake", tenants=tmp_path / "tenants.json", upstream=upstream.url).start()
    try:
        second = subprocess.run([*MODELMETER, "serve", "--port", "0", "--upstream", upstream.url, "--lake",
                                 str(gw.lake), "--tenants", str(gw.tenants)], capture_output=True, text=True,
                                timeout=60)
    finally:
        gw.stop()
    assert second.returncode == 1
    assert "in use by another emitter" in second.stderr.splitlines()[0]
    assert "Traceback" not in second.stderr


def test_firehose_throttling_and_partial_failures_lose_and_repeat_nothing(tmp_path, monkeypatch):
    # GIVEN the gateway delivering to Firehose (moto), which throttles whole calls and refuses every third record
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        client = boto3.client("firehose", region_name=REGION)
        client.create_delivery_stream(DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
                                      ExtendedS3DestinationConfiguration={
                                          "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                          "BucketARN": f"arn:aws:s3:::{BUCKET}"})
        flaky = FlakyFirehose(client, fail=lambda call_no, record_no: call_no % 2 == 0 and record_no % 3 == 0)
        flaky.outage = True
        emitter = firehose_emitter(stream_name=STREAM, spool_dir=tmp_path / "spool", client=flaky,
                                   flush_interval=0.05, max_backoff=0.1)
        registry = LocalTenantRegistry(tmp_path / "tenants.json")
        keys = make_tenants(tmp_path / "tenants.json")
        app = create_app(registry=registry, providers=build_router(upstream="simulator"), emitter=emitter,
                         longpoll=MemoryLongPollStore())
        handle = start_background(app=app)
        try:
            # WHEN 120 calls are answered during the throttling, then Firehose half-recovers
            url = handle.url
            outcomes = run_traffic([functools.partial(call, url, keys["alpha"], "alpha", kind,
                                                      "amazon.nova-lite-v1:0", i)
                                    for i, kind in enumerate(["v1_chat", "seed_text", "v1_stream"] * 40)])
            time.sleep(0.3)
            flaky.outage = False
        finally:
            handle.stop()
            assert emitter.close(timeout=30)
        # THEN every answered call's event is in S3 exactly once
        events = _s3_events(s3)
    assert all(o.status == 200 for o in outcomes) and flaky.calls
    row = tally("Firehose throttled + partial", outcomes, events)
    _assert_clean(row)
    assert row["events"] == 120 and len({e["event_id"] for e in events}) == 120


def _s3_events(s3):
    """The events moto's Firehose wrote to S3 (one object per accepted PutRecordBatch, records concatenated)."""
    events = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            events += [json.loads(line) for line in body.splitlines() if line]
    return events


@pytest.fixture(autouse=True)
def _no_immutable_leftovers(tmp_path: Path):
    yield
    subprocess.run(["chattr", "-R", "-i", str(tmp_path)], capture_output=True, check=False)

"""Two transforms of one day at once: the day's lock makes them take turns, on a folder lake and on S3.

The folder case runs real ``modelmeter transform`` processes; the S3 case runs the lock in-process against moto's S3
server (which honours ``If-None-Match`` / ``If-Match`` on PUT and DELETE like S3 does).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST, RUN_MANIFESTS
from common.lake import Lake
from common.locks import LockLost, LockTimeout, lake_lock
from pricing_catalog import publish
from tests.transform.conftest import DAY, MIDNIGHT, PER, TEXT_PRICES, build_catalog, event, write_raw
from transforms.run import LOCKS

MODELMETER = str(Path(sys.executable).with_name("modelmeter"))
DAY_LOCK = (RUN_MANIFESTS, LOCKS, f"dt={DAY.isoformat()}.lock")


def _transform(lake_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([MODELMETER, "transform", "--lake", str(lake_dir), "--from", str(DAY), "--to", str(DAY),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _day_with_events(lake_dir: Path) -> tuple[int, Decimal]:
    """A published test catalog and a raw day of 300 events (one re-delivered); the expected rows and total cost."""
    lake = Lake.open(lake_dir)
    publish(lake=lake, catalog_or_rows=build_catalog())
    rows = [event(input_tokens=1000 + i, output_tokens=200, event_time=MIDNIGHT + timedelta(hours=9, seconds=i))
            for i in range(300)]
    write_raw(lake, rows)
    write_raw(lake, rows[:1])  # a Firehose retry
    cost = sum((r["input_tokens"] * TEXT_PRICES["input_tokens"] + r["output_tokens"] * TEXT_PRICES["output_tokens"])
               / PER for r in rows)
    return len(rows), Decimal(cost)


def _curated(lake: Lake, prefix: str) -> list[dict]:
    files = lake.list_files(prefix, f"dt={DAY.isoformat()}")
    assert len(files) == 1, files  # one file per day partition, never a second appended
    return pq.read_table(files[0]).to_pylist()


@pytest.mark.slow
def test_two_transform_processes_of_one_day_take_turns_and_write_one_runs_output(tmp_path):
    # GIVEN a raw day, and the day's lock held by this test while two transforms start (so both must queue for it)
    expected_rows, expected_cost = _day_with_events(tmp_path / "lake")
    lake = Lake.open(tmp_path / "lake")
    with lake_lock(lake, *DAY_LOCK, owner="the test", what="the test's hold"):
        procs = [_transform(tmp_path / "lake"), _transform(tmp_path / "lake")]
        time.sleep(2)
    # WHEN both run to the end
    results = [p.communicate(timeout=50) for p in procs]
    # THEN both succeed
    assert [p.returncode for p in procs] == [0, 0], results
    assert all(f"{DAY}: read 301 / valid 301 / quarantined 0 / duplicates 1 / written 300" in out for out, _ in results)
    # AND the day holds exactly one run's output: every event once, the exact total cost, one rollup row
    usage = _curated(lake, CURATED_USAGE_COST)
    assert len(usage) == expected_rows == len({r["event_id"] for r in usage})
    assert sum(r["total_cost"] for r in usage) == expected_cost
    [daily] = _curated(lake, CURATED_TEAM_MODEL_DAILY)
    assert daily["invocations"] == expected_rows and daily["total_cost"] == expected_cost
    # AND the two runs held the lock one after the other, never at once
    manifests = sorted((json.loads(Path(p).read_text()) for p in lake.list_files(RUN_MANIFESTS, suffix=".json")),
                       key=lambda m: m["lock"]["acquired_at"])
    assert len(manifests) == 2
    first, second = manifests
    assert datetime.fromisoformat(first["finished_at"]) <= datetime.fromisoformat(second["lock"]["acquired_at"])


@pytest.mark.slow
def test_a_transform_that_cannot_get_the_lock_fails_with_one_line_naming_the_holder(tmp_path):
    # GIVEN a raw day whose lock another process (this test) holds
    _day_with_events(tmp_path / "lake")
    lake = Lake.open(tmp_path / "lake")
    with lake_lock(lake, *DAY_LOCK, owner="transform run held-by-test", what="the test's hold"):
        # WHEN a transform waits for at most one second
        proc = _transform(tmp_path / "lake", "--lock-timeout", "1")
        out, err = proc.communicate(timeout=50)
    # THEN it exits 1, its first stderr line naming the day, the holder, its pid and host, and it wrote nothing
    assert proc.returncode == 1, (out, err)
    first = err.splitlines()[0]
    assert first.startswith(f"modelmeter transform: the transform of {DAY} is locked by transform run held-by-test")
    assert f"pid {os.getpid()} on {socket.gethostname()}" in first and "gave up after waiting 1 s" in first
    assert lake.list_files(CURATED_USAGE_COST) == [] and lake.list_files(RUN_MANIFESTS, suffix=".json") == []


def test_a_folder_lock_is_taken_once_its_holder_lets_go(tmp_path):
    # GIVEN a folder lake whose lock is held by one thread
    lake = Lake.open(tmp_path / "lake")
    held, released_at, got = threading.Event(), [], []

    def hold() -> None:
        with lake_lock(lake, *DAY_LOCK, owner="first", what="the day"):
            held.set()
            time.sleep(0.5)
            released_at.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    # WHEN a second caller asks for it (a separate open file: flock keeps them apart even in one process)
    with lake_lock(lake, *DAY_LOCK, owner="second", what="the day", timeout=10, poll_seconds=0.05) as lock:
        got.append(time.monotonic())
        # THEN it got the lock only after the first let go, and its wait is recorded
        assert got[0] >= released_at[0] and lock.waited_seconds > 0.2
    holder.join()


# --- S3 (moto) -----------------------------------------------------------------------------------------------------

def _lock_object(uri: str) -> tuple[str, str]:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    return bucket, "/".join([prefix, *DAY_LOCK])


def _owner(bucket: str, key: str) -> str:
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())["owner"]


def test_an_s3_lock_makes_the_second_caller_wait_until_release_or_time_out_naming_the_holder(s3_lake_uri):
    # GIVEN an S3 lake whose day lock one thread holds
    lake = Lake.open(s3_lake_uri)
    held, release, released_at = threading.Event(), threading.Event(), []

    def hold() -> None:
        with lake_lock(lake, *DAY_LOCK, owner="transform run A", what="the day"):
            held.set()
            release.wait(10)
            released_at.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    bucket, key = _lock_object(s3_lake_uri)
    assert _owner(bucket, key) == "transform run A"
    # WHEN a second caller waits at most 0.3 s, THEN it gives up naming the holder
    with pytest.raises(LockTimeout, match=rf"the day is locked by transform run A \(pid {os.getpid()} on "):
        with lake_lock(lake, *DAY_LOCK, owner="transform run B", what="the day", timeout=0.3, poll_seconds=0.05):
            pass
    # WHEN a third waits longer and the holder lets go meanwhile, THEN it gets the lock after the release
    threading.Timer(0.5, release.set).start()
    with lake_lock(lake, *DAY_LOCK, owner="transform run C", what="the day", timeout=10, poll_seconds=0.05) as lock:
        assert time.monotonic() >= released_at[0] and lock.waited_seconds >= 0.4
        assert _owner(bucket, key) == "transform run C"
    holder.join()
    # AND a released lock leaves no object behind
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)


def test_a_stale_s3_lock_is_taken_over_and_a_lost_lease_stops_the_holder(s3_lake_uri):
    # GIVEN a lock object left by a holder that died (its lease ran out)
    lake = Lake.open(s3_lake_uri)
    bucket, key = _lock_object(s3_lake_uri)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"owner": "dead run", "lease_seconds": 0}).encode())
    # WHEN a transform asks for the lock, THEN it takes it over at once (a conditional overwrite of the stale ETag)
    with lake_lock(lake, *DAY_LOCK, owner="live run", what="the day", timeout=2, poll_seconds=0.05,
                   lease_seconds=1) as lock:
        assert _owner(bucket, key) == "live run"
        lock.check()
        # WHEN another process overwrites the lock meanwhile (it judged this holder dead)
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"owner": "usurper", "lease_seconds": 60}).encode())
        time.sleep(0.6)  # the next renewal (every quarter lease) fails its If-Match
        # THEN the holder learns it lost the lock before writing anything more
        with pytest.raises(LockLost, match="lost the lock"):
            lock.check()
    # AND leaving the block does not delete the other process's lock
    assert _owner(bucket, key) == "usurper"

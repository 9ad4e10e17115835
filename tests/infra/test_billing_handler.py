"""finance.lambda_handler: which periods a run looks at, clear refusals, and real runs on an S3 lake (moto) holding a
CUR 2.0 export as AWS Data Exports delivers it: one snapshot per manifest, and a stored reconciliation."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from common import constants as c
from common.lake import Lake
from finance import lambda_handler
from finance.cur import list_snapshots
from finance.lambda_handler import BillingEventError, BillingImportError, ExportManifest, is_newer, periods_for
from modelmeter.simulated_bill import line, write_cur

EXPORT = "modelmeter-cur2"
PERIOD = "2026-11"


def test_a_scheduled_run_looks_at_the_previous_and_the_current_utc_month() -> None:
    # 00:30 on 1 December at UTC+02:00 is still November in UTC
    assert periods_for({"source": "schedule"}, now=datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) \
        == ["2026-10", "2026-11"]
    assert periods_for(None, now=datetime(2027, 1, 15, tzinfo=UTC)) == ["2026-12", "2027-01"]
    assert periods_for({"periods": ["2026-09", "2026-08", "2026-09"]}, now=datetime(2027, 1, 1, tzinfo=UTC)) == \
        ["2026-08", "2026-09"]


@pytest.mark.parametrize(("event", "message"), [
    ({"periods": "2026-11"}, "periods must be a list"),
    ({"periods": []}, "periods must be a list"),
    ({"periods": ["2026-13", "Nov"]}, r"periods \['2026-13', 'Nov'\]: write each billing period as YYYY-MM"),
])
def test_a_bad_event_is_refused_with_a_clear_message(event: dict, message: str) -> None:
    with pytest.raises(BillingEventError, match=message):
        periods_for(event, now=datetime(2026, 12, 1, tzinfo=UTC))


def test_a_missing_lake_or_export_name_is_refused() -> None:
    with pytest.raises(BillingEventError, match=f"{c.ENV_LAKE} and {c.ENV_BILLING_EXPORT_NAME} not set"):
        lambda_handler.run({}, environ={})


def test_a_manifest_is_newer_when_written_after_the_newest_snapshot_within_s3s_one_second() -> None:
    from finance.cur import Snapshot

    imported = datetime(2026, 12, 2, 6, 0, 0, 400000, tzinfo=UTC)
    snapshot = Snapshot(billing_period=PERIOD, snapshot_id="x", imported_at=imported.isoformat(), source_files=[],
                        rows=1, currency="USD", final=False, line_cost_total="1")

    def manifest(written: datetime) -> ExportManifest:
        return ExportManifest(period=PERIOD, path="m", written_at=written, data_files=())

    assert is_newer(manifest(imported), None)
    assert not is_newer(manifest(imported - timedelta(seconds=2)), snapshot)
    # S3 says 06:00:00 for anything written in that second, perhaps after the import started at 06:00:00.4
    assert is_newer(manifest(imported.replace(microsecond=0)), snapshot)
    assert is_newer(manifest(imported + timedelta(hours=5)), snapshot)


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    function_name: str = "modelmeter-research-billing"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelmeter-research-billing"
    aws_request_id: str = "6f1c2a4e-0000-4000-8000-000000000002"


def _deliver(lake_uri: str, tmp_path: Path, *, cost: str) -> None:
    """What AWS Data Exports writes for one refresh: the period's data file, then its manifest naming it."""
    bucket, _, root = lake_uri.removeprefix("s3://").partition("/")
    base = f"{root}/{c.BILLING_EXPORTS}/{EXPORT}"
    day = datetime(2026, 11, 20, 10)
    lines = [line(period=PERIOD, usage_type="USE1-Claude4Sonnet-input-tokens", amount=1200, cost=cost, start=day),
             line(period=PERIOD, usage_type="USE1-Claude4Sonnet-output-tokens", amount=300, cost="4.5", start=day)]
    local = write_cur(lines, tmp_path / "export.parquet")
    data_key = f"{base}/data/BILLING_PERIOD={PERIOD}/{EXPORT}-00001.snappy.parquet"
    s3 = boto3.client("s3")
    s3.upload_file(str(local), bucket, data_key)
    manifest = {"executionId": f"exec-{cost}", "billingPeriod": {"start": "2026-11-01T00:00:00.000Z"},
                "dataFiles": [f"s3://{bucket}/{data_key}"]}
    s3.put_object(Bucket=bucket, Key=f"{base}/metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json",
                  Body=json.dumps(manifest).encode())


@pytest.mark.slow  # DuckDB and moto round trips, and a second's wait for S3's clock: ~4 s
def test_each_manifest_makes_one_snapshot_and_a_stored_reconciliation(
        s3_lake_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the payer's export of November delivered under billing/exports/ (and nothing for October)
    _deliver(s3_lake_uri, tmp_path, cost="3.6")
    time.sleep(1.1)  # S3 stamps objects to the second: the run must start in a later second than the delivery
    for name, value in {c.ENV_LAKE: s3_lake_uri, c.ENV_BILLING_EXPORT_NAME: EXPORT, c.ENV_BUSINESS_UNIT: "research",
                        c.ENV_SAGEMAKER_ENDPOINTS: '{"llama-3-8b":{"endpoint_name":"llama-3-8b-instruct"}}'}.items():
        monkeypatch.setenv(name, value)
    event = {"periods": ["2026-10", PERIOD]}
    lake = Lake.open(s3_lake_uri)

    # WHEN the import runs THEN November is imported into one snapshot and reconciled; October has no export yet
    first = lambda_handler.handler(event, LambdaContext())
    assert first["periods"]["2026-10"] == {"status": "no_export"}
    november = first["periods"][PERIOD]
    assert november["status"] == "imported" and november["rows"] == 2 and november["final"] is False
    assert november["reconciled"] == november["snapshot"] and november["billed_total"] == "8.100000000000"
    (snapshot,) = list_snapshots(lake=lake, period=PERIOD)
    assert snapshot.snapshot_id == november["snapshot"]
    assert all(f.startswith(f"{s3_lake_uri}/{c.BILLING_EXPORTS}/{EXPORT}/data/") for f in snapshot.source_files)
    (stored,) = lake.list_files(c.CURATED_RECONCILIATION, f"billing_period={PERIOD}")
    import pyarrow.parquet as pq

    rows = pq.read_table(stored, filesystem=lake.fs).to_pylist()
    assert sum((r["billed_cost"] for r in rows), Decimal(0)) == Decimal("8.1")
    assert {r["category"] for r in rows} == {"unmetered_usage"}  # nothing metered: the gateway saw no call

    # WHEN it runs again before AWS refreshes the export THEN nothing new is imported or reconciled
    second = lambda_handler.handler(event, LambdaContext())
    assert second["periods"][PERIOD] == {"status": "unchanged", "snapshot": snapshot.snapshot_id}
    assert second["imported"] == 0 and len(list_snapshots(lake=lake, period=PERIOD)) == 1

    # WHEN AWS refreshes the export (a new manifest) THEN the next run makes the second snapshot, in force
    _deliver(s3_lake_uri, tmp_path, cost="3.0")
    third = lambda_handler.handler(event, LambdaContext())
    assert third["periods"][PERIOD]["status"] == "imported" and third["periods"][PERIOD]["billed_total"] == \
        "7.500000000000"
    assert [s.snapshot_id for s in list_snapshots(lake=lake, period=PERIOD)] == \
        [snapshot.snapshot_id, third["periods"][PERIOD]["snapshot"]]

    # and every run emitted how many snapshots it imported (EMF), with the unit as a dimension
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    counts = [b[c.METRIC_CUR_SNAPSHOTS_IMPORTED] for b in emf if c.METRIC_CUR_SNAPSHOTS_IMPORTED in b]
    assert counts == [[1.0], [0.0], [1.0]]
    assert all(b["service"] == c.SERVICE_BILLING and b["business_unit"] == "research" for b in emf)


@pytest.mark.slow
def test_a_period_whose_manifest_lists_a_foreign_file_fails_the_run_after_the_others(
        s3_lake_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN November delivered, and an October manifest naming a file outside its data folder
    _deliver(s3_lake_uri, tmp_path, cost="3.6")
    bucket, _, root = s3_lake_uri.removeprefix("s3://").partition("/")
    metadata = f"{root}/{c.BILLING_EXPORTS}/{EXPORT}/metadata/BILLING_PERIOD=2026-10"
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"{metadata}/{EXPORT}-Manifest.json",
        Body=json.dumps({"dataFiles": [f"s3://{bucket}/{root}/curated/usage_cost/x.parquet"]}).encode())
    monkeypatch.setenv(c.ENV_LAKE, s3_lake_uri)
    monkeypatch.setenv(c.ENV_BILLING_EXPORT_NAME, EXPORT)
    # WHEN the import runs THEN November is imported, and the run fails naming October and the file
    with pytest.raises(BillingImportError, match=r"billing period 2026-10: .*curated/usage_cost/x\.parquet are not "
                                                 r"under the period's data folder"):
        lambda_handler.handler({"periods": ["2026-10", PERIOD]}, LambdaContext())
    assert len(list_snapshots(lake=Lake.open(s3_lake_uri), period=PERIOD)) == 1

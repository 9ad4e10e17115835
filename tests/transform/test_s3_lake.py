"""The transform on an ``s3://`` lake (moto's S3 server on 127.0.0.1), as the Lambda runs it in AWS."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from common.constants import CURATED_USAGE_COST, QUARANTINE_EVENTS, RUN_MANIFESTS
from common.lake import Lake
from tests.transform.conftest import DAY, NOW, event, write_raw
from transforms.report import report_rows
from transforms.run import transform_day


@pytest.mark.slow
def test_transform_reads_and_replaces_partitions_on_s3(s3_lake_uri, catalog):
    # GIVEN raw files on S3 (pyarrow and boto3 both honour AWS_ENDPOINT_URL): a duplicate, a bad row, a broken file
    lake = Lake.open(s3_lake_uri)
    dup = event()
    write_raw(lake, [dup, event(), event(status="fine")])
    write_raw(lake, [dup])
    lake.write_bytes(b"PAR1 not really parquet", "raw/usage_events", f"dt={DAY}", "hour=09", "broken.parquet")
    # WHEN the day is transformed twice
    transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW)
    manifest = transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW)
    # THEN the curated partition is one object with the deduped events, and the rest is where DESIGN.md says
    [part] = lake.list_files(CURATED_USAGE_COST, f"dt={DAY}")
    assert pq.read_table(part, filesystem=lake.fs).num_rows == 2
    assert manifest.counts["duplicates"] == 1 and manifest.counts["quarantined"] == 1
    assert manifest.unreadable_files[0]["path"].startswith(f"{s3_lake_uri}/raw/")
    assert manifest.outputs["usage_cost"].startswith(f"{s3_lake_uri}/curated/usage_cost/dt=")
    assert lake.list_files(QUARANTINE_EVENTS, f"dt={DAY}")
    assert len(lake.list_files(RUN_MANIFESTS, suffix=".json")) == 2
    assert sum(r["invocations"] for r in report_rows(lake=lake)) == 2

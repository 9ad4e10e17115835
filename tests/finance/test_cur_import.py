"""CUR 2.0 import: Parquet (map columns, DOUBLE costs) and CSV.gz as AWS writes them, files, folders and S3,
immutable snapshots, and bad files refused whole with their file and row."""

from __future__ import annotations

import gzip
from decimal import Decimal

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.constants import BILLING_CUR
from common.errors import UserError
from common.lake import Lake
from finance.cur import import_export, list_snapshots, read_export, read_snapshot, snapshot_in_force
from modelmeter.simulated_bill import cur_schema, write_cur

from .conftest import PERIOD, extra_line


def _lines():
    return [
        extra_line(usage_type="USE1-Claude3.5Sonnet-input-tokens", amount=1234.5, cost=3.7035,
                   tags={"user:team": "search"}),
        extra_line(usage_type="USE1-Claude3.5Sonnet-output-tokens", amount=10.25, cost=0.15375, net_cost=0.1306875),
        extra_line(usage_type="", amount=0, cost=-2.5, line_type="Credit", region=None),
    ]


def test_parquet_with_maps_and_csv_gz_read_to_the_same_exact_lines(tmp_path):
    # GIVEN the same three lines as a Parquet export (maps, DOUBLEs, zone-less timestamps) and as a CSV.gz export
    parquet = write_cur(_lines(), tmp_path / "a" / "export-00001.snappy.parquet")
    csv_gz = write_cur(_lines(), tmp_path / "b" / "export-00001.csv.gz", fmt="csv.gz")
    schema = pq.read_schema(parquet)
    product = schema.field("product").type
    assert pa.types.is_map(product) and product.key_type == product.item_type == pa.string()
    assert str(schema.field("line_item_unblended_cost").type) == "double"
    assert schema.field("line_item_usage_start_date").type.tz is None
    assert cur_schema().names == schema.names
    # WHEN both are read
    a, b = read_export([str(parquet)]), read_export([str(csv_gz)])
    # THEN the lines agree to the last decimal, money exact, maps as JSON, net cost where present
    drop = ("source_file", "source_row")  # a row in Parquet, a line in CSV (line 1: the header)
    assert a.drop(drop).to_pylist() == b.drop(drop).to_pylist()
    rows = a.to_pylist()
    assert [r["line_cost"] for r in rows] == [Decimal("3.7035"), Decimal("0.1306875"), Decimal("-2.5")]
    assert rows[0]["line_item_usage_amount"] == Decimal("1234.5") and rows[0]["region"] == "us-east-1"
    assert rows[0]["resource_tags"] == '{"user:team":"search"}' and rows[0]["source_row"] == 1
    assert rows[0]["billing_period"] == PERIOD


def test_a_file_missing_columns_names_them_and_nothing_is_imported(tmp_path):
    good = write_cur(_lines(), tmp_path / "in" / "good.parquet")
    table = pq.read_table(good).drop(["line_item_usage_type", "line_item_unblended_cost"])
    pq.write_table(table, tmp_path / "in" / "bad.parquet")
    lake = Lake.open(tmp_path / "lake")
    with pytest.raises(UserError) as err:
        import_export(lake=lake, paths=[str(tmp_path / "in")])
    assert "bad.parquet: missing CUR 2.0 columns line_item_usage_type, line_item_unblended_cost" in str(err.value)
    assert not lake.list_files(BILLING_CUR, suffix="")


def test_a_row_that_cannot_be_read_is_named_with_its_file_and_line(tmp_path):
    path = write_cur(_lines(), tmp_path / "export.csv.gz", fmt="csv.gz")
    text = gzip.open(path, "rt").read().replace("0.15375", "0.15x75")
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as out:
        out.write(text)
    with pytest.raises(UserError, match=r"bad.csv.gz:3: line_item_unblended_cost is not a number"):
        import_export(lake=Lake.open(tmp_path / "lake"), paths=[str(bad)])


def test_each_import_is_a_snapshot_and_the_newest_is_in_force(tmp_path):
    # GIVEN a first export, then AWS's restatement of the same month with a final invoice id
    lake = Lake.open(tmp_path / "lake")
    first = import_export(lake=lake, paths=[str(write_cur(_lines(), tmp_path / "v1.parquet"))])[0]
    restated = [{**li, "bill_invoice_id": "EUINUS26-12345"} for li in _lines()[:2]]
    second = import_export(lake=lake, paths=[str(write_cur(restated, tmp_path / "v2.parquet"))])[0]
    # THEN both stay readable, the newest is in force, only it is final
    listed = list_snapshots(lake=lake, period=PERIOD)
    assert [s.snapshot_id for s in listed] == [first.snapshot_id, second.snapshot_id]
    assert snapshot_in_force(lake=lake, period=PERIOD).snapshot_id == second.snapshot_id
    assert (first.final, second.final) == (False, True)
    assert read_snapshot(lake=lake, snapshot=first).num_rows == 3 and first.line_cost_total == "1.334187500000"
    with pytest.raises(UserError, match="no CUR imported for billing period 2026-10"):
        snapshot_in_force(lake=lake, period="2026-10")


def test_an_s3_prefix_imports_into_an_s3_lake(tmp_path, s3_lake_uri):
    # GIVEN an export delivered under s3://bucket/cur/.../data/BILLING_PERIOD=2026-11/ (the Data Exports layout)
    bucket = s3_lake_uri.split("/")[2]
    path = write_cur(_lines(), tmp_path / "export-00001.snappy.parquet")
    key = "cur/modelmeter-cur2/data/BILLING_PERIOD=2026-11/export-00001.snappy.parquet"
    boto3.client("s3").upload_file(str(path), bucket, key)
    lake = Lake.open(s3_lake_uri)
    # WHEN the prefix is imported
    (snapshot,) = import_export(lake=lake, paths=[f"s3://{bucket}/cur/modelmeter-cur2/data/"])
    # THEN the snapshot is in the S3 lake, with the source object named
    assert snapshot.source_files == [f"s3://{bucket}/{key}"]
    assert read_snapshot(lake=lake, snapshot=snapshot_in_force(lake=lake, period=PERIOD)).num_rows == 3

"""Catalog versions in an s3:// lake, against moto's S3 server on 127.0.0.1 (pyarrow's real S3 client)."""

from __future__ import annotations

import boto3
import pytest

from common.lake import Lake
from pricing_catalog import CatalogError, list_versions, load_catalog, publish
from pricing_catalog.catalog import Catalog
from pricing_catalog.store import _claim


@pytest.fixture()
def s3_lake(s3_lake_uri: str) -> Lake:
    return Lake.open(s3_lake_uri)


def test_versions_publish_list_and_load_on_s3(s3_lake: Lake, builtin: Catalog) -> None:
    # GIVEN an empty S3 lake WHEN the catalog is first loaded THEN the built-in catalog is published there
    first = load_catalog(lake=s3_lake)
    assert first.rows == builtin.rows
    # WHEN another version is published THEN it is the latest, and both are listed in order
    second = publish(lake=s3_lake, catalog_or_rows=builtin, note="again")
    assert [v.version for v in list_versions(lake=s3_lake)] == [first.version, second]
    assert load_catalog(lake=s3_lake).version == second
    bucket, prefix = s3_lake.base.split("/", 1)
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"])
    assert f"{prefix}/pricing/catalog/version={second}/prices.parquet" in keys
    assert f"{prefix}/pricing/catalog/version={second}/manifest.json" in keys
    # AND an existing version cannot be claimed again
    with pytest.raises(CatalogError, match="already exists"):
        _claim(s3_lake, second)

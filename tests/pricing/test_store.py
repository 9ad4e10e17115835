"""Published versions: immutable, sortable ids, exact round trip, auto-publication of the built-in catalog."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.constants import PRICING_CATALOG
from pricing_catalog import CatalogError, PriceRow, list_versions, load_catalog, publish
from pricing_catalog.catalog import Catalog
from pricing_catalog.store import PRICE_SCHEMA, _claim


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_empty_lake_gets_the_builtin_catalog_as_its_first_version(lake, builtin: Catalog) -> None:
    catalog = load_catalog(lake=lake)
    [info] = list_versions(lake=lake)
    assert catalog.version == info.version
    assert info.rows == len(builtin.rows) and info.note == "built-in catalog"
    assert builtin.version in info.source
    # a second load reads the same version and publishes nothing more
    assert load_catalog(lake=lake).version == info.version
    assert len(list_versions(lake=lake)) == 1


def test_a_published_version_reads_back_exactly(lake, builtin: Catalog) -> None:
    version = publish(lake=lake, catalog_or_rows=builtin)
    back = load_catalog(lake=lake, version=version)
    assert back.rows == builtin.rows
    assert back.aliases == builtin.aliases
    assert all(r.effective_from.tzinfo is UTC for r in back.rows)


def test_the_stored_layout_is_parquet_with_decimal_money_and_a_manifest(lake, builtin: Catalog) -> None:
    version = publish(lake=lake, catalog_or_rows=builtin, note="n")
    folder = Path(lake.path(PRICING_CATALOG, f"version={version}"))
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "prices.parquet"]
    assert pq.read_schema(folder / "prices.parquet").field("price_usd").type == PRICE_SCHEMA.field("price_usd").type
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == version and manifest["rows"] == len(builtin.rows) and manifest["note"] == "n"


def test_version_ids_are_unique_and_sort_in_publication_order(lake) -> None:
    row = PriceRow(model="acme.chat-v1:0", dimension="input_tokens", price_usd=Decimal(1), per=1000,
                   effective_from=datetime(2026, 1, 1, tzinfo=UTC), effective_to=None, source="https://example.com")
    ids = [publish(lake=lake, catalog_or_rows=[row], note=str(n)) for n in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [v.note for v in list_versions(lake=lake)] == ["0", "1", "2", "3"]
    assert load_catalog(lake=lake).version == ids[-1]
    for version in ids:
        assert len(version) == len("2026-11-25T09-30-00Z-1a2b3c")


def test_published_versions_are_never_overwritten(lake, builtin: Catalog) -> None:
    # GIVEN a published version and the checksum of its files
    version = publish(lake=lake, catalog_or_rows=builtin)
    folder = Path(lake.path(PRICING_CATALOG, f"version={version}"))
    before = _digest(folder)
    # WHEN someone tries to claim the same id, and more versions are published
    with pytest.raises(CatalogError, match=f"catalog version {version} already exists: versions are immutable"):
        _claim(lake, version)
    publish(lake=lake, catalog_or_rows=builtin)
    # THEN its files are byte for byte what they were
    assert _digest(folder) == before


def test_an_interrupted_publish_is_invisible(lake, builtin: Catalog) -> None:
    version = publish(lake=lake, catalog_or_rows=builtin)
    Path(lake.path(PRICING_CATALOG, "version=2099-01-01T00-00-00Z-dead00")).mkdir()
    assert [v.version for v in list_versions(lake=lake)] == [version]


def test_unknown_versions_are_refused_clearly(lake, builtin: Catalog) -> None:
    with pytest.raises(CatalogError, match="no published catalog yet"):
        load_catalog(lake=lake, version="2020-01-01T00-00-00Z-000000")
    version = publish(lake=lake, catalog_or_rows=builtin)
    with pytest.raises(CatalogError, match=f"not found; see `modelmeter pricing list` \\(latest: {version}\\)"):
        load_catalog(lake=lake, version="2020-01-01T00-00-00Z-000000")
    with pytest.raises(CatalogError, match="only be read from a lake"):
        load_catalog(version=version)


def test_publishing_overlapping_rows_is_refused_before_writing(lake) -> None:
    row = PriceRow(model="acme.chat-v1:0", dimension="input_tokens", price_usd=Decimal(1), per=1000,
                   effective_from=datetime(2026, 1, 1, tzinfo=UTC), effective_to=None, source="https://example.com")
    with pytest.raises(CatalogError, match="overlap"):
        publish(lake=lake, catalog_or_rows=[row, row])
    assert list_versions(lake=lake) == []

"""Published catalog versions in the lake: ``pricing/catalog/version=<V>/prices.parquet`` + ``manifest.json``.

A version is immutable: it is written once under a new id and never overwritten. ``manifest.json`` is written
last, so a version without one (an interrupted publish) is invisible to readers. A version published from a price
sheet also keeps the sheet's rows (``sheet.parquet``, same columns), so ``modelmeter pricing update`` can lay every
sheet over a newer built-in catalog again; the manifest's ``builtin_digest`` names the built-in price data the
version was built from (:attr:`Catalog.content_digest`; null: not from the built-in data).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.constants import MONEY_PRECISION, MONEY_SCALE, PRICING_CATALOG
from common.lake import Lake
from pricing_catalog.catalog import Catalog
from pricing_catalog.loader import load_builtin
from pricing_catalog.model import CatalogError, PriceRow

PRICES_FILE = "prices.parquet"
SHEET_FILE = "sheet.parquet"
MANIFEST_FILE = "manifest.json"
_VERSION_TIME = "%Y-%m-%dT%H-%M-%SZ"

#: The Parquet layout of a published version (one row per PriceRow).
PRICE_SCHEMA = pa.schema([
    ("model", pa.string()),
    ("dimension", pa.string()),
    ("price_usd", pa.decimal128(MONEY_PRECISION, MONEY_SCALE)),
    ("per", pa.int32()),
    ("effective_from", pa.timestamp("us", tz="UTC")),
    ("effective_to", pa.timestamp("us", tz="UTC")),
    ("region", pa.string()),
    ("service_tier", pa.string()),
    ("image_max_width", pa.int32()),
    ("image_max_height", pa.int32()),
    ("image_quality", pa.string()),
    ("source", pa.string()),
    ("checked", pa.date32()),
])


@dataclass(frozen=True)
class VersionInfo:
    """One published version, as ``modelmeter pricing list`` shows it."""

    version: str
    created_at: datetime
    note: str | None
    rows: int
    source: str


def _version_dir(version: str) -> str:
    return f"version={version}"


def list_versions(*, lake: Lake) -> list[VersionInfo]:
    """Every complete published version, oldest first (ids sort in publication order)."""
    found = []
    for path in lake.list_files(PRICING_CATALOG, suffix=MANIFEST_FILE):
        with lake.fs.open_input_stream(path) as src:
            manifest = json.loads(src.read())
        found.append(VersionInfo(version=manifest["version"], created_at=datetime.fromisoformat(manifest["created_at"]),
                                 note=manifest.get("note"), rows=int(manifest["rows"]), source=manifest["source"]))
    return sorted(found, key=lambda v: v.version)


def latest_version(*, lake: Lake) -> str | None:
    """The id of the newest complete published version (``None``: none yet), from one listing of the catalog
    prefix and no read: what a reader polling for new versions needs (``ingest/pricing.py``)."""
    versions = [path.rsplit("/", 2)[-2].removeprefix("version=")
                for path in lake.list_files(PRICING_CATALOG, suffix=MANIFEST_FILE)]
    return max(versions, default=None)


def _new_version(lake: Lake) -> tuple[str, datetime]:
    """A new id ``<UTC time>-<6 hex>``, strictly later than every existing one so ids sort in publish order."""
    now = datetime.now(UTC).replace(microsecond=0)
    existing = list_versions(lake=lake)
    if existing:
        latest = datetime.strptime(existing[-1].version[:20], _VERSION_TIME).replace(tzinfo=UTC)
        now = max(now, latest + timedelta(seconds=1))
    return f"{now.strftime(_VERSION_TIME)}-{secrets.token_hex(3)}", now


def _to_table(rows: Iterable[PriceRow]) -> pa.Table:
    rows = list(rows)
    columns = {name: [getattr(r, name) for r in rows] for name in PRICE_SCHEMA.names}
    return pa.table(columns, schema=PRICE_SCHEMA)


def _from_table(table: pa.Table) -> list[PriceRow]:
    rows = []
    for record in table.to_pylist():
        record["price_usd"] = _plain(record["price_usd"])
        # pyarrow returns zoneinfo UTC; use datetime.UTC so rows compare and print like the built-in ones
        for name in ("effective_from", "effective_to"):
            if record[name] is not None:
                record[name] = record[name].astimezone(UTC)
        rows.append(PriceRow(**record))
    return rows


def _claim(lake: Lake, version: str) -> None:
    """Refuse to touch an existing version; locally, creating the folder is the atomic claim.

    On S3 the check and the writes are separate requests; two publishers could only collide on the same id if they
    drew the same 6 random hex digits in the same second.
    """
    if lake.is_local:
        os.makedirs(lake.path(PRICING_CATALOG), exist_ok=True)
        try:
            os.mkdir(lake.path(PRICING_CATALOG, _version_dir(version)))
        except FileExistsError:
            raise CatalogError(f"catalog version {version} already exists: versions are immutable") from None
    elif lake.exists(PRICING_CATALOG, _version_dir(version)):
        raise CatalogError(f"catalog version {version} already exists: versions are immutable")


def publish(*, lake: Lake, catalog_or_rows: Catalog | Iterable[PriceRow], note: str | None = None,
            source: str | None = None, sheet: Iterable[PriceRow] | None = None, sheet_name: str | None = None,
            builtin_digest: str | None = None) -> str:
    """Write a new immutable version and return its id.

    Args:
        lake: where to publish.
        catalog_or_rows: a :class:`Catalog`, or price rows (checked for overlaps before anything is written).
        note: free text stored with the version (who, why).
        source: where the prices came from (default: the catalog's own version id).
        sheet: the price sheet's rows, as read (model ids as written), when the version lays a sheet over the one
            before it: kept beside the prices so ``pricing update`` can lay it over a newer built-in catalog.
        sheet_name: the sheet's file name, for messages.
        builtin_digest: the :attr:`Catalog.content_digest` of the built-in price data the version was built from.
    """
    catalog = catalog_or_rows if isinstance(catalog_or_rows, Catalog) else Catalog(version="unpublished",
                                                                                  rows=catalog_or_rows)
    version, created = _new_version(lake)
    _claim(lake, version)
    lake.write_parquet(_to_table(catalog.rows), PRICING_CATALOG, _version_dir(version), PRICES_FILE)
    kept = None
    if sheet is not None:
        sheet_rows = list(sheet)
        lake.write_parquet(_to_table(sheet_rows), PRICING_CATALOG, _version_dir(version), SHEET_FILE)
        kept = {"file": SHEET_FILE, "name": sheet_name, "rows": len(sheet_rows)}
    manifest = {"format": 1, "version": version, "created_at": created.isoformat(), "note": note,
                "rows": len(catalog.rows), "source": source or catalog.version, "aliases": catalog.aliases,
                "sheet": kept, "builtin_digest": builtin_digest}
    lake.write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode(), PRICING_CATALOG,
                     _version_dir(version), MANIFEST_FILE)
    return version


def read_manifest(*, lake: Lake, version: str) -> dict[str, Any]:
    """The ``manifest.json`` of a published version, as stored."""
    return dict(json.loads(lake.read_bytes(PRICING_CATALOG, _version_dir(version), MANIFEST_FILE)))


def read_sheet_rows(*, lake: Lake, version: str) -> list[PriceRow]:
    """The price-sheet rows a version kept (``sheet.parquet``); empty when it kept none."""
    if not read_manifest(lake=lake, version=version).get("sheet"):
        return []
    with lake.fs.open_input_file(lake.path(PRICING_CATALOG, _version_dir(version), SHEET_FILE)) as src:
        return _from_table(pq.read_table(src))


def load_catalog(*, lake: Lake | None = None, version: str | None = None) -> Catalog:
    """The built-in catalog (``lake`` None), or a published version (latest when ``version`` is None).

    A lake without any version gets the built-in catalog published as its first version, so every curated row
    can name the version that priced it.

    Raises:
        CatalogError: the version does not exist, or the price data is invalid.
    """
    if lake is None:
        if version is not None:
            raise CatalogError("a catalog version can only be read from a lake: pass lake=…")
        return load_builtin()
    versions = list_versions(lake=lake)
    if versions:
        wanted = version or versions[-1].version
        if wanted not in {v.version for v in versions}:
            raise CatalogError(f"catalog version {wanted} not found; see `modelmeter pricing list` "
                               f"(latest: {versions[-1].version})")
    elif version is not None:
        raise CatalogError(f"catalog version {version} not found: the lake has no published catalog yet")
    else:  # the version just published is the one to read: no second listing of every manifest
        builtin = load_builtin()
        wanted = publish(lake=lake, catalog_or_rows=builtin, note="built-in catalog",
                         source=f"built-in price data ({builtin.version})", builtin_digest=builtin.content_digest)
    folder = (PRICING_CATALOG, _version_dir(wanted))
    manifest = json.loads(lake.read_bytes(*folder, MANIFEST_FILE))
    with lake.fs.open_input_file(lake.path(*folder, PRICES_FILE)) as src:
        table = pq.read_table(src)
    return Catalog(version=wanted, rows=_from_table(table), aliases=manifest.get("aliases") or {},
                   where=f"catalog version {wanted}")


def _plain(price: Decimal) -> Decimal:
    """Drop the trailing zeros of DECIMAL(38,12) without turning 1000 into 1E+3."""
    reduced = price.normalize()
    return reduced.quantize(Decimal(1)) if reduced.as_tuple().exponent > 0 else reduced  # type: ignore[operator]

"""Publishing price sheets as new catalog versions, and laying them over a newer built-in catalog again.

``modelmeter pricing import`` calls :func:`import_sheet` (a CSV sheet), ``pricing import-seed``
:func:`pricing_catalog.seed.import_seed` (the seed guidance's ``models.json`` read as a sheet), both through
:func:`publish_sheet`: the latest version with the sheet laid over it, the sheet's rows kept beside the prices.
``pricing update`` calls :func:`update_catalog`: the built-in catalog this modelmeter ships with every sheet the
lake has imported laid over it again, in order. :func:`stale_version` says whether the lake's newest version was
built from other built-in price data than the one shipped (``transform`` warns).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from common.lake import Lake
from pricing_catalog.catalog import Catalog
from pricing_catalog.loader import load_builtin
from pricing_catalog.model import PriceRow
from pricing_catalog.sheet import SheetRow, apply_sheet, read_sheet
from pricing_catalog.store import list_versions, load_catalog, publish, read_manifest, read_sheet_rows

#: How a version published before sheets were kept in the lake names its sheet and its base (``import_sheet``).
_LEGACY_SHEET = re.compile(r"^sheet (?P<name>.+) \(sha256 [0-9a-f]+\) over (?P<base>\S+)$")
_LEGACY_BUILTIN = "built-in price data ("


@dataclass(frozen=True)
class Update:
    """What ``pricing update`` did.

    Attributes:
        version: the new version, or None when the newest one already is the shipped catalog with the sheets.
        latest: the newest version before the update.
        builtin: the shipped catalog's id (``builtin-<hash>``).
        sheets: (version that imported it, file name) of every sheet laid over it again, in order.
    """

    version: str | None
    latest: str
    builtin: str
    sheets: list[tuple[str, str]]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def import_sheet(*, lake: Lake, sheet: Path, note: str | None = None) -> str:
    """Publish the latest catalog version with ``sheet`` laid over it; return the new version id.

    The sheet is checked completely before anything is written: on any bad row nothing is published.

    Raises:
        CatalogError: listing every bad row as ``SHEET.csv:LINE: …``.
    """
    rows = read_sheet(sheet)  # first: a bad sheet must not even auto-publish the built-in catalog
    base = load_catalog(lake=lake)
    return publish_sheet(lake=lake, base=base, rows=rows, name=sheet.name, note=note,
                          source=f"sheet {sheet.name} (sha256 {_digest(sheet)}) over {base.version}")


def publish_sheet(*, lake: Lake, base: Catalog, rows: list[SheetRow], name: str, note: str | None,
                  source: str) -> str:
    """Publish ``base`` with ``rows`` laid over it, keeping the rows beside the prices; return the new id."""
    merged = apply_sheet(base, rows)
    return publish(lake=lake, catalog_or_rows=merged, note=note, source=source, sheet=[r.row for r in rows],
                   sheet_name=name, builtin_digest=built_from(lake=lake, version=base.version))


def built_from(*, lake: Lake, version: str) -> str | None:
    """The content digest of the built-in price data ``version`` was built from; None if not from it.

    Versions published before the manifest recorded it are followed back to the built-in version under them.
    """
    while True:
        manifest = read_manifest(lake=lake, version=version)
        if "builtin_digest" in manifest:
            return manifest["builtin_digest"]  # type: ignore[no-any-return]
        if manifest["source"].startswith(_LEGACY_BUILTIN):
            return load_catalog(lake=lake, version=version).content_digest
        legacy = _LEGACY_SHEET.match(manifest["source"])
        if legacy is None:
            return None
        version = legacy["base"]


def sheet_of(*, lake: Lake, version: str) -> tuple[str, list[PriceRow]] | None:
    """(file name, rows) of the sheet ``version`` laid over the version before it; None if it laid none.

    A version published before sheets were kept in the lake gets its sheet back as the rows it has from a sheet
    and its base lacks: the sheet's own rows, and the pieces of earlier sheets' rows it cut (laying those again
    over the same earlier sheets changes nothing).
    """
    manifest = read_manifest(lake=lake, version=version)
    if "sheet" in manifest:
        kept = manifest["sheet"]
        return None if not kept else (kept["name"], read_sheet_rows(lake=lake, version=version))
    legacy = _LEGACY_SHEET.match(manifest["source"])
    if legacy is None:
        return None
    before = set(load_catalog(lake=lake, version=legacy["base"]).rows)
    rows = [r for r in load_catalog(lake=lake, version=version).rows
            if r.source.startswith("sheet ") and r not in before]
    return legacy["name"], rows


def update_catalog(*, lake: Lake, note: str | None = None) -> Update:
    """Publish the shipped built-in catalog with every sheet the lake imported laid over it again, in order.

    Nothing is published when the newest version was built from the shipped data and has exactly the prices the
    new one would have (compared by content, not by dates).

    Raises:
        CatalogError: the shipped data or a kept sheet cannot be read, or the sheets no longer fit.
    """
    builtin = load_builtin()
    versions = [v.version for v in list_versions(lake=lake)]
    if not versions:  # an empty lake: the built-in catalog is its first version
        first = load_catalog(lake=lake).version
        return Update(version=first, latest=first, builtin=builtin.version, sheets=[])
    replayed, sheets = builtin, []
    for version in versions:
        found = sheet_of(lake=lake, version=version)
        if found is not None:
            name, rows = found
            replayed = apply_sheet(replayed, [SheetRow(line=0, row=r) for r in rows])
            sheets.append((version, name))
    latest = versions[-1]
    if (built_from(lake=lake, version=latest) == builtin.content_digest
            and load_catalog(lake=lake, version=latest).content_digest == replayed.content_digest):
        return Update(version=None, latest=latest, builtin=builtin.version, sheets=sheets)
    version = publish(lake=lake, catalog_or_rows=replayed, note=note, builtin_digest=builtin.content_digest,
                      source=f"built-in price data ({builtin.version}) with {len(sheets)} sheet(s) laid over again")
    return Update(version=version, latest=latest, builtin=builtin.version, sheets=sheets)


def stale_version(*, lake: Lake) -> str | None:
    """The newest version's id if it was built from other built-in price data than this modelmeter ships, else None.

    None too for an empty lake and for versions not built from the built-in data at all.
    """
    versions = list_versions(lake=lake)
    if not versions:
        return None
    newest = versions[-1].version
    basis = built_from(lake=lake, version=newest)
    return newest if basis is not None and basis != load_builtin().content_digest else None

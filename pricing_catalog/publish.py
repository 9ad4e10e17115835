"""Publishing a price sheet as a new catalog version (``modelmeter pricing import`` calls :func:`import_sheet`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from common.lake import Lake
from pricing_catalog.sheet import apply_sheet, read_sheet
from pricing_catalog.store import load_catalog, publish


def import_sheet(*, lake: Lake, sheet: Path, note: str | None = None) -> str:
    """Publish the latest catalog version with ``sheet`` laid over it; return the new version id.

    The sheet is checked completely before anything is written: on any bad row nothing is published.

    Raises:
        CatalogError: listing every bad row as ``SHEET.csv:LINE: …``.
    """
    rows = read_sheet(sheet)  # first: a bad sheet must not even auto-publish the built-in catalog
    base = load_catalog(lake=lake)
    merged = apply_sheet(base, rows)
    digest = hashlib.sha256(sheet.read_bytes()).hexdigest()[:12]
    return publish(lake=lake, catalog_or_rows=merged, note=note,
                   source=f"sheet {sheet.name} (sha256 {digest}) over {base.version}")



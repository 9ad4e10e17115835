"""``modelmeter pricing import SHEET.csv`` and ``modelmeter pricing list``."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from common.errors import UserError
from common.lake import Lake
from pricing_catalog.model import CatalogError
from pricing_catalog.sheet import apply_sheet, read_sheet
from pricing_catalog.store import list_versions, load_catalog, publish


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


def run_import_cli(args: argparse.Namespace) -> int:
    """Print the new version id alone on stdout (so scripts can capture it)."""
    sheet = Path(args.sheet)
    if not sheet.is_file():
        raise UserError(f"{args.sheet}: no such file")
    try:
        version = import_sheet(lake=Lake.open(args.lake), sheet=sheet, note=args.note)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    print(version)
    return 0


def run_list_cli(args: argparse.Namespace) -> int:
    """One line per version, oldest first: id, created, rows, source, note; the latest is marked."""
    lake = Lake.open(args.lake)
    try:
        versions = list_versions(lake=lake)
        if not versions:
            load_catalog(lake=lake)  # publishes the built-in catalog as the first version
            versions = list_versions(lake=lake)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    print(f"{'version':<30} {'created (UTC)':<20} {'rows':>6}  source / note")
    for number, info in enumerate(versions, start=1):
        latest = "  (latest)" if number == len(versions) else ""
        note = f" — {info.note}" if info.note else ""
        print(f"{info.version:<30} {info.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {info.rows:>6}  "
              f"{info.source}{note}{latest}")
    return 0

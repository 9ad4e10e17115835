"""``modelmeter pricing import SHEET.csv`` and ``modelmeter pricing list``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import UserError
from common.lake import Lake
from pricing_catalog.model import CatalogError
from pricing_catalog.publish import import_sheet
from pricing_catalog.store import list_versions, load_catalog


def run_import(args: Any) -> int:
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


def run_list(args: Any) -> int:
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

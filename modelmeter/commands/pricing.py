"""``modelmeter pricing import SHEET.csv``, ``import-seed models.json``, ``update`` and ``list``."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.lake import Lake
from pricing_catalog.model import CatalogError
from pricing_catalog.publish import import_sheet, update_catalog
from pricing_catalog.seed import Difference, import_seed
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


def run_import_seed(args: Any) -> int:
    """The new version id alone on stdout; on stderr, the file's prices that are not the catalog's at that date."""
    path = Path(args.seed)
    if not path.is_file():
        raise UserError(f"{args.seed}: no such file")
    try:
        result = import_seed(lake=Lake.open(args.lake), path=path, effective_from=args.effective_from,
                             note=args.note)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    for line in _differences_table(result.differences, name=path.name, day=str(args.effective_from)):
        print(line, file=sys.stderr)
    for note in result.skipped:
        print(f"note: {note}", file=sys.stderr)
    print(result.version)
    return 0


def _plain(price: Decimal) -> str:
    return format(price.normalize(), "f")


def _differences_table(found: list[Difference], *, name: str, day: str) -> list[str]:
    if not found:
        return [f"{name}: every price is the catalog's on {day}"]
    new = sum(d.catalog_price is None for d in found)
    rows = [("model", "region", "dimension", "seed", "catalog")] + [
        (d.model, d.region, d.dimension + (f" {d.image_class}" if d.image_class else ""), _plain(d.seed_price),
         "none" if d.catalog_price is None else _plain(d.catalog_price)) for d in found]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = (f"{name}: {len(found)} price(s) differ from the catalog on {day} ({new} where it has none); tokens per "
            f"1,000, images per image:")
    return [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
                     for r in rows]


def run_update(args: Any) -> int:
    """The new version id alone on stdout; nothing there (and a message on stderr) when nothing changed."""
    try:
        result = update_catalog(lake=Lake.open(args.lake), note=args.note)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    sheets = ", ".join(f"{name} ({version})" for version, name in result.sheets) or "none"
    if result.version is None:
        print(f"nothing to update: {result.latest} already is the shipped catalog ({result.builtin}) with the "
              f"lake's price sheets laid over it ({sheets})", file=sys.stderr)
        return 0
    print(f"published {result.version}: the shipped catalog ({result.builtin}) with the lake's price sheets laid "
          f"over it again, in order: {sheets}", file=sys.stderr)
    print(result.version)
    return 0

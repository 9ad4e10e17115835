"""Price sheets (CSV, columns in DESIGN.md "Pricing catalog"): parsing, and laying a sheet over a catalog.

Override rule (documented in docs/pricing.md): a sheet row replaces the catalog's prices for the same model key,
dimension, region and service tier during the sheet row's period ``[effective_from, effective_to)``, and only
then. An existing interval that straddles the period is cut: the part before the period keeps its price and now
ends where the period starts; the part after keeps its price and starts where the period ends. A sheet ``images``
row (the sheet has no size or quality columns) prices every size and quality of that model in its period; the
rows of one sheet replace what was there before the sheet and never cut one another (a seed price file's image
rows, :mod:`pricing_catalog.seed`, carry their size class and quality).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from common.contracts import DIMENSIONS, SERVICE_TIERS
from pricing_catalog.catalog import Catalog
from pricing_catalog.intervals import cut
from pricing_catalog.model import (
    ALLOWED_PER,
    DEFAULT_TIER,
    CatalogError,
    PriceRow,
    check_region,
    check_unit_price,
    parse_instant,
    parse_price,
)

REQUIRED_COLUMNS = ("model_id", "dimension", "price_usd", "per", "effective_from")
OPTIONAL_COLUMNS = ("effective_to", "region", "service_tier")
MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class SheetRow:
    """One parsed sheet row with its line in the file (for messages)."""

    line: int
    row: PriceRow


def _parse_row(record: dict[str, str], *, source: str) -> PriceRow:
    """One CSV record as a price row; raises ValueError with a message that says what to write."""
    model_id = record["model_id"].strip()
    if not model_id or any(c.isspace() for c in model_id):
        raise ValueError(f"model_id {model_id!r} must be a model id without spaces")
    dimension = record["dimension"].strip()
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}: use one of {', '.join(DIMENSIONS)}")
    per_text = record["per"].strip()
    if per_text not in {str(p) for p in ALLOWED_PER}:
        raise ValueError(f"per {per_text!r} must be one of {', '.join(map(str, ALLOWED_PER))}")
    price = parse_price(record["price_usd"], what="price_usd")
    check_unit_price(dimension=dimension, price=price, per=int(per_text))
    start = parse_instant(record["effective_from"], what="effective_from")
    end_text = (record.get("effective_to") or "").strip()
    end = parse_instant(end_text, what="effective_to") if end_text else None
    if end is not None and end <= start:
        raise ValueError(f"effective_to {end_text} is not after effective_from: the end is exclusive")
    tier = (record.get("service_tier") or "").strip() or DEFAULT_TIER
    if tier not in SERVICE_TIERS:
        raise ValueError(f"unknown service_tier {tier!r}: use one of {', '.join(SERVICE_TIERS)} or leave it blank")
    region = check_region((record.get("region") or "").strip())
    return PriceRow(model=model_id, dimension=dimension, price_usd=price, per=int(per_text), effective_from=start,
                    effective_to=end, source=source, region=region, service_tier=tier)


def _check_header(fields: Sequence[str] | None, name: str) -> None:
    if not fields:
        raise CatalogError(f"{name}:1: empty sheet: the first line must name the columns "
                           f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    columns = [f.strip() for f in fields]
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    problems = ([f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
        [f"missing column(s) {', '.join(missing)}"] if missing else []) + (
        [f"column(s) {', '.join(duplicated)} appear twice"] if duplicated else [])
    if problems:
        raise CatalogError(f"{name}:1: {'; '.join(problems)} (columns: {', '.join(REQUIRED_COLUMNS)}, optional "
                           f"{', '.join(OPTIONAL_COLUMNS)})")


def read_sheet(path: Path) -> list[SheetRow]:
    """Every row of a price sheet, or a :class:`CatalogError` listing each bad row as ``SHEET.csv:LINE: …``.

    Rows of the same model id, dimension, region and tier must not overlap in time.
    """
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{name}: cannot read the sheet ({exc})") from None
    reader = csv.DictReader(text.splitlines(keepends=True), restval="")
    _check_header(reader.fieldnames, name)
    rows, errors = [], []
    for record in reader:
        line = reader.line_num
        record = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in record.items()}
        if not any(v.strip() for v in record.values()):
            continue  # a blank line
        if None in record or "" in record:
            errors.append(f"{name}:{line}: more values than columns")
            continue
        try:
            rows.append(SheetRow(line=line, row=_parse_row(record, source=f"sheet {name}:{line}")))
        except ValueError as exc:
            errors.append(f"{name}:{line}: {exc}")
    errors += _overlaps(rows, name)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN] + ([f"… and {len(errors) - MAX_ERRORS_SHOWN} more"]
                                            if len(errors) > MAX_ERRORS_SHOWN else [])
        raise CatalogError("\n".join(shown) + f"\n{name}: refused ({len(errors)} bad row(s)); nothing was published")
    if not rows:
        raise CatalogError(f"{name}: the sheet has no price rows; nothing was published")
    return rows


def _overlaps(rows: list[SheetRow], name: str) -> list[str]:
    groups: dict[tuple[object, ...], list[SheetRow]] = defaultdict(list)
    for item in rows:
        groups[item.row.group].append(item)
    errors = []
    for items in groups.values():
        items.sort(key=lambda i: i.row.effective_from)
        for before, after in zip(items, items[1:], strict=False):
            if before.row.effective_to is None or before.row.effective_to > after.row.effective_from:
                errors.append(f"{name}:{after.line}: overlaps line {before.line} for {after.row.model} "
                              f"{after.row.dimension} ({after.row.region or 'every region'}, "
                              f"{after.row.service_tier}) from {after.row.effective_from.isoformat()}: end line "
                              f"{before.line} (effective_to) where this one starts")
    return sorted(errors, key=lambda e: int(e.split(":")[1]))


def apply_sheet(base: Catalog, sheet: list[SheetRow], *, version: str = "unpublished") -> Catalog:
    """A new catalog: ``base`` with the sheet laid over it (override rule in the module docstring).

    A sheet model id that is a catalog key or alias overrides that key. Any other id becomes a new key that starts
    as a copy of the prices the id resolved to before (if any), so an exact-id override for, say, one inference
    profile changes only the dimensions the sheet names.
    """
    rows = list(base.rows)
    keys = set(base.models)
    renamed: dict[str, str] = {}
    for model_id in sorted({item.row.model for item in sheet}):
        key = base.aliases.get(model_id, model_id)
        if key not in keys and model_id.lower() in keys:
            key = model_id.lower()  # catalog keys are Bedrock ids, lower case; matching ignores case too
        renamed[model_id] = key
        if key in keys:
            continue
        inherited = base.resolve(model_id)
        if inherited is not None:
            rows += [replace(r, model=model_id) for r in base.rows_for(inherited)]
        keys.add(model_id)
    tops = [replace(item.row, model=renamed[item.row.model]) for item in sheet]
    for top in tops:  # the sheet's rows cut what was there before them, never one another (e.g. image classes)
        same = (top.model, top.dimension, top.region, top.service_tier)
        rows = [part for r in rows
                for part in ((cut(r, top.effective_from, top.effective_to))
                             if (r.model, r.dimension, r.region, r.service_tier) == same else [r])]
    return Catalog(version=version, rows=[*rows, *tops], aliases=base.aliases, where="price sheet")

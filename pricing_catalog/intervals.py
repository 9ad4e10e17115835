"""Effective-dated interval arithmetic: checking for overlaps, cutting a period out, laying one layer over another.

Intervals are ``[effective_from, effective_to)``; ``effective_to`` None means open-ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from pricing_catalog.model import CatalogError, PriceRow


def _day(instant: datetime | None) -> str:
    if instant is None:
        return "open end"
    return instant.strftime("%Y-%m-%d") if instant.time() == datetime.min.time() else instant.isoformat()


def check_no_overlaps(rows: Iterable[PriceRow], *, where: str) -> None:
    """Refuse rows of one group (model, dimension, region, tier, image class) whose periods overlap.

    Raises:
        CatalogError: naming the model, the dimension and the overlapping period.
    """
    groups: dict[tuple[object, ...], list[PriceRow]] = defaultdict(list)
    for row in rows:
        if row.effective_to is not None and row.effective_to <= row.effective_from:
            raise CatalogError(f"{where}: price of `{row.model}` {row.dimension} ends ({_day(row.effective_to)}) "
                               f"before it starts ({_day(row.effective_from)}): swap or fix the dates")
        groups[row.group].append(row)
    for group_rows in groups.values():
        group_rows.sort(key=lambda r: r.effective_from)
        for before, after in zip(group_rows, group_rows[1:], strict=False):
            if before.effective_to is None or before.effective_to > after.effective_from:
                end = min((t for t in (before.effective_to, after.effective_to) if t is not None), default=None)
                region = f" in {before.region}" if before.region else ""
                if before.dimension == "images":
                    size = (f"up to {before.image_max_width}x{before.image_max_height}"
                            if before.image_max_width else "any size")
                    region += f" [{before.image_quality or 'any quality'}, {size}]"
                raise CatalogError(
                    f"{where}: prices for `{before.model}` {before.dimension}{region} ({before.service_tier}) overlap "
                    f"between {_day(after.effective_from)} and {_day(end)}: end the earlier price "
                    f"(effective_to) where the later one starts")


def cut(row: PriceRow, start: datetime, end: datetime | None) -> list[PriceRow]:
    """The parts of ``row`` outside ``[start, end)``: none, one (trimmed) or two (split around the period)."""
    parts = []
    if row.effective_from < start:
        head_end = start if row.effective_to is None else min(row.effective_to, start)
        parts.append(replace(row, effective_to=head_end))
    if end is not None and (row.effective_to is None or row.effective_to > end):
        parts.append(replace(row, effective_from=max(row.effective_from, end)))
    return parts


def overlay(base: list[PriceRow], top: list[PriceRow]) -> list[PriceRow]:
    """``top`` wins wherever it has a price; ``base`` fills the remaining time. Both are non-overlapping lists."""
    remaining = list(base)
    for upper in top:
        remaining = [part for row in remaining for part in cut(row, upper.effective_from, upper.effective_to)]
    return sorted([*remaining, *top], key=lambda r: r.effective_from)

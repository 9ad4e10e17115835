"""The catalog in memory: effective-dated price rows, model-id matching, and the price lookup the transform uses."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal

from common.contracts import SCALAR_DIMENSIONS, SERVICE_TIERS
from pricing_catalog.intervals import check_no_overlaps, overlay
from pricing_catalog.matching import ModelIndex
from pricing_catalog.model import (
    DEFAULT_IMAGE_QUALITY,
    DEFAULT_TIER,
    IMAGE_DIMENSION,
    CatalogError,
    PriceInterval,
    PriceRow,
)


class Catalog:
    """One catalog version: immutable rows plus the model index.

    Attributes:
        version: the version id (``2026-11-25T09-30-00Z-1a2b3c`` once published; ``builtin-<hash>`` for the
            built-in data not yet published).
        rows: every price row, sorted by model, dimension and start.
        aliases: extra exact ids (e.g. provisioned-model ARNs) → catalog model key.
    """

    def __init__(self, *, version: str, rows: Iterable[PriceRow], aliases: dict[str, str] | None = None,
                 where: str = "catalog") -> None:
        self.version = version
        self.rows: tuple[PriceRow, ...] = tuple(sorted(rows, key=lambda r: (r.model, r.dimension, r.effective_from)))
        check_no_overlaps(self.rows, where=where)
        self.aliases = dict(aliases or {})
        self._by_model: dict[str, list[PriceRow]] = defaultdict(list)
        for row in self.rows:
            self._by_model[row.model].append(row)
        unknown = sorted(key for key in self.aliases.values() if key not in self._by_model)
        if unknown:
            raise CatalogError(f"{where}: aliases point to models without prices: {', '.join(unknown)}")
        self._index = ModelIndex(keys=self._by_model, aliases=self.aliases)

    def __repr__(self) -> str:
        return f"Catalog(version={self.version!r}, models={len(self._by_model)}, rows={len(self.rows)})"

    @property
    def content_digest(self) -> str:
        """The sha256 of the prices and aliases, whatever the version id or the order of the rows.

        Two catalogs with the same digest price every call the same way, with the same sources and check dates; a
        published version and its read-back have the same digest (money compared by value: 0.50 is 0.5).
        """
        def canonical(row: PriceRow) -> tuple[str, ...]:
            return tuple("" if v is None else format(v.normalize(), "f") if isinstance(v, Decimal) else
                         v.isoformat() if isinstance(v, datetime | date) else str(v)
                         for v in (getattr(row, f.name) for f in fields(PriceRow)))

        digest = hashlib.sha256()
        for item in sorted(canonical(r) for r in self.rows):
            digest.update("\x1f".join(item).encode() + b"\n")
        digest.update(json.dumps(self.aliases, sort_keys=True).encode())
        return digest.hexdigest()

    @property
    def models(self) -> list[str]:
        """Every catalog model key, sorted."""
        return sorted(self._by_model)

    def rows_for(self, key: str) -> list[PriceRow]:
        """The rows of one catalog model key (empty when unknown)."""
        return list(self._by_model.get(key, ()))

    def resolve(self, model_id: str) -> str | None:
        """The catalog model key that prices ``model_id`` (rules in :mod:`pricing_catalog.matching`), or None."""
        return self._index.resolve(model_id)

    def prices_for(self, *, model_id: str, region: str | None, service_tier: str, image_width: int | None = None,
                   image_height: int | None = None, image_quality: str | None = None) -> list[PriceInterval]:
        """Every price interval that applies to one kind of call, across time, sorted by dimension then start.

        Within a dimension the intervals never overlap; pick the one that contains the event's ``event_time``.
        A region-specific price beats the all-regions price wherever both exist. Images are priced by the
        smallest size class whose pixel count (max width × max height) holds ``image_width × image_height``
        (no size given: the smallest class; larger than every class: only an any-size price applies) and by quality
        (None: ``standard``); a price for any size or quality is used where no specific one exists.

        Returns:
            An empty list when the model id matches nothing or has no price in that tier (the event is unpriced).
        """
        service_tier = service_tier or DEFAULT_TIER  # the event schema's default
        if service_tier not in SERVICE_TIERS:
            raise CatalogError(f"unknown service_tier {service_tier!r}: use one of {', '.join(SERVICE_TIERS)}")
        key = self.resolve(model_id)
        if key is None:
            return []
        rows = [r for r in self._by_model[key]
                if r.service_tier == service_tier and (r.region is None or r.region == region)]
        result: list[PriceInterval] = []
        for dimension in SCALAR_DIMENSIONS:
            layers = [[r for r in rows if r.dimension == dimension and r.region is None],
                      [r for r in rows if r.dimension == dimension and r.region is not None]]
            result += _flatten(layers)
        images = _image_layers([r for r in rows if r.dimension == IMAGE_DIMENSION], width=image_width,
                               height=image_height, quality=image_quality or DEFAULT_IMAGE_QUALITY)
        return result + _flatten(images)


def _pixels(row: PriceRow) -> int | None:
    if row.image_max_width is None or row.image_max_height is None:
        return None
    return row.image_max_width * row.image_max_height


def _image_layers(rows: list[PriceRow], *, width: int | None, height: int | None,
                  quality: str) -> list[list[PriceRow]]:
    """Image rows that fit the request, as layers from least to most specific (the last layer wins)."""
    rows = [r for r in rows if r.image_quality in (None, quality)]
    sized = sorted({p for r in rows if (p := _pixels(r)) is not None})
    if width is None or height is None:
        chosen = sized[0] if sized else None
    else:
        chosen = next((p for p in sized if p >= width * height), None)
    fitting = [r for r in rows if _pixels(r) is None or _pixels(r) == chosen]

    def specificity(row: PriceRow) -> tuple[bool, bool, bool]:
        return (row.region is not None, row.image_quality is not None, _pixels(row) is not None)

    layers: dict[tuple[bool, bool, bool], list[PriceRow]] = defaultdict(list)
    for row in fitting:
        layers[specificity(row)].append(row)
    return [layers[k] for k in sorted(layers)]


def _flatten(layers: list[list[PriceRow]]) -> list[PriceInterval]:
    merged: list[PriceRow] = []
    for layer in layers:
        if layer:
            merged = overlay(merged, sorted(layer, key=lambda r: r.effective_from))
    return [PriceInterval(dimension=r.dimension, price_usd=r.price_usd, per=r.per, effective_from=r.effective_from,
                          effective_to=r.effective_to, source=r.source) for r in merged]


def interval_at(intervals: Iterable[PriceInterval], *, dimension: str, instant: datetime) -> PriceInterval | None:
    """The interval of ``dimension`` in force at ``instant`` (a convenience for callers and tests)."""
    return next((i for i in intervals if i.dimension == dimension and i.contains(instant)), None)

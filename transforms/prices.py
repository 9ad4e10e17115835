"""The day's price table: the catalog's prices for the few distinct lookups of a day, as a small Arrow table.

DuckDB joins it to the events on the lookup and on ``valid_from <= event_time < valid_to``. Within a day a lookup
has one row per *price period*: the day is cut at every instant where any dimension's price changes, so each row
carries the unit price of every dimension in force during it (NULL where a dimension has no price).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

import pyarrow as pa

from common.contracts import UNITS
from pricing_catalog.model import PriceInterval

#: Unit prices (price_usd / per) are held in whole pico-dollars (1e-12 USD) as BIGINT: exact for every real price
#: ($3 per 1 M tokens is 3,000,000 pico-dollars per token), so count × unit price is exact integer arithmetic;
#: DuckDB's DECIMAL(38,x) arithmetic was ~60x slower (measured). A price needing more than 12 decimals per unit
#: is rounded half up to the pico-dollar (:func:`is_exact` tells).
UNIT_SCALE = 12
UNIT_PRICE = pa.int64()

LOOKUP_KEYS = ("model_id", "region", "service_tier", "image_width", "image_height", "image_quality")

PRICE_SCHEMA = pa.schema([
    pa.field("model_id", pa.string()), pa.field("region", pa.string()), pa.field("service_tier", pa.string()),
    pa.field("image_width", pa.int32()), pa.field("image_height", pa.int32()), pa.field("image_quality", pa.string()),
    pa.field("valid_from", pa.timestamp("ms", tz="UTC")), pa.field("valid_to", pa.timestamp("ms", tz="UTC")),
    *(pa.field(u.unit_price_column, UNIT_PRICE) for u in UNITS),
])


class PriceSource(Protocol):
    """What the transform needs of a catalog (``pricing_catalog.Catalog`` provides it)."""

    version: str

    def prices_for(self, *, model_id: str, region: str | None, service_tier: str, image_width: int | None = None,
                   image_height: int | None = None, image_quality: str | None = None) -> list[PriceInterval]: ...


def unit_price(interval: PriceInterval) -> Decimal:
    """``price_usd / per`` at 12 decimals (exact for real prices; see :data:`UNIT_SCALE`)."""
    return (interval.price_usd / interval.per).quantize(Decimal(1).scaleb(-UNIT_SCALE), rounding=ROUND_HALF_UP)


def unit_pico(interval: PriceInterval) -> int:
    """``price_usd / per`` in whole pico-dollars."""
    return int(unit_price(interval).scaleb(UNIT_SCALE))


def is_exact(interval: PriceInterval) -> bool:
    """Whether ``price_usd / per`` has at most 12 decimals (so costs are exact)."""
    return unit_price(interval) == interval.price_usd / interval.per


def _cuts(intervals: list[PriceInterval], start: datetime, end: datetime) -> list[datetime]:
    """The day's boundaries: its start, its end, and every price start/end strictly inside it."""
    inside = {t for i in intervals for t in (i.effective_from, i.effective_to) if t is not None and start < t < end}
    return sorted({start, end, *inside})


def _at(intervals: list[PriceInterval], dimension: str, instant: datetime) -> PriceInterval | None:
    return next((i for i in intervals if i.dimension == dimension and i.contains(instant)), None)


def price_rows(*, catalog: PriceSource, lookup: dict[str, Any], day: date) -> list[dict[str, Any]]:
    """Rows of the price table for one lookup on one day (none when the lookup has no price at all)."""
    intervals = catalog.prices_for(**lookup)
    if not intervals:
        return []
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    cuts = _cuts(intervals, start, end)
    rows = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        units = {u.unit_price_column: (unit_pico(i) if (i := _at(intervals, u.dimension, lo)) else None)
                 for u in UNITS}
        if any(v is not None for v in units.values()):
            rows.append({**lookup, "valid_from": lo, "valid_to": hi, **units})
    return rows


def price_table(*, catalog: PriceSource, lookups: list[dict[str, Any]], day: date) -> pa.Table:
    """The price table for a day's distinct lookups (see :data:`PRICE_SCHEMA`)."""
    rows: list[dict[str, Any]] = []
    for lookup in lookups:
        rows += price_rows(catalog=catalog, lookup={k: lookup.get(k) for k in LOOKUP_KEYS}, day=day)
    return pa.Table.from_pylist(rows, schema=PRICE_SCHEMA)

"""Unit prices in whole pico-dollars: the one table both the transform and the gateway price events from.

For one *lookup* (``model_id``, ``region``, ``service_tier`` and the image class) and one UTC day, :func:`price_rows`
cuts the day at every instant where any dimension's price changes and gives one row per *price period*: the unit
price of every billable unit in force during it (``None`` where a dimension has no price). The transform joins the
day's events to these rows in SQL (``transforms/prices.py`` makes them an Arrow table, ``sql/marts/usage_cost_pico.sql``
multiplies); the gateway (``ingest/pricing.py``) looks the same rows up in memory and does the same multiplication,
so a call's ``cost_usd`` and the transform's ``total_cost`` are one computation over one set of unit prices.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from common.contracts import UNITS
from pricing_catalog.model import PriceInterval

#: Unit prices (price_usd / per) are held in whole pico-dollars (1e-12 USD) as BIGINT: exact for every real price
#: ($3 per 1 M tokens is 3,000,000 pico-dollars per token), so count × unit price is exact integer arithmetic;
#: DuckDB's DECIMAL(38,x) arithmetic was ~60x slower (measured). A price needing more than 12 decimals per unit
#: is rounded half up to the pico-dollar (:func:`is_exact` tells).
UNIT_SCALE = 12

#: The event fields a price depends on (besides its time): one lookup of the catalog each.
LOOKUP_KEYS = ("model_id", "region", "service_tier", "image_width", "image_height", "image_quality")


class PriceSource(Protocol):
    """What pricing needs of a catalog (``pricing_catalog.Catalog`` provides it)."""

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
    """Rows of the price table for one lookup on one day (none when the lookup has no price at all).

    Each row is the lookup's fields, ``valid_from`` (inclusive) and ``valid_to`` (exclusive), and one
    ``unit_<count field>`` per billable unit: whole pico-dollars per unit, ``None`` when that dimension has no price
    then. A period in which no dimension has a price has no row.
    """
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

"""The day's price table: the catalog's prices for the few distinct lookups of a day, as a small Arrow table.

DuckDB joins it to the events on the lookup and on ``valid_from <= event_time < valid_to``. Within a day a lookup
has one row per *price period*: the day is cut at every instant where any dimension's price changes, so each row
carries the unit price of every dimension in force during it (NULL where a dimension has no price). The rows come
from :func:`pricing_catalog.unit_prices.price_rows`, the same rows the gateway prices ``cost_usd`` from
(``ingest/pricing.py``); this module only makes them a table.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa

from common.contracts import UNITS
from pricing_catalog.unit_prices import (
    LOOKUP_KEYS,
    UNIT_SCALE,
    PriceSource,
    is_exact,
    price_rows,
    unit_pico,
    unit_price,
)

__all__ = ["LOOKUP_KEYS", "PRICE_SCHEMA", "UNIT_PRICE", "UNIT_SCALE", "PriceSource", "is_exact", "price_rows",
           "price_table", "unit_pico", "unit_price"]

#: Unit prices are whole pico-dollars (see :data:`pricing_catalog.unit_prices.UNIT_SCALE`), BIGINT in DuckDB.
UNIT_PRICE = pa.int64()

PRICE_SCHEMA = pa.schema([
    pa.field("model_id", pa.string()), pa.field("region", pa.string()), pa.field("service_tier", pa.string()),
    pa.field("image_width", pa.int32()), pa.field("image_height", pa.int32()), pa.field("image_quality", pa.string()),
    pa.field("valid_from", pa.timestamp("ms", tz="UTC")), pa.field("valid_to", pa.timestamp("ms", tz="UTC")),
    *(pa.field(u.unit_price_column, UNIT_PRICE) for u in UNITS),
])


def price_table(*, catalog: PriceSource, lookups: list[dict[str, Any]], day: date) -> pa.Table:
    """The price table for a day's distinct lookups (see :data:`PRICE_SCHEMA`)."""
    rows: list[dict[str, Any]] = []
    for lookup in lookups:
        rows += price_rows(catalog=catalog, lookup={k: lookup.get(k) for k in LOOKUP_KEYS}, day=day)
    return pa.Table.from_pylist(rows, schema=PRICE_SCHEMA)

"""The versioned, effective-dated pricing catalog: price data in data/, the strict loader and matching here.

Public API (keyword-only): :func:`load_catalog`, :class:`Catalog` (``version``, ``resolve``, ``prices_for``),
:class:`PriceInterval`, :func:`publish`, :func:`list_versions`, :class:`VersionInfo`, :class:`CatalogError`; the
time-based prices: :func:`load_time_prices`, :class:`TimePrices` (``hourly_price``, ``intervals``, ``resolve``),
:class:`HourlyPrice`. See docs/pricing.md.
"""

from __future__ import annotations

# The CLI module is named `publish` (cli.py maps "pricing import" to pricing_catalog.publish); importing it first
# means the submodule import cannot later replace the `publish` function bound below.
import pricing_catalog.publish as _cli  # noqa: F401  (isort: split)
from common.contracts import DIMENSIONS
from pricing_catalog.catalog import Catalog, interval_at
from pricing_catalog.model import CatalogError, PriceInterval, PriceRow
from pricing_catalog.store import VersionInfo, list_versions, load_catalog, publish
from pricing_catalog.time_prices import HourlyPrice, TimePrices, load_time_prices

__all__ = ["DIMENSIONS", "Catalog", "CatalogError", "HourlyPrice", "PriceInterval", "PriceRow", "TimePrices",
           "VersionInfo", "interval_at", "list_versions", "load_catalog", "load_time_prices", "publish"]

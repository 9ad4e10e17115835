"""A call's cost at the gateway (``cost_usd`` of the usage event), from the transform's own unit prices.

:class:`GatewayPricer` holds the lake's latest catalog version in memory and prices a finished call's event exactly
as ``sql/marts/usage_cost_pico.sql`` prices its row: the unit prices are the rows of
:func:`pricing_catalog.unit_prices.price_rows` (the same rows the transform joins in SQL), looked up by the event's
lookup (model, region, tier, image class), UTC day and ``valid_from <= event_time < valid_to``; the cost is
Σ count × unit price in whole pico-dollars (integers: exact); an event that used a unit without a price, or that no
row prices, is unpriced (``cost_usd`` null). The transform's ``total_cost`` stays the figure of record.

The catalog: the lake's latest published version (``pricing/catalog/``; in AWS the gateway may read that prefix),
the built-in data while the lake has none (what the first transform publishes as its first version). A background
thread lists the versions every ``reload_seconds`` (60 by default, ``$MODELMETER_PRICING_RELOAD_SECONDS``) and
loads a newer one: a version published at T prices every call that finishes after T + ``reload_seconds`` + the load
(a few ms locally). The request path never lists or reads the lake. No catalog reachable: ``cost_usd`` is null and
a warning is logged (once per failure, again when it recovers); calls are never refused for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from common.constants import ENV_PRICING_RELOAD_SECONDS
from common.contracts import UNITS
from common.lake import Lake
from pricing_catalog.store import latest_version, load_catalog
from pricing_catalog.unit_prices import LOOKUP_KEYS, UNIT_SCALE, PriceSource, price_rows

log = logging.getLogger(__name__)

DEFAULT_RELOAD_SECONDS = 60.0
#: How long :meth:`GatewayPricer.start` waits for the first catalog before serving without one (calls finishing
#: before it is loaded are unpriced; the load goes on in the background).
DEFAULT_FIRST_LOAD_WAIT = 5.0
#: Cached (lookup, day) entries kept before the cache starts afresh: a day has few distinct lookups.
MAX_CACHED = 4096

_COUNTS = tuple(u.count_field for u in UNITS)
_UNIT_COLUMNS = tuple(u.unit_price_column for u in UNITS)
_PICO = 10 ** UNIT_SCALE
#: A price period: ``valid_from`` and ``valid_to`` as event-time text (compared as text: fixed-width ISO UTC), and
#: the unit price of each billable unit in UNITS order (whole pico-dollars; None: no price).
_Period = tuple[str, str, tuple[int | None, ...]]


def reload_seconds_from_env(env: Mapping[str, str] = os.environ) -> float:
    """``$MODELMETER_PRICING_RELOAD_SECONDS`` (a positive number), else :data:`DEFAULT_RELOAD_SECONDS`."""
    raw = env.get(ENV_PRICING_RELOAD_SECONDS)
    if not raw:
        return DEFAULT_RELOAD_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"${ENV_PRICING_RELOAD_SECONDS} must be a positive number of seconds, not {raw!r}")
    return value


def usd(pico: int) -> str:
    """Whole pico-dollars as DECIMAL(38,12) text (``3600000000`` → ``"0.003600000000"``), as the transform prints."""
    sign, pico = ("-", -pico) if pico < 0 else ("", pico)
    return f"{sign}{pico // _PICO}.{pico % _PICO:012d}"


def _event_time_text(value: Any) -> str:
    """The event's time as the event carries it (``YYYY-MM-DDTHH:MM:SS.mmmZ``); a datetime is written so."""
    if isinstance(value, str):
        return value
    ts = value.astimezone(UTC) if value.tzinfo is not None else value
    return (f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}."
            f"{ts.microsecond // 1000:03d}Z")


@dataclass
class _Loaded:
    """One catalog version and the price periods looked up in it so far (dropped together on a reload)."""

    catalog: PriceSource
    periods: dict[tuple[Any, ...], tuple[_Period, ...]] = field(default_factory=dict)


class GatewayPricer:
    """Prices finished calls' events in memory; see the module docstring.

    Args:
        lake: where the published catalog versions are (``pricing/catalog/``); reloaded when a newer one appears.
        catalog: a fixed catalog instead of a lake (tests, benchmarks): never reloaded.
        reload_seconds: how often the background thread lists the lake's versions.
        clock: monotonic seconds, for :meth:`poll` (injectable in tests).
    """

    def __init__(self, *, lake: Lake | None = None, catalog: PriceSource | None = None,
                 reload_seconds: float = DEFAULT_RELOAD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if (lake is None) == (catalog is None):
            raise ValueError("GatewayPricer needs a lake or a catalog (one of them)")
        self.lake = lake
        self.reload_seconds = reload_seconds
        self._clock = clock
        self._loaded: _Loaded | None = _Loaded(catalog) if catalog is not None else None
        self._next_poll = float("-inf")
        self._problem: str | None = None
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    # --- the request path ---------------------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The catalog version prices come from now (``None``: no catalog yet, every call unpriced)."""
        loaded = self._loaded
        return loaded.catalog.version if loaded else None

    def priced_pico(self, event: Mapping[str, Any]) -> tuple[int, bool]:
        """``(pico_priced, fully_priced)``: the cost in whole pico-dollars of the units the event used that have a
        price, and whether every unit it used has one (and a price row exists for it at its time at all). The
        transform's ``total_cost`` is ``pico_priced`` / 10^12 exactly when ``fully_priced``."""
        loaded = self._loaded
        if loaded is None:
            return 0, False
        when = event["event_time"]
        if not isinstance(when, str):
            when = _event_time_text(when)
        # LOOKUP_KEYS and the UTC day, spelled out (the hot path); service_tier defaults as staging does
        key = (event.get("model_id"), event.get("region"), event.get("service_tier") or "on_demand",
               event.get("image_width"), event.get("image_height"), event.get("image_quality"), when[:10])
        periods = loaded.periods.get(key)
        if periods is None:
            periods = self._periods(loaded, key)
        units = next((u for valid_from, valid_to, u in periods if valid_from <= when < valid_to), None)
        if units is None:  # no price row at its time: the transform's left join finds none either
            return 0, False
        pico, fully = 0, True
        for count_field, unit in zip(_COUNTS, units):  # noqa: B905 - both are UNITS long, by construction
            count = event.get(count_field)
            if count:
                if unit is None:
                    fully = False
                else:
                    pico += count * unit
        return pico, fully

    def cost_usd(self, event: Mapping[str, Any]) -> str | None:
        """The event's ``cost_usd``: decimal USD with 12 places, ``None`` when not fully priced. Never raises: a
        pricing bug must not fail a call (it is logged; the transform prices the event anyway)."""
        try:
            pico, fully = self.priced_pico(event)
        except Exception:
            log.exception("could not price a usage event at the gateway; cost_usd left null")
            return None
        return usd(pico) if fully else None

    def _periods(self, loaded: _Loaded, key: tuple[Any, ...]) -> tuple[_Period, ...]:
        lookup = dict(zip(LOOKUP_KEYS, key[:-1], strict=True))
        rows = price_rows(catalog=loaded.catalog, lookup=lookup, day=date.fromisoformat(key[-1]))
        # valid_from/valid_to as the price table stores them (timestamp ms: sub-millisecond parts cut), as text
        periods = tuple((_event_time_text(r["valid_from"]), _event_time_text(r["valid_to"]),
                         tuple(r[c] for c in _UNIT_COLUMNS)) for r in rows)
        if len(loaded.periods) >= MAX_CACHED:
            loaded.periods.clear()
        loaded.periods[key] = periods
        return periods

    # --- keeping the catalog current (off the request path) ------------------------------------------------------

    def start(self, *, wait: float = DEFAULT_FIRST_LOAD_WAIT) -> GatewayPricer:
        """Start the background thread (first load at once, then a poll every ``reload_seconds``) and wait up to
        ``wait`` seconds for the first load. No-op for a fixed catalog."""
        if self.lake is None or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="modelmeter-pricing", daemon=True)
        self._thread.start()
        self._first_attempt.wait(wait)
        return self

    def close(self) -> None:
        """Stop the background thread (it holds no resource: waiting for it is not needed)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            self.poll(force=True)
        finally:
            self._first_attempt.set()
        while not self._stop.wait(self.reload_seconds):
            self.poll()

    def poll(self, *, force: bool = False) -> bool:
        """List the lake's versions and load a newer one, unless the last listing is under ``reload_seconds`` old
        (``force``: list now). True when the catalog changed. Failures are logged, never raised."""
        if self.lake is None:
            return False
        with self._poll_lock:
            now = self._clock()
            if not force and now < self._next_poll:
                return False
            self._next_poll = now + self.reload_seconds
            try:
                return self._refresh(self.lake)
            except Exception as exc:  # the lake unreachable, a version unreadable: keep what we have
                self._report(f"{type(exc).__name__}: {exc}")
                return False

    def _refresh(self, lake: Lake) -> bool:
        latest = latest_version(lake=lake)
        current = self.version
        if latest is None:  # nothing published yet: the built-in data, which the first transform publishes
            if current is not None:
                return False
            catalog: PriceSource = load_catalog(lake=None)
            log.warning("the lake %s has no published price catalog yet; pricing calls from the built-in prices "
                        "(%s) until one is published", lake.uri, catalog.version)
        elif latest == current:
            self._report(None)
            return False
        else:
            catalog = load_catalog(lake=lake, version=latest)
            log.info("gateway prices calls from catalog version %s", latest)
        self._loaded = _Loaded(catalog)
        self._report(None)
        return True

    def _report(self, problem: str | None) -> None:
        if problem == self._problem:
            return
        if problem is not None:
            what = f"still pricing from version {self.version}" if self.version else "cost_usd is null"
            log.warning("the gateway cannot read the price catalog (%s): %s; retrying every %g s", problem, what,
                        self.reload_seconds)
        elif self._problem is not None:
            log.warning("the gateway reads the price catalog again (version %s)", self.version)
        self._problem = problem


def pricer_for_lake(lake: Lake | str | None, *, env: Mapping[str, str] = os.environ,
                    wait: float = DEFAULT_FIRST_LOAD_WAIT) -> GatewayPricer | None:
    """The started pricer of a lake (a :class:`Lake` or its URI; ``None``: no pricing, every ``cost_usd`` null)."""
    if lake is None or lake == "":
        return None
    opened = lake if isinstance(lake, Lake) else Lake.open(lake)
    return GatewayPricer(lake=opened, reload_seconds=reload_seconds_from_env(env)).start(wait=wait)


__all__ = ["DEFAULT_RELOAD_SECONDS", "GatewayPricer", "pricer_for_lake", "reload_seconds_from_env", "usd"]

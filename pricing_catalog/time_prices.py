"""Time-based prices: what AWS charges by the hour whatever the calls (``pricing_catalog/data/time_based/``).

Two kinds, each priced per hour of one unit of capacity (docs/pricing.md "Time-based prices"):

- ``provisioned_throughput``: Amazon Bedrock Provisioned Throughput, USD per **model unit** per hour, by commitment
  term (``no_commitment``, ``one_month``, ``six_months``), keyed by the catalog model id;
- ``sagemaker_instance``: Amazon SageMaker real-time inference, USD per **instance** per hour (term
  ``on_demand``), keyed by the instance type (``ml.g5.xlarge``).

Every price is effective-dated (``effective_from`` inclusive, ``effective_to`` exclusive), for one region (a price
is never applied to another region), a quoted decimal string, with the https ``source`` it was read from, the dated
``copy`` where the page itself was read through one, and the date it was ``checked``. The quantities (model units,
instance counts, hours) come from the bill or from the capacity configuration, never from usage events.

These prices are loaded from the shipped data (:func:`load_time_prices`), not published into the lake's catalog
versions: a catalog version holds per-unit prices of usage events (``prices.parquet``, its content digest, price
sheets laid over it), and none of that applies to hourly capacity. The version id ``time-<hash>`` names the data.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.yamlfile import Loc, YamlFileError, read_yaml, validate
from pricing_catalog.matching import ModelIndex
from pricing_catalog.model import CatalogError, one_region, parse_instant, parse_price

DATA_FILE = Path(__file__).parent / "data" / "time_based" / "hourly.yaml"

PROVISIONED = "provisioned_throughput"
SAGEMAKER = "sagemaker_instance"
#: The commitment terms of each kind (Bedrock: CreateProvisionedModelThroughput's commitment duration).
TERMS: dict[str, tuple[str, ...]] = {PROVISIONED: ("no_commitment", "one_month", "six_months"),
                                     SAGEMAKER: ("on_demand",)}
#: What one hour at the price is an hour of.
UNITS: dict[str, str] = {PROVISIONED: "model unit", SAGEMAKER: "instance"}
#: The file's section of each kind.
_SECTIONS = {PROVISIONED: "provisioned_throughput", SAGEMAKER: "sagemaker_instances"}
#: A price per hour above this is a typo (the highest real ones are near 100: an ml.p5.48xlarge, a Claude model unit).
MAX_HOURLY_PRICE_USD = Decimal(1000)


@dataclass(frozen=True)
class HourlyPrice:
    """One effective-dated price per hour of one unit (a model unit, an instance), in one region.

    Cost of ``h`` hours of ``n`` units = ``h * n * price_usd``.
    """

    kind: str
    key: str  # catalog model id (provisioned throughput) or instance type (SageMaker)
    term: str
    region: str
    price_usd: Decimal
    effective_from: datetime
    effective_to: datetime | None
    source: str
    checked: date
    copy: str | None = None

    @property
    def unit(self) -> str:
        """``USD per model unit per hour`` or ``USD per instance per hour``."""
        return f"USD per {UNITS[self.kind]} per hour"

    def contains(self, instant: datetime) -> bool:
        """Whether ``instant`` (timezone-aware) falls in ``[effective_from, effective_to)``."""
        return self.effective_from <= instant and (self.effective_to is None or instant < self.effective_to)


def _price(value: Any, *, what: str) -> Decimal:
    price = parse_price(value, what=what)
    if price > MAX_HOURLY_PRICE_USD:
        raise ValueError(f"{what} {value!r} is above {MAX_HOURLY_PRICE_USD} USD per hour: is it a monthly price?")
    return price


class _Entry(BaseModel):
    """One dated entry: the prices of the terms it lists, in one region."""

    model_config = ConfigDict(extra="forbid")

    effective_from: datetime = Field(description="Inclusive start: YYYY-MM-DD (midnight UTC) or an instant with zone.")
    effective_to: datetime | None = Field(default=None, description="Exclusive end; absent: open-ended.")
    region: str = Field(description="The AWS region the price is for (required: never applied to another).")
    source: str = Field(pattern=r"^https://", description="Where AWS publishes the price.")
    copy_url: str | None = Field(default=None, alias="copy", pattern=r"^https://",
                                 description="The dated copy the figure was read from, when not the page itself.")
    checked: date = Field(description="When the figure was last checked.")

    @field_validator("effective_from", "effective_to", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> datetime | None:
        return None if value is None else parse_instant(value, what="date")

    @field_validator("checked", mode="before")
    @classmethod
    def _day(cls, value: Any) -> date:
        return parse_instant(value, what="checked").date()

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return one_region(value, why=" (a time-based price is for one region)")

    def terms(self) -> dict[str, Decimal]:
        return {t: getattr(self, t) for t in type(self).model_fields
                if t in _ALL_TERMS and getattr(self, t) is not None}


_ALL_TERMS = {t for terms in TERMS.values() for t in terms}


class _ProvisionedEntry(_Entry):
    no_commitment: Decimal | None = Field(default=None, description="USD per model unit per hour, no commitment.")
    one_month: Decimal | None = Field(default=None, description="USD per model unit per hour, 1-month commitment.")
    six_months: Decimal | None = Field(default=None, description="USD per model unit per hour, 6-month commitment.")

    @field_validator("no_commitment", "one_month", "six_months", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Decimal | None:
        return None if value is None else _price(value, what="price")


class _InstanceEntry(_Entry):
    on_demand: Decimal | None = Field(default=None, description="USD per instance per hour, real-time inference.")

    @field_validator("on_demand", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Decimal | None:
        return None if value is None else _price(value, what="price")


class _ProvisionedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    aliases: list[str] = Field(default_factory=list, description="Other model ids priced like this one.")
    prices: list[_ProvisionedEntry] = Field(min_length=1)


class _InstanceItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    prices: list[_InstanceEntry] = Field(min_length=1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provisioned_throughput: dict[str, _ProvisionedItem] = Field(default_factory=dict)
    sagemaker_instances: dict[str, _InstanceItem] = Field(default_factory=dict)


class TimePrices:
    """The time-based prices of one data file, with lookups by kind, key, region, term and instant.

    Attributes:
        version: ``time-<first 12 hex of the file's sha256>``.
        prices: every price, sorted by kind, key, term, region and start.
        aliases: extra model ids → the key that prices them (provisioned throughput).
    """

    def __init__(self, *, version: str, prices: list[HourlyPrice], aliases: dict[str, str] | None = None) -> None:
        self.version = version
        self.prices = tuple(sorted(prices, key=lambda p: (p.kind, p.key, p.term, p.region, p.effective_from)))
        self.aliases = dict(aliases or {})
        self._by: dict[tuple[str, str], list[HourlyPrice]] = defaultdict(list)
        for p in self.prices:
            self._by[(p.kind, p.key)].append(p)
        self._models = ModelIndex(keys={p.key for p in self.prices if p.kind == PROVISIONED}, aliases=self.aliases)

    def __repr__(self) -> str:
        return f"TimePrices(version={self.version!r}, prices={len(self.prices)})"

    def resolve(self, *, kind: str, key: str) -> str | None:
        """The price key of a provisioned model id (the catalog's matching rules: exact, alias, foundation-model
        ARN, context-window variant such as ``…:200k``) or of an instance type (exact, any case); None: unpriced."""
        _check_kind(kind)
        if kind == PROVISIONED:
            return self._models.resolve(key)
        found = key.strip().lower()
        return found if (kind, found) in self._by else None

    def intervals(self, *, kind: str, key: str, region: str, commitment: str | None = None) -> list[HourlyPrice]:
        """Every price of one key, region and term across time, sorted by start (they never overlap)."""
        term = _term(kind, commitment)
        resolved = self.resolve(kind=kind, key=key)
        if resolved is None:
            return []
        return [p for p in self._by[(kind, resolved)] if p.region == region and p.term == term]

    def hourly_price(self, *, kind: str, key: str, region: str, commitment: str | None = None,
                     at: datetime) -> HourlyPrice | None:
        """The price in force at ``at`` (timezone-aware) for one key, region and term; None: unpriced.

        ``commitment`` is required for provisioned throughput (``no_commitment``, ``one_month``, ``six_months``)
        and absent (or ``on_demand``) for SageMaker instances.

        Raises:
            CatalogError: an unknown kind or term.
        """
        if at.tzinfo is None:
            raise CatalogError("`at` must be timezone-aware (UTC)")
        return next((p for p in self.intervals(kind=kind, key=key, region=region, commitment=commitment)
                     if p.contains(at)), None)


def _check_kind(kind: str) -> None:
    if kind not in TERMS:
        raise CatalogError(f"unknown time-based kind {kind!r}: use one of {', '.join(TERMS)}")


def _term(kind: str, commitment: str | None) -> str:
    _check_kind(kind)
    if kind == SAGEMAKER:
        if commitment not in (None, "on_demand"):
            raise CatalogError(f"SageMaker instances have no commitment term (got {commitment!r})")
        return "on_demand"
    if commitment not in TERMS[PROVISIONED]:
        raise CatalogError(f"commitment {commitment!r} of provisioned throughput must be one of "
                           f"{', '.join(TERMS[PROVISIONED])}")
    return commitment


def _rows(doc: _File, lines: dict[Loc, int], name: str) -> tuple[list[HourlyPrice], dict[str, str]]:
    prices: list[HourlyPrice] = []
    line_of: dict[int, int] = {}  # id(price) → its entry's line
    aliases: dict[str, str] = {}
    items: list[tuple[str, str, _ProvisionedItem | _InstanceItem]] = (
        [(PROVISIONED, k, v) for k, v in doc.provisioned_throughput.items()]
        + [(SAGEMAKER, k, v) for k, v in doc.sagemaker_instances.items()])
    for kind, written, item in items:
        key = written.lower() if kind == SAGEMAKER else written  # instance types are compared in any case
        for alias in getattr(item, "aliases", []):
            aliases[alias] = key
        for number, entry in enumerate(item.prices):
            line = lines.get((_SECTIONS[kind], written, "prices", number), 1)
            terms = entry.terms()
            if not terms:
                raise CatalogError(f"{name}:{line}: {_SECTIONS[kind]}.{key} price entry {number + 1}: no price: give "
                                   f"at least one of {', '.join(TERMS[kind])}")
            if entry.effective_to is not None and entry.effective_to <= entry.effective_from:
                raise CatalogError(f"{name}:{line}: {key}: effective_to is not after effective_from")
            for term, price in terms.items():
                prices.append(HourlyPrice(kind=kind, key=key, term=term, region=entry.region, price_usd=price,
                                          effective_from=entry.effective_from, effective_to=entry.effective_to,
                                          source=entry.source, copy=entry.copy_url, checked=entry.checked))
                line_of[id(prices[-1])] = line
    _no_overlaps(prices, name, line_of)
    return prices, aliases


def _no_overlaps(prices: list[HourlyPrice], name: str, line_of: dict[int, int]) -> None:
    groups: dict[tuple[str, str, str, str], list[HourlyPrice]] = defaultdict(list)
    for p in prices:
        groups[(p.kind, p.key, p.term, p.region)].append(p)
    for (_kind, key, term, region), group in groups.items():
        group.sort(key=lambda p: p.effective_from)
        for before, after in zip(group, group[1:], strict=False):
            if before.effective_to is None or before.effective_to > after.effective_from:
                raise CatalogError(f"{name}:{line_of[id(after)]}: prices of {key} ({term}, {region}) overlap from "
                                   f"{after.effective_from:%Y-%m-%d} with the entry on line {line_of[id(before)]}: "
                                   f"end the earlier one (effective_to) where the later one starts")


def read_time_prices(path: Path) -> TimePrices:
    """Load and check one time-based price file.

    Raises:
        CatalogError: naming the file, line and path of every problem, and how to fix it.
    """
    text = path.read_text(encoding="utf-8")
    try:
        data, lines = read_yaml(text, name=path.name)
        doc = validate(_File, data, lines=lines, name=path.name)
    except YamlFileError as exc:
        raise CatalogError("; ".join(exc.problems)) from None
    prices, aliases = _rows(doc, lines, path.name)
    version = f"time-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    try:
        return TimePrices(version=version, prices=prices, aliases=aliases)
    except ValueError as exc:
        raise CatalogError(f"{path.name}: {exc}") from None


@cache
def load_time_prices(path: Path | None = None) -> TimePrices:
    """The shipped time-based prices (``pricing_catalog/data/time_based/hourly.yaml``), or those of ``path``."""
    return read_time_prices(path or DATA_FILE)

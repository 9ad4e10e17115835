"""Time-based charges at list price: a bill's hourly lines valued, and configured capacity the bill does not show.

A ``time_based`` bill line (provisioned-throughput model-unit hours, SageMaker endpoint instance hours) gets its
**list value**: the billed hours × the catalog's hourly price (:mod:`pricing_catalog.time_prices`) in force at the
line's start, for its region and commitment — so finance sees bill against list. Which price applies comes from the
bill and from the capacity configuration (:mod:`finance.capacity`), never from usage events:

- a SageMaker line names its instance type in its usage type (``USE1-Host:ml.g5.xlarge``);
- a provisioned-throughput line is matched to a configured purchase by its resource id (the provisioned-model ARN),
  which says the model and the commitment; else its usage type is read (``…-<BillingName>-ProvisionedThroughput-
  <commitment>-…``, docs/finance.md section 2). A line whose model or commitment is known from neither stays
  unpriced (no list value), never guessed.

Configured capacity that has **no** bill line in the period is valued by its configuration: hours of the period it
ran × model units (or instances) × the hourly price, one row per price in force. Those rows carry no billed dollars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from finance.capacity import Capacity, Endpoint, Provisioned
from finance.usage_types import UsageTypeMap
from pricing_catalog.time_prices import PROVISIONED, SAGEMAKER, HourlyPrice, TimePrices

#: The usage-type map's time-based kinds (the reconciliation rows' ``dimension``) → the price kind.
PRICE_KIND = {"provisioned_throughput_model_unit_hours": PROVISIONED, "sagemaker_instance_hours": SAGEMAKER}
DIMENSION_OF = {kind: dimension for dimension, kind in PRICE_KIND.items()}
#: The columns a reconciliation row carries for time-based list values (None on every other row).
LIST_COLUMNS = ("list_basis", "capacity", "price_key", "commitment", "list_quantity", "list_unit_price",
                "list_value")
#: ``list_basis``: the hours valued are the bill's, or the configuration's (no bill line: no billed dollars).
BILL, CONFIGURATION = "bill", "configuration"
_Q = Decimal(1).scaleb(-12)
_HOUR = Decimal(3600)


def _aware(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _overlaps(entry: Provisioned | Endpoint, start: datetime, end: datetime) -> bool:
    return entry.start < end and (entry.end is None or entry.end > start)


@dataclass
class TimeValuer:
    """Values one period's time-based lines and then its configured capacity without a bill line."""

    capacity: Capacity
    prices: TimePrices
    usage_types: UsageTypeMap
    default_region: str = "us-east-1"
    billed: set[str] = field(default_factory=set)  # names of the configured entries a bill line matched

    def line(self, line: dict[str, Any], *, dimension: str | None, region: str | None,
             quantity: Decimal) -> dict[str, Any]:
        """The list columns of one time-based bill line (``quantity``: its billed hours)."""
        kind = PRICE_KIND.get(dimension or "")
        out: dict[str, Any] = {"list_basis": BILL, "list_quantity": quantity}
        if kind is None:
            return out
        region = region or self.default_region
        entry = self._entry_of(line, kind=kind, region=region)
        if entry is not None:
            self.billed.add(entry.name)
            out["capacity"] = entry.name
        usage_type = line["line_item_usage_type"] or ""
        if kind == SAGEMAKER:
            key = self.usage_types.instance_type(usage_type) or (entry.instance_type if isinstance(entry, Endpoint)
                                                                  else None)
            commitment = None
        elif isinstance(entry, Provisioned):
            key, commitment = entry.model, entry.commitment
        else:
            key, commitment = self.usage_types.provisioned(usage_type)
        if key is None or (kind == PROVISIONED and commitment is None):
            return {**out, "price_key": key, "commitment": commitment}
        price = self.prices.hourly_price(kind=kind, key=key, region=region, commitment=commitment,
                                         at=_aware(line["line_item_usage_start_date"]))
        return {**out, **self._priced(kind, key, commitment, price, quantity)}

    def _priced(self, kind: str, key: str, commitment: str | None, price: HourlyPrice | None,
                quantity: Decimal) -> dict[str, Any]:
        return {"price_key": price.key if price else (self.prices.resolve(kind=kind, key=key) or key),
                "commitment": commitment,
                "list_unit_price": price.price_usd if price else None,
                "list_value": (quantity * price.price_usd).quantize(_Q) if price else None}

    def _entry_of(self, line: dict[str, Any], *, kind: str, region: str) -> Provisioned | Endpoint | None:
        """The configured entry a bill line is for: by resource id (a provisioned-model ARN, ``…endpoint/<name>``)
        or, for a purchase configured without an ARN, by the model its usage type names in the same region."""
        start, end = _aware(line["line_item_usage_start_date"]), _aware(line["line_item_usage_end_date"])
        resource = (line.get("line_item_resource_id") or "").lower()
        if kind == SAGEMAKER:
            return next((e for e in self.capacity.endpoints if _overlaps(e, start, end)
                         and resource.endswith(f"endpoint/{e.name.lower()}")), None)
        running = [e for e in self.capacity.provisioned if _overlaps(e, start, end)]
        by_arn = next((e for e in running if e.arn and resource == e.arn.lower()), None)
        if by_arn is not None:
            return by_arn
        named, _ = self.usage_types.provisioned(line["line_item_usage_type"] or "")
        named_key = self.prices.resolve(kind=kind, key=named) if named else None
        return next((e for e in running if not e.arn and e.region == region and named_key is not None
                     and self.prices.resolve(kind=kind, key=e.model) == named_key), None)

    def unbilled(self, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Rows (their time-based columns) valuing the configured capacity of ``[start, end)`` no bill line
        matched: per entry, one row per price in force (an unpriced stretch: a row without list value)."""
        rows = []
        for entry in self.capacity.active(start, end):
            if entry.name in self.billed:
                continue
            lo, hi = max(entry.start, start), min(entry.end or end, end)
            kind = PROVISIONED if isinstance(entry, Provisioned) else SAGEMAKER
            key = entry.model if isinstance(entry, Provisioned) else entry.instance_type
            commitment = entry.commitment if isinstance(entry, Provisioned) else None
            intervals = self.prices.intervals(kind=kind, key=key, region=entry.region, commitment=commitment)
            for a, b, price in _pieces(lo, hi, intervals):
                quantity = Decimal(int((b - a).total_seconds())) / _HOUR * entry.units
                rows.append({"dimension": DIMENSION_OF[kind], "region": entry.region, "usage_date": a.date(),
                             "resource_id": entry.arn if isinstance(entry, Provisioned) else None,
                             "list_basis": CONFIGURATION, "capacity": entry.name,
                             "list_quantity": quantity.quantize(_Q),
                             **self._priced(kind, key, commitment, price, quantity)})
        return rows


def _pieces(start: datetime, end: datetime, prices: list[HourlyPrice]
            ) -> list[tuple[datetime, datetime, HourlyPrice | None]]:
    """``[start, end)`` cut where the price changes; a stretch without a price has None."""
    cuts = sorted({start, end, *(t for p in prices for t in (p.effective_from, p.effective_to)
                                 if t is not None and start < t < end)})
    return [(a, b, next((p for p in prices if p.contains(a)), None)) for a, b in zip(cuts, cuts[1:], strict=False)]

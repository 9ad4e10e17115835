"""The catalog's value types: one price row, one price interval, the error type, and instant parsing.

Money is ``Decimal`` everywhere (DESIGN.md: DECIMAL(38,12) USD); a float never enters the catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from common.constants import MONEY_PRECISION, MONEY_SCALE
from common.contracts import UNIT_OF_COUNT, UNIT_OF_DIMENSION

#: The event fields a price counts (DESIGN.md "Pricing catalog", column ``dimension``): the billable units'.
IMAGE_DIMENSION = UNIT_OF_COUNT["image_count"].dimension

#: How many units one price is for.
ALLOWED_PER = (1, 1000, 1000000)

DEFAULT_TIER = "on_demand"

#: AWS region names (us-east-1, eu-central-2, us-gov-west-1, …); a typo would silently never match an event.
_REGION_RE = re.compile(r"^[a-z]{2,3}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")

DEFAULT_IMAGE_QUALITY = "standard"


class CatalogError(Exception):
    """Bad price data or a bad request of the catalog; the message names the file/row and says how to fix it."""


@dataclass(frozen=True)
class PriceRow:
    """One effective-dated price, as stored in the catalog and in a published version.

    ``model`` is a catalog model key (what :meth:`Catalog.resolve` returns). ``region`` None means every region.
    For ``images``, ``image_max_width`` × ``image_max_height`` bound the size class (None: any size) and
    ``image_quality`` the quality (None: any quality).
    """

    model: str
    dimension: str
    price_usd: Decimal
    per: int
    effective_from: datetime
    effective_to: datetime | None
    source: str
    region: str | None = None
    service_tier: str = DEFAULT_TIER
    image_max_width: int | None = None
    image_max_height: int | None = None
    image_quality: str | None = None
    checked: date | None = None

    @property
    def group(self) -> tuple[object, ...]:
        """The prices that must never overlap in time: same model, dimension, region, tier and image class."""
        return (self.model, self.dimension, self.region, self.service_tier, self.image_max_width,
                self.image_max_height, self.image_quality)


@dataclass(frozen=True)
class PriceInterval:
    """The price of one dimension during ``[effective_from, effective_to)`` (``effective_to`` None: open-ended).

    Cost of ``n`` units = ``n * price_usd / per``.
    """

    dimension: str
    price_usd: Decimal
    per: int
    effective_from: datetime
    effective_to: datetime | None
    source: str

    def contains(self, instant: datetime) -> bool:
        """Whether ``instant`` (timezone-aware) falls in this interval: start inclusive, end exclusive."""
        return self.effective_from <= instant and (self.effective_to is None or instant < self.effective_to)


def parse_instant(value: object, *, what: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO-8601 instant with a zone, as an aware UTC datetime.

    Raises:
        ValueError: with a message saying what to write instead.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{what} {value.isoformat()} has no time zone: quote it and add Z (UTC)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a date YYYY-MM-DD or an ISO-8601 UTC instant, got {value!r}")
    text = value.strip()
    try:
        if len(text) == 10:
            return parse_instant(date.fromisoformat(text), what=what)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a date: write YYYY-MM-DD or 2025-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {text!r} has no time zone: add Z for UTC (e.g. {text}Z)")
    return parsed.astimezone(UTC)


def parse_price(value: object, *, what: str) -> Decimal:
    """A price written as a decimal string (never a float: floats lose cents), ≥ 0, at most 12 decimals.

    Raises:
        ValueError: with a message saying what to write instead.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        shown = repr(value)
        hint = f"write it as a quoted string, e.g. '{value}'" if isinstance(value, int | float) else "write a decimal"
        raise ValueError(f"{what} {shown} is not a quoted decimal string: {hint} (floats lose cents)")
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a number: write a decimal such as 0.25") from None
    if not price.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    if price < 0:
        raise ValueError(f"{what} {value!r} is negative: prices are ≥ 0")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MONEY_SCALE:
        raise ValueError(f"{what} {value!r} has more than {MONEY_SCALE} decimals: use a larger `per` instead")
    if price >= Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE):
        raise ValueError(f"{what} {value!r} is too large")
    return price


#: The highest unit price accepted, per token and per image (USD). Costs are computed as whole pico-dollars in
#: 64-bit integers: with the per-event maxima of the usage event (``common.contracts``: 10^9 tokens and 10^4 images
#: per dimension) every cost of one event, and their sum, fits. No real price comes near these ($75 per million
#: tokens and $0.14 per image are the highest in the catalog), so a price above them is a typo, most often a
#: ``per`` of 1 where 1000000 was meant.
MAX_UNIT_PRICE_USD = {u.dimension: u.max_unit_price_usd for u in UNIT_OF_DIMENSION.values()}


def check_unit_price(*, dimension: str, price: Decimal, per: int, what: str = "price_usd") -> None:
    """Refuse a price whose unit price (``price / per``) is above :data:`MAX_UNIT_PRICE_USD` for its dimension.

    Raises:
        ValueError: naming the unit price and the limit, and the likely fix.
    """
    cap = MAX_UNIT_PRICE_USD[dimension]
    unit = price / per
    if unit > cap:
        unit_name = "image" if dimension == IMAGE_DIMENSION else "token"
        hint = " (is `per` right? token prices are usually per 1000000)" if unit_name == "token" else ""
        raise ValueError(f"{what} {price} per {per} is {unit:f} USD per {unit_name}, above the limit of {cap} USD "
                         f"per {unit_name}{hint}")


def check_region(value: object) -> str | None:
    """An AWS region name, or None for every region.

    Raises:
        ValueError: the value does not look like a region name.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REGION_RE.match(value):
        raise ValueError(f"region {value!r} is not an AWS region name such as us-east-1 (leave it blank for every "
                         f"region)")
    return value


def one_region(value: object, *, why: str = "") -> str:
    """An AWS region name, where one is required (no "every region").

    Raises:
        ValueError: blank, or not a region name (``why`` is added to the message).
    """
    try:
        region = check_region(value)
    except ValueError:
        region = None
    if region is None:
        raise ValueError(f"{value!r} is not an AWS region name such as us-east-1{why}")
    return region

"""The seed guidance's price file (``models.json``) read strictly, as a price sheet, and compared with a catalog.

The AWS guidance modelmeter replaces ("Multi-tenant generative AI gateway with cost and usage tracking on AWS",
``lambdas/cost_tracking/models.json``) prices calls from one JSON file::

    {"us-east-1": {
        "text": {"anthropic.claude-v2:1": {"input_cost": 0.008, "output_cost": 0.024}, …},
        "embeddings": {"amazon.titan-embed-text-v1": {"input_cost": 0.0001, "output_cost": 0}, …},
        "image": {"amazon.titan-image-generator-v1": {"512x512": {"standard": 0.008, "premium": 0.01},
                                                      "larger": {"standard": 0.01, "premium": 0.012}}, …}},
     "us-west-2": {…}, …}

Token prices are USD per 1,000 tokens (its ``cost_tracking/utils.py`` divides by 1000); an image costs the price of
its size bucket (``512x512``: width and height ≤ 512, ``larger``: anything else) and quality. As a price sheet each
price becomes a row for that model in that region, on demand, from the effective date on (open-ended): laid over the
catalog it wins there (``sheet.apply_sheet``), and every other region keeps the catalog's prices.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError

from common.lake import Lake
from pricing_catalog.catalog import Catalog, interval_at
from pricing_catalog.model import (
    DEFAULT_TIER,
    IMAGE_DIMENSION,
    CatalogError,
    PriceRow,
    check_region,
    check_unit_price,
    parse_instant,
)
from pricing_catalog.publish import publish_sheet
from pricing_catalog.sheet import MAX_ERRORS_SHOWN, SheetRow
from pricing_catalog.store import load_catalog

#: The seed's token prices are per 1,000 tokens.
TOKENS_PER_PRICE = 1000
#: The seed's ``512x512`` bucket holds images up to 512 × 512; ``larger`` holds every other size.
SMALL_BUCKET = "512x512"
LARGER_BUCKET = "larger"
#: The image size at which a seed ``larger`` price is compared with the catalog's (the catalog has size classes).
LARGER_COMPARED_AT = (1024, 1024)
#: The seed logs an image input to a multimodal embeddings model as ``<model>-image`` and prices the base64 text of
#: the image per 1,000 tokens; modelmeter never records such an id, so these entries are reported and skipped.
IMAGE_INPUT_SUFFIX = "-image"


def _model_id(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"model id {value!r} must be a Bedrock model id without spaces")
    return value


def _region(value: str) -> str:
    check_region(value)
    if not value:
        raise ValueError("region must be an AWS region name such as us-east-1")
    return value


_ModelId = Annotated[str, AfterValidator(_model_id)]
_Region = Annotated[str, AfterValidator(_region)]
_Price = Annotated[Decimal, Field(strict=True, ge=0, decimal_places=12)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SeedTokenPrices(_Strict):
    """The prices of one text or embeddings model in one region."""

    input_cost: _Price = Field(description="USD per 1,000 input tokens.")
    output_cost: _Price = Field(description="USD per 1,000 output tokens (0 for embeddings models).")


class SeedQualityPrices(_Strict):
    """The price of one image of a size bucket, by quality (the seed picks ``premium`` above 50 steps)."""

    standard: _Price = Field(description="USD per image of standard quality.")
    premium: _Price = Field(description="USD per image of premium quality.")


class SeedImagePrices(_Strict):
    """The per-image prices of one image model in one region, by size bucket."""

    small: SeedQualityPrices = Field(alias="512x512", description="Images up to 512 × 512 pixels.")
    larger: SeedQualityPrices = Field(alias="larger", description="Every image larger than 512 × 512.")


class SeedRegion(_Strict):
    """One region's price lists; the seed reads all three, so all three are required (``{}`` when empty)."""

    text: dict[_ModelId, SeedTokenPrices] = Field(description="Text models, per 1,000 tokens.")
    embeddings: dict[_ModelId, SeedTokenPrices] = Field(description="Embeddings models, per 1,000 tokens.")
    image: dict[_ModelId, SeedImagePrices] = Field(description="Image models, per image.")


class SeedFile(RootModel[dict[_Region, SeedRegion]]):
    """A whole ``models.json``: AWS region → its price lists."""

    model_config = ConfigDict(strict=True)
    root: dict[_Region, SeedRegion] = Field(min_length=1, description="AWS region name → its price lists.")


@dataclass(frozen=True)
class SeedSheet:
    """A seed file as price-sheet rows, and what was not imported (one line per skipped model id)."""

    rows: list[SheetRow]
    skipped: list[str]


@dataclass(frozen=True)
class Difference:
    """A seed price that is not the catalog's at the effective date; prices per the seed row's ``per``.

    ``catalog_price`` None: the catalog has no price there (the model, region or size is new to it).
    """

    model: str
    region: str
    dimension: str
    image_class: str | None
    per: int
    seed_price: Decimal
    catalog_price: Decimal | None


# --- reading ----------------------------------------------------------------------------------------------------

class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers keys it saw twice (``json`` would silently keep the last)."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a price: write a finite number")


def json_path(loc: Sequence[Any]) -> str:
    """A location as JSONPath: ``("us-east-1", "text", "m", "input_cost")`` → ``$["us-east-1"].text.m.input_cost``."""
    parts = ["$"]
    for key in loc:
        text = str(key)
        parts.append(f".{text}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else f"[{json.dumps(text)}]")
    return "".join(parts)


def _line(text: str, doc: Any, loc: Sequence[Any], *, occurrence: int = 1) -> int:
    """The line of the deepest key of ``loc`` present in ``doc``, found in order in ``text``.

    JSON objects are contiguous, so a key is the first of its name after its parent's key (``occurrence`` 2: the
    second, for a repeated key). A missing key points at its parent.
    """
    pos, node = 0, doc
    for number, key in enumerate(loc):
        if not isinstance(node, dict) or key not in node:
            break
        pattern = re.compile(re.escape(json.dumps(str(key))) + r"\s*:")
        match = pattern.search(text, pos)
        if number == len(loc) - 1:
            for _ in range(occurrence - 1):
                match = pattern.search(text, match.end()) if match else None
        if match is None:
            break
        pos, node = match.start(), node[key]
    return text.count("\n", 0, pos) + 1


def _allowed(loc: Sequence[Any]) -> str:
    if len(loc) == 2:
        return "text, embeddings, image"
    if len(loc) == 4:
        return f"{SMALL_BUCKET}, {LARGER_BUCKET}" if loc[1] == "image" else "input_cost, output_cost"
    return "standard, premium"


def _message(error: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """A pydantic error as (JSON location, what to write instead)."""
    loc = tuple(k for k in error["loc"] if k != "[key]")
    kind, value = error["type"], error.get("input")
    if kind == "is_instance_of":
        return loc, f"{json.dumps(value)} is not a number: write the price as a JSON number, e.g. 0.008"
    if kind == "greater_than_equal":
        return loc, f"{value} is negative: prices are ≥ 0"
    if kind == "decimal_max_places":
        return loc, f"{value} has more than 12 decimals (the lake keeps 12)"
    if kind == "extra_forbidden":
        return loc, f"unknown key {loc[-1]!r}: allowed are {_allowed(loc)}"
    if kind == "missing":
        return loc, f"missing (required: {_allowed(loc)})"
    if kind in ("model_type", "dict_type"):
        return loc, f"expected an object {{…}}, got {type(value).__name__} {json.dumps(value)[:40]}"
    if kind == "too_short":
        return loc, "no region: the file must map at least one AWS region to its prices"
    return loc, str(error["msg"]).removeprefix("Value error, ")


def _duplicates(obj: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    found = []
    if isinstance(obj, dict):
        found += [((*loc, key), f"key {key!r} appears twice in the same object: keep one")
                  for key in getattr(obj, "duplicates", ())]
        for key, value in obj.items():
            found += _duplicates(value, (*loc, key))
    return found


def _refuse(name: str, text: str, doc: Any, problems: list[tuple[tuple[Any, ...], str]], *,
            duplicate: bool = False) -> NoReturn:
    lines = [f"{name}:{_line(text, doc, loc, occurrence=2 if duplicate else 1)}: {json_path(loc)}: {why}"
             for loc, why in problems]
    shown = lines[:MAX_ERRORS_SHOWN] + ([f"… and {len(lines) - MAX_ERRORS_SHOWN} more"]
                                      if len(lines) > MAX_ERRORS_SHOWN else [])
    raise CatalogError("\n".join(shown) + f"\n{name}: refused ({len(lines)} problem(s)); nothing was published")


def read_seed(path: Path, *, effective_from: datetime) -> SeedSheet:
    """The seed price file at ``path`` as sheet rows starting at ``effective_from`` (open-ended, on demand).

    Raises:
        CatalogError: the file cannot be read, is not JSON, or does not have the seed's shape; every problem is
            named as ``models.json:LINE: $.json.path: what to write``, and nothing is published.
    """
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{name}: cannot read the seed price file ({exc})") from None
    try:
        # Decimal from the number's own digits: a float would turn 0.0188 into 0.018799999…
        doc = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant,
                         object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{name}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno}); "
                           f"nothing was published") from None
    except ValueError as exc:
        raise CatalogError(f"{name}: not valid JSON: {exc}; nothing was published") from None
    duplicates = _duplicates(doc)
    if duplicates:
        _refuse(name, text, doc, duplicates, duplicate=True)
    try:
        seed = SeedFile.model_validate(doc)
    except ValidationError as exc:
        _refuse(name, text, doc, [_message(dict(e)) for e in exc.errors()])
    return _as_sheet(seed, name=name, text=text, doc=doc, effective_from=effective_from)


# --- as a price sheet -------------------------------------------------------------------------------------------

def _as_sheet(seed: SeedFile, *, name: str, text: str, doc: Any, effective_from: datetime) -> SeedSheet:
    rows: list[SheetRow] = []
    problems: list[tuple[tuple[Any, ...], str]] = []
    skipped: dict[str, list[str]] = {}

    def add(loc: tuple[Any, ...], *, model: str, region: str, dimension: str, price: Decimal, per: int,
            image: tuple[int | None, str] | None = None) -> None:
        try:
            check_unit_price(dimension=dimension, price=price, per=per, what=str(loc[-1]))
        except ValueError as exc:
            problems.append((loc, str(exc)))
            return
        line = _line(text, doc, loc)
        size, quality = image or (None, None)
        rows.append(SheetRow(line=line, row=PriceRow(
            model=model, dimension=dimension, price_usd=price, per=per, effective_from=effective_from,
            effective_to=None, source=f"seed {name}:{line}", region=region, service_tier=DEFAULT_TIER,
            image_max_width=size, image_max_height=size, image_quality=quality)))

    for region, lists in seed.root.items():
        # one model under both text and embeddings would have two prices for one period
        problems += [((region, "embeddings", model), "also listed under text in this region: keep one")
                     for model in sorted(set(lists.text) & set(lists.embeddings))]
        for kind, models in (("text", lists.text), ("embeddings", lists.embeddings)):
            for model, prices in models.items():
                loc = (region, kind, model)
                if kind == "embeddings" and model.endswith(IMAGE_INPUT_SUFFIX):
                    skipped.setdefault(model, []).append(region)
                    continue
                add((*loc, "input_cost"), model=model, region=region, dimension="input_tokens",
                    price=prices.input_cost, per=TOKENS_PER_PRICE)
                if kind == "text" or prices.output_cost:  # embeddings have no output tokens: the seed writes 0
                    add((*loc, "output_cost"), model=model, region=region, dimension="output_tokens",
                        price=prices.output_cost, per=TOKENS_PER_PRICE)
        for model, buckets in lists.image.items():
            for bucket, size in ((SMALL_BUCKET, 512), (LARGER_BUCKET, None)):
                by_quality = buckets.small if size else buckets.larger
                for quality in ("standard", "premium"):
                    add((region, "image", model, bucket, quality), model=model, region=region,
                        dimension=IMAGE_DIMENSION, price=getattr(by_quality, quality), per=1, image=(size, quality))
    if problems:
        _refuse(name, text, doc, problems)
    notes = [f"skipped {model} ({', '.join(regions)}): the seed's id for image inputs of "
             f"{model.removesuffix(IMAGE_INPUT_SUFFIX)}, priced per 1,000 tokens of the image's base64 text; "
             f"modelmeter never records it" for model, regions in skipped.items()]
    return SeedSheet(rows=rows, skipped=notes)


# --- against a catalog ------------------------------------------------------------------------------------------

def differences(base: Catalog, rows: Sequence[SheetRow], *, at: datetime) -> list[Difference]:
    """The seed rows whose price is not the one ``base`` gives the same call at ``at`` (model, region, size).

    The catalog's price is converted to the seed row's ``per``; a ``larger`` image price is compared at 1024 × 1024.
    """
    found = []
    for item in rows:
        row = item.row
        width = height = None
        if row.dimension == IMAGE_DIMENSION:
            width, height = (row.image_max_width, row.image_max_height) if row.image_max_width else LARGER_COMPARED_AT
        intervals = base.prices_for(model_id=row.model, region=row.region, service_tier=row.service_tier,
                                    image_width=width, image_height=height, image_quality=row.image_quality)
        interval = interval_at(intervals, dimension=row.dimension, instant=at)
        catalog = None if interval is None else interval.price_usd * row.per / interval.per
        if catalog is None or catalog != row.price_usd:
            image_class = None
            if row.dimension == IMAGE_DIMENSION:
                bucket = SMALL_BUCKET if row.image_max_width else LARGER_BUCKET
                image_class = f"{bucket} {row.image_quality}"
            found.append(Difference(model=row.model, region=row.region or "", dimension=row.dimension,
                                    image_class=image_class, per=row.per, seed_price=row.price_usd,
                                    catalog_price=None if catalog is None else catalog.normalize()))
    return found


# --- import -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedImport:
    """What ``import-seed`` published, which of its prices the catalog had otherwise, and what it skipped."""

    version: str
    differences: list[Difference]
    skipped: list[str]


def import_seed(*, lake: Lake, path: Path, effective_from: date | datetime, note: str | None = None) -> SeedImport:
    """Publish the latest version with the seed's ``models.json`` laid over it from ``effective_from`` on.

    The same path as a CSV sheet (:func:`pricing_catalog.publish.publish_sheet`): the rows are kept in the version,
    so ``pricing update`` lays them over a newer built-in catalog again.

    Raises:
        CatalogError: the file is not a seed price file (every problem named with its line and JSON path);
            nothing is published.
    """
    start = parse_instant(effective_from, what="effective_from")
    seed = read_seed(path, effective_from=start)  # first: a bad file must not even auto-publish the built-in one
    base = load_catalog(lake=lake)
    found = differences(base, seed.rows, at=start)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    version = publish_sheet(lake=lake, base=base, rows=seed.rows, name=path.name, note=note,
                            source=f"seed {path.name} (sha256 {digest}) from {start.date()} over {base.version}")
    return SeedImport(version=version, differences=found, skipped=seed.skipped)

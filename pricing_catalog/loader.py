"""The strict loader of the built-in price data (``pricing_catalog/data/*.yaml``).

Every problem is reported with the file, the model, the entry and its line, and says how to fix it. Prices must
be quoted decimal strings: a YAML float (``0.25`` unquoted) is refused because binary floats lose cents.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from common.contracts import IMAGE_QUALITIES, SCALAR_DIMENSIONS, SERVICE_TIERS
from pricing_catalog.catalog import Catalog
from pricing_catalog.intervals import check_no_overlaps
from pricing_catalog.model import (
    ALLOWED_PER,
    DEFAULT_TIER,
    IMAGE_DIMENSION,
    CatalogError,
    PriceRow,
    check_region,
    check_unit_price,
    parse_instant,
    parse_price,
)

DATA_DIR = Path(__file__).parent / "data"

_FILE_KEYS = {"provider", "models"}
_MODEL_KEYS = {"name", "aliases", "prices"}
_ENTRY_KEYS = {"effective_from", "effective_to", "region", "service_tier", "per", "batch", "images", "source",
               "checked", *SCALAR_DIMENSIONS}
_IMAGE_KEYS = {"quality", "max_width", "max_height", "price"}
#: Bedrock batch inference bills input and output tokens only (no prompt caching in batch jobs).
_BATCH_DIMENSIONS = ("input_tokens", "output_tokens")


class _Mapping(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its line, so errors can point at it."""

    line = 0


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings carry their line number and which refuses duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise CatalogError(f"line {key_node.start_mark.line + 1}: `{key}` appears twice in the same mapping "
                               f"(first on line {seen[key]}): keep one")
        seen[key] = key_node.start_mark.line + 1
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_keys(obj: Any, allowed: set[str], *, where: str, required: frozenset[str] | set[str] = frozenset()) -> None:
    if not isinstance(obj, dict):
        raise CatalogError(f"{where}: expected a mapping (key: value), got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}: allowed are "
                           f"{', '.join(sorted(allowed))}")
    missing = sorted(required - set(obj))
    if missing:
        raise CatalogError(f"{where}: missing {', '.join(missing)}")


def _line(obj: Any) -> str:
    return f" (line {obj.line})" if getattr(obj, "line", 0) else ""


def _images(entry: dict[str, Any], *, base: dict[str, Any], where: str) -> list[PriceRow]:
    images = entry["images"]
    if entry["per"] != 1:
        raise CatalogError(f"{where}: image prices are per image: set per: 1 (put token prices in their own entry)")
    if not isinstance(images, list) or not images:
        raise CatalogError(f"{where}: `images` must be a list of {{quality, max_width, max_height, price}}")
    rows = []
    for number, image in enumerate(images, start=1):
        spot = f"{where} image price {number}{_line(image)}"
        _check_keys(image, _IMAGE_KEYS, where=spot, required={"price"})
        quality = image.get("quality")
        if quality is not None and quality not in IMAGE_QUALITIES:
            raise CatalogError(f"{spot}: quality {quality!r} is not one of {', '.join(IMAGE_QUALITIES)}")
        size = (image.get("max_width"), image.get("max_height"))
        if (size[0] is None) != (size[1] is None) or any(
                s is not None and (not isinstance(s, int) or isinstance(s, bool) or s <= 0) for s in size):
            raise CatalogError(f"{spot}: give both max_width and max_height as positive integers, or neither")
        try:
            price = parse_price(image["price"], what="price")
            check_unit_price(dimension=IMAGE_DIMENSION, price=price, per=1, what="price")
        except ValueError as exc:
            raise CatalogError(f"{spot}: {exc}") from None
        rows.append(PriceRow(**base, dimension=IMAGE_DIMENSION, price_usd=price, image_quality=quality,
                             image_max_width=size[0], image_max_height=size[1]))
    return rows


def _entry_rows(model: str, entry: Any, *, where: str) -> list[PriceRow]:
    _check_keys(entry, _ENTRY_KEYS, where=where, required={"effective_from", "per", "source", "checked"})
    try:
        start = parse_instant(entry["effective_from"], what="effective_from")
        end = None if entry.get("effective_to") is None else parse_instant(entry["effective_to"], what="effective_to")
        checked = parse_instant(entry["checked"], what="checked").date()
        region = check_region(entry.get("region"))
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    per, tier, source = entry["per"], entry.get("service_tier", DEFAULT_TIER), entry["source"]
    if per not in ALLOWED_PER or isinstance(per, bool):
        raise CatalogError(f"{where}: per {per!r} must be one of {', '.join(map(str, ALLOWED_PER))} (unquoted)")
    if tier not in SERVICE_TIERS:
        raise CatalogError(f"{where}: service_tier {tier!r} must be one of {', '.join(SERVICE_TIERS)}")
    if not isinstance(source, str) or not source.startswith("https://"):
        raise CatalogError(f"{where}: source must be the https:// URL where the price was read")
    base = dict(model=model, per=per, effective_from=start, effective_to=end, source=source,
                region=region, service_tier=tier, checked=checked)
    rows = []
    for dimension in SCALAR_DIMENSIONS:
        if dimension in entry:
            try:
                price = parse_price(entry[dimension], what=dimension)
                check_unit_price(dimension=dimension, price=price, per=per, what=dimension)
                rows.append(PriceRow(**base, dimension=dimension, price_usd=price))
            except ValueError as exc:
                raise CatalogError(f"{where}: {exc}") from None
    if "images" in entry:
        rows += _images(entry, base=base, where=where)
    if not rows:
        raise CatalogError(f"{where}: no price: give at least one of {', '.join(SCALAR_DIMENSIONS)} or images")
    return rows + _batch_rows(entry, rows, where=where)


def _batch_rows(entry: dict[str, Any], rows: list[PriceRow], *, where: str) -> list[PriceRow]:
    """``batch: '0.5'`` derives the batch tier from on-demand input/output prices (Bedrock: 50 % of on-demand)."""
    if "batch" not in entry:
        return []
    try:
        factor = parse_price(entry["batch"], what="batch")
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if not Decimal(0) < factor <= Decimal(1) or entry.get("service_tier", DEFAULT_TIER) != DEFAULT_TIER:
        raise CatalogError(f"{where}: batch must be a factor in (0, 1] of an on_demand entry, e.g. '0.5'")
    return [replace(r, service_tier="batch", price_usd=r.price_usd * factor)
            for r in rows if r.dimension in _BATCH_DIMENSIONS]


def _file_rows(path: Path) -> tuple[list[PriceRow], dict[str, str]]:
    name = path.name
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except CatalogError as exc:
        raise CatalogError(f"{name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{name}: not valid YAML: {exc}") from None
    _check_keys(doc, _FILE_KEYS, where=name, required={"provider", "models"})
    if not isinstance(doc["models"], dict):
        raise CatalogError(f"{name}: `models` must map each model id to its prices")
    rows: list[PriceRow] = []
    aliases: dict[str, str] = {}
    for model, spec in doc["models"].items():
        where = f"{name}: model `{model}`{_line(spec)}"
        _check_keys(spec, _MODEL_KEYS, where=where, required={"prices"})
        for alias in spec.get("aliases") or []:
            aliases[str(alias)] = str(model)
        if not isinstance(spec["prices"], list) or not spec["prices"]:
            raise CatalogError(f"{where}: `prices` must be a non-empty list of dated entries")
        for number, entry in enumerate(spec["prices"], start=1):
            rows += _entry_rows(str(model), entry, where=f"{name}: model `{model}` price entry {number}{_line(entry)}")
    check_no_overlaps(rows, where=name)
    return rows, aliases


def load_builtin(*, data_dir: Path | None = None) -> Catalog:
    """Load every ``*.yaml`` under ``data_dir`` (default: the package's data) into a catalog.

    The version is ``builtin-<first 12 hex of the data's sha256>``: the same data always has the same id.

    Raises:
        CatalogError: naming the file, model, entry and line, and saying how to fix it.
    """
    directory = data_dir or DATA_DIR
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise CatalogError(f"{directory}: no *.yaml price files")
    rows: list[PriceRow] = []
    aliases: dict[str, str] = {}
    digest = hashlib.sha256()
    seen: dict[str, str] = {}
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        file_rows, file_aliases = _file_rows(path)
        for model in {r.model for r in file_rows}:
            if model in seen:
                raise CatalogError(f"{path.name}: model `{model}` is also in {seen[model]}: keep it in one file")
            seen[model] = path.name
        rows += file_rows
        aliases.update(file_aliases)
    return Catalog(version=f"builtin-{digest.hexdigest()[:12]}", rows=rows, aliases=aliases,
                   where=f"{directory.name}/")

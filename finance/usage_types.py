"""The reviewed map from a bill line's usage type to modelmeter's keys (``finance/data/bedrock_usage_types.yaml``).

:func:`classify` reads one line's product code, usage type and pricing unit and says what it is:

- ``tokens`` (or images): a model call's meter — catalog model id, dimension, region, service tier, scope
  (``in_region``, ``geo``, ``global``) and how many counted units one unit of ``line_item_usage_amount`` is;
- ``time_based``: charged by the hour (provisioned throughput model units, SageMaker endpoint instances);
- ``other``: another charge of these products that no gateway call meters (guardrails, knowledge bases …);
- ``unmapped``: nothing in the map matches (reconciled as ``unmapped`` and shown, never dropped).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import yaml

from common.contracts import DIMENSIONS
from common.errors import UserError

DATA_FILE = "bedrock_usage_types.yaml"
_HOST_RE = re.compile(r"Host:(ml\.[A-Za-z0-9-]+\.[A-Za-z0-9]+)")


@dataclass(frozen=True)
class LineKind:
    """What a bill line is (see the module docstring)."""

    kind: str  # tokens | time_based | other | unmapped
    model_id: str | None = None
    dimension: str | None = None  # catalog dimension for tokens; the time-based or other kind otherwise
    region: str | None = None
    service_tier: str = "on_demand"
    scope: str = "in_region"
    unit_scale: Decimal = Decimal(1)


@dataclass(frozen=True)
class UsageTypeMap:
    """The map, loaded and expanded: ``meters`` is the part of a usage type after its region code."""

    region_codes: dict[str, str]
    products: tuple[str, ...]
    pricing_units: dict[str, Decimal]
    meters: dict[str, LineKind]  # "<BillingName>-<meter>[-<variant>…]" → kind (region left empty)
    time_based: tuple[tuple[str, str], ...]  # (pattern, kind)
    other: tuple[tuple[str, str], ...]
    models: tuple[dict[str, Any], ...]
    provisioned_commitments: dict[str, str]  # usage-type token → commitment term

    def classify(self, *, product_code: str, usage_type: str, pricing_unit: str | None) -> LineKind:
        code, _, rest = usage_type.partition("-")
        region = self.region_codes.get(code)
        if region is None:
            region, rest = None, usage_type
        scale = self.pricing_units.get(pricing_unit or "", Decimal(1))
        for pattern, kind in self.time_based:
            if fnmatch.fnmatchcase(usage_type, pattern):
                return LineKind("time_based", dimension=kind, region=region, unit_scale=scale)
        meter = self.meters.get(rest)
        if meter is not None and product_code in self.products:
            return LineKind("tokens", model_id=meter.model_id, dimension=meter.dimension, region=region,
                            service_tier=meter.service_tier, scope=meter.scope, unit_scale=scale)
        for pattern, kind in self.other:
            if fnmatch.fnmatchcase(usage_type, pattern):
                return LineKind("other", dimension=kind, region=region, unit_scale=scale)
        return LineKind("unmapped", region=region, unit_scale=scale)

    def provisioned(self, usage_type: str) -> tuple[str | None, str | None]:
        """``(catalog model id, commitment)`` a provisioned-throughput usage type names
        (``<REGION>-<BillingName>-ProvisionedThroughput-<commitment>-…``), each None where it names none."""
        code, _, rest = usage_type.partition("-")
        if code not in self.region_codes:
            rest = usage_type
        name, found, tail = rest.partition("-ProvisionedThroughput")
        if not found:
            return None, None
        model = next((m["model_id"] for m in self.models if m["billing_name"] == name), None)
        token = tail.lstrip("-").split("-", 1)[0]
        return model, self.provisioned_commitments.get(token)

    def instance_type(self, usage_type: str) -> str | None:
        """The SageMaker instance type a ``…Host:ml.<family>.<size>`` usage type names, or None."""
        match = _HOST_RE.search(usage_type)
        return match.group(1).lower() if match else None

    def rows(self) -> list[dict[str, str]]:
        """The map as ``billing usage-types`` prints it: one row per usage type pattern."""
        out = [{"usage_type": f"*-{rest}", "model_id": k.model_id or "", "dimension": k.dimension or "",
                "service_tier": k.service_tier, "scope": k.scope, "kind": k.kind}
               for rest, k in sorted(self.meters.items(), key=lambda item: (item[1].model_id or "", item[0]))]
        out += [{"usage_type": p, "model_id": "", "dimension": kind, "service_tier": "", "scope": "",
                 "kind": "time_based"} for p, kind in self.time_based]
        out += [{"usage_type": p, "model_id": "", "dimension": kind, "service_tier": "", "scope": "",
                 "kind": "other"} for p, kind in self.other]
        return out


def _expand(models: list[dict[str, Any]], meters: dict[str, str], variants: dict[str, dict[str, str]]
            ) -> dict[str, LineKind]:
    """Every ``<BillingName>-<meter>[-<variant>]`` and two-variant combination (a scope and a tier, either order)."""
    combos: list[tuple[str, dict[str, str]]] = [("", {})]
    for name, effect in variants.items():
        combos.append((f"-{name}", effect))
        for other, other_effect in variants.items():
            if other != name and set(effect).isdisjoint(other_effect):
                combos.append((f"-{name}-{other}", {**effect, **other_effect}))
    out: dict[str, LineKind] = {}
    for model in models:
        for meter, dimension in meters.items():
            for suffix, effect in combos:
                scope = effect.get("scope", "in_region")
                model_id = model.get("global_model_id") if scope == "global" else None
                out[f"{model['billing_name']}-{meter}{suffix}"] = LineKind(
                    "tokens", model_id=model_id or model["model_id"], dimension=dimension,
                    service_tier=effect.get("service_tier", "on_demand"), scope=scope)
    return out


def _check(data: dict[str, Any]) -> None:
    wrong = sorted({d for d in data["meters"].values() if d not in DIMENSIONS})
    if wrong:
        raise UserError(f"{DATA_FILE}: meters map to unknown dimensions {', '.join(wrong)} "
                        f"(use one of {', '.join(DIMENSIONS)})")
    names = [m["billing_name"] for m in data["models"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{DATA_FILE}: billing names listed twice: {', '.join(twice)}")


@cache
def load_usage_types() -> UsageTypeMap:
    """The map that ships in ``finance/data/``."""
    data = yaml.safe_load(resources.files("finance").joinpath("data", DATA_FILE).read_text(encoding="utf-8"))
    _check(data)
    return UsageTypeMap(
        region_codes=dict(data["region_codes"]), products=tuple(data["products"]),
        pricing_units={k: Decimal(str(v)) for k, v in data["pricing_units"].items()},
        meters=_expand(data["models"], data["meters"], data["variants"]),
        time_based=tuple((t["pattern"], t["kind"]) for t in data["time_based"]),
        other=tuple((o["pattern"], o["kind"]) for o in data["other"]),
        models=tuple(data["models"]),
        provisioned_commitments=dict(data.get("provisioned_commitments") or {}),
    )


def usage_type_of(*, region: str, model_id: str, dimension: str, service_tier: str = "on_demand",
                  scope: str = "in_region") -> str | None:
    """The usage type AWS bills a metered call under, by this map (the inverse of :meth:`UsageTypeMap.classify`;
    the demo's simulated bill uses it); ``None`` when the map has no name for the model."""
    table = load_usage_types()
    code = next((c for c, r in table.region_codes.items() if r == region), None)
    for rest, kind in table.meters.items():
        if (kind.model_id, kind.dimension, kind.service_tier, kind.scope) == (model_id, dimension, service_tier,
                                                                              scope):
            return f"{code}-{rest}" if code else rest
    return None

"""Reconcile a billing period: every dollar of the in-scope bill in exactly one category, beside what was metered.

The bill's lines (the CUR snapshot in force) are classified by :mod:`finance.usage_types`; the metered side is the
gateway's ``usage_cost`` rows of the period's UTC days, at list price. Token lines are compared per key — usage date
(the period's first day for a monthly export; hourly lines summed to days) × region × catalog model × dimension ×
service tier — and split exactly:

- ``matched``: the billed quantity the gateway metered, valued at its metered list cost;
- ``price_variance``: what the bill charged for that quantity minus its list cost (private pricing, rounding …);
- ``unmetered_usage``: the billed quantity beyond what the gateway metered (usage that bypassed it), and the
  products' other charges no call meters (guardrails, knowledge bases …);
- ``metered_not_billed``: metered quantity the bill does not show (metered list cost, no billed dollars);
- ``non_usage``: credits, refunds, discounts, fees (and tax, when it is in scope) as line item types;
- ``time_based``: provisioned-throughput model-unit hours, SageMaker endpoint instance hours, each beside its list
  value (billed hours × the catalog's hourly price, :mod:`finance.time_based`); and configured capacity
  (:mod:`finance.capacity`) the bill has no line for, valued at list with no billed dollars (``list_basis``
  ``configuration``);
- ``unmapped``: usage lines the usage-type map does not know (kept and shown).

``billed_cost`` summed over all categories equals the in-scope bill exactly (the splits are exact decimals: each
key's unmetered part is what its matched part leaves). Variance is information, never a failure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from common.constants import CURATED_RECONCILIATION, ENV_BILLED_PROVIDERS, ENV_SAGEMAKER_ENDPOINTS
from common.contracts import COST_OF, DIMENSION_OF, reconciliation_schema
from common.errors import UserError
from common.lake import Lake
from finance.capacity import Capacity
from finance.cur import Snapshot, read_snapshot, snapshot_in_force
from finance.time_based import CONFIGURATION, LIST_COLUMNS, TimeValuer
from finance.usage_types import LineKind, load_usage_types
from pricing_catalog import Catalog, TimePrices, load_time_prices
from sql.config import ReportingConfig
from sql.render import connect

RECONCILIATION_FILE = "reconciliation.parquet"
#: Line item types that are usage (priced per unit); every other type is a ``non_usage`` charge.
USAGE_LINE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")
_Q = Decimal(1).scaleb(-12)  # money and quantities are exact at 12 decimals
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Scope:
    """Which lines of the bill are in scope, and which metered events meet them (DESIGN.md: configuration).

    Attributes:
        include_tax: whether ``Tax`` lines are in scope (as ``non_usage``); DESIGN.md's default leaves them out.
        sagemaker_endpoints: SageMaker endpoint names the gateway serves; their instance hours are in scope.
        metered_providers: event providers billed by this AWS bill (the demo adds its labelled simulator).
        default_region: the region of events that carry none (the simulator's).
    """

    include_tax: bool = False
    sagemaker_endpoints: tuple[str, ...] = ()
    metered_providers: tuple[str, ...] = ("bedrock", "sagemaker")
    default_region: str = "us-east-1"


@dataclass(frozen=True)
class MeteredKey:
    usage_date: date
    region: str
    model_id: str
    dimension: str
    service_tier: str


@dataclass
class Reconciliation:
    """A period's reconciliation: the category rows, the metered list cost per team and key, and the totals."""

    billing_period: str
    snapshot: Snapshot
    currency: str
    rows: list[dict[str, Any]]
    team_metered: dict[tuple[str, MeteredKey], Decimal]  # (team, key) → list cost
    team_quantity: dict[tuple[str, MeteredKey], Decimal]  # (team, key) → metered quantity
    pieces: list[dict[str, Any]] = field(default_factory=list)  # billed rows outside matched: what rules share
    price_versions: tuple[str, ...] = ()  # catalog versions that priced the metered rows
    time_prices_version: str | None = None  # the time-based prices that valued the time_based rows
    capacity_source: str | None = None  # the capacity file (None: none)
    scope: Scope = field(default_factory=lambda: Scope())  # what was in scope (tax, providers, endpoints)

    @property
    def billed_total(self) -> Decimal:
        return sum((r["billed_cost"] for r in self.rows), _ZERO)

    @property
    def metered_total(self) -> Decimal:
        return sum((r["metered_list_cost"] for r in self.rows), _ZERO)

    def time_based(self) -> dict[str, Decimal]:
        """The ``time_based`` rows at list: what the bill charged for its lines (``billed_cost``), their list value
        where priced (``list_value``) and the billed cost of the unpriced ones (``unpriced_billed_cost``), and the
        list value of configured capacity without a bill line (``configured_list_value``, no billed dollars)."""
        out = dict.fromkeys(("billed_cost", "list_value", "unpriced_billed_cost", "configured_list_value"), _ZERO)
        for r in self.rows:
            if r["category"] != "time_based":
                continue
            if r.get("list_basis") == CONFIGURATION:
                out["configured_list_value"] += r["list_value"] or _ZERO
                continue
            out["billed_cost"] += r["billed_cost"]
            if r.get("list_value") is None:
                out["unpriced_billed_cost"] += r["billed_cost"]
            else:
                out["list_value"] += r["list_value"]
        return out

    def by_category(self) -> dict[str, dict[str, Decimal]]:
        out: dict[str, dict[str, Decimal]] = {}
        for r in self.rows:
            c = out.setdefault(r["category"], {"billed_cost": _ZERO, "metered_list_cost": _ZERO})
            c["billed_cost"] += r["billed_cost"]
            c["metered_list_cost"] += r["metered_list_cost"]
        return out


def period_days(period: str) -> tuple[date, date]:
    """First and last UTC day of billing period ``YYYY-MM``.

    Raises:
        UserError: not a ``YYYY-MM`` period.
    """
    try:
        first = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise UserError(f"--period {period!r} is not a billing period: write YYYY-MM") from None
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


# --- the bill's side ---------------------------------------------------------------------------------------------

def _period_bounds(period: str) -> tuple[datetime, datetime]:
    first, last = period_days(period)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)


def _in_scope(lines: pa.Table, scope: Scope) -> list[dict[str, Any]]:
    products = set(load_usage_types().products) - {"AmazonSageMaker"}
    endpoints = tuple(f"endpoint/{name.lower()}" for name in scope.sagemaker_endpoints)
    out = []
    for line in lines.to_pylist():
        if line["line_item_line_item_type"] == "Tax" and not scope.include_tax:
            continue
        code = line["line_item_product_code"]
        if code in products or (code == "AmazonSageMaker" and endpoints
                                and (line["line_item_resource_id"] or "").lower().endswith(endpoints)):
            out.append(line)
    return out


def _monthly(lines: Iterable[dict[str, Any]], kinds: dict[tuple[str, str, str | None], LineKind]) -> bool:
    """Whether the export is monthly (its token lines span more than a day): keys are then the period's first day.
    Only the lines compared with metered usage decide (a provisioned-throughput line may span days in any export)."""
    return any(line["line_item_usage_end_date"] - line["line_item_usage_start_date"] > timedelta(days=1)
               for line in lines if line["line_item_line_item_type"] in USAGE_LINE_TYPES
               and kinds[(line["line_item_product_code"], line["line_item_usage_type"],
                          line["pricing_unit"])].kind == "tokens")


def _kinds(lines: list[dict[str, Any]]) -> dict[tuple[str, str, str | None], LineKind]:
    table = load_usage_types()
    keys = {(li["line_item_product_code"], li["line_item_usage_type"], li["pricing_unit"]) for li in lines}
    return {k: table.classify(product_code=k[0], usage_type=k[1], pricing_unit=k[2]) for k in keys}


# --- the metered side --------------------------------------------------------------------------------------------

def _metered(*, lake: Lake, period: str, catalog: Catalog, scope: Scope, monthly: bool
             ) -> tuple[dict[tuple[str, MeteredKey], Decimal], dict[tuple[str, MeteredKey], Decimal], set[str]]:
    """``(list cost, quantity)`` per team and key of the period's metered usage, and the price versions used."""
    first, last = period_days(period)
    sums = ", ".join(f"sum({c}) as {c}, sum({cost}) as {cost}" for cost, c in COST_OF.items())
    sql = (f"select team_id, usage_date, region, model_id, service_tier, price_version, {sums} from usage_cost "
           f"where usage_date between ? and ? and provider in ({', '.join('?' * len(scope.metered_providers))}) "
           f"group by all")
    con = connect(lake=lake, config=ReportingConfig())
    try:
        rows = con.execute(sql, [first, last, *scope.metered_providers]).fetchall()
        names = [d[0] for d in con.description]
    except duckdb.CatalogException:  # no curated data at all yet
        rows, names = [], []
    finally:
        con.close()
    cost: dict[tuple[str, MeteredKey], Decimal] = defaultdict(Decimal)
    qty: dict[tuple[str, MeteredKey], Decimal] = defaultdict(Decimal)
    versions: set[str] = set()
    for values in rows:
        r = dict(zip(names, values, strict=True))
        model = catalog.resolve(r["model_id"]) or r["model_id"]
        day = first if monthly else r["usage_date"]
        versions |= {r["price_version"]} if r["price_version"] else set()
        for cost_column, count in COST_OF.items():
            if r[count]:
                key = MeteredKey(day, r["region"] or scope.default_region, model, DIMENSION_OF[count],
                                 r["service_tier"] or "on_demand")
                cost[(r["team_id"], key)] += Decimal(r[cost_column] or 0)
                qty[(r["team_id"], key)] += Decimal(r[count])
    return cost, qty, versions


# --- splitting -------------------------------------------------------------------------------------------------

def _row(period: str, category: str, currency: str, *, billed: Decimal = _ZERO, metered: Decimal = _ZERO,
         key: MeteredKey | None = None, billed_qty: Decimal | None = None, metered_qty: Decimal | None = None,
         line: dict[str, Any] | None = None, dimension: str | None = None, usage_type: str | None = None,
         accounts: str | None = None) -> dict[str, Any]:
    return {
        "billing_period": period, "category": category,
        "usage_date": key.usage_date if key else (line["line_item_usage_start_date"].date() if line else None),
        "region": key.region if key else (line or {}).get("region"),
        "model_id": key.model_id if key else None,
        "dimension": key.dimension if key else dimension,
        "service_tier": key.service_tier if key else None,
        "usage_type": usage_type or (line or {}).get("line_item_usage_type"),
        "line_item_type": (line or {}).get("line_item_line_item_type", "Usage" if key else None),
        "billed_quantity": billed_qty, "metered_quantity": metered_qty,
        "billed_cost": billed, "metered_list_cost": metered, "currency": currency,
        "resource_id": (line or {}).get("line_item_resource_id"),
        "usage_account_id": accounts or (line or {}).get("line_item_usage_account_id"),
        "resource_tags": json.loads((line or {}).get("resource_tags") or "{}"),
        **dict.fromkeys(LIST_COLUMNS),
    }


def _split_key(period: str, currency: str, key: MeteredKey, billed: dict[str, Any] | None, qm: Decimal,
               lm: Decimal) -> list[dict[str, Any]]:
    """One key's rows: its billed cost split exactly into matched / price_variance / unmetered_usage, and the
    metered quantity the bill does not show as metered_not_billed."""
    qb = billed["quantity"] if billed else _ZERO
    cb = billed["cost"] if billed else _ZERO
    usage_type = billed["usage_types"] if billed else None
    accounts = billed["accounts"] if billed else None
    rows = []
    q = max(_ZERO, min(qb, qm))  # a key whose billed quantity nets to zero or less matches nothing
    if q > 0:
        cq = (cb * q / qb).quantize(_Q)
        lq = (lm * q / qm).quantize(_Q)
        rows.append(_row(period, "matched", currency, billed=lq, metered=lq, key=key, billed_qty=q, metered_qty=q,
                         usage_type=usage_type, accounts=accounts))
        rows.append(_row(period, "price_variance", currency, billed=cq - lq, key=key, usage_type=usage_type,
                         accounts=accounts))
    else:
        cq, lq = _ZERO, _ZERO
    if billed and (cb != cq or qb > q):  # whatever the matched part leaves of the billed cost, exactly
        rows.append(_row(period, "unmetered_usage", currency, billed=cb - cq, key=key, billed_qty=qb - q,
                         metered_qty=_ZERO, usage_type=usage_type, accounts=accounts))
    if qm > q:
        rows.append(_row(period, "metered_not_billed", currency, metered=lm - lq, key=key, billed_qty=_ZERO,
                         metered_qty=qm - q))
    return rows


def _token_keys(lines: list[dict[str, Any]], kinds: dict[tuple[str, str, str | None], LineKind], scope: Scope,
                monthly: bool, first: date) -> dict[MeteredKey, dict[str, Any]]:
    keys: dict[MeteredKey, dict[str, Any]] = {}
    for li in lines:
        kind = kinds[(li["line_item_product_code"], li["line_item_usage_type"], li["pricing_unit"])]
        assert kind.model_id and kind.dimension
        day = first if monthly else li["line_item_usage_start_date"].date()
        key = MeteredKey(day, li["region"] or kind.region or scope.default_region, kind.model_id, kind.dimension,
                         kind.service_tier)
        entry = keys.setdefault(key, {"quantity": _ZERO, "cost": _ZERO, "types": set(), "accounts": set()})
        entry["accounts"].add(li["line_item_usage_account_id"])
        entry["quantity"] += Decimal(li["line_item_usage_amount"]) * kind.unit_scale
        entry["cost"] += Decimal(li["line_cost"])
        entry["types"].add(li["line_item_usage_type"])
    for entry in keys.values():
        entry["usage_types"] = ",".join(sorted(entry.pop("types")))
        entry["accounts"] = ",".join(sorted(entry["accounts"]))
    return keys


def reconcile(*, lake: Lake, period: str, catalog: Catalog, scope: Scope | None = None,
              snapshot_id: str | None = None, capacity: Capacity | None = None,
              time_prices: TimePrices | None = None) -> Reconciliation:
    """Reconcile ``period`` (``YYYY-MM``) against the CUR snapshot in force (or the one named).

    ``capacity`` (default: none) is the configured provisioned throughput and SageMaker endpoints; a configured
    endpoint is in scope like one of ``scope.sagemaker_endpoints``. ``time_prices`` (default: the shipped ones)
    value the ``time_based`` rows.
    """
    capacity = capacity or Capacity()
    scope = scope or Scope()
    configured = tuple(e.name for e in capacity.endpoints if e.name not in scope.sagemaker_endpoints)
    scope = replace(scope, sagemaker_endpoints=scope.sagemaker_endpoints + configured)
    time_prices = time_prices or load_time_prices()
    valuer = TimeValuer(capacity=capacity, prices=time_prices, usage_types=load_usage_types(),
                        default_region=scope.default_region)
    first, _ = period_days(period)
    snapshot = snapshot_in_force(lake=lake, period=period, snapshot_id=snapshot_id)
    lines = _in_scope(read_snapshot(lake=lake, snapshot=snapshot), scope)
    kinds = _kinds(lines)
    monthly = _monthly(lines, kinds)
    team_cost, team_qty, versions = _metered(lake=lake, period=period, catalog=catalog, scope=scope, monthly=monthly)
    currency = snapshot.currency
    rows: list[dict[str, Any]] = []
    tokens = []
    for li in lines:
        kind = kinds[(li["line_item_product_code"], li["line_item_usage_type"], li["pricing_unit"])]
        usage = li["line_item_line_item_type"] in USAGE_LINE_TYPES
        cost, qty = Decimal(li["line_cost"]), Decimal(li["line_item_usage_amount"]) * kind.unit_scale
        if not usage:
            rows.append(_row(period, "non_usage", currency, billed=cost, line=li, billed_qty=qty))
        elif kind.kind == "tokens":
            tokens.append(li)
        elif kind.kind == "time_based":
            row = _row(period, "time_based", currency, billed=cost, line=li, billed_qty=qty, dimension=kind.dimension)
            row.update(valuer.line(li, dimension=kind.dimension, region=li["region"] or kind.region, quantity=qty))
            rows.append(row)
        elif kind.kind == "other":
            rows.append(_row(period, "unmetered_usage", currency, billed=cost, line=li, billed_qty=qty,
                             metered_qty=_ZERO, dimension=kind.dimension))
        else:
            rows.append(_row(period, "unmapped", currency, billed=cost, line=li, billed_qty=qty))
    billed_keys = _token_keys(tokens, kinds, scope, monthly, first)
    metered_qty: dict[MeteredKey, Decimal] = defaultdict(Decimal)
    metered_cost: dict[MeteredKey, Decimal] = defaultdict(Decimal)
    for (_team, key), value in team_cost.items():
        metered_cost[key] += value
    for (_team, key), value in team_qty.items():
        metered_qty[key] += value
    for key in sorted(set(billed_keys) | set(metered_qty), key=_sort_key):
        rows += _split_key(period, currency, key, billed_keys.get(key), metered_qty.get(key, _ZERO),
                           metered_cost.get(key, _ZERO))
    start, end = _period_bounds(period)
    for extra in valuer.unbilled(start=start, end=end):  # configured capacity without a bill line: no billed $
        row = _row(period, "time_based", currency, billed_qty=_ZERO, dimension=extra["dimension"])
        row.update(extra)
        rows.append(row)
    in_scope = sum((Decimal(li["line_cost"]) for li in lines), _ZERO)
    placed = sum((r["billed_cost"] for r in rows), _ZERO)
    if placed != in_scope:  # every billed dollar in exactly one category: anything else is a bug, never a result
        raise AssertionError(f"reconciliation of {period} places {placed} of the in-scope {in_scope}")
    return Reconciliation(billing_period=period, snapshot=snapshot, currency=currency, rows=rows, scope=scope,
                          team_metered=dict(team_cost), team_quantity=dict(team_qty),
                          pieces=[r for r in rows if r["category"] not in ("matched", "metered_not_billed")
                                  and r["list_basis"] != CONFIGURATION],  # billed pieces only: rules share dollars
                          price_versions=tuple(sorted(versions)), time_prices_version=time_prices.version,
                          capacity_source=capacity.source)


def _sort_key(key: MeteredKey) -> tuple[Any, ...]:
    return (key.usage_date, key.region, key.model_id, key.dimension, key.service_tier)


def store(*, lake: Lake, reconciliation: Reconciliation) -> str:
    """Write the rows to ``curated/reconciliation/billing_period=P/`` (replacing the period's previous run)."""
    names = reconciliation_schema().names
    table = pa.Table.from_pylist([{n: r[n] for n in names} for r in reconciliation.rows],
                                 schema=reconciliation_schema())
    return lake.write_parquet(table, CURATED_RECONCILIATION, f"billing_period={reconciliation.billing_period}",
                              RECONCILIATION_FILE)


def scope_from_environment(environ: Mapping[str, str], *, include_tax: bool = False) -> Scope:
    """The deployment's scope: the SageMaker endpoints of ``$MODELMETER_SAGEMAKER_ENDPOINTS`` (JSON of model id →
    ``{"endpoint_name": …}``, as infra sets it on the Lambdas), the providers of ``$MODELMETER_BILLED_PROVIDERS``
    (comma-separated; default bedrock,sagemaker), and tax as asked.

    Raises:
        UserError: the variable is set but is not that JSON.
    """
    endpoints = environ.get(ENV_SAGEMAKER_ENDPOINTS)
    try:
        names = tuple(v["endpoint_name"] for v in json.loads(endpoints).values()) if endpoints else ()
    except (ValueError, AttributeError, KeyError, TypeError):
        raise UserError(f"${ENV_SAGEMAKER_ENDPOINTS} is not JSON of model id → {{\"endpoint_name\": …}}") from None
    providers = tuple(p.strip() for p in environ.get(ENV_BILLED_PROVIDERS, "").split(",") if p.strip())
    return Scope(include_tax=include_tax, sagemaker_endpoints=names,
                 metered_providers=providers or Scope.metered_providers)

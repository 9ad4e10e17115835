"""The chargeback of record: per cost centre × team, what the period's in-scope bill charges, to the cent.

From a period's reconciliation (:mod:`finance.reconcile`) and the allocation rules (:mod:`finance.allocation`):

- ``metered_list_cost``: the team's metered usage at list price;
- ``price_adjustment``: per model, what the bill charged for the metered usage beyond its list cost (price
  variance, unless a rule claims it) minus the metered usage the bill does not show, shared by the model's users in
  proportion to their metered list cost;
- ``allocated_shared_cost``: the team's shares of what rules claim (credits, fees, time-based and unmetered
  charges …); what no rule claims is the ``unallocated`` row's;
- ``chargeback_cost``: their sum, in cents by the largest-remainder method over all rows, so the rows add up to the
  in-scope bill rounded to the cent, exactly.

Each run writes a new version, ``curated/chargeback/billing_period=P/version=N/`` (``chargeback.parquet`` and a
``manifest.json`` of its inputs: CUR snapshot and whether it was final, price versions, rules hash, organisation as
of, run time); nothing is overwritten.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import pyarrow as pa

from common.constants import CURATED_CHARGEBACK
from common.contracts import UNALLOCATED, Team, chargeback_schema
from common.errors import UserError
from common.lake import Lake
from finance.allocation import Rule, Rules, claimant, split
from finance.reconcile import Reconciliation, period_days

CHARGEBACK_FILE = "chargeback.parquet"
MANIFEST = "manifest.json"
CENT = Decimal("0.01")
_Q = Decimal(1).scaleb(-12)
_ZERO = Decimal(0)


@dataclass
class VersionInfo:
    """One stored chargeback version's inputs and totals (its ``manifest.json``)."""

    billing_period: str
    version: int
    created_at: str
    cur_snapshot: str
    cur_final: bool
    price_versions: list[str]
    rules_source: str
    rules_digest: str
    organisation_as_of: str
    currency: str
    in_scope_total: str
    chargeback_total: str
    unallocated: str
    #: ``chargeback`` (a run of ``modelmeter chargeback``) or ``restatement`` (``modelmeter restate`` of a closed
    #: period: readable, never the record while the period is closed); manifests written before say neither.
    purpose: str = "chargeback"
    restates_version: int | None = None
    #: the scope the version was computed with (a restatement keeps the closed version's; before: tax excluded)
    include_tax: bool = False
    metered_providers: list[str] = field(default_factory=lambda: ["bedrock", "sagemaker"])


@dataclass
class Chargeback:
    rows: list[dict[str, Any]]
    info: VersionInfo


def _team_weights(rec: Reconciliation) -> tuple[dict[str, Decimal], dict[str, Decimal],
                                                dict[str, dict[str, Decimal]], dict[str, dict[str, Decimal]]]:
    """Per team: metered list cost, metered tokens; per model: each team's list cost and quantity."""
    cost: dict[str, Decimal] = defaultdict(Decimal)
    tokens: dict[str, Decimal] = defaultdict(Decimal)
    by_model: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    qty_by_model: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (team, key), value in rec.team_metered.items():
        cost[team] += value
        by_model[key.model_id][team] += value
    for (team, key), value in rec.team_quantity.items():
        qty_by_model[key.model_id][team] += value
        if key.dimension != "images":
            tokens[team] += value
    return cost, tokens, by_model, qty_by_model


def _target_teams(names: tuple[str, ...] | list[str], org: dict[str, str | None], metered: set[str]) -> list[str]:
    if "all" in names:
        return sorted(set(org) | metered)
    teams = []
    for name in names:
        teams += [name] if name in org or name in metered else sorted(t for t, cc in org.items() if cc == name)
    return sorted(set(teams))


def _rule_shares(rule: Rule, amount: Decimal, *, org: dict[str, str | None], cost: dict[str, Decimal],
                 tokens: dict[str, Decimal]) -> dict[str, Decimal]:
    """``amount`` shared as ``rule`` says. ``fixed`` and ``even`` split over the targets as listed, then a cost
    centre's part over its teams by metered list cost; ``proportional`` weighs every team the targets name.

    Raises:
        UserError: the rule names no team there is (``all`` with no team registered or metered, or a cost centre
            without teams): its charge would go to nobody.
    """
    metered = {t for t, v in cost.items() if v}
    if rule.method == "proportional":
        teams = _target_teams(tuple(rule.targets), org, metered)
        basis = tokens if rule.basis == "tokens" else cost
        return _checked(rule, split(amount, {t: basis.get(t, _ZERO) for t in teams}, quantum=_Q))
    if rule.method == "fixed":
        assert isinstance(rule.targets, dict)
        listed = dict(rule.targets)
    else:
        names = _target_teams(("all",), org, metered) if "all" in rule.targets else list(rule.targets)
        listed = {name: Decimal(1) for name in names}
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for name, part in split(amount, listed, quantum=_Q).items():
        teams = _target_teams([name], org, metered)
        if not teams:
            raise _nobody(rule, name)
        for team, value in split(part, {t: cost.get(t, _ZERO) for t in teams}, quantum=_Q).items():
            shares[team] += value
    return _checked(rule, dict(shares))


def _checked(rule: Rule, shares: dict[str, Decimal]) -> dict[str, Decimal]:
    if not shares:
        raise _nobody(rule, "all" if "all" in rule.targets else ", ".join(rule.targets))
    return shares


def _nobody(rule: Rule, target: str) -> UserError:
    return UserError(f"allocation rule {rule.name!r} (line {rule.line}): no team to charge for {target!r} (no team "
                     f"registered or metered there): add the team to the registry or change the rule")


def compute(*, rec: Reconciliation, rules: Rules, teams: list[Team], version: int, now: datetime | None = None,
            purpose: str = "chargeback", restates_version: int | None = None) -> Chargeback:
    """The chargeback rows of ``rec`` under ``rules`` for the dated organisation ``teams`` (not stored).

    A team is charged to the cost centre in force on each usage day: a team that moved within the period has one
    row per cost centre, its shares split in proportion to its metered list cost on each side of the move. Rule
    targets that name a cost centre, and teams that metered nothing, use the organisation of the period's last day.
    """
    now = now or datetime.now(UTC)
    _first, last = period_days(rec.billing_period)
    org = {t.team_id: t.cost_center_on(last) for t in teams}
    dated = {t.team_id: t for t in teams}
    cost, tokens, by_model, qty_by_model = _team_weights(rec)
    adjustment: dict[str, Decimal] = defaultdict(Decimal)
    shared: dict[str, Decimal] = defaultdict(Decimal)
    applied: dict[str, set[str]] = defaultdict(set)
    unallocated = _ZERO
    per_model: dict[str, Decimal] = defaultdict(Decimal)
    for row in rec.rows:
        if row["category"] == "metered_not_billed":
            per_model[row["model_id"]] -= row["metered_list_cost"]
    for piece in rec.pieces:
        rule = claimant(rules, piece)
        if rule is None and piece["category"] == "price_variance":
            per_model[piece["model_id"]] += piece["billed_cost"]
        elif rule is None:
            unallocated += piece["billed_cost"]
        else:
            for team, value in _rule_shares(rule, piece["billed_cost"], org=org, cost=cost, tokens=tokens).items():
                shared[team] += value
                applied[team].add(rule.name)
    for model, amount in per_model.items():
        weights = by_model.get(model, {})
        if not any(weights.values()):
            weights = qty_by_model.get(model, {})
        for team, value in split(amount, dict(weights), quantum=_Q).items():
            adjustment[team] += value
    rows = _rows(rec, org, cost, adjustment, shared, applied, unallocated, version)
    total = _round_to_cents(rows, rec.billed_total)  # per team first: a move never shifts another team's cents
    rows = _by_cost_center(rows, _cost_center_weights(rec, dated))
    for r in rows:
        r["purpose"] = purpose
    info = VersionInfo(
        billing_period=rec.billing_period, version=version, created_at=now.isoformat(),
        cur_snapshot=rec.snapshot.snapshot_id, cur_final=rec.snapshot.final, price_versions=list(rec.price_versions),
        rules_source=rules.source, rules_digest=rules.digest, organisation_as_of=now.date().isoformat(),
        currency=rec.currency, in_scope_total=_text(rec.billed_total), chargeback_total=_text(total),
        unallocated=_text(unallocated), purpose=purpose, restates_version=restates_version,
        include_tax=rec.scope.include_tax, metered_providers=list(rec.scope.metered_providers))
    return Chargeback(rows=rows, info=info)


def _cost_center_weights(rec: Reconciliation, dated: dict[str, Team]) -> dict[str, dict[str | None, Decimal]]:
    """Per team, its metered list cost per cost centre in force on the usage day (teams of the registry only)."""
    weights: dict[str, dict[str | None, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (team, key), value in rec.team_metered.items():
        if team in dated:
            weights[team][dated[team].cost_center_on(key.usage_date)] += value
    return weights


def _by_cost_center(rows: list[dict[str, Any]], weights: dict[str, dict[str | None, Decimal]]
                    ) -> list[dict[str, Any]]:
    """A team's row (already in cents) split into one row per cost centre it was charged to in the period: the
    metered list cost follows the days exactly; the price adjustment and the shared cost are largest-remainder
    shares at 12 decimals, and the team's cents are largest-remainder shares at the cent, of the same weights. The
    sides of a team add up to its unsplit row exactly, and the other teams' rows do not change."""
    out = []
    for row in rows:
        spread = {cc: w for cc, w in weights.get(row["team_id"], {}).items() if w}
        if len(spread) <= 1:
            if spread:
                row["cost_center"] = next(iter(spread))
            out.append(row)
            continue
        names = {(cc or ""): cc for cc in spread}  # split() sorts its keys: None cannot be one
        keyed = {k: spread[cc] for k, cc in names.items()}
        adjustment = split(row["price_adjustment"], keyed, quantum=_Q)
        shared = split(row["allocated_shared_cost"], keyed, quantum=_Q)
        cents = split(row["chargeback_cost"], keyed, quantum=CENT)
        for k, cc in names.items():
            out.append(dict(row, cost_center=cc, metered_list_cost=spread[cc], price_adjustment=adjustment[k],
                            allocated_shared_cost=shared[k], chargeback_cost=cents[k]))
    return sorted(out, key=lambda r: (r["team_id"] == UNALLOCATED, r["cost_center"] or "", r["team_id"]))




def _rows(rec: Reconciliation, org: dict[str, str | None], cost: dict[str, Decimal], adjustment: dict[str, Decimal],
          shared: dict[str, Decimal], applied: dict[str, set[str]], unallocated: Decimal, version: int
          ) -> list[dict[str, Any]]:
    teams = sorted(set(cost) | set(adjustment) | set(shared))
    rows: list[dict[str, Any]] = [{"billing_period": rec.billing_period, "version": version,
                                   "cost_center": org.get(t), "team_id": t,
             "metered_list_cost": cost.get(t, _ZERO), "price_adjustment": adjustment.get(t, _ZERO),
             "allocated_shared_cost": shared.get(t, _ZERO), "currency": rec.currency,
             "rules": ",".join(sorted(applied.get(t, ()))) or None} for t in teams]
    rows.append({"billing_period": rec.billing_period, "version": version, "cost_center": None,
                 "team_id": UNALLOCATED, "metered_list_cost": _ZERO, "price_adjustment": _ZERO,
                 "allocated_shared_cost": unallocated, "currency": rec.currency, "rules": None})
    for r in rows:
        r["exact"] = r["metered_list_cost"] + r["price_adjustment"] + r["allocated_shared_cost"]
    exact_total = sum((r["exact"] for r in rows), _ZERO)
    if exact_total != rec.billed_total:  # every billed dollar is in exactly one place: a bug otherwise
        raise AssertionError(f"chargeback rows sum to {exact_total}, the in-scope bill to {rec.billed_total}")
    return sorted(rows, key=lambda r: (r["team_id"] == UNALLOCATED, r["cost_center"] or "", r["team_id"]))


def _round_to_cents(rows: list[dict[str, Any]], total: Decimal) -> Decimal:
    """``chargeback_cost`` of every row: floored to the cent, the cents left by the largest remainders (ties: the
    order of ``rows``), so they sum to ``total`` rounded half up to the cent."""
    target = total.quantize(CENT, rounding=ROUND_HALF_UP)
    for r in rows:
        r["chargeback_cost"] = r["exact"].quantize(CENT, rounding=ROUND_FLOOR)
    left = int((target - sum((r["chargeback_cost"] for r in rows), _ZERO)) / CENT)
    order = sorted(range(len(rows)), key=lambda i: -(rows[i]["exact"] - rows[i]["chargeback_cost"]))
    for i in order[:left]:
        rows[i]["chargeback_cost"] += CENT
    for r in rows:
        del r["exact"]
    return target


def _text(value: Decimal) -> str:
    return format(value, "f")


# --- versions in the lake ----------------------------------------------------------------------------------------

def versions(*, lake: Lake, period: str) -> list[VersionInfo]:
    """Every stored version of ``period``, oldest first."""
    out = []
    for path in lake.list_files(CURATED_CHARGEBACK, f"billing_period={period}", suffix=MANIFEST):
        with lake.fs.open_input_stream(path) as src:
            out.append(VersionInfo(**json.loads(src.read())))
    return sorted(out, key=lambda v: v.version)


def next_version(*, lake: Lake, period: str) -> int:
    existing = versions(lake=lake, period=period)
    return existing[-1].version + 1 if existing else 1


def store(*, lake: Lake, chargeback: Chargeback) -> str:
    """Write a computed chargeback as its version (rows first, the manifest last: the commit)."""
    info = chargeback.info
    prefix = (CURATED_CHARGEBACK, f"billing_period={info.billing_period}", f"version={info.version}")
    names = chargeback_schema().names
    inputs = {"restates_version": info.restates_version, "created_at": info.created_at,
              "cur_snapshot": info.cur_snapshot, "cur_final": info.cur_final,
              "price_versions": ",".join(info.price_versions)}
    table = pa.Table.from_pylist([{n: {**r, **inputs}.get(n) for n in names} for r in chargeback.rows],
                                 schema=chargeback_schema())
    lake.write_parquet(table, *prefix, CHARGEBACK_FILE)
    return lake.write_bytes(json.dumps(asdict(info), indent=2).encode(), *prefix, MANIFEST)

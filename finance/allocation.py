"""Allocation rules: who carries the parts of the bill that no team's metered usage explains.

A rules file (YAML, DESIGN.md "Allocation rules"), in the spirit of AWS Cost Categories' split charges::

    rules:
      - name: credits-to-product-teams        # unique
        source: {line_item_type: Credit}      # or {category: …}, {usage_type: "…*"}, {resource_id: …},
                                              # {account: "1111*"} (linked account), {tag: {k: v}}
        method: fixed                         # fixed | proportional | even
        targets: {teamA: 60, teamB: 40}       # fixed: percentages summing to 100; else a list of teams, or all
        basis: metered_cost                   # proportional only: metered_cost | tokens

What a rule can claim are the reconciliation's billed pieces outside ``matched``: ``price_variance`` (which, unless
a rule claims it, goes to the teams that used the model, in proportion to their metered list cost),
``unmetered_usage``, ``non_usage``, ``time_based`` and ``unmapped``. A piece no rule claims goes to the one
``unallocated`` line, never spread silently. A target may be a team or a cost centre (whose teams then share it in
proportion to their metered list cost, evenly when none metered).

A file is checked whole before anything is allocated; each problem names the rule, its key and its line. Two rules
that claim the same piece are refused, naming both.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from common.contracts import RECONCILIATION_CATEGORIES
from common.errors import UserError

SOURCE_KEYS = ("category", "line_item_type", "usage_type", "resource_id", "account", "tag")
METHODS = ("fixed", "proportional", "even")
BASES = ("metered_cost", "tokens")
#: Categories a rule may claim (``matched`` is the metering teams' own usage; ``metered_not_billed`` is no bill).
CLAIMABLE = tuple(c for c in RECONCILIATION_CATEGORIES if c not in ("matched", "metered_not_billed"))


@dataclass(frozen=True)
class Rule:
    """One checked rule; ``line`` is its line in the file (1-based)."""

    name: str
    source_key: str
    source_value: Any
    method: str
    targets: dict[str, Decimal] | tuple[str, ...]  # fixed: name → percentage; else names ("all" = every team)
    basis: str = "metered_cost"
    line: int = 0

    def claims(self, piece: dict[str, Any]) -> bool:
        """Whether this rule's source selects ``piece`` (a reconciliation row)."""
        key, value = self.source_key, self.source_value
        if key == "category":
            return piece["category"] == value
        if key == "line_item_type":
            return piece["line_item_type"] == value
        if key == "usage_type":
            return any(fnmatch.fnmatchcase(u, value) for u in (piece["usage_type"] or "").split(","))
        if key == "resource_id":
            return fnmatch.fnmatchcase(piece.get("resource_id") or "", value)
        if key == "account":  # a linked account (line_item_usage_account_id), e.g. a business unit's own
            accounts = [a for a in (piece.get("usage_account_id") or "").split(",") if a]
            return bool(accounts) and all(fnmatch.fnmatchcase(a, str(value)) for a in accounts)
        tags = piece.get("resource_tags") or {}
        return all(tags.get(k) == v for k, v in value.items())


@dataclass
class Rules:
    """A checked rules file (or the defaults: no rules)."""

    rules: list[Rule] = field(default_factory=list)
    source: str = "default (no rules file)"
    digest: str = "none"


def _lines(path: Path, text: str) -> dict[int, int]:
    """Rule index → 1-based line of its ``-`` in the file (for messages)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML ({exc})") from None
    out: dict[int, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "rules" and isinstance(value, yaml.SequenceNode):
                out = {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return out


def load_rules(path: Path | None, *, teams: set[str], cost_centers: set[str]) -> Rules:
    """Read and check a rules file; ``None`` (no file) means no rules.

    Raises:
        UserError: listing every problem as ``FILE:LINE: rule NAME: …``.
    """
    if path is None:
        return Rules()
    if not path.is_file():
        raise UserError(f"{path}: no such rules file")
    text = path.read_text(encoding="utf-8")
    lines = _lines(path, text)
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise UserError(f"{path}:1: a rules file holds `rules:`, a list of rules")
    problems: list[str] = []
    rules = []
    for i, raw in enumerate(data["rules"]):
        where = f"{path}:{lines.get(i, 1)}"
        rule = _rule(raw, where=where, line=lines.get(i, 1), teams=teams, cost_centers=cost_centers,
                     problems=problems)
        if rule:
            rules.append(rule)
    _static_overlaps(rules, path, problems)
    if problems:
        raise UserError("rules not accepted: " + "; ".join(problems))
    return Rules(rules=rules, source=str(path), digest=hashlib.sha256(text.encode()).hexdigest()[:16])


def _rule(raw: Any, *, where: str, line: int, teams: set[str], cost_centers: set[str], problems: list[str]
          ) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a rule is a mapping with name, source, method and targets")
        return None
    name = raw.get("name")
    label = f"{where}: rule {name!r}" if name else f"{where}: a rule"
    before = len(problems)
    unknown = sorted(set(raw) - {"name", "source", "method", "targets", "basis"})
    if unknown:
        problems.append(f"{label}: unknown key {', '.join(unknown)}")
    if not isinstance(name, str) or not name:
        problems.append(f"{label}: `name` is missing")
    source = raw.get("source")
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in SOURCE_KEYS:
        problems.append(f"{label}: `source` must be one of {{{', '.join(SOURCE_KEYS)}: …}}")
        source = {"category": None}
    key, value = next(iter(source.items()))
    if key == "category" and value not in CLAIMABLE and len(problems) == before:
        problems.append(f"{label}: source category {value!r} is not one of {', '.join(CLAIMABLE)}")
    if key == "tag" and not (isinstance(value, dict) and value):
        problems.append(f"{label}: source tag must be a mapping {{key: value}}")
    method = raw.get("method")
    if method not in METHODS:
        problems.append(f"{label}: `method` must be one of {', '.join(METHODS)}")
    basis = raw.get("basis", "metered_cost")
    if basis not in BASES or (method != "proportional" and "basis" in raw):
        problems.append(f"{label}: `basis` is for method proportional only, one of {', '.join(BASES)}")
    targets = _targets(raw.get("targets"), method, label=label, teams=teams, cost_centers=cost_centers,
                       problems=problems)
    if len(problems) > before:
        return None
    return Rule(name=str(name), source_key=key, source_value=value, method=str(method), targets=targets, basis=basis,
                line=line)


def _targets(raw: Any, method: Any, *, label: str, teams: set[str], cost_centers: set[str], problems: list[str]
             ) -> dict[str, Decimal] | tuple[str, ...]:
    known = teams | cost_centers
    if method == "fixed":
        if not isinstance(raw, dict) or not raw:
            problems.append(f"{label}: `targets` of method fixed is a mapping of team or cost centre → percentage")
            return {}
        try:
            shares = {str(k): Decimal(str(v)) for k, v in raw.items()}
        except InvalidOperation:
            problems.append(f"{label}: percentages must be numbers")
            return {}
        if sum(shares.values()) != 100 or any(v <= 0 for v in shares.values()):
            problems.append(f"{label}: percentages sum to {sum(shares.values())}, not 100 (each above 0)")
        names = list(shares)
    else:
        if raw == "all":
            return ("all",)
        if not isinstance(raw, list) or not raw:
            problems.append(f"{label}: `targets` is a list of teams or cost centres, or all")
            return ()
        names, shares = [str(t) for t in raw], {}
    wrong = [n for n in names if n not in known]
    if wrong:
        problems.append(f"{label}: unknown team or cost centre {', '.join(wrong)}")
    return shares if method == "fixed" else tuple(names)


def _static_overlaps(rules: list[Rule], path: Path, problems: list[str]) -> None:
    seen: dict[tuple[str, str], Rule] = {}
    for rule in rules:
        key = (rule.source_key, repr(rule.source_value))
        if key in seen:
            first = seen[key]
            problems.append(f"{path}:{rule.line}: rule {rule.name!r} claims what rule {first.name!r} (line "
                            f"{first.line}) claims: {rule.source_key} {rule.source_value!r}")
        seen[key] = rule
    names = [r.name for r in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{path}: rule name {name!r} is used twice")


def claimant(rules: Rules, piece: dict[str, Any]) -> Rule | None:
    """The one rule that claims ``piece``, or ``None``.

    Raises:
        UserError: two rules claim it (naming both and their lines).
    """
    matching = [r for r in rules.rules if r.claims(piece)]
    if len(matching) > 1:
        a, b = matching[:2]
        raise UserError(f"{rules.source}: rules {a.name!r} (line {a.line}) and {b.name!r} (line {b.line}) both claim "
                        f"the same {piece['category']} charge ({piece['usage_type'] or piece['line_item_type']}): "
                        f"make their sources disjoint")
    return matching[0] if matching else None


def split(amount: Decimal, weights: dict[str, Decimal], *, quantum: Decimal) -> dict[str, Decimal]:
    """``amount`` (rounded half up to ``quantum``) split over ``weights`` by the largest-remainder method: every
    share is floored to ``quantum`` and the quanta left go to the largest remainders (ties: by name), so the shares
    sum to the rounded amount exactly. All-zero weights split evenly."""
    names = sorted(weights)
    if not names:
        return {}
    total = sum(weights.values(), Decimal(0))
    if total == 0:
        weights, total = {n: Decimal(1) for n in names}, Decimal(len(names))
    target = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    exact = {n: target * weights[n] / total for n in names}
    shares = {n: exact[n].quantize(quantum, rounding=ROUND_FLOOR) for n in names}
    left = int(((target - sum(shares.values(), Decimal(0))) / quantum).to_integral_value())
    for n in sorted(names, key=lambda n: (-(exact[n] - shares[n]), n))[:left]:
        shares[n] += quantum
    return shares

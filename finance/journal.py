"""The journal of a billing period: balanced ledger lines from its chargeback of record.

One debit line per cost centre (the ``unallocated`` row, and teams without a cost centre, on the cost centre the
ledger configuration names for them) with its GL account and a memo (period, version, state, teams); one credit
line to the configured central account. Debits = credits = the period's in-scope invoice total, to the cent. A
cost centre whose net charge is negative (credits beyond its usage) gets a negative debit, so that debits = credits
= the invoice, as DESIGN.md's journal contract says.
Adjustment lines posted into the period (restatements of earlier closed periods) follow as their own balanced
group per corrected period, labelled with it, so the period's own lines still equal its own invoice.

Each line says which fiscal month the billing period is booked into (``fiscal_month``: the reporting calendar's
fiscal month holding the period's last day, or first, as ``MODELMETER_FISCAL_BOOKING`` says).

The ledger configuration (``ledger.yaml`` beside the tenant registry, or ``--ledger FILE``)::

    central_account: "2450-AI-PLATFORM-RECOVERY"   # credited with what the cost centres are charged
    unallocated_cost_center: CC-PLATFORM           # carries the unallocated line
    default_account: "6100"                        # optional: the GL account of a cost centre not listed
    cost_centers:
      CC-1001: "6110"
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from common.contracts import UNALLOCATED
from common.errors import UserError
from finance.close import Record

LEDGER_FILE = "ledger.yaml"
COLUMNS = ("period", "line_type", "corrects_period", "account", "cost_center", "debit", "credit", "currency", "memo",
           "fiscal_month")
_KEYS = {"central_account", "unallocated_cost_center", "default_account", "cost_centers"}
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Ledger:
    """A checked ledger configuration."""

    central_account: str
    unallocated_cost_center: str
    default_account: str | None = None
    accounts: dict[str, str] = field(default_factory=dict)
    source: str = ""


def _lines_of(text: str) -> dict[str, int]:
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        return {key.value: key.start_mark.line + 1 for key, _ in node.value}
    return {}


def load_ledger(path: Path) -> Ledger:
    """Read and check a ledger file.

    Raises:
        UserError: the file is missing, not YAML, or a key is missing, unknown or not text (``FILE:LINE: …``).
    """
    if not path.is_file():
        raise UserError(f"{path}: no ledger configuration (the GL accounts of the journal): write it as "
                        f"docs/ledger.example.yaml shows, or give --ledger FILE")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
        lines = _lines_of(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a ledger file is a mapping (central_account, unallocated_cost_center, …)")
    problems = [f"{path}:{lines.get(k, 1)}: unknown key {k!r}" for k in sorted(set(data) - _KEYS, key=str)]
    # accounts are text: an unquoted 02450 or 0610 is a YAML number (octal!) that would post to another account
    for key in ("central_account", "unallocated_cost_center"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{path}:{lines.get(key, 1)}: `{key}` is required, as quoted text (e.g. \"2450\")")
    if data.get("default_account") is not None and not isinstance(data["default_account"], str):
        problems.append(f"{path}:{lines.get('default_account', 1)}: `default_account` must be quoted text")
    accounts = data.get("cost_centers") or {}
    if not isinstance(accounts, dict) or not all(isinstance(v, str) for v in accounts.values()):
        problems.append(f"{path}:{lines.get('cost_centers', 1)}: `cost_centers` maps a cost centre to its GL account, "
                        f"each quoted (\"6110\")")
        accounts = {}
    if problems:
        raise UserError("ledger not accepted: " + "; ".join(problems))
    default = data.get("default_account")
    return Ledger(central_account=str(data["central_account"]),
                  unallocated_cost_center=str(data["unallocated_cost_center"]),
                  default_account=None if default is None else str(default),
                  accounts={str(k): str(v) for k, v in accounts.items()}, source=str(path))


def _account(ledger: Ledger, cost_center: str) -> str | None:
    return ledger.accounts.get(cost_center, ledger.default_account)


def _group(rows: list[dict[str, Any]], ledger: Ledger) -> dict[str, tuple[Decimal, list[str]]]:
    """Net charge and teams per cost centre (unallocated and cost-centre-less teams on the configured one)."""
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    teams: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        cc = r["cost_center"] if r["team_id"] != UNALLOCATED and r["cost_center"] else ledger.unallocated_cost_center
        amounts[cc] += Decimal(r["chargeback_cost"])
        label = r["team_id"] if r["team_id"] == UNALLOCATED or r["cost_center"] else f"{r['team_id']} (no cost centre)"
        teams[cc].append(label)
    return {cc: (amounts[cc], sorted(set(teams[cc]))) for cc in sorted(amounts)}




def journal_lines(record: Record, ledger: Ledger, *, fiscal_month: str | None = None) -> list[dict[str, Any]]:
    """The balanced journal of ``record`` (its own lines, then one group per corrected period).

    Raises:
        UserError: a cost centre has no GL account (and there is no default), naming them.
        AssertionError: the lines do not balance or do not equal the invoice (a bug).
    """
    info, period = record.info, record.info.billing_period
    state = f"{record.status.label}{'' if record.status.closed else ': a preview until closed'}"
    groups: list[tuple[str, str | None, list[dict[str, Any]], str]] = [
        ("charge", None, record.rows, f"chargeback {period} v{info.version} ({state})")]
    by_corrected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in record.adjustments:
        by_corrected[a["corrects_period"]].append(a)
    for fixed, lines in sorted(by_corrected.items()):
        ids = ", ".join(sorted({r["restatement"] for r in lines}))
        groups.append(("adjustment", fixed, lines, f"restatement {ids} of {fixed}, booked in {period}"))
    missing = sorted({cc for _, _, rows, _ in groups for cc in _group(rows, ledger) if _account(ledger, cc) is None})
    if missing:
        raise UserError(f"{ledger.source}: no GL account for cost centre {', '.join(missing)}: add them under "
                        f"`cost_centers:` (or set `default_account`)")
    out: list[dict[str, Any]] = []
    for line_type, corrected, rows, memo in groups:
        total = _ZERO
        for cc, (amount, teams) in _group(rows, ledger).items():
            total += amount
            out.append({"period": period, "line_type": line_type, "corrects_period": corrected,
                        "account": _account(ledger, cc), "cost_center": cc, "debit": amount, "credit": _ZERO,
                        "currency": info.currency, "memo": f"{memo}: {', '.join(teams)}"})
        out.append({"period": period, "line_type": line_type, "corrects_period": corrected,
                    "account": ledger.central_account, "cost_center": None, "debit": _ZERO, "credit": total,
                    "currency": info.currency, "memo": f"{memo}: recovered by the central account"})
    _check(out, Decimal(info.chargeback_total))
    for line in out:
        line["fiscal_month"] = fiscal_month  # the fiscal month the billing period is booked into (configuration)
    return out


def _check(lines: list[dict[str, Any]], invoice: Decimal) -> None:
    debits = sum((line["debit"] for line in lines), _ZERO)
    credits = sum((line["credit"] for line in lines), _ZERO)
    own_debits = sum((line["debit"] for line in lines if line["line_type"] == "charge"), _ZERO)
    own_credits = sum((line["credit"] for line in lines if line["line_type"] == "charge"), _ZERO)
    if debits != credits or not own_debits == own_credits == invoice:
        raise AssertionError(f"journal does not balance: debits {debits}, credits {credits}, own lines "
                             f"{own_debits} / {own_credits}, invoice {invoice}")


def to_csv(lines: list[dict[str, Any]]) -> str:
    """The journal as CSV (money as plain decimals with two places, empty for none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for line in lines:
        writer.writerow(["" if line[c] is None else (format(line[c], ".2f") if isinstance(line[c], Decimal)
                                                      else line[c]) for c in COLUMNS])
    return out.getvalue()

"""``modelmeter tenants add|list``: the tenant registry from the command line (the keys: ``commands/keys.py``).

The registry is the local file or, with ``--tenants dynamodb://TABLE`` (or ``$MODELMETER_TENANTS``), a deployed
unit's DynamoDB tenant table (:func:`ingest.registry.open_registry`): the same commands, the same history.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from common.constants import ENV_LAKE
from common.contracts import Team
from common.errors import UserError
from common.lake import Lake
from ingest.registry import AdminRegistry, is_dynamodb, open_registry
from sql.reference import write_teams


def _budget(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        budget = Decimal(value)
    except InvalidOperation:
        raise UserError(f"--monthly-budget {value!r} is not a number of USD (write e.g. 2500 or 2500.50)") from None
    if not budget.is_finite() or budget < 0:
        raise UserError(f"--monthly-budget {value!r} must be a non-negative amount of USD")
    return budget

def _merged(team: Team, args: Any, effective_from: date | None = None) -> Team:
    """The team with the options given on the command line; an option left out keeps the team's current value."""
    given = {name: getattr(args, name, None) for name in ("cost_center", "monthly_budget", "allow", "rps",
                                                          "daily_tokens")}
    limits = replace(team.limits, **{k: v for k, v in (("requests_per_second", given["rps"]),
                                                       ("daily_tokens", given["daily_tokens"])) if v is not None})
    changes: dict[str, Any] = {"limits": limits}
    if given["monthly_budget"] is not None:
        changes["monthly_budget_usd"] = _budget(given["monthly_budget"])
    if given["allow"]:
        changes["allowed_models"] = tuple(given["allow"])
    for name in ("budget_mode", "alert_at"):  # validated by the parser (exit 2 naming the flag)
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    team = replace(team, **changes)
    if given["cost_center"] is not None and (given["cost_center"] != team.cost_center or effective_from):
        team = team.moved(given["cost_center"], effective_from=effective_from)
    return team


def _effective_from(args: Any, existing: Team | None) -> date | None:
    """``--from``; without it a new team's cost centre holds since always and an existing team's move from today
    (UTC), so the months already charged keep their cost centre."""
    given = getattr(args, "effective_from", None)
    if given is not None:
        return given
    if existing is not None and getattr(args, "cost_center", None) not in (None, existing.cost_center) \
            and (existing.cost_center is not None or existing.cost_center_history):
        return datetime.now(UTC).date()
    return None

def run_add(args: Any) -> int:
    """``modelmeter tenants add TEAM``: registers (or updates) a team; the budgets then reach the views."""
    team_id = (args.team or "").strip()
    if not team_id:
        raise UserError("the team name is empty")
    if getattr(args, "effective_from", None) is not None and getattr(args, "cost_center", None) is None:
        print("modelmeter tenants add: error: argument --from: dates a cost-centre move: give --cost-center with it",
              file=sys.stderr)
        return 2
    if getattr(args, "cost_center", None) is not None and not args.cost_center.strip():
        print("modelmeter tenants add: error: argument --cost-center: the cost centre is empty (a team without one "
              "is charged to the ledger's unallocated cost centre: leave --cost-center out)", file=sys.stderr)
        return 2
    if getattr(args, "rps", None) is not None and args.rps <= 0:
        raise UserError("--rps must be positive")
    if getattr(args, "daily_tokens", None) is not None and args.daily_tokens <= 0:
        raise UserError("--daily-tokens must be positive")
    registry = _open_registry(args)
    existing = registry.get_team(team_id)
    effective_from = _effective_from(args, existing)
    team = _merged(existing or Team(team_id=team_id), args, effective_from)
    registry.put_team(team)
    written = _write_reference_teams(registry, args)
    print(f"team {team_id} {'updated' if existing else 'registered'} in {registry.location}: cost centre "
          f"{team.cost_center or '-'}, budget {team.monthly_budget_usd if team.monthly_budget_usd is not None else '-'}"
          f" USD/month, models {','.join(team.allowed_models)}, rps {team.limits.requests_per_second or '-'}, "
          f"daily tokens {team.limits.daily_tokens or '-'}, budget mode {team.budget_mode}, alerts at "
          f"{','.join(map(str, team.alert_at))} %", file=sys.stderr)
    if effective_from is not None:
        print(f"cost centre {team.cost_center_on(effective_from) or '-'} from {effective_from} (UTC); earlier days "
              f"stay with "
              f"{_before(team, effective_from)}; closed billing periods do not move (see `modelmeter restate`)",
              file=sys.stderr)
    if written is None:
        print(f"reference/teams not rewritten: no --lake (or ${ENV_LAKE}) given; the unit's transform refreshes it "
              f"from {registry.location} on its next run", file=sys.stderr)
    return 0


def _write_reference_teams(registry: AdminRegistry, args: Any) -> str | None:
    """Rewrite the lake's ``reference/teams`` from the registry, for the views; the file written.

    A DynamoDB registry belongs to a deployed unit, whose lake is on S3: without a lake named (``--lake`` or
    ``$MODELMETER_LAKE``) nothing is written (``None``) rather than a ``./lake`` nobody reads.
    """
    lake = getattr(args, "lake", None)
    if is_dynamodb(registry) and not (lake or os.environ.get(ENV_LAKE)):
        return None
    teams = registry.list_teams()
    try:
        return write_teams(lake=Lake.open(lake), teams=teams)
    except OSError as exc:
        raise UserError(f"the registry {registry.location} is updated, but reference/teams could not be rewritten "
                        f"({exc}); run the command again"
                        + (" or let the unit's transform refresh it" if is_dynamodb(registry) else "")) from None


def _before(team: Team, day: date) -> str:
    earlier = team.cost_center_on(day - timedelta(days=1))
    return f"cost centre {earlier}" if earlier else "no cost centre"

def run_list(args: Any) -> int:
    """``modelmeter tenants list``: one line per team (no secrets: there are none to show)."""
    registry = _open_registry(args)
    teams = registry.list_teams()
    if not teams:
        print(f"no teams in {registry.location}", file=sys.stderr)
        return 0
    live: dict[str, list[str]] = {}
    now = datetime.now(UTC)
    for key in registry.list_keys():  # once: a DynamoDB registry scans the table for it
        if key.usable(now):  # neither revoked nor expired (`modelmeter keys list` shows them all)
            live.setdefault(key.team_id, []).append(key.api_key_id)
    print("team_id\tcost_center\tmonthly_budget_usd\tallowed_models\trps\tdaily_tokens\tkeys")
    for t in teams:
        keys = live.get(t.team_id, [])
        print("\t".join(str(v) if v is not None else "-" for v in (
            t.team_id, t.cost_center, t.monthly_budget_usd, ",".join(t.allowed_models),
            t.limits.requests_per_second, t.limits.daily_tokens, ",".join(keys) or None)))
    return 0

def _open_registry(args: Any) -> AdminRegistry:
    return open_registry(tenants=getattr(args, "tenants", None), lake=getattr(args, "lake", None))

"""Reference data beside the curated tables: ``reference/teams`` (dated cost centre, monthly budget, business unit).

The tenant registry is the source (``modelmeter tenants add`` calls :func:`write_teams` with every team); the views
join this table for chargeback by cost centre and for budget burn. Re-written whole each time: it is small.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa

from common.constants import MONEY_SCALE, REFERENCE_TEAMS
from common.contracts import Team, teams_schema
from common.lake import Lake

TEAMS_FILE = "teams.parquet"
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def _budget(team: Team) -> Decimal | None:
    budget = team.monthly_budget_usd
    if budget is None:
        return None
    budget = Decimal(budget)
    if not budget.is_finite() or budget < 0:
        raise ValueError(f"team {team.team_id}: monthly budget {budget} must be a non-negative amount of USD")
    # Exact at 12 places, else refuse: a silent rounding of a budget would be a wrong number on a dashboard.
    quantized = budget.quantize(_MONEY_QUANTUM)
    if quantized != budget:
        raise ValueError(f"team {team.team_id}: monthly budget {budget} has more than {MONEY_SCALE} decimal places")
    return quantized


def teams_table(*, teams: Sequence[Team]) -> pa.Table:
    """The teams as a table of :func:`teams_schema`, sorted by team id: one row per cost-centre assignment (the
    dated organisation: a view joins the row in force on the usage day); a team id may appear only once."""
    seen: set[str] = set()
    rows = []
    for team in sorted(teams, key=lambda t: t.team_id):
        if team.team_id in seen:
            raise ValueError(f"team {team.team_id} is listed twice")
        seen.add(team.team_id)
        spans = team.spans()
        for i, span in enumerate(spans):
            last = i == len(spans) - 1
            rows.append({"team_id": team.team_id, "cost_center": span.cost_center,
                         "monthly_budget_usd": _budget(team), "business_unit": team.business_unit,
                         "effective_from": span.effective_from,
                         "effective_to": None if last else spans[i + 1].effective_from, "is_current": last})
    return pa.Table.from_pylist(rows, schema=teams_schema())


def write_teams(*, lake: Lake, teams: Sequence[Team]) -> str:
    """Write every team to ``reference/teams/teams.parquet`` (replacing it atomically); returns the file written."""
    return lake.write_parquet(teams_table(teams=teams), REFERENCE_TEAMS, TEAMS_FILE)

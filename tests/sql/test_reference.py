"""reference/teams: written from the tenant registry's teams, read back by the views."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from common.constants import REFERENCE_TEAMS
from common.contracts import Team, teams_schema
from common.lake import Lake
from sql.config import ReportingConfig
from sql.reference import TEAMS_FILE, teams_table, write_teams
from sql.render import connect


def test_write_teams_round_trips_exact_budgets(tmp_path) -> None:
    # GIVEN two teams, one without a budget
    lake = Lake.open(tmp_path)
    teams = [Team(team_id="b", cost_center="CC-2", monthly_budget_usd=Decimal("1234.567890123456")),
             Team(team_id="a", cost_center=None, business_unit="bu-1")]
    # WHEN they are written
    path = write_teams(lake=lake, teams=teams)
    # THEN the file holds them sorted, typed, with the budget exact
    assert path == lake.path(REFERENCE_TEAMS, TEAMS_FILE)
    table = pq.read_table(path)
    assert table.schema.equals(teams_schema(), check_metadata=False)
    assert table.to_pylist() == [
        {"team_id": "a", "cost_center": None, "monthly_budget_usd": None, "business_unit": "bu-1",
         "effective_from": None, "effective_to": None, "is_current": True},
        {"team_id": "b", "cost_center": "CC-2", "monthly_budget_usd": Decimal("1234.567890123456"),
         "business_unit": None, "effective_from": None, "effective_to": None, "is_current": True},
    ]
    # AND the views see them (budget as DECIMAL(38,12), team without cost centre charged to 'unassigned')
    con = connect(lake=lake, config=ReportingConfig())
    assert con.execute("select monthly_budget_usd from teams where team_id = 'b'").fetchone()[0] == \
        Decimal("1234.567890123456")


def test_rewriting_replaces_the_table(tmp_path) -> None:
    lake = Lake.open(tmp_path)
    write_teams(lake=lake, teams=[Team(team_id="a"), Team(team_id="b")])
    write_teams(lake=lake, teams=[Team(team_id="c")])
    assert pq.read_table(lake.path(REFERENCE_TEAMS, TEAMS_FILE)).column("team_id").to_pylist() == ["c"]


@pytest.mark.parametrize(("team", "message"), [
    (Team(team_id="x", monthly_budget_usd=Decimal("-1")), "team x: monthly budget -1 must be a non-negative"),
    (Team(team_id="x", monthly_budget_usd=Decimal("0.0000000000001")), "more than 12 decimal places"),
])
def test_refuses_budgets_it_cannot_store_exactly(tmp_path, team: Team, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_teams(lake=Lake.open(tmp_path), teams=[team])


def test_refuses_a_team_listed_twice(tmp_path) -> None:
    with pytest.raises(ValueError, match="team a is listed twice"):
        write_teams(lake=Lake.open(tmp_path), teams=[Team(team_id="a"), Team(team_id="a")])


def test_a_dated_move_is_one_row_per_assignment() -> None:
    # GIVEN a team in CC-1 since always, moved to CC-2 from 2026-11-15 and to CC-3 from 2026-12-01
    team = Team(team_id="a", cost_center="CC-1", monthly_budget_usd=Decimal(10))
    team = team.moved("CC-3", effective_from=date(2026, 12, 1)).moved("CC-2", effective_from=date(2026, 11, 15))
    # THEN the table holds the three assignments, each ending where the next starts, the last one current
    rows = teams_table(teams=[team]).to_pylist()
    assert [(r["cost_center"], r["effective_from"], r["effective_to"], r["is_current"]) for r in rows] == [
        ("CC-1", None, date(2026, 11, 15), False),
        ("CC-2", date(2026, 11, 15), date(2026, 12, 1), False),
        ("CC-3", date(2026, 12, 1), None, True),
    ]
    assert [team.cost_center_on(date(2026, 11, d)) for d in (14, 15, 30)] == ["CC-1", "CC-2", "CC-2"]
    assert team.cost_center == "CC-3"


def test_a_team_first_assigned_from_a_day_has_no_cost_centre_before_it() -> None:
    team = Team(team_id="a").moved("CC-9", effective_from=date(2026, 11, 1))
    assert team.cost_center_on(date(2026, 10, 31)) is None
    assert team.cost_center_on(date(2026, 11, 1)) == "CC-9"

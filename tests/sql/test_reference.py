"""reference/teams: written from the tenant registry's teams, read back by the views."""

from __future__ import annotations

from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from common.constants import REFERENCE_TEAMS
from common.contracts import Team, teams_schema
from common.lake import Lake
from sql.config import ReportingConfig
from sql.reference import TEAMS_FILE, write_teams
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
        {"team_id": "a", "cost_center": None, "monthly_budget_usd": None, "business_unit": "bu-1"},
        {"team_id": "b", "cost_center": "CC-2", "monthly_budget_usd": Decimal("1234.567890123456"),
         "business_unit": None},
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

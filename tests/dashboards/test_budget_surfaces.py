"""The budget section's alert state and refused calls: on the HTML dashboard (the lake's alert log, the budget_burn
view, throttled events of usage_local) and on QuickSight (refused calls counted over usage_local, RLS-scoped)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.constants import ALERTS, ALERTS_FILE
from common.lake import Lake
from dashboards import quicksight as qs
from dashboards.html import render_dashboard
from dashboards.report_data import alert_log
from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import FixtureFacts

DECEMBER = "2026-12-01"  # the fixture's last fiscal month (UTC calendar): the budget burn's month


def _alert(team: str, threshold: int, raised_at: str, *, period: str = DECEMBER, mode: str = "block") -> dict[str, Any]:
    # the line ingest.budget.alert_of writes (the fields the page reads, and the others as they come)
    return {"alert": "budget_threshold_crossed", "team_id": team, "threshold_pct": threshold, "budget_usd": "5",
            "spend_usd": "4.1", "budget_mode": mode, "cost_center": "CC-1001", "period": period,
            "period_start": period, "period_end": "2026-12-31", "resets_at": "2027-01-01T00:00:00Z",
            "calendar": {"timezone": "UTC", "fiscal_month_start_day": 1}, "raised_at": raised_at,
            "source": "gateway"}


@pytest.fixture(scope="module")
def alerted_lake(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture lake plus an alert log: alpha alerted at 50 % and 80 % in December (and 50 % in November), west
    at 100 % as an S3 lake stores alerts (one object under alerts/period=…/), and a line torn by a crash."""
    root = tmp_path_factory.mktemp("alerted") / "lake"
    shutil.copytree(facts.root, root)
    log = root / ALERTS / ALERTS_FILE
    log.parent.mkdir(parents=True)
    lines = [_alert("team-alpha", 50, "2026-11-20T10:00:00.000Z", period="2026-11-01"),
             _alert("team-alpha", 50, "2026-12-09T08:15:00.000Z"),
             _alert("team-alpha", 80, "2026-12-12T16:45:30.500Z")]
    log.write_text("".join(json.dumps(a) + "\n" for a in lines) + '{"alert": "budget_thr', encoding="utf-8")
    one = root / ALERTS / f"period={DECEMBER}" / "team-west-100.json"
    one.parent.mkdir()
    one.write_text(json.dumps(_alert("team-west", 100, "2026-12-13T01:02:03.000Z", mode="alert")), encoding="utf-8")
    return root


def _table(html: str, table_id: str) -> tuple[list[str], list[list[str]]]:
    table = re.search(rf'<table class="sortable" id="table-{table_id}".*?</table>', html, re.S)
    assert table, table_id
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", table.group(0))
    body = re.search(r"<tbody>(.*)</tbody>", table.group(0), re.S)
    assert body
    rows = [re.findall(r'data-sort="([^"]*)"', row) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]
    return heads, rows


def _throttled(facts: FixtureFacts, month: date) -> Counter[str]:
    return Counter(r["team_id"] for r in facts.usage_cost
                   if r["status"] == "throttled" and FixtureFacts.fiscal_month_start(
                       FixtureFacts.local_day(r, "UTC"), 1) == month)


def test_the_alert_log_is_read_in_both_lake_layouts_and_a_torn_line_is_skipped(alerted_lake: Path) -> None:
    alerts = alert_log(Lake.open(alerted_lake))
    assert sorted((a["team_id"], a["period"], a["threshold_pct"]) for a in alerts) == [
        ("team-alpha", "2026-11-01", 50), ("team-alpha", DECEMBER, 50), ("team-alpha", DECEMBER, 80),
        ("team-west", DECEMBER, 100)]
    assert alert_log(None) == [] and alert_log(Lake.open(alerted_lake / "nothing-here")) == []


def test_the_budget_section_shows_each_teams_alerts_share_used_and_refused_calls(
        alerted_lake: Path, facts: FixtureFacts, con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # WHEN the dashboard is rendered over the lake with its alert log
    html = render_dashboard(lake=Lake.open(alerted_lake), out=tmp_path / "report.html",
                            config=UTC_CONFIG).read_text(encoding="utf-8")
    heads, rows = _table(html, "budget-alerts")
    assert heads == ["team", "budget mode", "budget (USD)", "spent (USD)", "used", "thresholds alerted",
                     "last alert (UTC)", "refused calls (429)", "of them: budget"]
    by_team = {r[0]: r for r in rows}
    # THEN every budgeted team, and every team alerted or refused, has a row
    refused = _throttled(facts, date(2026, 12, 1))
    budgeted = {t.team_id for t in facts.teams if t.monthly_budget_usd is not None}
    assert set(by_team) == budgeted | {t for t, n in refused.items() if n}
    # AND alpha's December alerts are its 50 % and 80 % (November's is another period), with the latest time
    alpha = by_team["team-alpha"]
    assert alpha[1] == "block" and alpha[5] == "50%, 80%" and alpha[6] == "2026-12-12 16:45"
    # AND west's one alert came from the per-object layout; idle, never alerted, says so
    assert by_team["team-west"][5] == "100%" and by_team["team-west"][1] == "alert"
    assert by_team["team-idle"][5] == "none" and by_team["team-idle"][6] == ""
    # AND "used" is the budget_burn view's spend over the budget, to a tenth of a percent
    for team, budget, spend in con.execute("""select team_id, monthly_budget_usd, spend_to_date from budget_burn
                                              where fiscal_month_start = ?""", [date(2026, 12, 1)]).fetchall():
        if team in by_team and budget:
            assert Decimal(by_team[team][3]) == spend and Decimal(by_team[team][2]) == budget
            share = (spend / budget * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            assert by_team[team][4] == f"{share}%"
    # AND refused calls are the month's throttled events of each team (zero where there were none)
    assert {t: int(r[7]) for t, r in by_team.items()} == {t: refused.get(t, 0) for t in by_team}
    assert sum(refused.values()) > 0
    # AND none of the fixture's refusals was a budget's (its throttled events are rate limits)
    assert {int(r[8]) for r in by_team.values()} == {0}


def test_a_lake_without_alerts_shows_the_table_with_no_alerts(facts: FixtureFacts, tmp_path: Path) -> None:
    html = render_dashboard(lake=Lake.open(facts.root), out=tmp_path / "report.html",
                            config=UTC_CONFIG).read_text(encoding="utf-8")
    _heads, rows = _table(html, "budget-alerts")
    assert rows and {r[5] for r in rows} == {"none"}


def test_quicksight_counts_refused_calls_per_team_over_the_rls_scoped_usage_view(
        con: duckdb.DuckDBPyConnection, facts: FixtureFacts) -> None:
    # GIVEN the refused-calls visuals of the Budget burn sheet
    (sheet,) = [s for s in qs.SHEETS if s.sheet_id == "budget-burn"]
    refused = [v for v in sheet.visuals if v.visual_id.startswith("burn-refused")]
    assert {v.visual_id for v in refused} == {"burn-refused", "burn-refused-table"}
    for visual in refused:
        # THEN each counts events of a team-scoped view (RLS applies: a lead sees only their teams' refusals)
        assert visual.view == "usage_local" and "team_id" in dict(qs.VIEW_COLUMNS[visual.view])
        assert visual.counts == ("event_id",) and visual.only == ("status", ("throttled",))
        shape = qs._visual(visual)
        measures = json.dumps(shape)
        assert '"CategoricalMeasureField"' in measures and '"AggregationFunction": "COUNT"' in measures
    # AND the count QuickSight makes (COUNT(event_id) per team, status throttled) is the fixture's throttled events
    counted = dict(con.execute("""select team_id, count(event_id) from usage_local where status = 'throttled'
                                  group by team_id""").fetchall())
    assert counted == dict(Counter(r["team_id"] for r in facts.usage_cost if r["status"] == "throttled"))

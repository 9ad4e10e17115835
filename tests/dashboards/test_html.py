"""The local HTML dashboard without a browser: figures, chart elements, self-containment, the CLI."""

from __future__ import annotations

import re
from datetime import UTC, date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from common.lake import Lake
from dashboards.html import _label, render_dashboard, usd
from modelmeter.cli import main
from tests.dashboards.browser import DomIndex, parse_dom
from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import FixtureFacts


@pytest.fixture(scope="module")
def page(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, DomIndex]:
    out = render_dashboard(lake=Lake.open(facts.root), out=tmp_path_factory.mktemp("html") / "report.html",
                           config=UTC_CONFIG)
    html = out.read_text(encoding="utf-8")
    return html, parse_dom(html)


@pytest.mark.parametrize(("value", "places", "text"), [
    (Decimal("1234.565"), 2, "$1,234.57"),  # half up, not banker's rounding
    (Decimal("0.004999999999"), 2, "$0.00"),
    (Decimal("-0.005"), 2, "-$0.01"),
    (Decimal("0E-12"), 2, "$0.00"),
    (Decimal("3.044178937725"), 6, "$3.044179"),
    (None, 2, "—"),
])
def test_money_is_formatted_from_decimal_to_the_cent(value: Decimal | None, places: int, text: str) -> None:
    assert usd(value, places=places) == text


def test_kpis_are_the_fixtures_exact_totals(page: tuple[str, DomIndex], facts: FixtureFacts) -> None:
    _, dom = page
    spend = dom.by_id("kpi-total-spend")
    assert Decimal(spend.attrs["data-value"]) == facts.total_cost
    assert int(dom.by_id("kpi-invocations").attrs["data-value"]) == facts.invocations
    assert int(dom.by_id("kpi-unpriced").attrs["data-value"]) == facts.unpriced_invocations
    html, _ = page
    assert f'data-value="{spend.attrs["data-value"]}">{usd(facts.total_cost)}</div>' in html


def test_each_chart_has_one_element_per_data_point(page: tuple[str, DomIndex], facts: FixtureFacts) -> None:
    _, dom = page
    teams = {r["team_id"] for r in facts.usage_cost}
    models = {r["model_id"] for r in facts.usage_cost}
    days = {r["event_time"].astimezone(UTC).date() for r in facts.usage_cost}
    assert dom.count("spend-by-team", "rect", "bar") == len(teams)
    assert dom.count("spend-by-model", "rect", "bar") == len(models)
    assert dom.count("daily-trend", "circle", "point") == len(days)
    assert dom.count("daily-trend", "path", "series") == 1
    # budget burn: the last fiscal month, every team with a budget or with spend
    december = {r["team_id"] for r in facts.usage_cost if r["event_time"].date() >= date(2026, 12, 1)}
    burning = december | {t.team_id for t in facts.teams if t.monthly_budget_usd is not None}
    assert dom.count("budget-burn", "rect", "spend") == len(burning)
    assert dom.count("budget-burn", "rect", "forecast") == len(burning)
    assert dom.count("budget-burn", "line", "budget") == sum(1 for t in facts.teams if t.monthly_budget_usd)


def test_bars_carry_each_teams_exact_spend(page: tuple[str, DomIndex], facts: FixtureFacts) -> None:
    html, _ = page
    for team, spend in facts.cost_by_team().items():
        assert f"<title>{team}: {usd(spend)}</title>" in html


def test_chargeback_table_adds_up_to_the_total(page: tuple[str, DomIndex], facts: FixtureFacts) -> None:
    html, _ = page
    table = re.search(r'<table[^>]*id="table-chargeback".*?</table>', html, re.S)
    assert table
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)[1:]
    spend = [Decimal(re.findall(r'data-sort="([^"]*)"', row)[-1]) for row in rows]
    assert sum(spend) == facts.total_cost
    assert len(rows) == len({(r["team_id"], r["event_time"].date().replace(day=1)) for r in facts.usage_cost})


def test_page_is_self_contained(page: tuple[str, DomIndex]) -> None:
    html, dom = page
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not [e for e in dom.elements if e.tag in ("link", "img", "iframe", "object", "embed")]
    assert not [e for e in dom.elements if {"src", "href"} & set(e.attrs)]
    assert not re.search(r"https?://", html)


def test_period_filter_counts_only_those_days(facts: FixtureFacts, tmp_path: Path) -> None:
    # GIVEN one December week
    first, last = date(2026, 12, 1), date(2026, 12, 7)
    # WHEN the dashboard is rendered for it
    out = render_dashboard(lake=Lake.open(facts.root), date_from=first, date_to=last, out=tmp_path / "week.html",
                           config=UTC_CONFIG)
    dom = parse_dom(out.read_text(encoding="utf-8"))
    # THEN the KPI is the exact spend of the events of those (UTC) days
    rows = [r for r in facts.priced_rows if first <= r["event_time"].astimezone(UTC).date() <= last]
    assert Decimal(dom.by_id("kpi-total-spend").attrs["data-value"]) == sum(r["total_cost"] for r in rows)
    assert dom.by_id("period").attrs == {"id": "period", "data-from": "2026-12-01", "data-to": "2026-12-07"}
    assert dom.count("daily-trend", "circle", "point") == 7


def test_an_empty_lake_gives_an_empty_page_not_an_error(tmp_path: Path) -> None:
    out = render_dashboard(lake=tmp_path / "empty", out=tmp_path / "empty.html", config=UTC_CONFIG)
    html = out.read_text(encoding="utf-8")
    dom = parse_dom(html)
    assert dom.by_id("kpi-total-spend").attrs["data-value"] == "0"
    assert "no data yet" in html and "No data in this period" in html


def test_cli_writes_the_page_and_prints_its_path(facts: FixtureFacts, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "report.html"
    assert main(["dashboard", "--lake", str(facts.root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert Decimal(parse_dom(out.read_text("utf-8")).by_id("kpi-total-spend").attrs["data-value"]) == \
        facts.total_cost


def test_cli_refuses_a_reversed_period(facts: FixtureFacts, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["dashboard", "--lake", str(facts.root), "--from", "2026-12-07", "--to", "2026-12-01",
                   "--out", str(tmp_path / "r.html")])
    assert status == 1
    assert capsys.readouterr().err.splitlines()[0] == \
        "modelmeter dashboard: --from 2026-12-07 is after --to 2026-12-01"
    assert not (tmp_path / "r.html").exists()


def test_budget_burn_shows_each_teams_forecast_against_its_budget(page: tuple[str, DomIndex],
                                                                   con: duckdb.DuckDBPyConnection) -> None:
    # GIVEN the budget_burn view's latest fiscal month
    rows = con.execute("""select team_id, spend_to_date, forecast_month_end, monthly_budget_usd, forecast_over_budget
                          from budget_burn where fiscal_month_start = (select max(fiscal_month_start)
                          from budget_burn)""").fetchall()
    html, _ = page
    assert rows
    for team, spend, forecast, budget, over in rows:
        # THEN the chart's label for the team states the view's figures, and over-budget rows are red
        label = re.search(rf"<title>{team}: ([^<]*)</title>", html.split('data-chart="budget-burn"')[1])
        assert label, team
        assert label.group(1).startswith(f"{usd(spend)} spent · forecast {usd(forecast)}")
        if budget is None:
            assert label.group(1).endswith("no budget")
        else:
            share = (forecast / budget * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            assert label.group(1).endswith(f"= {share}% of the {usd(budget)} budget")
        red = re.search(rf'fill="#c0392b"><title>{team}:', html) is not None
        assert red == bool(over), team


def test_sub_cent_amounts_are_not_shown_as_zero_in_charts() -> None:
    assert _label(Decimal("0.004")) == "<$0.01"
    assert _label(Decimal("0.005")) == "$0.01"
    assert _label(Decimal("0")) == "$0.00"


def test_the_month_end_close_section_shows_the_chargeback_of_record_to_the_cent(page, con) -> None:
    # GIVEN the fixture lake's November close (a simulated bill: discount, bypassed usage, credit, provisioned hours)
    html, _ = page
    expected = con.execute("select team_id, chargeback_cost from chargeback_of_record where billing_period = "
                           "'2026-11' order by team_id").fetchall()
    invoice = con.execute("select sum(billed_cost) from reconciliation_summary where billing_period = '2026-11'"
                          ).fetchone()[0]
    # WHEN the page shows the close
    table = re.search(r'<table class="sortable" id="table-close-chargeback".*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    cells = [re.findall(r'data-sort="([^"]*)"', row) for row in rows]
    # THEN every team and the unallocated line are there with their chargeback, adding up to the invoice's cents
    shown = sorted((c[3], Decimal(c[7])) for c in cells)
    assert shown == sorted((t, Decimal(v)) for t, v in expected) and any(t == "unallocated" for t, _ in shown)
    assert sum(v for _, v in shown) == invoice.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert 'id="table-close-reconciliation"' in html and "price_variance" in html

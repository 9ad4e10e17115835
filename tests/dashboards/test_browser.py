"""The dashboard in a real browser: Playwright drives Debian's headless Chromium at a desktop and a phone width,
and in print. The page must never scroll sideways, no chart may be wider than the viewport, no chart text may be
clipped, every chart needs an accessible name and every table header cells; its scripts must run without a console
error. A screenshot of each width is kept (``$MODELMETER_TEST_ARTEFACTS``, see docs/dashboards.md).

One browser per module (launching Chromium is the slow part); each check opens a fresh context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from common.lake import Lake
from dashboards.html import render_dashboard, render_html
from dashboards.report_data import gather
from sql.render import connect
from tests.dashboards.browser import (
    ARTEFACTS_ENV,
    Visit,
    chromium,
    keep_artefact,
    launch,
    layout_problems,
    save_screenshot,
    visit,
)
from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import FixtureFacts

if TYPE_CHECKING:
    from playwright.sync_api import Browser

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.lock)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed (`make browser` installs Debian's)"),
]

CHARTS = ("spend-by-team", "spend-by-model", "daily-trend", "budget-burn")
WIDTHS = (1280, 390)  # a laptop and a phone (CSS pixels)
DRAWN = {"spend-by-team": "rect.bar", "spend-by-model": "rect.bar", "daily-trend": "circle.point",
         "budget-burn": "rect.spend"}
LONG_TEAM = "platform-engineering-shared-services-europe-middle-east-and-africa-region-cost-centre-4711"
LONG_MODEL = "arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as p:
        started = launch(p)
        yield started
        started.close()


@pytest.fixture(scope="module")
def report(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_dashboard(lake=Lake.open(facts.root), out=tmp_path_factory.mktemp("browser") / "report.html",
                            config=UTC_CONFIG)


@pytest.fixture(scope="module")
def long_labels(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture lake's page with a very long team name, an ARN for a model id and seven-figure budgets."""
    con = connect(lake=Lake.open(facts.root), config=UTC_CONFIG)
    try:
        data = gather(con, date_from=None, date_to=None)
    finally:
        con.close()
    big = Decimal("1234567.89")
    data = dataclasses.replace(
        data,
        spend_by_team=((LONG_TEAM, big), *data.spend_by_team),
        spend_by_model=((LONG_MODEL, big), *data.spend_by_model),
        burn=((LONG_TEAM, big, big * 2, Decimal("1500000.00")), *data.burn))
    out = tmp_path_factory.mktemp("browser") / "long-labels.html"
    out.write_text(render_html(data, timezone="UTC"), encoding="utf-8")
    return out


def _scripts_ran_cleanly(seen: Visit) -> None:
    assert seen.page.get_attribute("html", "data-charts") == str(len(CHARTS))  # set by the page's own script
    assert seen.page.get_attribute("html", "data-js-errors") == ""
    assert seen.console_errors == [] and seen.page_errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_fits_the_screen_and_its_scripts_run(browser: Browser, report: Path, width: int,
                                                      tmp_path: Path) -> None:
    # GIVEN the fixture lake's dashboard in a window of this width
    with visit(browser, report.as_uri(), width=width) as seen:
        page = seen.page
        # THEN nothing scrolls sideways, no chart is wider than the screen, no label is clipped, charts and tables
        # are accessible, and the page's scripts ran without an error
        assert layout_problems(page) == []
        _scripts_ran_cleanly(seen)
        # AND each chart draws one element per data point it declares
        for chart, selector in DRAWN.items():
            declared = int(page.get_attribute(f'svg[data-chart="{chart}"]', "data-points") or 0)
            assert declared > 0
            assert page.locator(f'svg[data-chart="{chart}"] {selector}').count() == declared, chart
        # AND charts use their card's width (not a fixed 720 px drawing)
        for chart in CHARTS:
            svg_box = page.locator(f'svg[data-chart="{chart}"]').bounding_box()
            card = page.locator(f'section:has(> svg[data-chart="{chart}"])').bounding_box()
            assert svg_box and card and svg_box["width"] > card["width"] - 40, chart
        shot = save_screenshot(page, tmp_path / f"dashboard-{width}.png")
        assert shot.stat().st_size > 10_000


def test_on_a_phone_a_wide_table_scrolls_inside_its_card(browser: Browser, report: Path) -> None:
    with visit(browser, report.as_uri(), width=390) as seen:
        wrapper = seen.page.locator("#section-chargeback .scroll")
        scroll_width, client_width = wrapper.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert scroll_width > client_width  # the table is wider than the phone: its wrapper scrolls …
        assert seen.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # … not the page


@pytest.mark.parametrize("width", WIDTHS)
def test_long_labels_are_shortened_or_wrapped_inside_their_chart(browser: Browser, long_labels: Path, width: int,
                                                                  tmp_path: Path) -> None:
    with visit(browser, long_labels.as_uri(), width=width) as seen:
        page = seen.page
        assert layout_problems(page) == []
        _scripts_ran_cleanly(seen)
        # the long model id is shortened on screen, and its full text is in the label's tooltip
        label = page.locator('svg[data-chart="spend-by-model"] text.label').first
        assert label.evaluate("e => e.firstChild.textContent").endswith("…")
        assert label.locator("title").text_content() == LONG_MODEL
        # the budget-burn figures wrap onto lines of their own instead of running off the chart
        figures = page.locator('svg[data-chart="budget-burn"] text.value').first
        assert " ".join(figures.locator("tspan").all_text_contents()) == \
            "$1,234,567.89 spent · forecast $2,469,135.78 = 164.6% of the $1,500,000.00 budget"
        save_screenshot(page, tmp_path / f"dashboard-long-labels-{width}.png")


def test_printed_charts_are_whole_and_sections_start_on_a_new_page(browser: Browser, report: Path,
                                                                   tmp_path: Path) -> None:
    # GIVEN the page as printed on A4 (about 720 CSS pixels between 12 mm margins)
    with visit(browser, report.as_uri(), width=720, media="print") as seen:
        page = seen.page
        # THEN no chart is cut, and the tables are unrolled rather than scrolling (paper does not scroll)
        assert layout_problems(page) == []
        unrolled = page.eval_on_selector_all(".scroll", "els => els.every(e => e.scrollWidth <= e.clientWidth + 1)")
        assert unrolled
        # AND each table section starts a page, and no chart card is split across two
        breaks = page.eval_on_selector_all("main > section", "els => els.map(e => getComputedStyle(e).breakBefore)")
        assert breaks and set(breaks) == {"page"}
        inside = page.eval_on_selector_all(".grid > section", "els => els.map(e => getComputedStyle(e).breakInside)")
        assert set(inside) == {"avoid"}
        pdf = page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF")
        (tmp_path / "dashboard-print.pdf").write_bytes(pdf)
        keep_artefact(tmp_path / "dashboard-print.pdf")


def test_the_checks_catch_a_broken_page(browser: Browser, report: Path, tmp_path: Path) -> None:
    # GIVEN the page with a script error, a request to the network, a too-wide block and a label past its chart
    html = report.read_text(encoding="utf-8")
    html = html.replace('<text class="label"', '<text class="label" x="470" transform="translate(400)"', 1)
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace(
        "</body>", '<div style="width:2000px">wide</div><img src="http://127.0.0.1:9/pixel.png">'
                   "<script>notAFunction();</script></body>"), encoding="utf-8")
    # WHEN the browser renders it
    with visit(browser, broken.as_uri(), width=1280) as seen:
        problems = layout_problems(seen.page)
        # THEN the layout check reports the sideways scroll and the clipped label
        assert any("scrolls sideways" in p for p in problems), problems
        assert any("is clipped" in p for p in problems), problems
        # AND the page records the error, and the console shows it and the blocked request
        assert "notAFunction is not defined" in (seen.page.get_attribute("html", "data-js-errors") or "")
        assert any("notAFunction" in e for e in seen.page_errors)
        assert any("Content Security Policy" in e for e in seen.console_errors), seen.console_errors


def test_screenshots_are_copied_to_the_artefacts_directory(browser: Browser, report: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTEFACTS_ENV, str(tmp_path / "artefacts"))
    with visit(browser, report.as_uri(), width=390) as seen:
        save_screenshot(seen.page, tmp_path / "phone.png")
    assert (tmp_path / "artefacts" / "phone.png").read_bytes() == (tmp_path / "phone.png").read_bytes()

"""The dashboard in a real browser: Debian's headless Chromium renders it, draws it, and reports no errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.lake import Lake
from dashboards.html import render_dashboard
from tests.dashboards.browser import chromium, parse_dom, read_png, run_chromium
from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import FixtureFacts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed (`make browser` installs Debian's)"),
]

CHARTS = ("spend-by-team", "spend-by-model", "daily-trend", "budget-burn")


@pytest.fixture(scope="module")
def report(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_dashboard(lake=Lake.open(facts.root), out=tmp_path_factory.mktemp("browser") / "report.html",
                            config=UTC_CONFIG)


def test_rendered_dom_has_every_chart_and_no_script_errors(report: Path, tmp_path: Path) -> None:
    # GIVEN the page as Chromium leaves it after running its scripts
    run = run_chromium(report.as_uri(), "--dump-dom", profile=tmp_path / "profile")
    dom = parse_dom(run.stdout)
    # THEN the scripts ran (they count the charts) and recorded no error, and the console stayed silent
    assert dom.root.get("data-charts") == str(len(CHARTS))
    assert dom.root.get("data-js-errors") == ""
    assert run.console == []
    # AND every chart has as many drawn elements as it declares data points
    static = parse_dom(report.read_text(encoding="utf-8"))
    drawn = {"spend-by-team": ("rect", "bar"), "spend-by-model": ("rect", "bar"),
             "daily-trend": ("circle", "point"), "budget-burn": ("rect", "spend")}
    for chart, (tag, cls) in drawn.items():
        declared = next(int(e.attrs["data-points"]) for e in dom.elements if e.attrs.get("data-chart") == chart)
        assert declared > 0
        assert dom.count(chart, tag, cls) == declared == static.count(chart, tag, cls), chart


def test_screenshot_is_a_drawn_page_not_a_blank_one(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run = run_chromium(report.as_uri(), f"--screenshot={shot}", "--window-size=1280,1000",
                       profile=tmp_path / "profile")
    assert run.console == []
    pixels = read_png(shot)[:, :, :3]
    assert pixels.shape[:2] == (1000, 1280)
    flat = pixels.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.uint32) << 16) | (flat[:, 1].astype(np.uint32) << 8) | flat[:, 2]
    colours = np.unique(packed)  # one integer per colour: far faster than unique rows
    background = np.array([0xF6, 0xF8, 0xFA])
    assert len(colours) > 100, f"only {len(colours)} colours: the page looks blank"
    assert (flat != background).any(axis=1).mean() > 0.3
    # the header band and the first bar colour of the palette are on screen
    assert tuple(pixels[5, 5]) == (0x16, 0x32, 0x4F)
    assert (flat == np.array([0x2F, 0x6F, 0xB3])).all(axis=1).sum() > 500


def test_the_checks_catch_a_broken_page(report: Path, tmp_path: Path) -> None:
    # GIVEN the same page with a script error and an attempt to load something from the network
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", '<img src="http://127.0.0.1:9/pixel.png"><script>notAFunction();</script></body>'),
        encoding="utf-8")
    # WHEN Chromium renders it
    run = run_chromium(broken.as_uri(), "--dump-dom", profile=tmp_path / "profile")
    dom = parse_dom(run.stdout)
    # THEN the page records the error and the console shows both the error and the blocked request
    assert "notAFunction is not defined" in dom.root.get("data-js-errors", "")
    assert any("notAFunction" in line for line in run.console)
    assert any("Content Security Policy" in line for line in run.console)

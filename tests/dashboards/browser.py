"""Test helpers: the dashboard in a real browser (Playwright driving Debian's Chromium) and a static DOM index.

:func:`launch` starts Debian's Chromium (``shutil.which("chromium")``) through Playwright; no browser is
downloaded. :func:`layout_problems` lists what is wrong with a rendered page's layout (sideways scroll, charts
wider than the viewport, text clipped by its chart, charts without an accessible name, tables without header
cells); an empty list is a good page. :class:`DomIndex` collects the elements of static HTML with the chart
(``svg[data-chart]``) they sit in (test_html.py reads the page without a browser).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTEFACTS_ENV = "MODELMETER_TEST_ARTEFACTS"  # a directory: screenshots are copied there when it is set


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Playwright) -> Browser:
    binary = chromium()
    assert binary, "chromium is not installed"
    return playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, timeout=60_000)


@dataclass
class Visit:
    """A page opened in the browser, with what it logged: console errors and uncaught exceptions."""

    page: Page
    console_errors: list[str]
    page_errors: list[str]


@contextmanager
def visit(browser: Browser, url: str, *, width: int, height: int = 900, media: Literal["screen", "print"] = "screen"
          ) -> Iterator[Visit]:
    """``url`` in a fresh browser context of ``width`` × ``height`` CSS pixels (``media``: screen or print)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        seen = Visit(page, [], [])
        page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.page_errors.append(str(e)))
        page.emulate_media(media=media)
        page.goto(url, wait_until="load")
        yield seen
    finally:
        context.close()


# Runs in the page: every layout rule the dashboard promises, as a list of human-readable problems.
_LAYOUT_JS = """
() => {
  const problems = [], root = document.documentElement, vw = window.innerWidth, slack = 0.5;
  if (root.scrollWidth > vw) problems.push(`page scrolls sideways: scrollWidth ${root.scrollWidth} > ${vw}`);
  const charts = Array.from(document.querySelectorAll("svg.chart"));
  if (!charts.length) problems.push("no chart on the page");
  for (const svg of charts) {
    const id = svg.getAttribute("data-chart"), box = svg.getBoundingClientRect();
    if (box.width > vw + slack) problems.push(`chart ${id} is ${box.width}px wide in a ${vw}px viewport`);
    if (box.left < -slack || box.right > vw + slack) problems.push(`chart ${id} sticks out of the viewport`);
    const title = svg.querySelector(":scope > title");
    if (svg.getAttribute("role") !== "img" || !((svg.getAttribute("aria-label") || "").trim()
        || (title && title.textContent.trim()))) problems.push(`chart ${id} has no accessible name`);
    for (const text of svg.querySelectorAll("text")) {
      const t = text.getBoundingClientRect();
      if (t.left < box.left - slack || t.right > box.right + slack || t.top < box.top - slack
          || t.bottom > box.bottom + slack)
        problems.push(`chart ${id}: text "${text.textContent}" is clipped (${Math.round(t.left)}..`
                      + `${Math.round(t.right)} x ${Math.round(t.top)}..${Math.round(t.bottom)} outside `
                      + `${Math.round(box.left)}..${Math.round(box.right)} x ${Math.round(box.top)}..`
                      + `${Math.round(box.bottom)})`);
    }
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.querySelectorAll("thead th").length) problems.push(`table ${table.id} has no header cells`);
    const scroller = table.closest(".scroll");
    if (!scroller) problems.push(`table ${table.id} has no scrolling wrapper`);
  }
  return problems;
}
"""


def layout_problems(page: Page) -> list[str]:
    problems: Any = page.evaluate(_LAYOUT_JS)
    return list(problems)


def keep_artefact(path: Path) -> Path:
    """Copy ``path`` into ``$MODELMETER_TEST_ARTEFACTS`` when that is set (it stays in the pytest tmp dir too)."""
    target = os.environ.get(ARTEFACTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / path.name)
    return path


def save_screenshot(page: Page, path: Path) -> Path:
    """A full-page screenshot at ``path``, kept as an artefact (:func:`keep_artefact`)."""
    page.screenshot(path=str(path), full_page=True)
    return keep_artefact(path)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    chart: str | None  # data-chart of the enclosing svg, if any


class DomIndex(HTMLParser):
    """Every element of a DOM dump, in order, with the chart it belongs to; ``root`` holds ``<html>``'s attrs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.root: dict[str, str] = {}
        self._charts: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = named
        chart = self._charts[-1] if self._charts else None
        if tag == "svg":
            self._charts.append(named.get("data-chart"))
            chart = named.get("data-chart")
        self.elements.append(Element(tag, named, chart))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._charts:
            self._charts.pop()

    def count(self, chart: str, tag: str, cls: str) -> int:
        return sum(1 for e in self.elements if e.chart == chart and e.tag == tag
                   and cls in e.attrs.get("class", "").split())

    def by_id(self, element_id: str) -> Element:
        return next(e for e in self.elements if e.attrs.get("id") == element_id)


def parse_dom(html: str) -> DomIndex:
    index = DomIndex()
    index.feed(html)
    index.close()
    return index

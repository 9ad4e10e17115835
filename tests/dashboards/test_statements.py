"""``modelmeter export statements``: one printable page per cost centre of a closed billing period, read back from
its HTML (the exact amounts sit in ``data-*`` attributes) against the chargeback of record of the fixture lake,
which has November 2026 closed on a simulated bill (:func:`tests.fixture_lake.close_november`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.errors import UserError
from common.lake import Lake
from dashboards.html import usd
from dashboards.statements import INDEX, chromium, write_statements
from finance.chargeback import CENT, versions
from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import CLOSED_PERIOD, IDLE_TEAM, FixtureFacts

MODELMETER = [sys.executable, "-c", "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"]
MONEY = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost")


class Page(HTMLParser):
    """The page's ``<main>`` attributes, elements by id, and each table's rows: the ``<tr>``'s attributes merged
    with its cells' ``data-*`` attributes and the cells' text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.main: dict[str, str] = {}
        self.by_id: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.metas: list[dict[str, str]] = []
        self.links: list[str] = []
        self._table: str | None = None
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
        if tag == "main":
            self.main = a
        elif tag == "meta":
            self.metas.append(a)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = {**a, "cells": []}
        elif tag == "td" and self._row is not None:
            self._row.update({k: v for k, v in a.items() if k.startswith("data-")})
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def out(facts: FixtureFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("statements")
    write_statements(lake=facts.uri, period=CLOSED_PERIOD, out=folder, config=UTC_CONFIG, pdf=False)
    return folder


@pytest.fixture()
def record(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute("select * from chargeback_of_record where billing_period = ?", [CLOSED_PERIOD])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert rows, "the fixture lake closes November"
    return rows


def _statements(out: Path) -> dict[str, Page]:
    pages = {p.name: Page(p.read_text(encoding="utf-8")) for p in sorted(out.glob("statement-*.html"))}
    return {page.main["data-cost-center"]: page for page in pages.values()}


def test_every_cost_centre_of_the_chargeback_has_a_statement(out: Path, record: list[dict[str, Any]]) -> None:
    statements = _statements(out)
    expected = {r["cost_center"] or "" for r in record if r["team_id"] != "unallocated"}
    assert set(statements) == expected
    assert len(expected) == 3
    for page in statements.values():
        assert page.main["data-billing-period"] == CLOSED_PERIOD
        assert page.main["data-version"] == str(record[0]["version"])


def test_each_statement_carries_its_chargeback_rows_to_the_cent(out: Path, record: list[dict[str, Any]]) -> None:
    for cost_center, page in _statements(out).items():
        expected = {r["team_id"]: r for r in record if (r["cost_center"] or "") == cost_center
                    and r["team_id"] != "unallocated"}
        shown = {row["data-team"]: row for row in page.tables["table-chargeback"] if "data-team" in row}
        assert set(shown) == set(expected)
        for team, row in expected.items():
            for column in MONEY:
                value = Decimal(shown[team]["data-" + column.replace("_", "-")])
                assert value == row[column], (cost_center, team, column)
            assert usd(row["chargeback_cost"]) in shown[team]["cells"]
            assert shown[team]["cells"][-1].replace(" ", "") == (row["rules"] or "—")
        total = sum((r["chargeback_cost"] for r in expected.values()), Decimal(0))
        assert Decimal(page.by_id["statement-total"]["data-total"]) == total


def test_models_add_up_to_each_teams_metered_list_cost(out: Path, record: list[dict[str, Any]]) -> None:
    for cost_center, page in _statements(out).items():
        for r in (r for r in record if (r["cost_center"] or "") == cost_center):
            models = [m for m in page.tables["table-models"] if m.get("data-team") == r["team_id"]]
            assert models, r["team_id"]
            on_bill = sum((Decimal(m["data-metered-list-cost"]) for m in models if m["data-on-bill"] == "true"),
                          Decimal(0))
            assert on_bill == r["metered_list_cost"]


def test_budget_status_uses_the_teams_budgets_and_says_which_calendar(out: Path, facts: FixtureFacts,
                                                                      record: list[dict[str, Any]]) -> None:
    page = _statements(out)["CC-1001"]
    budget = {row["data-team"]: row for row in page.tables["table-budget"] if "data-team" in row}
    assert set(budget) == {"team-alpha", IDLE_TEAM}  # the idle team's budget shows, with nothing charged
    assert Decimal(budget["team-alpha"]["data-monthly-budget"]) == facts.budget_of("team-alpha")
    alpha = next(r for r in record if r["team_id"] == "team-alpha")
    assert Decimal(budget["team-alpha"]["data-chargeback-cost"]) == alpha["chargeback_cost"]
    assert Decimal(budget[IDLE_TEAM]["data-chargeback-cost"]) == 0
    text = (out / "statement-CC-1001.html").read_text()
    assert "billing period 2026-11: the AWS invoice&#x27;s UTC calendar month" in text
    assert "time zone UTC, months starting on day 1" in text
    beta = {row["data-team"]: row for row in _statements(out)["CC-2002"].tables["table-budget"] if "data-team" in row}
    assert "no budget" in beta["team-beta"]["cells"]


def test_statement_names_the_version_and_its_inputs(out: Path, lake: Lake) -> None:
    info = versions(lake=lake, period=CLOSED_PERIOD)[-1]
    for page in _statements(out).values():
        facts = page.by_id["version"]
        assert facts["data-version"] == str(info.version)
        assert facts["data-cur-snapshot"] == info.cur_snapshot
        assert facts["data-cur-final"] == str(info.cur_final).lower()


def test_index_links_every_statement_and_adds_up_to_the_in_scope_invoice(out: Path, lake: Lake,
                                                                          record: list[dict[str, Any]]) -> None:
    index = Page((out / INDEX).read_text(encoding="utf-8"))
    info = versions(lake=lake, period=CLOSED_PERIOD)[-1]
    invoice = Decimal(info.in_scope_total).quantize(CENT, rounding=ROUND_HALF_UP)
    rows = index.tables["table-statements"]
    linked = {link for link in index.links if link.startswith("statement-")}
    assert linked == {p.name for p in out.glob("statement-*.html")}
    unallocated = next(r for r in record if r["team_id"] == "unallocated")
    shown = next(r for r in rows if r.get("id") == "unallocated")
    assert Decimal(shown["data-unallocated"]) == unallocated["chargeback_cost"]
    parts = [Decimal(r["data-chargeback-cost"]) for r in rows if "data-chargeback-cost" in r]
    total = next(Decimal(r["data-total"]) for r in rows if "data-total" in r)
    assert total == sum(parts, Decimal(0)) + unallocated["chargeback_cost"] == invoice
    assert Decimal(index.by_id["invoice"]["data-in-scope-cents"]) == invoice
    assert "equal it to the cent" in (out / INDEX).read_text()


def test_pages_are_offline_and_print_on_a4(out: Path) -> None:
    for path in out.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        page = Page(text)
        csp = [m["content"] for m in page.metas if m.get("http-equiv") == "Content-Security-Policy"]
        assert csp == ["default-src 'none'; style-src 'unsafe-inline'"], path.name
        assert "<script" not in text and "src=" not in text and "http://" not in text and "https://" not in text
        assert "size: A4" in text and "break-inside: avoid" in text


def test_no_chargeback_for_the_period_says_to_run_it_first(facts: FixtureFacts, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"run `modelmeter chargeback --period 2026-10` first"):
        write_statements(lake=facts.uri, period="2026-10", out=tmp_path / "out", config=UTC_CONFIG, pdf=False)
    assert not (tmp_path / "out").exists()


def test_the_command_writes_the_statements(facts: FixtureFacts, tmp_path: Path) -> None:
    env = {**os.environ, "MODELMETER_REPORTING_TZ": "UTC", "MODELMETER_FISCAL_MONTH_START": "1"}
    done = subprocess.run([*MODELMETER, "export", "statements", "--lake", str(facts.root), "--period", CLOSED_PERIOD,
                           "--out", str(tmp_path / "out"), "--no-pdf"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    printed = {Path(line).name for line in done.stdout.splitlines()}
    assert printed == {INDEX, "statement-CC-1001.html", "statement-CC-2002.html", "statement-CC-3003.html"}
    missing = subprocess.run([*MODELMETER, "export", "statements", "--lake", str(facts.root), "--period", "2026-10",
                              "--out", str(tmp_path / "none")], capture_output=True, text=True, env=env,
                             timeout=120, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"modelmeter export statements: no chargeback stored for 2026-10 in {facts.uri}: run `modelmeter chargeback "
        "--period 2026-10` first"]


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed: statements are printed to PDF with it")
def test_a_pdf_is_printed_per_statement_when_chromium_is_there(facts: FixtureFacts, tmp_path: Path) -> None:
    files = write_statements(lake=facts.uri, period=CLOSED_PERIOD, out=tmp_path, config=UTC_CONFIG, pdf=True)
    pdfs = sorted(p for p in files if p.suffix == ".pdf")
    assert [p.stem for p in pdfs] == ["statement-CC-1001", "statement-CC-2002", "statement-CC-3003"]
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF-") and len(data) > 5000, pdf.name
        assert b"/MediaBox [0 0 594.9" in data and b" 841.9" in data, f"{pdf.name} is not A4 (595 × 842 pt)"


@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="Playwright for Python is not installed")
@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Playwright drives Debian's)")
def test_a_statement_fits_a_phone_without_sideways_scroll(out: Path) -> None:
    from playwright.sync_api import sync_playwright  # third-party, optional: only this test needs it

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto((out / "statement-CC-1001.html").as_uri())
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        finally:
            browser.close()
    assert widths[0] <= widths[1], f"scrolls sideways at 390 px: content {widths[0]} px wide"

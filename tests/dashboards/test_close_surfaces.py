"""The month-end close on every surface people look at (the HTML dashboard, QuickSight, the statements), over a
real lake whose books moved: November charged back, closed, reopened with a reason, charged back again and closed
at version 2; then team-alpha moves to CC-2002 from December, team-beta to CC-9009 from November, AWS adds $9.75
of guardrails to November's bill, December's bill arrives ($3.10), November is restated (its deltas posted into
December as adjustment lines labelled ``2026-11-r1``) and December is charged back, open.

Everything runs in-process with the real commands (``modelmeter chargeback|close|restate|tenants``) and real
DuckDB over the lake's Parquet, as tests/finance/test_close.py does.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from common.contracts import UNALLOCATED
from common.lake import Lake
from dashboards import quicksight as qs
from dashboards.html import render_dashboard, render_html
from dashboards.report_data import gather
from dashboards.statements import INDEX, write_statements
from finance.chargeback import CENT, versions
from finance.cur import import_export
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main
from modelmeter.simulated_bill import line, write_cur
from pricing_catalog import load_catalog
from sql.render import connect
from tests.dashboards.browser import chromium, launch, layout_problems, save_screenshot, visit
from tests.dashboards.conftest import UTC_CONFIG
from tests.finance.conftest import LLAMA, PERIOD, SONNET, START, FinanceLake, month_bill
from tests.fixture_lake import TEAMS, build_fixture_lake

NEXT = "2026-12"
RESTATEMENT = f"{PERIOD}-r1"
REOPEN_REASON = "late credit from AWS"
GUARDRAILS = Decimal("9.75")
DECEMBER_BILL = Decimal("3.10")
ACCOUNT, REGION = "123456789012", "us-east-1"
FINANCE = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/finance"
BETA_LEAD = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/beta-lead"
MONEY = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost")


@dataclass
class Books:
    root: Path
    lake: Path
    tenants: Path

    def run(self, *args: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--lake", str(self.lake), "--tenants", str(self.tenants)])
        assert code == 0, f"modelmeter {' '.join(args)}: {err.getvalue()}"

    def bill(self, lines: list[dict], name: str) -> None:
        folder = self.root / name
        write_cur(lines, folder / "export-00001.parquet")
        import_export(lake=Lake.open(self.lake), paths=[str(folder)])

    def copy(self, target: Path) -> Books:
        shutil.copytree(self.root, target)
        return Books(root=target, lake=target / "lake", tenants=target / "tenants.json")


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Books:
    root = tmp_path_factory.mktemp("books")
    facts = build_fixture_lake(root / "lake", close=False)  # the books below are made with the commands
    lake = Lake.open(root / "lake")
    registry = LocalTenantRegistry(root / "tenants.json")
    for team in TEAMS:
        registry.put_team(team)
    b = Books(root=root, lake=root / "lake", tenants=root / "tenants.json")
    base = month_bill(FinanceLake(root=root, lake=lake, facts=facts, catalog=load_catalog(lake=lake)),
                      discounted_model=SONNET, bypass_model=LLAMA, credit=Decimal("-2.50"))
    b.bill(base, "bill-1")
    b.run("chargeback", "--period", PERIOD)
    b.run("close", "--period", PERIOD)
    b.run("close", "--period", PERIOD, "--reopen", "--reason", REOPEN_REASON)
    b.run("chargeback", "--period", PERIOD)
    b.run("close", "--period", PERIOD)
    b.run("tenants", "add", "team-alpha", "--cost-center", "CC-2002", "--from", "2026-12-01")
    b.run("tenants", "add", "team-beta", "--cost-center", "CC-9009", "--from", "2026-11-01")
    b.bill([*base, line(period=PERIOD, start=START, usage_type="USE1-Guardrail-TextUnits", amount=4,
                        cost=float(GUARDRAILS), pricing_unit="Units")], "bill-2")
    b.bill([line(period=NEXT, start=START.replace(month=12), usage_type="USE1-Guardrail-TextUnits", amount=2,
                 cost=float(DECEMBER_BILL), pricing_unit="Units")], "bill-dec")
    b.run("restate", "--period", PERIOD)
    b.run("chargeback", "--period", NEXT)
    return b


@pytest.fixture()
def view(books: Books) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(lake=Lake.open(books.lake), config=UTC_CONFIG)
    yield con
    con.close()


def _record(con: duckdb.DuckDBPyConnection, where: str = "true", params: list[Any] | None = None
            ) -> list[dict[str, Any]]:
    cur = con.execute(f"select * from chargeback_of_record where {where} order by all", params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _sum(rows: list[dict[str, Any]], column: str = "chargeback_cost") -> Decimal:
    return sum((Decimal(r[column]) for r in rows), Decimal(0))


def test_the_books_are_what_the_surfaces_should_show(view: duckdb.DuckDBPyConnection) -> None:
    # the premise of every test below, stated once
    rows = _record(view)
    assert {(r["billing_period"], r["period_status"], r["line_type"]) for r in rows} == {
        (PERIOD, "closed", "charge"), (NEXT, "open", "charge"), (NEXT, "open", "adjustment")}
    adjustments = [r for r in rows if r["line_type"] == "adjustment"]
    assert {(r["corrects_period"], r["rules"]) for r in adjustments} == {(PERIOD, RESTATEMENT)}
    assert {(r["cost_center"], r["team_id"]) for r in adjustments} == {
        ("CC-2002", "team-beta"), ("CC-9009", "team-beta"), (None, UNALLOCATED)}
    assert _sum(adjustments) == GUARDRAILS
    assert _sum([r for r in rows if r["billing_period"] == NEXT and r["line_type"] == "charge"]) == DECEMBER_BILL


# --- the HTML dashboard -------------------------------------------------------------------------------------------

@dataclass
class HtmlTable:
    head: list[str] = field(default_factory=list)
    body: list[list[str]] = field(default_factory=list)  # each cell's data-sort (the exact value), else its text
    foot: list[list[str]] = field(default_factory=list)

    def column(self, heading: str) -> int:
        return self.head.index(heading)

    def rows(self, *headings: str, part: str = "body") -> list[tuple[str, ...]]:
        idx = [self.column(h) for h in headings]
        return [tuple(r[i] for i in idx) for r in getattr(self, part)]


class Tables(HTMLParser):
    """Every ``<table id="table-…">`` of a page: header texts, body and footer cells (exact values)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, HtmlTable] = {}
        self._table: HtmlTable | None = None
        self._part = "head"
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._sort: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(str(a.get("id", "")).removeprefix("table-"), HtmlTable())
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = {"thead": "head", "tbody": "body", "tfoot": "foot"}[tag]
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell, self._sort = [], a.get("data-sort")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._sort if self._sort is not None else "".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._part == "head":
                self._table.head = self._row
            else:
                getattr(self._table, self._part).append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def report(books: Books, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_dashboard(lake=Lake.open(books.lake), out=tmp_path_factory.mktemp("close-html") / "report.html",
                            config=UTC_CONFIG)


@pytest.fixture(scope="module")
def page(report: Path) -> dict[str, HtmlTable]:
    return Tables(report.read_text(encoding="utf-8")).tables


def test_the_dashboard_shows_each_periods_state_and_its_closes_and_reopenings(page: dict[str, HtmlTable]) -> None:
    # GIVEN November closed at version 2 (after a reopening) on a CUR snapshot that is not final; December open
    periods = page["close-periods"]
    state = periods.rows("billing period", "status", "version of record", "last close or reopening", "by",
                         "CUR final")
    # THEN each period says whether it is closed, at which version, by whom, on a final snapshot or not
    assert state == [(PERIOD, "closed", "2", "closed at version 2", getpass.getuser(), "0"),
                     (NEXT, "open", "1", "never closed: its figures are a preview", "", "0")]
    # AND November names the restatement of it and where it was booked; December the adjustment lines it carries
    assert periods.rows("restated by") == [(f"{RESTATEMENT} (posted into {NEXT})",), ("",)]
    assert periods.rows("adjustment lines posted into it (USD)") == [("",), (f"{GUARDRAILS:.12f}",)]
    # AND the history lists both closes and the reopening with its reason
    events = page["close-events"].rows("billing period", "event", "action", "version", "reason")
    assert events == [(PERIOD, "1", "close", "1", ""), (PERIOD, "2", "reopen", "", REOPEN_REASON),
                      (PERIOD, "3", "close", "2", "")]


def test_the_dashboard_lists_every_version_with_its_inputs_and_marks_the_one_of_record(
        page: dict[str, HtmlTable], books: Books) -> None:
    lake = Lake.open(books.lake)
    shown = page["close-versions"].rows("billing period", "version", "purpose", "restates version", "CUR snapshot",
                                        "price versions", "chargeback total (USD)", "of record")
    of_record = {(PERIOD, 2), (NEXT, 1)}
    expected = [(p, str(v.version), v.purpose, str(v.restates_version) if v.restates_version else "",
                 v.cur_snapshot, ", ".join(v.price_versions), f"{Decimal(v.chargeback_total):.12f}",
                 "1" if (p, v.version) in of_record else "0")
                for p in (PERIOD, NEXT) for v in versions(lake=lake, period=p)]
    assert shown == expected
    assert [r[2] for r in shown] == ["chargeback", "chargeback", "restatement", "chargeback"]


def test_own_lines_add_up_to_the_invoice_and_adjustment_lines_stand_apart(
        page: dict[str, HtmlTable], view: duckdb.DuckDBPyConnection, books: Books) -> None:
    own = page["close-chargeback"]
    # THEN the own-lines table holds exactly the charge lines of the record (no adjustment line among them)
    expected = sorted((r["billing_period"], r["team_id"], r["chargeback_cost"])
                      for r in _record(view, "line_type = 'charge'"))
    assert sorted((p, t, Decimal(v)) for p, t, v in own.rows("billing period", "team", "chargeback (USD)")) == \
        expected
    # AND under them, per period, their sum and the period's in-scope invoice, equal to the cent
    lake = Lake.open(books.lake)
    foot = {r[0]: r for r in own.rows("billing period", "chargeback (USD)", part="foot")}
    for period, version in ((PERIOD, 2), (NEXT, 1)):
        info = next(v for v in versions(lake=lake, period=period) if v.version == version)
        invoice = Decimal(info.in_scope_total).quantize(CENT, rounding=ROUND_HALF_UP)
        assert Decimal(foot[f"{period} own lines"][1]) == Decimal(foot[f"{period} in-scope invoice"][1]) == invoice
    # AND the adjustment lines have their own table, labelled with the period they correct and the restatement
    adjustments = page["close-adjustments"]
    assert sorted((*r[:5], Decimal(r[5])) for r in adjustments.rows(
        "posted into", "corrects period", "restatement", "cost centre", "team", "chargeback Δ (USD)")) == sorted(
        (r["billing_period"], r["corrects_period"], r["rules"], r["cost_center"] or "", r["team_id"],
         r["chargeback_cost"]) for r in _record(view, "line_type = 'adjustment'"))
    assert adjustments.rows("restatement", "chargeback Δ (USD)", part="foot") == [
        (f"{RESTATEMENT} total", f"{GUARDRAILS:.12f}")]


def test_without_the_lake_the_versions_show_what_the_views_know(books: Books) -> None:
    # gather() without a lake (e.g. a page built from a connection alone): the versions' inputs are blank, the
    # figures and the marks of record are still there
    con = connect(lake=Lake.open(books.lake), config=UTC_CONFIG)
    try:
        data = gather(con, date_from=None, date_to=None)
    finally:
        con.close()
    tables = Tables(render_html(data, timezone="UTC")).tables
    assert tables["close-versions"].rows("version", "CUR snapshot", "of record") == [
        ("1", "", "0"), ("2", "", "1"), ("3", "", "0"), ("1", "", "1")]
    assert tables["close-periods"].rows("in-scope invoice (USD)") == [("",), ("",)]


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (`make browser` installs Debian's)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_close_section_fits_the_screen(report: Path, width: int, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright_api.sync_playwright() as p:
        browser = launch(p)
        try:
            with visit(browser, report.as_uri(), width=width) as seen:
                assert layout_problems(seen.page) == []
                assert seen.page.get_attribute("html", "data-js-errors") == ""
                assert seen.console_errors == [] and seen.page_errors == []
                # sorting a table leaves its totals under it
                seen.page.click("#table-close-chargeback thead th >> nth=7")
                last = seen.page.locator("#table-close-chargeback tr").last.inner_text()
                assert "in-scope invoice" in last
                save_screenshot(seen.page, tmp_path / f"close-{width}.png")
        finally:
            browser.close()


# --- QuickSight ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def defs() -> dict[str, Any]:
    return qs.build_definitions(aws_account_id=ACCOUNT, region=REGION, athena_workgroup="modelmeter",
                                glue_database="modelmeter_lake", principals=[FINANCE],
                                rls_principals={BETA_LEAD: ["team-beta"]})


def test_the_chargeback_of_record_dataset_carries_the_rls_rules(defs: dict[str, Any]) -> None:
    dataset = next(ds for ds in defs["data_sets"] if ds["DataSetId"] == qs.data_set_id("chargeback_of_record"))
    assert dataset["RowLevelPermissionDataSet"] == {
        "Arn": f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{qs.RLS_DATA_SET_ID}",
        "PermissionPolicy": "GRANT_ACCESS", "FormatVersion": "VERSION_2", "Status": "ENABLED"}
    close = next(s for s in qs.SHEETS if s.sheet_id == "month-end-close")
    on_record = {v.visual_id for v in close.visuals if v.view == "chargeback_of_record"}
    assert on_record == {"close-periods", "close-chargeback", "close-adjustments", "close-by-cost-center"}
    shown = {c for v in close.visuals if v.view == "chargeback_of_record" for c in v.referenced_columns()}
    assert {"period_status", "version", "line_type", "corrects_period", "rules"} <= shown


def test_a_team_leads_rule_covers_their_adjustment_lines_and_nothing_else(
        defs: dict[str, Any], view: duckdb.DuckDBPyConnection) -> None:
    # GIVEN the RLS dataset's Athena SQL, transpiled to DuckDB and run beside the views of the restated books
    sql = defs["rls_data_set"]["PhysicalTableMap"]["rules"]["CustomSql"]["SqlQuery"]
    view.execute("CREATE TABLE rls AS " + sqlglot.transpile(sql, read="athena", write="duckdb")[0])
    visuals = {v.visual_id: v for s in qs.SHEETS for v in s.visuals}

    # WHEN a visual's rows are read the way QuickSight applies GRANT_ACCESS rules (NULL team_id: every team) and the
    #      visual's own filter (``only``)
    def seen_by(principal: str, visual_id: str) -> list[dict[str, Any]]:
        column, values = visuals[visual_id].only or ("line_type", ("charge", "adjustment"))
        cur = view.execute(f"""select * from chargeback_of_record c
            where exists (select 1 from rls r where coalesce(r."UserARN", r."GroupARN") = ?
                          and (r.team_id is null or r.team_id = c.team_id))
              and {column} in (select unnest(?::varchar[])) order by all""", [principal, list(values)])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # THEN finance sees every line, the unallocated ones included
    assert seen_by(FINANCE, "close-periods") == _record(view)
    # AND team-beta's lead sees team-beta's own lines in both periods and both of its adjustment lines (out of
    #     CC-2002, into CC-9009), labelled with the period they correct: no other team's line, no unallocated one
    beta = seen_by(BETA_LEAD, "close-adjustments")
    assert [(r["cost_center"], r["corrects_period"], r["rules"], r["chargeback_cost"]) for r in beta] == [
        (cc, PERIOD, RESTATEMENT, amount) for cc, amount in sorted(
            (r["cost_center"], r["chargeback_cost"]) for r in _record(view, "line_type = 'adjustment' and "
                                                                           "team_id = 'team-beta'"))]
    own = seen_by(BETA_LEAD, "close-chargeback")
    assert {(r["billing_period"], r["cost_center"], r["line_type"]) for r in own} == {
        (PERIOD, "CC-2002", "charge"), (NEXT, "CC-9009", "charge")}
    assert {r["team_id"] for r in seen_by(BETA_LEAD, "close-periods")} == {"team-beta"}
    # AND someone without a rule sees nothing
    assert seen_by(f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/mallory", "close-periods") == []


# --- statements ------------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """A statement page: ``<main>``'s attributes, elements by id (with their text), table rows' data-* attrs."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.main: dict[str, str] = {}
        self.by_id: dict[str, dict[str, str]] = {}
        self.rows: dict[str, list[dict[str, str]]] = {}
        self.text = ""
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._open: list[tuple[str, str | None]] = []  # the open elements: tag and id
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = {**a, "text": ""}
        if tag not in self.VOID:
            self._open.append((tag, a.get("id")))
        if tag == "main":
            self.main = a
        elif tag == "table":
            self._table = a.get("id", "")
            self.rows[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = dict(a)
        elif tag == "td" and self._row is not None:
            self._row.update({k: v for k, v in a.items() if k.startswith("data-")})

    def handle_data(self, data: str) -> None:
        self.text += data
        for _, element in self._open:
            if element:
                self.by_id[element]["text"] += data

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass
        if tag == "tr" and self._row is not None and self._table is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def statements(books: Books, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Page]]:
    """Both periods' statements, by period and cost centre (``index`` for the index)."""
    out: dict[str, dict[str, Page]] = {}
    for period in (PERIOD, NEXT):
        folder = tmp_path_factory.mktemp(f"statements-{period}")
        write_statements(lake=books.lake, period=period, out=folder, config=UTC_CONFIG, pdf=False)
        pages = {p.name: Page(p.read_text(encoding="utf-8")) for p in folder.glob("*.html")}
        out[period] = {("index" if name == INDEX else page.main["data-cost-center"]): page
                       for name, page in pages.items()}
    return out


def test_a_closed_periods_statement_says_it_is_closed_and_when(statements: dict[str, dict[str, Page]]) -> None:
    for page in statements[PERIOD].values():
        assert page.main["data-period-status"] == "closed"
        assert page.by_id["period-status"]["data-status"] == "closed"
        assert f"billing period {PERIOD} is booked" in page.by_id["period-status"]["text"]
        assert page.by_id["version"]["data-period-status"] == "closed"
        assert ("closed at chargeback version 2 on 2026-" in page.text and f"UTC by {getpass.getuser()}" in
                page.text and "(not final: AWS may still restate it)" in page.text)
        assert "adjustments" not in page.rows and "Preview" not in page.text  # nothing was posted into November


def test_an_open_periods_statement_is_a_preview_with_its_adjustment_lines_apart(
        statements: dict[str, dict[str, Page]], view: duckdb.DuckDBPyConnection) -> None:
    december = statements[NEXT]
    for page in december.values():
        assert page.main["data-period-status"] == "open"
        assert f"Preview: billing period {NEXT} is open" in page.by_id["period-status"]["text"]
    # GIVEN the restatement moved team-beta's November out of CC-2002 and into CC-9009 (posted into December)
    for cc in ("CC-2002", "CC-9009"):
        page = december[cc]
        expected = _record(view, "billing_period = ? and cost_center = ?", [NEXT, cc])
        # THEN the statement's own lines are the charge lines only, and its total is theirs
        own = [r for r in expected if r["line_type"] == "charge"]
        assert {r["data-team"] for r in page.rows["table-chargeback"] if "data-team" in r} == \
            {r["team_id"] for r in own}
        assert Decimal(page.by_id["statement-total"]["data-total"]) == _sum(own)
        # AND the adjustment lines are listed apart, labelled with the period they correct and the restatement
        adjusted = [r for r in expected if r["line_type"] == "adjustment"]
        shown = [r for r in page.rows["table-adjustments"] if "data-team" in r]
        assert [(r["data-team"], r["data-corrects-period"], r["data-restatement"], Decimal(r["data-chargeback-cost"]))
                for r in shown] == [("team-beta", PERIOD, RESTATEMENT, r["chargeback_cost"]) for r in adjusted]
        assert Decimal(page.by_id["adjustments-total"]["data-total"]) == _sum(adjusted)
        assert Decimal(page.by_id["booked-total"]["data-total"]) == _sum(own) + _sum(adjusted)
    assert "table-adjustments" not in december["CC-3003"].rows  # nothing restated there


def test_the_index_adds_own_lines_to_the_invoice_and_adjustment_lines_beside_it(
        statements: dict[str, dict[str, Page]], books: Books) -> None:
    index = statements[NEXT]["index"]
    rows = index.rows["table-statements"]
    own = [Decimal(r["data-chargeback-cost"]) for r in rows if "data-chargeback-cost" in r]
    unallocated = next(r for r in rows if r.get("id") == "unallocated")
    total = next(r for r in rows if "data-total" in r)
    # the period's own lines are its invoice, to the cent …
    assert Decimal(total["data-total"]) == sum(own, Decimal(0)) + Decimal(unallocated["data-unallocated"]) \
        == DECEMBER_BILL == Decimal(index.by_id["invoice"]["data-in-scope-cents"])
    assert "equal it to the cent (their own lines" in index.text
    # … and the adjustment lines (the restated guardrails on unallocated, beta's move net zero) sit beside them
    assert Decimal(total["data-adjustments-total"]) == GUARDRAILS
    assert Decimal(unallocated["data-adjustments"]) == GUARDRAILS
    by_cc = {r["data-cost-center"]: r for r in rows if "data-cost-center" in r}
    assert Decimal(by_cc["CC-2002"]["data-adjustments"]) == -Decimal(by_cc["CC-9009"]["data-adjustments"]) < 0
    assert "data-adjustments" not in by_cc["CC-3003"]  # no adjustment line: the cell says "—"
    # November's index has no adjustment column at all
    assert "data-adjustments-total" not in next(r for r in statements[PERIOD]["index"].rows["table-statements"]
                                                if "data-total" in r)


def test_a_team_is_shown_under_the_cost_centre_of_its_chargeback_rows_not_the_registrys(
        statements: dict[str, dict[str, Page]], books: Books) -> None:
    # GIVEN team-alpha now registered in CC-2002 (from December) and team-beta in CC-9009: November was closed
    #       with them in CC-1001 and CC-2002
    registry = LocalTenantRegistry(books.tenants)
    assert registry.get_team("team-alpha").cost_center == "CC-2002"
    november = statements[PERIOD]
    assert set(november) == {"index", "CC-1001", "CC-2002", "CC-3003"}  # no CC-9009 for November
    # THEN team-alpha is on CC-1001's November statement, with its budget …
    alpha = {r["data-team"]: r for r in november["CC-1001"].rows["table-budget"] if "data-team" in r}
    assert set(alpha) == {"team-alpha", "team-idle"}
    assert Decimal(alpha["team-alpha"]["data-monthly-budget"]) == Decimal("5.00")
    # … and CC-2002's November statement shows team-beta only: alpha is neither idle there nor budgeted there
    cc2002 = november["CC-2002"]
    assert {r["data-team"] for r in cc2002.rows["table-budget"] if "data-team" in r} == {"team-beta"}
    assert {r["data-team"] for r in cc2002.rows["table-chargeback"] if "data-team" in r} == {"team-beta"}
    assert "nothing charged this period" not in cc2002.text
    # AND in December, where alpha is charged to CC-2002, it is on CC-2002's statement
    assert "team-alpha" in {r["data-team"] for r in statements[NEXT]["CC-2002"].rows["table-chargeback"]
                            if "data-team" in r}


def test_a_reopened_period_is_a_preview_that_says_why_it_was_reopened(books: Books, tmp_path: Path) -> None:
    # GIVEN a copy of the books with December closed, then reopened with a reason
    copy = books.copy(tmp_path / "books")
    copy.run("close", "--period", NEXT)
    copy.run("close", "--period", NEXT, "--reopen", "--reason", "AWS credit for the outage")
    write_statements(lake=copy.lake, period=NEXT, out=tmp_path / "out", config=UTC_CONFIG, pdf=False)
    index = Page((tmp_path / "out" / INDEX).read_text(encoding="utf-8"))
    # THEN the statement is a preview again, and says when, by whom and why it was reopened
    assert index.main["data-period-status"] == "open"
    assert "Preview" in index.by_id["period-status"]["text"]
    assert f"UTC by {getpass.getuser()}: AWS credit for the outage" in index.text
    # AND the dashboard's history has both events, the reason with the reopening
    tables = Tables(render_dashboard(lake=Lake.open(copy.lake), out=tmp_path / "r.html", config=UTC_CONFIG)
                    .read_text(encoding="utf-8")).tables
    assert tables["close-events"].rows("billing period", "action", "reason")[-2:] == [
        (NEXT, "close", ""), (NEXT, "reopen", "AWS credit for the outage")]
    assert tables["close-periods"].rows("billing period", "status", "last close or reopening")[-1] == (
        NEXT, "open", "reopened: AWS credit for the outage")

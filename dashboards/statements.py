"""Chargeback statements: one printable page per cost centre of a billing period (docs/finance.md "Statements"):
the book of a closed period, or a preview of an open one, as the page says.

Every figure comes from the SQL views over the lake (:func:`sql.render.connect`): the chargeback of record
(``chargeback_of_record``), the metered list cost per team × model of the period's UTC days (``priced_usage_daily``),
the monthly budgets (``teams``, ``budget_burn``); the version's inputs come from its manifest
(:func:`finance.chargeback.versions`). Each page is self-contained (inline CSS, a Content-Security-Policy that
forbids every request), prints on A4, and carries the exact amounts in ``data-*`` attributes; money is formatted
from ``Decimal``, rounded half up to the cent. ``index.html`` links every statement and shows that the statements
plus the ``unallocated`` line add up to the period's in-scope invoice. A period's own lines are its invoice; the
adjustment lines posted into it (restatements of earlier closed periods, ``line_type`` ``adjustment``) are listed
apart, labelled with the period they correct and the restatement id. Which cost centre a team is charged to comes
from the chargeback rows (the organisation in force then); the registry (current assignments) only supplies budgets
and the registered teams that were charged nothing. With Chromium on the ``PATH``, each statement is also printed to
PDF.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from common.contracts import UNALLOCATED
from common.errors import UserError
from common.lake import Lake
from dashboards.html import usd
from finance.chargeback import CENT, VersionInfo, versions
from finance.reconcile import Scope, period_days
from sql.config import ReportingConfig
from sql.render import connect

ZERO = Decimal(0)
INDEX = "index.html"
CSP = "default-src 'none'; style-src 'unsafe-inline'"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer")
MONEY_COLUMNS = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost")


@dataclass(frozen=True)
class TeamLine:
    """One chargeback of record row (a team of the cost centre)."""

    team_id: str
    metered_list_cost: Decimal
    price_adjustment: Decimal
    allocated_shared_cost: Decimal
    chargeback_cost: Decimal
    rules: str | None


@dataclass(frozen=True)
class AdjustmentLine:
    """An adjustment line posted into the period: restated − booked of an earlier closed period, for one team."""

    corrects_period: str
    restatement: str
    team_id: str
    metered_list_cost: Decimal
    price_adjustment: Decimal
    allocated_shared_cost: Decimal
    chargeback_cost: Decimal


@dataclass(frozen=True)
class PeriodState:
    """Whether the period is closed (its chargeback is the book) or open (a statement is a preview)."""

    status: str  # open | closed
    event: dict[str, Any] | None = None  # the latest close or reopening (action, version, at, by, reason, CUR …)

    @property
    def closed(self) -> bool:
        return self.status == "closed"


@dataclass(frozen=True)
class ModelLine:
    """A team's metered list cost on one model over the billing period's UTC days."""

    team_id: str
    provider: str
    model_id: str
    metered_list_cost: Decimal
    on_bill: bool  # the provider is one the AWS bill covers (else: shown, not in the chargeback)


@dataclass(frozen=True)
class BudgetLine:
    """A team's monthly budget against its invoice-true chargeback and its reporting-calendar spend at list."""

    team_id: str
    monthly_budget: Decimal | None
    chargeback_cost: Decimal
    fiscal_month_start: date | None
    fiscal_month_end: date | None
    fiscal_spend: Decimal | None  # budget_burn's spend to date (list price, reporting calendar)


@dataclass(frozen=True)
class Statement:
    cost_center: str | None
    file_stem: str
    teams: tuple[TeamLine, ...]
    models: tuple[ModelLine, ...]
    budgets: tuple[BudgetLine, ...]
    idle_teams: tuple[str, ...]  # registered in the cost centre, nothing charged this period
    adjustments: tuple[AdjustmentLine, ...] = ()

    @property
    def total(self) -> Decimal:
        """The cost centre's own lines: its part of the period's invoice."""
        return sum((t.chargeback_cost for t in self.teams), ZERO)

    @property
    def adjustment_total(self) -> Decimal:
        return sum((a.chargeback_cost for a in self.adjustments), ZERO)

    @property
    def title(self) -> str:
        return self.cost_center or "no cost centre"


@dataclass(frozen=True)
class Statements:
    period: str
    first_day: date
    last_day: date
    version: int
    info: VersionInfo | None
    currency: str
    statements: tuple[Statement, ...]
    unallocated: TeamLine | None
    timezone: str
    fiscal_month_start_day: int
    state: PeriodState = PeriodState("open")
    unallocated_adjustments: tuple[AdjustmentLine, ...] = ()

    @property
    def total(self) -> Decimal:
        """The period's own lines (statements and unallocated): its in-scope invoice, to the cent."""
        extra = self.unallocated.chargeback_cost if self.unallocated else ZERO
        return sum((s.total for s in self.statements), ZERO) + extra

    @property
    def adjustment_total(self) -> Decimal:
        return (sum((s.adjustment_total for s in self.statements), ZERO)
                + sum((a.chargeback_cost for a in self.unallocated_adjustments), ZERO))


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _stem(cost_center: str | None, taken: set[str]) -> str:
    base = "statement-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", cost_center).strip("-.") or "cost-centre"
                           if cost_center else "no-cost-centre")
    stem, n = base, 2
    while stem.lower() in taken:
        stem, n = f"{base}-{n}", n + 1
    taken.add(stem.lower())
    return stem


def _team_line(r: dict[str, Any]) -> TeamLine:
    return TeamLine(team_id=r["team_id"], metered_list_cost=Decimal(r["metered_list_cost"]),
                    price_adjustment=Decimal(r["price_adjustment"]),
                    allocated_shared_cost=Decimal(r["allocated_shared_cost"]),
                    chargeback_cost=Decimal(r["chargeback_cost"]), rules=r["rules"])


def _adjustment_line(r: dict[str, Any]) -> AdjustmentLine:
    return AdjustmentLine(corrects_period=r["corrects_period"], restatement=r["rules"], team_id=r["team_id"],
                          metered_list_cost=Decimal(r["metered_list_cost"]),
                          price_adjustment=Decimal(r["price_adjustment"]),
                          allocated_shared_cost=Decimal(r["allocated_shared_cost"]),
                          chargeback_cost=Decimal(r["chargeback_cost"]))


def _state(con: duckdb.DuckDBPyConnection, period: str, record: list[dict[str, Any]]) -> PeriodState:
    events = _rows(con, """select action, version, reason, "at", "by", cur_snapshot, cur_final from period_events
                           where billing_period = ? order by seq desc limit 1""", [period])
    return PeriodState(status=str(record[0]["period_status"]), event=events[0] if events else None)


def _models(con: duckdb.DuckDBPyConnection, first: date, last: date, scope: Scope | None
            ) -> dict[str, list[ModelLine]]:
    providers = set((scope or Scope()).metered_providers)
    models: dict[str, list[ModelLine]] = defaultdict(list)
    for r in _rows(con, """select team_id, provider, model_id, sum(total_cost) as cost from priced_usage_daily
                           where usage_date between ? and ? group by all order by team_id, cost desc, model_id""",
                   [first, last]):
        models[r["team_id"]].append(ModelLine(r["team_id"], r["provider"], r["model_id"], Decimal(r["cost"] or 0),
                                              r["provider"] in providers))
    return models


def gather(*, con: duckdb.DuckDBPyConnection, lake: Lake, period: str, config: ReportingConfig,
           scope: Scope | None = None) -> Statements:
    """The statements of billing period ``period`` (``YYYY-MM``) from the views of ``con`` over ``lake``.

    Raises:
        UserError: no chargeback stored for ``period``.
    """
    first, last = period_days(period)
    record = _rows(con, """select * from chargeback_of_record where billing_period = ?
                           order by team_id = 'unallocated', cost_center nulls last, team_id, corrects_period,
                           rules""", [period])
    own = [r for r in record if r["line_type"] == "charge"]
    if not own:
        raise UserError(f"no chargeback stored for {period} in {lake.uri}: run `modelmeter chargeback --period "
                        f"{period}` first")
    version = int(own[0]["version"])
    info = next((v for v in versions(lake=lake, period=period) if v.version == version), None)
    lines: dict[str | None, list[TeamLine]] = defaultdict(list)
    adjustments: dict[str | None, list[AdjustmentLine]] = defaultdict(list)
    unallocated, unallocated_adjustments = None, []
    for r in record:
        if r["line_type"] == "charge" and r["team_id"] == UNALLOCATED:
            unallocated = _team_line(r)
        elif r["line_type"] == "charge":
            lines[r["cost_center"]].append(_team_line(r))
        elif r["team_id"] == UNALLOCATED:
            unallocated_adjustments.append(_adjustment_line(r))
        else:
            adjustments[r["cost_center"]].append(_adjustment_line(r))
    statements = _statements(con, lines, adjustments, models=_models(con, first, last, scope), first=first,
                             last=last, charged={r["team_id"] for r in record})
    return Statements(period=period, first_day=first, last_day=last, version=version, info=info,
                      currency=str(own[0]["currency"]), statements=tuple(statements), unallocated=unallocated,
                      timezone=config.timezone, fiscal_month_start_day=config.fiscal_month_start_day,
                      state=_state(con, period, record), unallocated_adjustments=tuple(unallocated_adjustments))


def _statements(con: duckdb.DuckDBPyConnection, lines: dict[str | None, list[TeamLine]],
                adjustments: dict[str | None, list[AdjustmentLine]], *, models: dict[str, list[ModelLine]],
                first: date, last: date, charged: set[str]) -> list[Statement]:
    """One statement per cost centre with own lines or adjustment lines in the period.

    A team's cost centre is the one of its chargeback rows (the organisation in force in the period). The registry's
    current assignment only places the teams the period charged nothing at all (listed as idle, with their budget):
    a team that has moved since is never shown under its new cost centre for an earlier period.
    """
    registry = _rows(con, "select team_id, cost_center, monthly_budget_usd from teams "
                          "where coalesce(is_current, true) order by team_id", [])
    budgets_of = {r["team_id"]: r["monthly_budget_usd"] for r in registry}
    burn = {r["team_id"]: r for r in _rows(con, """select team_id, fiscal_month_start, fiscal_month_end,
                spend_to_date from budget_burn where fiscal_month_start between ? and ?
                order by fiscal_month_start""", [first, last])}
    taken: set[str] = {INDEX.removesuffix(".html")}
    statements = []
    for cc in sorted(set(lines) | set(adjustments), key=lambda c: (c is None, c or "")):
        team_lines = lines.get(cc, [])
        own = {t.team_id: t for t in team_lines}
        idle = [r["team_id"] for r in registry
                if cc is not None and r["cost_center"] == cc and r["team_id"] not in charged]
        budgets = []
        for team in sorted(set(own) | {t for t in idle if budgets_of.get(t) is not None}):
            b, budget = burn.get(team), budgets_of.get(team)
            budgets.append(BudgetLine(
                team_id=team, monthly_budget=None if budget is None else Decimal(budget),
                chargeback_cost=own[team].chargeback_cost if team in own else ZERO,
                fiscal_month_start=b["fiscal_month_start"] if b else None,
                fiscal_month_end=b["fiscal_month_end"] if b else None,
                fiscal_spend=Decimal(b["spend_to_date"]) if b else None))
        statements.append(Statement(
            cost_center=cc, file_stem=_stem(cc, taken), teams=tuple(team_lines),
            models=tuple(m for t in team_lines for m in models.get(t.team_id, ())), budgets=tuple(budgets),
            idle_teams=tuple(idle), adjustments=tuple(adjustments.get(cc, ()))))
    return statements


# --- pages ------------------------------------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111; margin: 0;
       padding: 16px; max-width: 60rem; }
h1 { font-size: 1.5em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
p { margin: .3em 0; } .note { color: #444; font-size: .92em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; margin: .6em 0; }
dl.facts dt { color: #444; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; table-layout: auto; }
th, td { border-bottom: 1px solid #ccc; padding: .25em .4em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 700; border-top: 2px solid #111; border-bottom: none; }
.over { color: #a00; font-weight: 600; } .ok { color: #060; }
p.status { padding: .4em .6em; border: 1px solid #999; font-weight: 600; }
p.status.open { border-color: #a60; background: #fff6e5; } p.status.closed { border-color: #060; }
thead { display: table-header-group; } tfoot { display: table-row-group; }
tr, dl.facts { break-inside: avoid; page-break-inside: avoid; }
section { break-inside: avoid-page; }
a { color: #0645ad; }
@media (max-width: 600px) { body { font-size: 11px; padding: 8px; } th, td { padding: .2em .25em; }
  td.num, th.num { white-space: normal; } }
@media print { body { padding: 0; max-width: none; font-size: 10.5pt; } a { color: inherit; text-decoration: none; } }
"""


def _page(title: str, body: str, *, attrs: str = "") -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main{attrs}>{body}</main></body></html>\n")


def _money(value: Decimal | None, attr: str) -> str:
    if value is None:
        return '<td class="num">—</td>'
    return f'<td class="num" data-{attr}="{value:f}">{escape(usd(value))}</td>'


def _calendar(s: Statements) -> str:
    return (f"billing period {s.period}: the AWS invoice's UTC calendar month "
            f"({s.first_day.isoformat()} to {s.last_day.isoformat()}, UTC days)")


def _facts(s: Statements) -> str:
    i = s.info
    rows = [("Billing period", _calendar(s)),
            ("Period status", _status_text(s)),
            ("Chargeback version", f"{s.version}" + (f", run {i.created_at}" if i else "")),
            ("CUR snapshot", (f"{i.cur_snapshot} — " + ("final (the invoice is issued)" if i.cur_final else
                              "not final: AWS may still restate this period")) if i else "—"),
            ("Allocation rules", "—" if i is None else i.rules_source if i.rules_digest in ("", "none")
             else f"{i.rules_source} (sha256 {i.rules_digest})"),
            ("Price versions", ", ".join(i.price_versions) if i and i.price_versions else "—"),
            ("Organisation as of", i.organisation_as_of if i else "—"),
            ("Currency", s.currency)]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    final = ("" if i is None else
             f' data-cur-final="{str(i.cur_final).lower()}" data-cur-snapshot="{escape(i.cur_snapshot)}"')
    return (f'<dl class="facts" id="version" data-version="{s.version}" data-period-status="{s.state.status}"'
            f"{final}>{items}</dl>")


def _status_text(s: Statements) -> str:
    e = s.state.event
    if s.state.closed and e is not None:
        final = "final" if e["cur_final"] else "not final: AWS may still restate it"
        return (f"closed at chargeback version {e['version']} on {e['at']:%Y-%m-%d %H:%M} UTC by {e['by']}, on CUR "
                f"snapshot {e['cur_snapshot']} ({final})")
    reopened = (f"; reopened on {e['at']:%Y-%m-%d %H:%M} UTC by {e['by']}: {e['reason']}"
                if e is not None and e["action"] == "reopen" else "")
    return f"open: a preview of the latest chargeback run (version {s.version}), not yet booked{reopened}"


def _status_banner(s: Statements) -> str:
    """Says first whether this is the book of a closed period or a preview of an open one."""
    if s.state.closed:
        text = f"Closed: billing period {s.period} is booked; its chargeback of record no longer moves."
    else:
        text = (f"Preview: billing period {s.period} is open, so these figures may still change; close it "
                f"(`modelmeter close --period {s.period}`) before booking them.")
    return f'<p id="period-status" class="status {s.state.status}" data-status="{s.state.status}">{escape(text)}</p>'


def _chargeback_table(st: Statement) -> str:
    body = "".join(
        f'<tr data-team="{escape(t.team_id)}"><td>{escape(t.team_id)}</td>'
        + "".join(_money(getattr(t, c), c.replace("_", "-")) for c in MONEY_COLUMNS)
        + f"<td>{escape((t.rules or '—').replace(',', ', '))}</td></tr>" for t in st.teams) or (
        '<tr><td colspan="6">No own lines in this billing period (adjustment lines only, below)</td></tr>')
    sums = {c: sum((getattr(t, c) for t in st.teams), ZERO) for c in MONEY_COLUMNS}
    foot = ("<tr><td>total</td>" + "".join(_money(sums[c], f"total-{c.replace('_', '-')}") for c in MONEY_COLUMNS)
            + "<td></td></tr>")
    return ('<section id="chargeback"><h2>Chargeback (invoice-true): this period\'s own lines</h2>'
            '<table id="table-chargeback"><thead><tr><th>team</th><th class="num">metered list</th>'
            '<th class="num">price adjustment</th><th class="num">allocated shared cost</th>'
            '<th class="num">chargeback</th><th>allocation rules</th></tr></thead>'
            f"<tbody>{body}</tbody><tfoot>{foot}</tfoot></table>"
            '<p class="note">Chargeback = metered list cost + price adjustment (the team\'s share of what the bill '
            "charged beyond list price for the models it used, less metered usage the bill does not show) + "
            "allocated shared cost (its shares of the charges the allocation rules name). It is in cents by the "
            "largest-remainder method, so that every row of the period adds up to the invoice; the columns to its "
            "left are exact amounts shown rounded to the cent.</p></section>")


ADJUSTMENT_COLUMNS = ("metered list Δ", "price adjustment Δ", "allocated shared cost Δ", "chargeback Δ")


def _adjustments_table(s: Statements, st: Statement) -> str:
    """The adjustment lines posted into the period for this cost centre, apart from its own lines."""
    if not st.adjustments:
        return ""
    body = "".join(
        f'<tr data-team="{escape(a.team_id)}" data-corrects-period="{escape(a.corrects_period)}" '
        f'data-restatement="{escape(a.restatement)}"><td>{escape(a.corrects_period)}</td>'
        f"<td>{escape(a.restatement)}</td><td>{escape(a.team_id)}</td>"
        + "".join(_money(getattr(a, c), c.replace("_", "-")) for c in MONEY_COLUMNS) + "</tr>"
        for a in st.adjustments)
    sums = {c: sum((getattr(a, c) for a in st.adjustments), ZERO) for c in MONEY_COLUMNS}
    foot = ('<tr><td>total</td><td></td><td></td>'
            + "".join(_money(sums[c], f"total-{c.replace('_', '-')}") for c in MONEY_COLUMNS) + "</tr>")
    head = "".join(f'<th class="num">{escape(c)}</th>' for c in ADJUSTMENT_COLUMNS)
    return ('<section id="adjustments"><h2>Adjustment lines: restatements of earlier periods</h2>'
            '<table id="table-adjustments"><thead><tr><th>corrects period</th><th>restatement</th><th>team</th>'
            f"{head}</tr></thead><tbody>{body}</tbody><tfoot>{foot}</tfoot></table>"
            f'<p class="note">Posted into {s.period} by <code>modelmeter restate</code>: what each closed period '
            "would be charged now, less what was booked for it (restated − booked, per team), so the closed period "
            f"itself never moves. They are not part of {s.period}\'s invoice, and are booked beside it.</p>"
            "</section>")


def _models_table(s: Statements, st: Statement) -> str:
    if not st.models:
        body = '<tr><td colspan="4">No metered usage in this billing period</td></tr>'
    else:
        body = "".join(
            f'<tr data-team="{escape(m.team_id)}" data-model="{escape(m.model_id)}" '
            f'data-on-bill="{str(m.on_bill).lower()}"><td>{escape(m.team_id)}</td><td>{escape(m.model_id)}</td>'
            f"<td>{escape(m.provider)}{'' if m.on_bill else ' (not on the AWS bill)'}</td>"
            f"{_money(m.metered_list_cost, 'metered-list-cost')}</tr>" for m in st.models)
    return ('<section id="models"><h2>Teams and their models</h2>'
            '<table id="table-models"><thead><tr><th>team</th><th>model</th><th>provider</th>'
            f'<th class="num">metered list</th></tr></thead><tbody>{body}</tbody></table>'
            '<p class="note">Metered list cost per team × model over the billing period\'s UTC days (priced usage '
            "only). Providers the AWS bill does not cover are listed but are not in the chargeback."
            + (" Read from today's curated usage: if the period was re-priced after it was closed, these may differ "
               "from the booked metered list cost (`modelmeter restate` shows by how much)." if s.state.closed else "")
            + "</p></section>")


def _budget_table(s: Statements, st: Statement) -> str:
    rows = []
    for b in st.budgets:
        if b.monthly_budget is None:
            status = "no budget"
        elif b.chargeback_cost > b.monthly_budget:
            status = f'<span class="over">over by {escape(usd(b.chargeback_cost - b.monthly_budget))}</span>'
        else:
            status = f'<span class="ok">within ({escape(usd(b.monthly_budget - b.chargeback_cost))} left)</span>'
        month = (f"{b.fiscal_month_start.isoformat()} to {b.fiscal_month_end.isoformat()}"
                 if b.fiscal_month_start and b.fiscal_month_end else "—")
        rows.append(f'<tr data-team="{escape(b.team_id)}"><td>{escape(b.team_id)}</td>'
                    f"{_money(b.monthly_budget, 'monthly-budget')}{_money(b.chargeback_cost, 'chargeback-cost')}"
                    f"<td>{status}</td>{_money(b.fiscal_spend, 'fiscal-spend')}<td>{escape(month)}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="6">No team of this cost centre has a monthly budget</td></tr>'
    return ('<section id="budget"><h2>Budget status</h2>'
            '<table id="table-budget"><thead><tr><th>team</th><th class="num">monthly budget</th>'
            '<th class="num">chargeback</th><th>status</th><th class="num">spent at list (fiscal month)</th>'
            f'<th>fiscal month</th></tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">Status compares the monthly budget (teams reference) with the chargeback of billing '
            f"period {s.period} (the invoice's UTC calendar month). The fiscal-month spend is the budget burn view's "
            f"metered list cost on the reporting calendar (time zone {escape(s.timezone)}, months starting on day "
            f"{s.fiscal_month_start_day}); it differs from the billing period when that calendar does.</p></section>")


def render_statement(s: Statements, st: Statement, *, generated: datetime | None = None) -> str:
    """One cost centre's statement page."""
    generated = generated or datetime.now(UTC)
    idle = (f'<p class="note">Also in this cost centre, nothing charged this period: '
            f"{escape(', '.join(st.idle_teams))}.</p>" if st.idle_teams else "")
    booked = ""
    if st.adjustments:
        both = st.total + st.adjustment_total
        booked = (f' Adjustment lines of restated earlier periods: <strong id="adjustments-total" '
                  f'data-total="{st.adjustment_total:f}">{escape(usd(st.adjustment_total))}</strong>; together '
                  f'<strong id="booked-total" data-total="{both:f}">{escape(usd(both))}</strong>.')
    body = (f"<h1>Chargeback statement: {escape(st.title)}</h1>{_status_banner(s)}"
            f"<p>{escape(_calendar(s))}. Total charged to {escape(st.title)}: "
            f'<strong id="statement-total" data-total="{st.total:f}">{escape(usd(st.total))}</strong> '
            f"{escape(s.currency)} (invoice-true: its own lines).{booked}</p>"
            f"{_facts(s)}{_chargeback_table(st)}{_adjustments_table(s, st)}{idle}{_models_table(s, st)}"
            f"{_budget_table(s, st)}"
            f'<p class="note">Generated {generated:%Y-%m-%d %H:%M} UTC by modelmeter from the chargeback of record '
            f'(version {s.version}). <a href="{INDEX}">All statements of {s.period}</a>.</p>')
    attrs = (f' data-cost-center="{escape(st.cost_center or "")}" data-billing-period="{s.period}" '
             f'data-version="{s.version}" data-period-status="{s.state.status}"')
    return _page(f"Chargeback statement {st.title} {s.period}", body, attrs=attrs)


def render_index(s: Statements, *, generated: datetime | None = None) -> str:
    """The period's index: every statement, the unallocated line, and their sum against the in-scope invoice; the
    adjustment lines posted into the period (restatements of earlier ones) in a column of their own."""
    generated = generated or datetime.now(UTC)
    extra = bool(s.unallocated_adjustments) or any(st.adjustments for st in s.statements)

    def adjusted(lines: tuple[AdjustmentLine, ...], attr: str) -> str:
        if not extra:
            return ""
        return _money(sum((a.chargeback_cost for a in lines), ZERO) if lines else None, attr)

    rows = "".join(
        f'<tr data-cost-center="{escape(st.cost_center or "")}"><td><a href="{st.file_stem}.html">'
        f"{escape(st.title)}</a></td><td>{escape(', '.join(_teams(st)))}</td>"
        f"{_money(st.total, 'chargeback-cost')}{adjusted(st.adjustments, 'adjustments')}</tr>"
        for st in s.statements)
    if s.unallocated or s.unallocated_adjustments:
        own = s.unallocated.chargeback_cost if s.unallocated else ZERO
        rows += (f'<tr id="unallocated"><td>unallocated</td><td>no cost centre: charges no rule claims</td>'
                 f"{_money(own, 'unallocated')}{adjusted(s.unallocated_adjustments, 'adjustments')}</tr>")
    invoice = Decimal(s.info.in_scope_total) if s.info else None
    rounded = invoice.quantize(CENT, rounding=ROUND_HALF_UP) if invoice is not None else None
    check = ("" if rounded is None else
             f'<p id="invoice" data-in-scope-total="{invoice:f}" data-in-scope-cents="{rounded:f}">'
             f"In-scope invoice of {s.period}: {escape(usd(rounded))} {escape(s.currency)} (exactly {invoice:f}). "
             f"The statements plus unallocated {'equal' if rounded == s.total else 'DO NOT equal'} it to the cent"
             + (" (their own lines; the adjustment lines restate earlier periods and are not part of it)"
                if extra else "") + ".</p>")
    head = '<th class="num">adjustment lines (earlier periods)</th>' if extra else ""
    foot = _money(s.adjustment_total, "adjustments-total") if extra else ""
    body = (f"<h1>Chargeback statements {s.period}</h1>{_status_banner(s)}<p>{escape(_calendar(s))}.</p>{_facts(s)}"
            '<section id="statements"><h2>Statements</h2><table id="table-statements"><thead><tr>'
            f'<th>cost centre</th><th>teams</th><th class="num">chargeback (own lines)</th>{head}</tr></thead>'
            f'<tbody>{rows}</tbody><tfoot><tr><td>total</td><td></td>{_money(s.total, "total")}{foot}</tr></tfoot>'
            f"</table></section>{check}"
            f'<p class="note">Generated {generated:%Y-%m-%d %H:%M} UTC by modelmeter.</p>')
    return _page(f"Chargeback statements {s.period}", body,
                 attrs=f' data-billing-period="{s.period}" data-period-status="{s.state.status}"')


def _teams(st: Statement) -> list[str]:
    """The statement's teams: those with own lines, then those with adjustment lines only."""
    own = [t.team_id for t in st.teams]
    return own + sorted({a.team_id for a in st.adjustments} - set(own))


# --- files ------------------------------------------------------------------------------------------------------

def chromium() -> str | None:
    """Chromium on the ``PATH``, if there is one."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def print_pdf(*, html: Path, pdf: Path, timeout: float = 120) -> Path:
    """Print ``html`` to ``pdf`` with headless Chromium (A4 from the page's ``@page`` rule).

    Raises:
        UserError: Chromium is not installed, or it did not write the PDF.
    """
    binary = chromium()
    if binary is None:
        raise UserError("chromium is not installed: cannot print PDF statements (the HTML ones are written)")
    with tempfile.TemporaryDirectory(prefix="modelmeter-chromium-") as profile:
        try:
            proc = subprocess.run(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf}",
                 html.resolve().as_uri()], capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise UserError(f"chromium did not print {html.name} within {timeout:.0f} s") from None
    if proc.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"chromium could not print {html.name} to PDF (exit {proc.returncode}): {last}")
    return pdf


def write_statements(*, lake: Lake | str | Path | None, period: str, out: str | Path,
                     config: ReportingConfig | None = None, scope: Scope | None = None, pdf: bool | None = None,
                     generated: datetime | None = None) -> list[Path]:
    """Write ``index.html`` and one ``statement-<cost centre>.html`` (and ``.pdf`` when ``pdf``; default: when
    Chromium is installed) per cost centre of ``period``'s chargeback of record into ``out``; return the files.

    Raises:
        UserError: no chargeback stored for the period; a PDF asked for and not printed.
    """
    config = config or ReportingConfig.from_env()
    opened = lake if isinstance(lake, Lake) else Lake.open(lake)
    con = connect(lake=opened, config=config)
    try:
        data = gather(con=con, lake=opened, period=period, config=config, scope=scope)
    finally:
        con.close()
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    generated = generated or datetime.now(UTC)
    written = []
    for st in data.statements:
        page = target / f"{st.file_stem}.html"
        page.write_text(render_statement(data, st, generated=generated), encoding="utf-8")
        written.append(page)
    index = target / INDEX
    index.write_text(render_index(data, generated=generated), encoding="utf-8")
    written.append(index)
    if pdf is None:
        pdf = chromium() is not None
    if pdf:
        written += [print_pdf(html=page, pdf=page.with_suffix(".pdf")) for page in written[:-1]]
    return written

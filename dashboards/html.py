"""``modelmeter dashboard``: the chargeback dashboard as one self-contained HTML page.

The figures come from the SQL views (:mod:`dashboards.report_data` over :func:`sql.render.connect`), the charts are
inline SVG (:mod:`dashboards.svg`), and the page fetches nothing: a Content-Security-Policy forbids every request,
so it opens the same offline, from an e-mail attachment or a CI artefact. Money is formatted here, in Python, from
``Decimal`` (rounded half up to the cent), never by JavaScript floats; the exact sum sits in ``data-value``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from common.lake import Lake
from dashboards import svg
from dashboards.late import LateNotice, late_notice, notice_html
from dashboards.report_data import ReportData, Table, gather
from sql.config import ReportingConfig
from sql.render import connect, table_sources

CENT = Decimal("0.01")


def usd(value: Decimal | None, *, places: int = 2) -> str:
    """``$1,234.57`` from a Decimal, rounded half up (``places`` decimals); ``—`` for no value."""
    if value is None:
        return "—"
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.{places}f}"


def _label(value: Decimal) -> str:
    """A chart label: to the cent, but a positive amount under half a cent reads ``<$0.01``, not ``$0.00``."""
    return "<$0.01" if 0 < value < Decimal("0.005") else usd(value)


def _of_budget(forecast: Decimal, budget: Decimal | None) -> str:
    if budget is None:
        return " · no budget"
    if budget <= 0:
        return f" · budget {usd(budget)}"
    share = (forecast / budget * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f" = {share}% of the {usd(budget)} budget"


def _cell(value: Any, heading: str) -> str:
    """One ``<td>``: money by its heading, integers with separators, the exact value in ``data-sort``."""
    if value is None:
        return '<td class="num" data-sort="">—</td>'
    if isinstance(value, bool):
        return f'<td data-sort="{int(value)}">{"yes" if value else "no"}</td>'
    if isinstance(value, Decimal):
        text = usd(value, places=6 if "per" in heading else 2) if "USD" in heading else f"{value:,}"
        return f'<td class="num" data-sort="{value}">{escape(text)}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-sort="{value}">{value:,}</td>'
    text = value.isoformat() if isinstance(value, date) else str(value)
    return f'<td data-sort="{escape(text)}">{escape(text)}</td>'


def _table(table: Table) -> str:
    numeric = [any(isinstance(r[i], int | Decimal) and not isinstance(r[i], bool) for r in table.rows)
               for i in range(len(table.columns))]
    head = "".join(f'<th class="{"num" if numeric[i] else ""}">{escape(c)}</th>'
                   for i, c in enumerate(table.columns))
    if table.rows:
        body = "".join("<tr>" + "".join(_cell(v, table.columns[i]) for i, v in enumerate(row)) + "</tr>"
                       for row in table.rows)
    else:
        body = f'<tr><td class="empty" colspan="{len(table.columns)}">Nothing in this period</td></tr>'
    foot = "".join('<tr class="total">' + "".join('<td></td>' if v is None else _cell(v, table.columns[i])
                                                  for i, v in enumerate(row)) + "</tr>" for row in table.footer)
    foot = f"<tfoot>{foot}</tfoot>" if foot else ""
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (f'<section id="section-{table.table_id}"><h2>{escape(table.title)}</h2>{note}'
            # the wrapper scrolls sideways inside the card on a narrow screen; focusable so a keyboard can scroll it
            f'<div class="scroll" role="region" aria-label="{escape(table.title)}" tabindex="0">'
            f'<table class="sortable" id="table-{table.table_id}" data-rows="{len(table.rows)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table></div></section>")


def _charts(data: ReportData) -> dict[str, str]:
    return {
        "chart_team": svg.bar_chart(chart_id="spend-by-team", title="Spend by team",
                                    bars=[svg.Bar(t, v, _label(v)) for t, v in data.spend_by_team]),
        "chart_model": svg.bar_chart(chart_id="spend-by-model", title="Spend by model",
                                     bars=[svg.Bar(m, v, _label(v)) for m, v in data.spend_by_model]),
        "chart_daily": svg.line_chart(
            chart_id="daily-trend", title="Daily spend", axis_text=usd(max((v for _, v in data.daily), default=None)),
            points=[svg.Point(d.isoformat(), v, _label(v)) for d, v in data.daily]),
        "chart_burn": svg.burn_chart(chart_id="budget-burn", title="Budget burn", rows=[
            svg.Burn(team, spend, forecast, budget,
                     f"{_label(spend)} spent · forecast {_label(forecast)}" + _of_budget(forecast, budget))
            for team, spend, forecast, budget in data.burn]),
    }


def render_html(data: ReportData, *, timezone: str, generated: datetime | None = None,
                late: LateNotice | None = None) -> str:
    """The page for already-gathered data (pure: no I/O); ``late`` adds the late-data banner."""
    template = Template(resources.files("dashboards").joinpath("templates", "report.html").read_text("utf-8"))
    period = (f"{data.date_from.isoformat()} – {data.date_to.isoformat()}"
              if data.date_from and data.date_to else "no data yet")
    return template.substitute(
        period_text=escape(period), timezone=escape(timezone),
        date_from=data.date_from.isoformat() if data.date_from else "",
        date_to=data.date_to.isoformat() if data.date_to else "",
        generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        total_spend=escape(usd(data.total_spend)), total_spend_exact=str(data.total_spend),
        invocations=f"{data.invocations:,}", invocations_exact=data.invocations,
        unpriced=f"{data.unpriced_invocations:,}", unpriced_exact=data.unpriced_invocations,
        teams=len(data.spend_by_team),
        burn_month=escape(f"fiscal month from {data.burn_month.isoformat()}" if data.burn_month else "no data"),
        tables="".join(_table(t) for t in data.tables), late_notice=notice_html(late or LateNotice()),
        **_charts(data),
    )


def _read_base_tables_once(con: Any) -> None:
    """Copy the base tables into DuckDB's memory and point their names at the copies.

    The page asks the views about fifteen questions; without this each one re-reads every Parquet file (from S3, for
    an S3 lake). Views resolve table names when queried, so they now read the copies. The dashboard's lake is the
    local or demo size; for a very large lake, point Athena/QuickSight at it instead.
    """
    for name in table_sources():
        con.execute(f'CREATE TABLE "__dashboard_{name}" AS SELECT * FROM "{name}"')
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "__dashboard_{name}"')


def render_dashboard(*, lake: Lake | str | Path | None, date_from: date | None = None, date_to: date | None = None,
                     out: str | Path, config: ReportingConfig | None = None) -> Path:
    """Render the dashboard for ``[date_from, date_to]`` (reporting-zone days; default: all data) into ``out``.

    Raises:
        ValueError: ``date_from`` is after ``date_to``.
    """
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"--from {date_from} is after --to {date_to}")
    config = config or ReportingConfig.from_env()
    opened = lake if isinstance(lake, Lake) else Lake.open(lake)
    con = connect(lake=opened, config=config)
    try:
        _read_base_tables_once(con)
        data = gather(con, date_from=date_from, date_to=date_to, lake=opened)
    finally:
        con.close()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    late = late_notice(lake=opened, config=config, date_from=date_from, date_to=date_to,
                       shown=(data.date_from, data.date_to))
    target.write_text(render_html(data, timezone=config.timezone, late=late), encoding="utf-8")
    return target.resolve()



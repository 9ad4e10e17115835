"""``modelmeter report``: per team × model usage and cost over a range of days of the reporting calendar.

Days are the reporting calendar's (``sql.config.ReportingConfig``: ``MODELMETER_REPORTING_TZ``, or ``--tz``), as in
the views and the dashboards: the report reads the view ``team_model_daily_local`` (the ``team_model_daily`` mart
regrouped by the day in the reporting time zone, from ``usage_local``) through :func:`sql.render.connect`, the same
DuckDB over the lake that the dashboard and the FOCUS export read, and adds up its days. When the reporting zone is
UTC the reporting day is the curated ``usage_date``, so it reads the curated rollup ``team_model_daily`` instead
(the same rows, a test proves it, without scanning every usage row). Money stays ``Decimal`` from the Parquet file
to the printed text: never a float, never rounded (trailing zeros beyond the cents are dropped, nothing else).

An amount is the priced part of the row's usage (usage without a price has no cost; ``unpriced_invocations`` counts
the events it touched). A cost column is **unpriced** (``None``: ``unpriced`` in the table, an empty CSV cell, JSON
null) when the row's events used its dimension without a price and no priced usage of it adds anything; the row's
``total_cost`` is unpriced when every event of the row is unpriced and nothing of what they used was priced. So an
unpriced amount never reads ``0.00``, and a partly priced one shows its priced part beside the unpriced invocations.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

from common.contracts import COST_COLUMNS, DIMENSIONS, UNITS
from common.lake import Lake
from sql import models
from sql.config import ReportingConfig
from sql.models import Regrouped
from sql.render import connect

_FIRST, _OTHER_TOKENS = UNITS[:2], [u for u in UNITS[2:] if u.is_tokens]
#: Report columns, in order: DESIGN.md's first eight (team, model, invocations, input and output tokens and cost,
#: total), then the other billable units' counts and costs (tokens first), then the unpriced invocations.
COLUMNS: tuple[str, ...] = (
    "team_id", "model_id", "invocations", *(u.count_field for u in _FIRST), *(u.cost_column for u in _FIRST),
    "total_cost", *(u.count_field for u in _OTHER_TOKENS), *(u.cost_column for u in _OTHER_TOKENS),
    *(c for u in UNITS[2:] if not u.is_tokens for c in (u.count_field, u.cost_column)), "unpriced_invocations",
)
MONEY = COST_COLUMNS
_SUMMED = [c for c in COLUMNS if c not in ("team_id", "model_id")]


#: The per team × model rollup of usage rows: the mart that defines team_model_daily (one definition), grouped by
#: team and model and read from the usage rows of the UTC days only partly in the reporting days asked for.
_EDGE_ROLLUP = Regrouped(model="marts/team_model_daily", inputs={"usage_cost_day": "report_edge_rows"},
                         keys=("team_id", "model_id"))
_COLUMNS_SQL = ", ".join([*_SUMMED, "unpriced_dimensions"])
_REPORT_SQL = f"""
select team_id, model_id, {", ".join(f"sum({c}) as {c}" for c in _SUMMED)},
    string_agg(unpriced_dimensions, ',') as unpriced_dimensions
from (
    select team_id, model_id, {_COLUMNS_SQL} from team_model_daily
    where usage_date >= coalesce(?, usage_date) and usage_date <= coalesce(?, usage_date)
    union all
    select team_id, model_id, {_COLUMNS_SQL} from report_edges
) as days
group by team_id, model_id order by total_cost desc, team_id, model_id
"""


def utc_days(config: ReportingConfig, first: date | None, last: date | None
             ) -> tuple[tuple[date | None, date | None], tuple[date, ...]]:
    """How the reporting days ``first``…``last`` (None: open) fall on UTC days: the range of UTC days wholly
    inside them (empty when its first is after its last) and the UTC days only partly inside (none when the zone is
    UTC; otherwise the first and the last, whose usage rows are re-counted one by one)."""
    start, end = config.utc_window(first, last)
    partial: set[date] = set()
    full_first = full_last = None
    if start is not None:
        full_first = start.date() if start.time() == time() else start.date() + timedelta(days=1)
        if start.time() != time():
            partial.add(start.date())
    if end is not None:
        full_last = end.date() - timedelta(days=1)
        if end.time() != time():
            partial.add(end.date())
    return (full_first, full_last), tuple(sorted(partial))


def report_rows(*, lake: Lake, date_from: date | None = None, date_to: date | None = None,
                config: ReportingConfig | None = None) -> list[dict[str, Any]]:
    """Per team × model totals (``COLUMNS``) of the reporting days ``date_from``…``date_to`` (inclusive; None:
    open), most expensive first; money as ``Decimal``, the priced part, ``None`` when unpriced (see the module's
    docstring); ``unpriced_dimensions``: the dimensions some event used without a price (UNITS order).

    The UTC days wholly inside the range are read from the curated rollup ``team_model_daily``; the (at most two)
    UTC days at its ends that another time zone cuts are re-counted from their usage rows by local day
    (``usage_local``), so a report stays as fast as the rollup in any zone and equals ``team_model_daily_local``.

    Args:
        config: the reporting calendar (default: the environment's, ``ReportingConfig.from_env``); days are
            counted in its time zone.
    """
    config = config or ReportingConfig.from_env()
    (full_first, full_last), partial = utc_days(config, date_from, date_to)
    con = connect(lake=lake, config=config)
    try:
        edges = _edge_filter(partial, date_from, date_to)
        con.execute(f"create temp view report_edge_rows as select * from usage_local where {edges}")
        rollup = models.to_sql(_EDGE_ROLLUP.tree(), dialect="duckdb", config=config)
        con.execute(f"create temp view report_edges as {rollup}")
        rows = con.execute(_REPORT_SQL, [full_first, full_last]).fetchall()
    finally:
        con.close()
    return [_mark_unpriced({**{c: (Decimal(v) if c in MONEY else (int(v) if c in _SUMMED else v))
                               for c, v in zip(COLUMNS, row[:-1], strict=True)},
                            "unpriced_dimensions": _dimensions(row[-1])})
            for row in rows]


def _dimensions(text: str | None) -> tuple[str, ...]:
    """The catalog dimensions named in comma-separated lists (days' ``unpriced_dimensions`` joined), in UNITS
    order."""
    named = set((text or "").split(","))
    return tuple(d for d in DIMENSIONS if d in named)


def _mark_unpriced(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its unpriced amounts ``None``: a cost column whose dimension was used without a price and whose
    priced part is 0, and the total of a row whose events are all unpriced with a priced part of 0. (A dimension
    priced at exactly USD 0 beside usage of it without a price reads unpriced too: its gap is unknown.)"""
    unpriced = set(row["unpriced_dimensions"])
    for u in UNITS:
        if u.dimension in unpriced and not row[u.cost_column]:
            row[u.cost_column] = None
    if row["invocations"] and row["unpriced_invocations"] == row["invocations"] and not row["total_cost"]:
        row["total_cost"] = None
    return row


def _edge_filter(partial: tuple[date, ...], first: date | None, last: date | None) -> str:
    # date literals from date objects (never text from outside): a view cannot take parameters
    if not partial:
        return "false"
    days = ", ".join(f"date '{d.isoformat()}'" for d in partial)
    bounds = [f"usage_date in ({days})"]
    if first is not None:
        bounds.append(f"local_date >= date '{first.isoformat()}'")
    if last is not None:
        bounds.append(f"local_date <= date '{last.isoformat()}'")
    return " and ".join(bounds)


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals row: every count and priced amount summed exactly; an amount unpriced in the rows' sum as in a
    row (an unpriced amount adds nothing)."""
    out: dict[str, Any] = {"team_id": "TOTAL", "model_id": ""}
    for c in _SUMMED:
        out[c] = sum((r[c] or 0 for r in rows), Decimal(0) if c in MONEY else 0)
    unpriced = {d for r in rows for d in r.get("unpriced_dimensions", ())}
    out["unpriced_dimensions"] = tuple(d for d in DIMENSIONS if d in unpriced)
    return _mark_unpriced(out)


def money_text(value: Decimal) -> str:
    """Exact decimal text with at least two decimals: ``12.5`` → ``12.50``, ``0.000003`` stays as is."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


#: How the table shows an unpriced amount (CSV leaves the cell empty, JSON has null).
UNPRICED = "unpriced"


def text_cell(row: dict[str, Any], column: str, *, unpriced: str = UNPRICED) -> str:
    """A cell's text: exact money, ``unpriced`` for an unpriced amount (``None``), counts and ids as they are."""
    value = row[column]
    if column in MONEY:
        return unpriced if value is None else money_text(value)
    return str(value)


#: The table's columns by how much a reader needs them: what fits the terminal is shown, in COLUMNS' order.
PRIORITY: tuple[str, ...] = ("team_id", "model_id", "total_cost", "invocations", "input_tokens", "output_tokens",
                             "input_cost", "output_cost", "unpriced_invocations",
                             *(c for c in COLUMNS if c not in ("team_id", "model_id", "total_cost", "invocations",
                                                               "input_tokens", "output_tokens", "input_cost",
                                                               "output_cost", "unpriced_invocations")))
#: The narrowest a shortened id may get (``us.anthr…4-5-v1:0``), and how narrow it may get to make room for numbers.
MIN_ID_WIDTH = 16
COMFORT_ID_WIDTH = {"model_id": 30, "team_id": 18}


def shorten(text: str, width: int) -> str:
    """``text`` cut in the middle with ``…`` to ``width`` characters (model ids differ at both ends)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def fit_columns(rows: list[dict[str, Any]], *, width: int) -> tuple[tuple[str, ...], dict[str, int]]:
    """The columns that fit a terminal ``width`` wide (by :data:`PRIORITY`; team, model and total always, and
    ``unpriced_invocations`` whenever a row has some: its amounts are then lower bounds) and the widths the id
    columns are shortened to, so that no line is longer than ``width``.

    The ids may give up width (down to :data:`COMFORT_ID_WIDTH`) to make room for more numbers; what is left over
    goes back to them. Numbers are never cut."""
    cells = [*rows, totals(rows)]
    need = {c: max(len(c), *(len(text_cell(r, c)) for r in cells)) for c in COLUMNS}
    room = {c: min(need[c], COMFORT_ID_WIDTH.get(c, need[c])) for c in COLUMNS}
    chosen = list(PRIORITY[:3])
    if any(r["unpriced_invocations"] for r in rows):
        chosen.append("unpriced_invocations")
    for c in PRIORITY[3:]:
        if c not in chosen and sum(room[x] for x in [*chosen, c]) + 2 * len(chosen) <= width:
            chosen.append(c)
    spare = width - (sum(need[x] for x in chosen) + 2 * (len(chosen) - 1))
    ids: dict[str, int] = {}
    for c in ("model_id", "team_id"):  # the ids give up width first
        if spare < 0:
            ids[c] = max(MIN_ID_WIDTH, need[c] + spare)
            spare += need[c] - ids[c]
    return tuple(c for c in COLUMNS if c in chosen), ids


def format_table(rows: list[dict[str, Any]], *, columns: tuple[str, ...] = COLUMNS,
                 id_widths: dict[str, int] | None = None) -> str:
    """Aligned text table with a totals row (``columns``: a subset of :data:`COLUMNS`, team and model first);
    ``id_widths`` shortens those columns' text to fit (see :func:`fit_columns`)."""
    cut = id_widths or {}

    def cell(row: dict[str, Any], c: str) -> str:
        text = text_cell(row, c)
        return shorten(text, cut[c]) if c in cut else text

    body = [[cell(r, c) for c in columns] for r in rows]
    total = [cell(totals(rows), c) for c in columns]
    widths = [max(len(c), *(len(line[i]) for line in [*body, total])) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                         enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(columns)), rule, *(line(b) for b in body), rule, line(total)])



"""Named helpers for the few things Athena (Trino) and DuckDB spell differently.

The views in ``sql/views/*.sql`` are written once, in Athena's SQL, and call these helpers as pseudo-functions
(``mm_local_date(u.event_time)``). :func:`expand_helpers` replaces each call by the target engine's spelling before
sqlglot generates the SQL; everything else (CTEs, joins, window functions, ``count_if`` …) is left to sqlglot.
``tests/sql/test_dialect.py`` pins every helper's rendering in both engines and runs the DuckDB side.

Why helpers rather than trusting sqlglot for these:
- DuckDB's ``date_trunc`` and ``date + INTERVAL`` return TIMESTAMP, Trino's return DATE; the views need DATEs.
- DuckDB divides DECIMALs as DOUBLE (``1.5::DECIMAL(38,12) / 3`` is a DOUBLE); Trino keeps DECIMAL and rounds half
  up. Money must stay exact, so DuckDB's division is done on 128-bit integers of 10⁻¹² USD, rounded half up.
- Athena's ``timestamp`` columns carry no zone (they are UTC); DuckDB's are ``TIMESTAMP WITH TIME ZONE``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from common.constants import MONEY_PRECISION, MONEY_SCALE
from sql.config import ReportingConfig

Dialect = Literal["athena", "duckdb"]
DIALECTS: tuple[Dialect, ...] = ("athena", "duckdb")
PREFIX = "mm_"
MONEY_TYPE = f"DECIMAL({MONEY_PRECISION}, {MONEY_SCALE})"
_UNITS = 10**MONEY_SCALE  # 10⁻¹² USD per unit of a DECIMAL(38,12)


@dataclass(frozen=True)
class Helper:
    """One helper: its arity and its rendering ``render(args, dialect, config) -> SQL`` in the target dialect."""

    name: str
    arity: int
    render: Callable[[list[str], Dialect, ReportingConfig], str]
    doc: str


def _local_date(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    if d == "athena":  # Athena timestamps are zone-less UTC: attach UTC, then move to the reporting zone
        return f"CAST(AT_TIMEZONE(WITH_TIMEZONE({a[0]}, 'UTC'), '{c.timezone}') AS DATE)"
    return f"CAST(TIMEZONE('{c.timezone}', {a[0]}) AS DATE)"


def _month_start(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    trunc = f"DATE_TRUNC('MONTH', {a[0]})"
    return trunc if d == "athena" else f"CAST({trunc} AS DATE)"


def _add_days(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    if d == "athena":
        return f"DATE_ADD('DAY', {a[1]}, {a[0]})"
    return f"CAST({a[0]} + INTERVAL ({a[1]}) DAY AS DATE)"


def _add_months(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    if d == "athena":
        return f"DATE_ADD('MONTH', {a[1]}, {a[0]})"
    return f"CAST({a[0]} + INTERVAL ({a[1]}) MONTH AS DATE)"


def _days_between(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    return f"DATE_DIFF('DAY', {a[0]}, {a[1]})"


def _fiscal_month_start(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    offset = c.fiscal_month_start_day - 1
    if offset == 0:
        return _month_start(a, d, c)
    shifted = _add_days([a[0], str(-offset)], d, c)
    return _add_days([_month_start([shifted], d, c), str(offset)], d, c)


def _fiscal_month_end(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    next_start = _add_months([_fiscal_month_start(a, d, c), "1"], d, c)
    return _add_days([next_start, "-1"], d, c)


def _money(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    return f"CAST({a[0]} AS {MONEY_TYPE})"


def _money_div(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    num, den, per = f"CAST({a[0]} AS {MONEY_TYPE})", a[1], a[2]
    if d == "athena":  # Trino: DECIMAL / BIGINT stays DECIMAL(38,12), rounded half up
        return f"CASE WHEN {den} > 0 THEN CAST({num} * {per} / {den} AS {MONEY_TYPE}) END"
    units = f"CAST({num} * {_UNITS} AS HUGEINT) * {per}"
    rounded = f"SIGN({num}) * ((ABS({units}) * 2 + {den}) // ({den} * 2))"  # half up, away from zero
    return (f"CASE WHEN {den} > 0 THEN CAST({rounded} AS DECIMAL({MONEY_PRECISION}, 0)) "
            f"* CAST({1 / _UNITS:.{MONEY_SCALE}f} AS DECIMAL({MONEY_SCALE + 1}, {MONEY_SCALE})) END")


def _ratio(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    return f"CAST({a[0]} AS DOUBLE) / NULLIF(CAST({a[1]} AS DOUBLE), 0)"


HELPERS: dict[str, Helper] = {h.name: h for h in (
    Helper("mm_local_date", 1, _local_date, "DATE of a UTC timestamp in the reporting time zone."),
    Helper("mm_month_start", 1, _month_start, "First day of the calendar month of a DATE, as a DATE."),
    Helper("mm_add_days", 2, _add_days, "DATE plus an integer number of days, as a DATE."),
    Helper("mm_add_months", 2, _add_months, "DATE plus an integer number of months, as a DATE."),
    Helper("mm_days_between", 2, _days_between, "Whole days from the first DATE to the second."),
    Helper("mm_fiscal_month_start", 1, _fiscal_month_start, "First day of the fiscal month holding a DATE."),
    Helper("mm_fiscal_month_end", 1, _fiscal_month_end, "Last day of the fiscal month holding a DATE."),
    Helper("mm_money", 1, _money, "Cast to DECIMAL(38,12) USD."),
    Helper("mm_money_div", 3, _money_div,
           "Exact money division num × per ÷ den (den a positive integer), DECIMAL(38,12) rounded half up; "
           "NULL when den is not positive."),
    Helper("mm_ratio", 2, _ratio, "A plain ratio (not money) as DOUBLE; NULL when the divisor is 0."),
)}


def _innermost_call(tree: exp.Expr) -> exp.Anonymous | None:
    """A helper call whose arguments hold no other helper call (expanded first, so nesting works)."""
    for node in tree.find_all(exp.Anonymous):
        if node.name.lower().startswith(PREFIX) and not any(
                inner is not node and inner.name.lower().startswith(PREFIX) for inner in node.find_all(exp.Anonymous)):
            return node
    return None


# Arguments pasted into a template must keep their meaning whatever operator surrounds them: ``a + 1`` as the
# divisor must not become ``… / a + 1``. Atoms (columns, literals, calls, casts) need no parentheses.
_ATOMS = (exp.Column, exp.Literal, exp.Neg, exp.Func, exp.Cast, exp.Paren, exp.Null, exp.Boolean)


def _argument_sql(arg: exp.Expr, dialect: Dialect) -> str:
    sql = arg.sql(dialect=dialect)
    return sql if isinstance(arg, _ATOMS) else f"({sql})"


def render_helper(name: str, args: list[str], *, dialect: Dialect, config: ReportingConfig) -> str:
    """The SQL of one helper call with already-rendered argument SQL (used by the tests and by the expander).

    Raises:
        ValueError: unknown helper or wrong number of arguments.
    """
    helper = HELPERS.get(name.lower())
    if helper is None:
        raise ValueError(f"unknown SQL helper {name}(): known helpers are {', '.join(HELPERS)}")
    if len(args) != helper.arity:
        raise ValueError(f"{helper.name}() takes {helper.arity} argument(s), got {len(args)}")
    return helper.render(args, dialect, config)


def expand_helpers(tree: exp.Expr, *, dialect: Dialect, config: ReportingConfig) -> exp.Expr:
    """Replace every ``mm_…(…)`` call in ``tree`` (a copy is changed) by the target dialect's expression."""
    tree = tree.copy()
    while (call := _innermost_call(tree)) is not None:
        args = [_argument_sql(arg, dialect) for arg in call.expressions]
        sql = render_helper(call.name, args, dialect=dialect, config=config)
        replacement = sqlglot.parse_one(sql, read=dialect)
        if call is tree:
            return replacement
        call.replace(replacement)
    return tree

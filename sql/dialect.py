"""Named helpers for the few things Athena (Trino) and DuckDB spell differently: the one helper table of ``sql/``.

Every model (``sql/staging``, ``sql/marts``, ``sql/views``) calls these as pseudo-functions
(``mm_local_date(u.event_time)``); :func:`expand_helpers` replaces each call by the target engine's spelling before
sqlglot generates the SQL (:func:`sql.models.render`); everything else (CTEs, joins, window functions,
``count_if`` …) is left to sqlglot. A name means one thing in every layer. ``tests/sql/test_dialect.py`` pins every
helper's rendering in both engines and runs the DuckDB side.

Why helpers rather than trusting sqlglot for these:
- DuckDB's ``date_trunc`` and ``date + INTERVAL`` return TIMESTAMP, Trino's return DATE; the views need DATEs.
- DuckDB divides DECIMALs as DOUBLE (``1.5::DECIMAL(38,12) / 3`` is a DOUBLE); Trino keeps DECIMAL and rounds half
  up. Money must stay exact, so DuckDB's division is done on 128-bit integers of 10⁻¹² USD, rounded half up.
- Athena's ``timestamp`` columns carry no zone (they are UTC); DuckDB's are ``TIMESTAMP WITH TIME ZONE``.
- Pico-dollars to USD: an 18-digit decimal product, which DuckDB computes ~60x faster than DECIMAL(38,x)
  arithmetic (measured); spelled out so both engines compute the same exact value.
- A 64-bit hash has a different name (and function) in each engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from common.constants import MONEY_PRECISION, MONEY_SCALE
from sql.config import ReportingConfig

Dialect = Literal["athena", "duckdb", "spark"]
#: The engines every helper is pinned for. ``spark`` (the Spark transform engine, transforms/spark_engine.py) renders
#: only the transform's models: their helpers are pinned for it in tests/transform/test_spark_engine.py.
DIALECTS: tuple[Dialect, ...] = ("athena", "duckdb")
PREFIX = "mm_"
MONEY_TYPE = f"DECIMAL({MONEY_PRECISION}, {MONEY_SCALE})"
_UNITS = 10**MONEY_SCALE  # 10⁻¹² USD per unit of a DECIMAL(38,12)


@dataclass(frozen=True)
class Helper:
    """One helper: its arity and its rendering ``render(args, dialect, config) -> SQL`` in the target dialect.

    ``needs_config``: the rendering depends on the reporting configuration (time zone, fiscal month start), which
    must then be given; the others render the same whatever it is."""

    name: str
    arity: int
    render: Callable[[list[str], Dialect, ReportingConfig], str]
    doc: str
    needs_config: bool = False


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


def _utc_date(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    # Athena: zone-less timestamps are UTC; DuckDB: TIMESTAMPTZ cast in the session's zone, which every connection
    # of ours sets to UTC (transforms.run.connect, sql.render.connect)
    return f"CAST({a[0]} AS DATE)"


def _hash64(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    if d == "athena":  # Trino hashes bytes: the value as JSON text
        return f"FROM_BIG_ENDIAN_64(XXHASH64(TO_UTF8(JSON_FORMAT(CAST({a[0]} AS JSON)))))"
    if d == "spark":  # Spark's HASH is 32-bit murmur3: too many collisions for a pre-grouping key
        return f"XXHASH64({a[0]})"
    return f"HASH({a[0]})"


def _money(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    return f"CAST({a[0]} AS {MONEY_TYPE})"


def _pico_to_money(a: list[str], d: Dialect, c: ReportingConfig) -> str:
    # exact: every BIGINT of pico-dollars below 10^18 fits DECIMAL(18,0), and the product has 12 decimals
    return (f"CAST(CAST({a[0]} AS DECIMAL(18, 0)) * CAST({1 / _UNITS:.{MONEY_SCALE}f} AS DECIMAL(18, {MONEY_SCALE}))"
            f" AS {MONEY_TYPE})")


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
    Helper("mm_utc_date", 1, _utc_date, "UTC calendar DATE of a timestamp (the curated usage_date)."),
    Helper("mm_local_date", 1, _local_date, "DATE of a UTC timestamp in the reporting time zone.",
           needs_config=True),
    Helper("mm_month_start", 1, _month_start, "First day of the calendar month of a DATE, as a DATE."),
    Helper("mm_add_days", 2, _add_days, "DATE plus an integer number of days, as a DATE."),
    Helper("mm_add_months", 2, _add_months, "DATE plus an integer number of months, as a DATE."),
    Helper("mm_days_between", 2, _days_between, "Whole days from the first DATE to the second."),
    Helper("mm_fiscal_month_start", 1, _fiscal_month_start, "First day of the fiscal month holding a DATE.",
           needs_config=True),
    Helper("mm_fiscal_month_end", 1, _fiscal_month_end, "Last day of the fiscal month holding a DATE.",
           needs_config=True),
    Helper("mm_hash64", 1, _hash64, "64-bit hash of a value, for cheap pre-grouping before an exact comparison "
           "(the value differs between engines)."),
    Helper("mm_money", 1, _money, "Cast to DECIMAL(38,12) USD."),
    Helper("mm_pico_to_money", 1, _pico_to_money,
           "Whole pico-dollars (BIGINT, 10⁻¹² USD) as DECIMAL(38,12) USD, exactly."),
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


def render_helper(name: str, args: list[str], *, dialect: Dialect, config: ReportingConfig | None) -> str:
    """The SQL of one helper call with already-rendered argument SQL (used by the tests and by the expander).

    Raises:
        ValueError: unknown helper, wrong number of arguments, or no ``config`` for a helper that needs it.
    """
    helper = HELPERS.get(name.lower())
    if helper is None:
        raise ValueError(f"unknown SQL helper {name}(): known helpers are {', '.join(HELPERS)}")
    if len(args) != helper.arity:
        raise ValueError(f"{helper.name}() takes {helper.arity} argument(s), got {len(args)}")
    if config is None:
        if helper.needs_config:
            raise ValueError(f"{helper.name}() depends on the reporting configuration, and none was given")
        config = ReportingConfig()  # not read by this helper
    return helper.render(args, dialect, config)


def expand_helpers(tree: exp.Expr, *, dialect: Dialect, config: ReportingConfig | None) -> exp.Expr:
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

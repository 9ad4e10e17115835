"""The value rules of schema v1 (``common.contracts.value_rules``, one list) as SQL, as Great Expectations and as
a proof from Parquet footer statistics.

Each :class:`Rule` carries the SQL condition of a *problem* (true = the row breaks the rule), the SQL message put in
the quarantine row (worded like :func:`common.contracts.value_problems`), the Great Expectations expectation that
checks the same thing, and what it checks as data (``check`` and its values or bounds), from which
:meth:`Rule.proven_by` decides whether a row group's min/max/null-count statistics already prove that no row of it
breaks the rule. The staging models render the conditions; :mod:`transforms.validate` builds the GX suite;
:mod:`transforms.proofs` applies the proofs to each row group of the day's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from common.contracts import MAX_FUTURE_SKEW, ValueRule, value_rules

#: Staging column holding, per row, every value its file stored that does not cast exactly to the contract type
#: (``input_tokens: '12k' is not a valid integer``; ``; ``-joined), NULL when there is none (transforms/inputs.py).
CAST_PROBLEMS = "cast_problems"
#: DESIGN.md: ``status`` ``unknown`` means the call reached the provider but its outcome was never learned: the
#: gateway's crash placeholder (same event_id, estimated counts). Any other copy of the event replaces it in dedupe.
PLACEHOLDER_STATUS = "unknown"
#: What a value of each kind must be, as the reason of a value that does not cast says it.
_CAST_EXPECTED = {"int": "a valid 32-bit integer", "bigint": "a valid integer",
                  "bool": "a valid boolean (true or false)", "timestamp": "a valid timestamp with a UTC offset",
                  "string": "a valid string"}


@dataclass(frozen=True)
class Rule:
    """One value rule.

    Attributes:
        name: short id (``<column>_<check>``), also the key of its count in the run manifest.
        column: the checked column.
        problem_sql: SQL boolean, true when the row breaks the rule (NULL counts as no problem).
        message_sql: SQL string expression: the reason, as the quarantine row states it.
        expectation: GX expectation class name (``ExpectColumnValuesToNotBeNull`` …).
        kwargs: GX expectation arguments besides ``column``.
        check: what the rule checks (``common.contracts.ValueRule.check``, or ``null`` for the cast rule): the
            statistics rendering (:meth:`proven_by`) reads it with ``values``, ``low``, ``high`` and ``high_strict``.
        values: the accepted values (``known_version``, ``allowed``).
        low: the smallest value allowed (inclusive), or None.
        high: the largest value allowed (inclusive, exclusive when ``high_strict``), or None.
    """

    name: str
    column: str
    problem_sql: str
    message_sql: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    check: str = ""
    values: tuple[Any, ...] = ()
    low: Any = None
    high: Any = None
    high_strict: bool = False

    def proven_by(self, stats: ColumnStats | None) -> bool:
        """True when ``stats`` (of the staged column over one row group) prove no row breaks the rule; False when
        they do not (no statistics, or values the bounds cannot rule out): the row group is then checked row by row.

        The same semantics as ``problem_sql``: a NULL breaks no rule but ``present``."""
        if stats is None or not self.check:
            return False
        if stats.rows == 0:
            return True
        if self.check == "present":
            return stats.nulls == 0
        if stats.nulls == stats.rows:  # every value NULL: no problem for any other check
            return True
        if self.check == "null" or stats.min is None or stats.max is None:
            return False
        lo, hi = stats.min, stats.max
        if self.check == "not_empty":
            return bool(lo)  # the smallest value is not '' (a truncated minimum is still a lower bound)
        if self.check in ("known_version", "allowed"):
            # lower bound == upper bound: every value is that one (whether or not the writer truncated them)
            return lo == hi and lo in self.values
        if self.low is not None and not lo >= self.low:
            return False
        return self.high is None or (hi < self.high if self.high_strict else hi <= self.high)


@dataclass(frozen=True)
class ColumnStats:
    """What a Parquet footer says about one staged column in one row group: rows, NULLs, and bounds.

    Attributes:
        rows: rows of the row group.
        nulls: how many of them are NULL in the staged column (after the contract default is applied).
        min, max: a lower and an upper bound of the non-NULL values (None when the footer has none).
    """

    rows: int
    nulls: int
    min: Any = None
    max: Any = None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    return f"timestamptz '{value.isoformat()}'"


def cast_message_sql(column: str, kind: str, value_sql: str) -> str:
    """SQL string: why a value stored in ``column`` (as text: ``value_sql``) is refused for contract ``kind``."""
    return f"'{column}: ' || {value_sql} || ' is not {_CAST_EXPECTED[kind]}'"


def rules(*, day: date, now: datetime) -> list[Rule]:
    """Every rule for the events of partition ``dt=day``, checked at ``now`` (an aware UTC datetime): the
    transform's own cast rule, then :func:`common.contracts.value_rules` rendered as SQL and expectations."""
    # first, so its reason leads: a value that did not cast is NULL (or the default) in every later rule
    out = [Rule("values_cast_exactly", CAST_PROBLEMS, f"{CAST_PROBLEMS} is not null", CAST_PROBLEMS,
                "ExpectColumnValuesToBeNull", check="null")]
    return out + [_render(rule, day=day, now=now) for rule in value_rules()]


def _render(rule: ValueRule, *, day: date, now: datetime) -> Rule:
    """One contract rule as SQL (problem and message, worded like ``ValueRule.problem``) and as an expectation."""
    c, check = rule.column, rule.check
    if check == "known_version":
        known = rule.values[0]
        return Rule(rule.name, c, f"{c} <> {known}",
                    f"'unknown schema_version ' || {c} || ' (this reader knows {known})'",
                    "ExpectColumnValuesToBeInSet", {"value_set": list(rule.values)}, check, tuple(rule.values))
    if check == "present":
        return Rule(rule.name, c, f"{c} is null", _quote(f"{c} is missing"), "ExpectColumnValuesToNotBeNull",
                    check=check)
    if check == "not_empty":
        # ingest also refuses whitespace-only values; trim() per row costs ~1 s per 10 M. "not in {''}" rather than
        # a length rule: GX bundles set rules into the same single aggregate scan as the null and range rules,
        # while length rules cost it a second scan (measured)
        return Rule(rule.name, c, f"{c} = ''", _quote(f"{c} is empty"), "ExpectColumnValuesToNotBeInSet",
                    {"value_set": [""]}, check)
    if check == "allowed":
        values = ", ".join(_quote(v) for v in rule.values)
        message = "'" + c + " ''' || " + c + " || ''' is not one of " + ", ".join(rule.values) + "'"
        return Rule(rule.name, c, f"{c} not in ({values})", message, "ExpectColumnValuesToBeInSet",
                    {"value_set": list(rule.values)}, check, tuple(rule.values))
    if check == "minimum":
        return Rule(rule.name, c, f"{c} < {rule.bound}", f"'{c} ' || {c} || ' is negative'",
                    "ExpectColumnValuesToBeBetween", {"min_value": rule.bound}, check, low=rule.bound)
    if check == "maximum":
        return Rule(rule.name, c, f"{c} > {rule.bound}",
                    f"'{c} ' || {c} || ' is more than {rule.bound} (no single request has that many)'",
                    "ExpectColumnValuesToBeBetween", {"max_value": rule.bound}, check, high=rule.bound)
    time_text = f"strftime({c}, '%Y-%m-%dT%H:%M:%S.%gZ')"
    if check == "not_future":
        latest = now + MAX_FUTURE_SKEW
        return Rule(rule.name, c, f"{c} > {_ts(latest)}",
                    f"'{c} ' || {time_text} || ' is more than a day in the future'",
                    "ExpectColumnValuesToBeBetween", {"max_value": latest}, check, high=latest)
    if check == "in_partition":
        # Firehose partitions by event_time, so a row outside its dt= folder was misfiled; pricing it under another
        # day would make the day's totals lie, so it is set aside, named.
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)  # dt= partitions are UTC days (as in Python)
        end = start + timedelta(days=1)
        return Rule(rule.name, c, f"({c} < {_ts(start)} or {c} >= {_ts(end)})",
                    f"'{c} ' || {time_text} || ' is not in partition dt={day.isoformat()}'",
                    "ExpectColumnValuesToBeBetween", {"min_value": start, "max_value": end, "strict_max": True},
                    check, low=start, high=end, high_strict=True)
    raise ValueError(f"no SQL rendering of rule check {check!r}")


def invalid_sql(rule_list: list[Rule]) -> str:
    """SQL ``where`` condition: the row breaks some rule (a NULL problem counts as none, as ``where`` treats it)."""
    return "\n        or ".join(f"({r.problem_sql})" for r in rule_list)


def reason_sql(rule_list: list[Rule]) -> str:
    """SQL string: every broken rule's message, joined with ``; `` (as ingest joins its problems)."""
    parts = ",\n        ".join(f"case when {r.problem_sql} then {r.message_sql} end" for r in rule_list)
    return f"concat_ws('; ',\n        {parts})"

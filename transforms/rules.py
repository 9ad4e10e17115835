"""The value rules of schema v1 as SQL, derived from ``common.contracts.FIELDS``: one list, two uses.

Each :class:`Rule` carries the SQL condition of a *problem* (true = the row breaks the rule), the SQL message put in
the quarantine row (worded like :func:`common.contracts.value_problems`), and the Great Expectations expectation that
checks the same thing. The staging model renders the conditions; :mod:`transforms.validate` builds the GX suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from common.contracts import FIELDS, MAX_FUTURE_SKEW, SCHEMA_VERSION

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
    """

    name: str
    column: str
    problem_sql: str
    message_sql: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    return f"timestamptz '{value.isoformat()}'"


def cast_message_sql(column: str, kind: str, value_sql: str) -> str:
    """SQL string: why a value stored in ``column`` (as text: ``value_sql``) is refused for contract ``kind``."""
    return f"'{column}: ' || {value_sql} || ' is not {_CAST_EXPECTED[kind]}'"


def rules(*, day: date, now: datetime) -> list[Rule]:
    """Every rule for the events of partition ``dt=day``, checked at ``now`` (an aware UTC datetime)."""
    # first, so its reason leads: a value that did not cast is NULL (or the default) in every later rule
    out = [Rule("values_cast_exactly", CAST_PROBLEMS, f"{CAST_PROBLEMS} is not null", CAST_PROBLEMS,
                "ExpectColumnValuesToBeNull"),
           Rule("schema_version_known", "schema_version", f"schema_version <> {SCHEMA_VERSION}",
                f"'unknown schema_version ' || schema_version || ' (this reader knows {SCHEMA_VERSION})'",
                "ExpectColumnValuesToBeInSet", {"value_set": [SCHEMA_VERSION]})]
    for f in FIELDS:
        c = f.name
        if f.required:
            out.append(Rule(f"{c}_present", c, f"{c} is null", _quote(f"{c} is missing"),
                            "ExpectColumnValuesToNotBeNull"))
            if f.kind == "string":  # ingest also refuses whitespace-only values; trim() per row costs ~1 s per 10 M
                # "not in {''}" rather than a length rule: GX bundles set rules into the same single aggregate
                # scan as the null and range rules, while length rules cost it a second scan (measured)
                out.append(Rule(f"{c}_not_empty", c, f"{c} = ''", _quote(f"{c} is empty"),
                                "ExpectColumnValuesToNotBeInSet", {"value_set": [""]}))
        if f.allowed:
            values = ", ".join(_quote(v) for v in f.allowed)
            out.append(Rule(f"{c}_allowed", c, f"{c} not in ({values})",
                            f"'{c} ''' || {c} || ''' is not one of {', '.join(f.allowed)}'",
                            "ExpectColumnValuesToBeInSet", {"value_set": list(f.allowed)}))
        if f.minimum is not None:
            out.append(Rule(f"{c}_not_negative", c, f"{c} < {f.minimum}", f"'{c} ' || {c} || ' is negative'",
                            "ExpectColumnValuesToBeBetween", {"min_value": f.minimum}))
        if f.maximum is not None:
            out.append(Rule(f"{c}_not_too_large", c, f"{c} > {f.maximum}",
                            f"'{c} ' || {c} || ' is more than {f.maximum} (no single request has that many)'",
                            "ExpectColumnValuesToBeBetween", {"max_value": f.maximum}))
    day_start = datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)
    latest = now + MAX_FUTURE_SKEW
    time_text = "strftime(event_time, '%Y-%m-%dT%H:%M:%S.%gZ')"
    out.append(Rule("event_time_not_future", "event_time", f"event_time > {_ts(latest)}",
                    f"'event_time ' || {time_text} || ' is more than a day in the future'",
                    "ExpectColumnValuesToBeBetween", {"max_value": latest}))
    # Firehose partitions by event_time, so a row outside its dt= folder was misfiled; pricing it under another
    # day would make the day's totals lie, so it is set aside, named.
    out.append(Rule("event_time_in_partition", "event_time",
                    f"(event_time < {_ts(day_start)} or event_time >= {_ts(day_start + timedelta(days=1))})",
                    f"'event_time ' || {time_text} || ' is not in partition dt={day.isoformat()}'",
                    "ExpectColumnValuesToBeBetween",
                    {"min_value": day_start, "max_value": day_start + timedelta(days=1), "strict_max": True}))
    return out


def invalid_sql(rule_list: list[Rule]) -> str:
    """SQL ``where`` condition: the row breaks some rule (a NULL problem counts as none, as ``where`` treats it)."""
    return "\n        or ".join(f"({r.problem_sql})" for r in rule_list)


def reason_sql(rule_list: list[Rule]) -> str:
    """SQL string: every broken rule's message, joined with ``; `` (as ingest joins its problems)."""
    parts = ",\n        ".join(f"case when {r.problem_sql} then {r.message_sql} end" for r in rule_list)
    return f"concat_ws('; ',\n        {parts})"

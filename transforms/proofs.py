"""Which rules the day's Parquet footers prove, per row group, and the SQL that checks the rest row by row.

Each raw file's footer holds, per row group and column, the row count, the NULL count and a lower and an upper
bound of the values. :meth:`transforms.rules.Rule.proven_by` (the rule list's statistics rendering) decides from
them whether a row group can hold a row breaking the rule: ``input_tokens`` whose minimum is 0 breaks no
"not negative" rule; a ``provider`` column whose bounds are both ``bedrock`` holds only an allowed value. What the
statistics do not prove is checked row by row by the rule's SQL (:func:`DayProofs.unproven_sql`): a rule unproven
in any row group is checked in every row of the day (a superset; see there why). Statistics are used only for
columns stored in the contract's own type (read as is); a cast column, and the cast rule of a file that needs
casts, are always checked row by row.

Every row is thus validated against every rule, by its statistics or by SQL; the rows SQL finds broken are the
day's invalid rows, and Great Expectations checks them and a sample (``transforms/validate.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.contracts import BY_NAME
from transforms.inputs import InputFile
from transforms.rules import CAST_PROBLEMS, ColumnStats, Rule


@dataclass
class DayProofs:
    """Per file, the rules its footer does not prove for every row group; per rule, the row groups it proves."""

    rules: list[Rule]
    unproven: list[frozenset[str]] = field(default_factory=list)  # by file index: rule names to check row by row
    proven_row_groups: dict[str, int] = field(default_factory=dict)
    row_groups: int = 0

    @property
    def rules_row_by_row(self) -> list[str]:
        """The rules some row group's statistics did not prove, in rule order: checked row by row in SQL."""
        names = frozenset().union(*self.unproven) if self.unproven else frozenset()
        return [r.name for r in self.rules if r.name in names]

    def unproven_sql(self) -> str:
        """SQL ``where`` condition over ``stg_usage_events``: the row breaks a rule that the statistics of some row
        group did not prove (``false`` when they proved every rule everywhere).

        The condition is the same for every file: naming files in it (``source_file in (…) and …``) kept DuckDB
        from pushing it into the scan of each file, which cost 5× the pass (measured). So a rule unproven in one
        row group is checked row by row in every file; one proven everywhere is never read."""
        names = set(self.rules_row_by_row)
        problems = [f"({scan_sql(r)})" for r in self.rules if r.name in names]
        return "(" + "\n        or ".join(problems) + ")" if problems else "false"

    def as_dict(self) -> dict[str, Any]:
        """For the run manifest: row groups in all, and per rule the row groups its statistics proved."""
        return {"row_groups": self.row_groups, "rules_checked_row_by_row": self.rules_row_by_row,
                "proven_row_groups": {r.name: self.proven_row_groups.get(r.name, 0) for r in self.rules}}


def scan_sql(rule: Rule) -> str:
    """``rule.problem_sql`` as the pass over every row evaluates it cheapest in DuckDB, true for the same rows.

    Inside the ``or`` of :meth:`DayProofs.unproven_sql`, DuckDB turns each ``c not in ('a', …)`` of an
    allowed-set rule into a mark join carrying every column of every row; ``list_contains`` stays a plain
    expression (NULL for a NULL value, as ``not in`` gives: no problem). Measured at 10 M events: the suspects pass
    ~1.4 CPU-s less (of ~6). Only this pass reads it: the quarantine reasons and counts keep ``problem_sql``."""
    if rule.check != "allowed" or not rule.values:
        return rule.problem_sql
    listed = ", ".join("'" + str(v).replace("'", "''") + "'" for v in rule.values)
    return f"not list_contains([{listed}], {rule.column})"


def prove(files: Iterable[InputFile], rules: list[Rule]) -> DayProofs:
    """Apply every rule's statistics rendering to every row group of ``files`` (in the order of ``source_file``)."""
    proofs = DayProofs(rules=rules)
    for file in files:
        unproven: set[str] = set()
        for group in _row_group_stats(file):
            proofs.row_groups += 1
            for rule in rules:
                if rule.proven_by(group.get(rule.column)):
                    proofs.proven_row_groups[rule.name] = proofs.proven_row_groups.get(rule.name, 0) + 1
                else:
                    unproven.add(rule.name)
        if file.metadata is None:  # no footer to read: every rule row by row
            unproven = {r.name for r in rules}
        proofs.unproven.append(frozenset(unproven))
    return proofs


def _row_group_stats(file: InputFile) -> list[dict[str, ColumnStats | None]]:
    """Per row group, each staged column's statistics (None when the footer cannot tell)."""
    meta = file.metadata
    if meta is None:
        return []
    index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    no_cast = file.needs_no_cast
    out = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows = group.num_rows
        stats: dict[str, ColumnStats | None] = {CAST_PROBLEMS: ColumnStats(rows, rows) if no_cast else None}
        for name, f in BY_NAME.items():
            if name not in file.schema.names:
                stored: ColumnStats | None = ColumnStats(rows, rows)  # absent: NULL in every row
            elif file.stored_as_contract(name) and name in index:
                stored = _stored(group.column(index[name]).statistics, rows)
            else:
                stored = None  # cast from another type: checked row by row
            stats[name] = _defaulted(stored, f.default)
        out.append(stats)
    return out


def _stored(st: Any, rows: int) -> ColumnStats | None:
    if st is None or not st.has_null_count:
        return None
    if not st.has_min_max:
        return ColumnStats(rows, st.null_count)
    return ColumnStats(rows, st.null_count, st.min, st.max)


def _defaulted(stats: ColumnStats | None, default: Any) -> ColumnStats | None:
    """The staged column's statistics: an optional field with a default takes it where the file has NULL."""
    if stats is None or default is None or stats.nulls == 0:
        return stats
    if stats.nulls == stats.rows:
        return ColumnStats(stats.rows, 0, default, default)
    if stats.min is None or stats.max is None:
        return ColumnStats(stats.rows, 0)
    return ColumnStats(stats.rows, 0, min(stats.min, default), max(stats.max, default))

"""The SQL models the transform executes: ``staging/*.sql`` → ``marts/*.sql``, one model per file.

A model is a ``select`` (CTEs ending in ``select * from final``) over relations named like other models; the
transform creates each as a DuckDB view (or table) under its file name. ``{{ name }}`` placeholders are filled
from Python: fragments derived from the event schema (columns, validation rules) and run parameters (quoted
literals). Engine-specific functions live in ``staging/_macros.sql`` as small ``mm_*`` helpers.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent
MACROS = "staging/_macros"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@cache
def source(name: str) -> str:
    """The text of model ``name`` (``"staging/stg_usage_events"``, ``"marts/usage_cost"`` …)."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def placeholders(name: str) -> set[str]:
    """The ``{{ … }}`` names model ``name`` expects."""
    return set(_PLACEHOLDER.findall(source(name)))


def render(name: str, **params: str) -> str:
    """Model ``name`` with every placeholder filled.

    Raises:
        KeyError: a placeholder has no value (a typo in a model or a missing parameter), naming both.
    """
    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in params:
            raise KeyError(f"sql/{name}.sql needs {{{{ {key} }}}}, which was not given")
        return params[key]

    return _PLACEHOLDER.sub(fill, source(name))


def literal(value: str | None) -> str:
    """A SQL string literal (or NULL)."""
    return "null" if value is None else "'" + value.replace("'", "''") + "'"


def model_names() -> list[str]:
    """Every model, staging first (the order the transform runs them)."""
    names = [p.relative_to(SQL_DIR).with_suffix("").as_posix() for p in sorted(SQL_DIR.glob("*/*.sql"))]
    return [n for n in names if n.startswith(("staging/", "marts/")) and not n.rsplit("/", 1)[1].startswith("_")]

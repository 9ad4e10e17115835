"""Every SQL model of modelmeter, and the one way they are rendered for an engine.

Three layers, one model per file: ``staging/*.sql`` → ``marts/*.sql`` are the transform (DuckDB runs them in that
order, each created as a view or table under its file name); ``views/*.sql`` are what people read (Athena and DuckDB
alike, ordered in :mod:`sql.render`). Each model is a ``select`` (CTEs ending in ``select * from final``) over
relations named like other models. Rendering is the same for all three (:func:`render`):

1. ``{{ name }}`` placeholders are filled with SQL text: the fragments that depend on the billable units
   (:data:`sql.fragments.FRAGMENTS`: ``{{ count_sums }}`` …, so a new unit needs no SQL edit), then run parameters
   (quoted literals, the transform's rule conditions);
2. sqlglot parses the result in the layer's source dialect (:data:`SOURCE_DIALECTS`);
3. every ``mm_*`` helper call is replaced by the target engine's spelling (:data:`sql.dialect.HELPERS`, one table
   for every layer);
4. sqlglot writes the target engine's SQL.

A model may also be another model read from other relations and grouped by other keys (:class:`Regrouped`): the
view ``team_model_daily_local`` is the mart ``team_model_daily``, so the rollup is defined once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp

from sql.config import ReportingConfig
from sql.dialect import Dialect, expand_helpers
from sql.fragments import FRAGMENTS

SQL_DIR = Path(__file__).resolve().parent
#: The dialect each layer is written in. Marts and views are Athena (Trino) SQL: they define what finance reads and
#: render for both engines. Staging is DuckDB SQL: it reads the engine's own file rows, hashes and serialises whole
#: rows (``struct_pack``, ``to_json``) with the rule conditions of ``transforms/rules.py``, and only the DuckDB
#: transform runs it.
SOURCE_DIALECTS: dict[str, Dialect] = {"staging": "duckdb", "marts": "athena", "views": "athena"}
#: The transform's engine: the default target of :func:`render`.
ENGINE: Dialect = "duckdb"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@cache
def source(name: str) -> str:
    """The text of model ``name`` (``"staging/stg_usage_events"``, ``"marts/usage_cost"``, ``"views/daily_trend"``)."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def source_dialect(name: str) -> Dialect:
    """The dialect model ``name`` is written in (its layer's)."""
    layer = name.split("/", 1)[0]
    if layer not in SOURCE_DIALECTS:
        raise ValueError(f"unknown model {name!r}: models are named <layer>/<file>, the layers are "
                         f"{', '.join(SOURCE_DIALECTS)}")
    return SOURCE_DIALECTS[layer]


def placeholders(name: str) -> set[str]:
    """The ``{{ … }}`` names model ``name`` expects as parameters (the fragments are filled in by themselves)."""
    return set(_PLACEHOLDER.findall(source(name))) - set(FRAGMENTS)


def fill(name: str, **params: str) -> str:
    """Model ``name``'s text with every placeholder filled (a parameter wins over a fragment of the same name).

    Raises:
        KeyError: a placeholder has no value (a typo in a model or a missing parameter), naming both.
    """
    values = {**FRAGMENTS, **params}

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"sql/{name}.sql needs {{{{ {key} }}}}, which was not given")
        return values[key]

    return _PLACEHOLDER.sub(one, source(name))


def parse(name: str, **params: str) -> exp.Expr:
    """Model ``name`` filled and parsed in its source dialect; its ``mm_*`` helpers not yet expanded."""
    return sqlglot.parse_one(fill(name, **params), read=source_dialect(name))


def to_sql(tree: exp.Expr, *, dialect: Dialect, config: ReportingConfig | None = None, pretty: bool = False) -> str:
    """A parsed model (or any tree using the helpers) as ``dialect``'s SQL, helpers expanded.

    ``config`` is needed only by helpers that depend on the reporting calendar (the views'); the transform's models
    use none."""
    return expand_helpers(tree, dialect=dialect, config=config).sql(dialect=dialect, pretty=pretty)


def render(name: str, *, dialect: Dialect = ENGINE, config: ReportingConfig | None = None, pretty: bool = False,
           **params: str) -> str:
    """Model ``name`` rendered for ``dialect`` (default: the transform's DuckDB), placeholders filled from
    ``params`` and the fragments.

    Raises:
        KeyError: a placeholder has no value.
    """
    return _rendered(name, dialect, config, pretty, tuple(sorted(params.items())))


@lru_cache(maxsize=256)
def _rendered(name: str, dialect: Dialect, config: ReportingConfig | None, pretty: bool,
              params: tuple[tuple[str, str], ...]) -> str:
    # a transform of many days renders the same models with the same parameters each day: parse them once
    return to_sql(parse(name, **dict(params)), dialect=dialect, config=config, pretty=pretty)


def render_sql(sql: str, *, read: Dialect = ENGINE, dialect: Dialect = ENGINE,
               config: ReportingConfig | None = None) -> str:
    """Any SQL text using the fragments and helpers (a query of a test, say), rendered like a model."""
    text = _PLACEHOLDER.sub(lambda m: FRAGMENTS[m.group(1)], sql)
    return to_sql(sqlglot.parse_one(text, read=read), dialect=dialect, config=config)


def literal(value: str | None) -> str:
    """A SQL string literal (or NULL)."""
    return "null" if value is None else "'" + value.replace("'", "''") + "'"


def model_names() -> list[str]:
    """Every model of the transform, staging first (the order the transform runs them)."""
    names = [p.relative_to(SQL_DIR).with_suffix("").as_posix() for p in sorted(SQL_DIR.glob("*/*.sql"))]
    return [n for n in names if n.startswith(("staging/", "marts/"))]


# --- one model, other inputs and keys ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Regrouped:
    """Model ``model`` read from other relations (``inputs``: its relation → another) and grouped by ``keys``
    instead of its own.

    The model's ``final`` CTE must be a ``group by`` whose select list starts with its group keys (the models'
    ``-- keys`` block): those are replaced by ``keys``, in both places; every measure is kept as written.
    """

    model: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] = ()

    def tree(self, **params: str) -> exp.Expr:
        """The regrouped model, parsed (helpers not yet expanded)."""
        tree = exp.replace_tables(parse(self.model, **params), dict(self.inputs))
        final = _final_select(tree, self.model)
        group = final.args.get("group")
        if group is None:
            raise ValueError(f"sql/{self.model}.sql: its final select has no group by to regroup")
        old = [key.sql(comments=False) for key in group.expressions]
        leading = [column.sql(comments=False) for column in final.expressions[:len(old)]]
        if leading != old:
            raise ValueError(f"sql/{self.model}.sql: the final select must start with its group keys {old}, "
                             f"it starts with {leading}")
        keys = [exp.column(k) for k in self.keys]
        keys[0].add_comments(final.expressions[0].comments)  # the "-- keys" heading
        final.set("expressions", keys + final.expressions[len(old):])
        final.set("group", exp.Group(expressions=[exp.column(k) for k in self.keys]))
        return tree


def _final_select(tree: exp.Expr, name: str) -> exp.Select:
    for cte in tree.find_all(exp.CTE):
        if cte.alias == "final" and isinstance(cte.this, exp.Select):
            return cte.this
    raise ValueError(f"sql/{name}.sql has no final CTE")

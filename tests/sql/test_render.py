"""Rendering: every view for both engines, Athena's parser accepts them, dependency order, the CLI prints them."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from common.constants import ENV_FISCAL_MONTH_START, ENV_REPORTING_TZ
from modelmeter.cli import main
from sql import models
from sql.config import ReportingConfig
from sql.render import VIEWS, render_view, render_views, source_tree, table_sources, views

CONFIG = ReportingConfig(timezone="America/Los_Angeles", fiscal_month_start_day=15)


def test_views_are_listed_in_dependency_order() -> None:
    known = set(table_sources())
    for name in views():
        tree = source_tree(name)
        ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
        read = {t.name for t in tree.find_all(exp.Table)} - ctes
        assert read <= known, f"{name} reads {read - known} before they are defined"
        known.add(name)
    assert len(set(views())) == len(views()) == 15


@pytest.mark.parametrize("dialect", ["athena", "duckdb"])
def test_every_view_renders_as_create_or_replace_and_parses(dialect: str) -> None:
    rendered = render_views(dialect=dialect, config=CONFIG)
    assert list(rendered) == list(VIEWS)
    for name, sql in rendered.items():
        assert sql.startswith(f"CREATE OR REPLACE VIEW {name} AS")
        assert "mm_" not in sql.lower().replace("modelmeter", "")  # every helper expanded
        tree = sqlglot.parse_one(sql, read=dialect)
        assert isinstance(tree, exp.Create) and tree.this.name == name


def test_athena_rendering_uses_trino_functions_and_the_configured_zone() -> None:
    sql = render_view("usage_local", dialect="athena", config=CONFIG, pretty=False)
    assert "AT_TIMEZONE(WITH_TIMEZONE(u.event_time, 'UTC'), 'America/Los_Angeles')" in sql
    assert "DATE_ADD('DAY', -14," in sql  # fiscal months from the 15th
    duck = render_view("usage_local", dialect="duckdb", config=CONFIG, pretty=False)
    assert "TIMEZONE('America/Los_Angeles', u.event_time)" in duck


def test_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown view 'nope'"):
        render_view("nope", dialect="duckdb", config=CONFIG)


@pytest.mark.parametrize("dialect", ["athena", "duckdb"])
def test_cli_prints_every_view(dialect: str, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a reporting zone and fiscal start from the environment
    monkeypatch.setenv(ENV_REPORTING_TZ, "America/Los_Angeles")
    monkeypatch.setenv(ENV_FISCAL_MONTH_START, "15")
    # WHEN `modelmeter sql render --dialect …` runs
    assert main(["sql", "render", "--dialect", dialect]) == 0
    out = capsys.readouterr().out
    # THEN every view is printed, as the engine's SQL, with the configured zone
    statements = [s for s in sqlglot.parse(out, read=dialect) if s is not None]
    assert [s.this.name for s in statements] == list(VIEWS)
    assert out.count("CREATE OR REPLACE VIEW") == len(VIEWS)
    assert "America/Los_Angeles" in out


def test_cli_reports_a_bad_reporting_zone(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_REPORTING_TZ, "Mars/Olympus")
    assert main(["sql", "render", "--dialect", "athena"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("modelmeter sql render: unknown reporting time zone 'Mars/Olympus'")


def test_athena_rendering_uses_only_trino_functions_and_types() -> None:
    # Each of these is a documented Trino function/type; anything else (a DuckDB-only name leaking through a helper,
    # HUGEINT/INT128, TIMEZONE()) would parse here yet fail in Athena. ConcatWs: Trino's concat_ws(string0, string1,
    # …), which skips NULL arguments (team_model_daily's unpriced_dimensions).
    trino_functions = {"And", "Or", "RowNumber", "Case", "Cast", "Coalesce", "ConcatWs", "Count", "CountIf", "DateAdd",
                       "DateDiff", "If", "Least", "Max", "Min", "Nullif", "Rank", "Sum", "TimestampTrunc",
                       "AT_TIMEZONE", "WITH_TIMEZONE"}
    trino_types = {"DECIMAL(38, 12)", "DATE", "DOUBLE", "BIGINT", "INTEGER", "VARCHAR"}
    for sql in render_views(dialect="athena", config=CONFIG).values():
        tree = sqlglot.parse_one(sql, read="athena")
        used = {f.name.upper() if isinstance(f, exp.Anonymous) else type(f).__name__ for f in tree.find_all(exp.Func)}
        assert used <= trino_functions, used - trino_functions
        assert {d.sql("athena") for d in tree.find_all(exp.DataType)} <= trino_types


@pytest.mark.parametrize("dialect", ["athena", "duckdb"])
def test_every_mart_renders_for_both_engines(dialect: str) -> None:
    # the marts are Athena SQL (they define what finance reads, and team_model_daily is also a view): each renders
    # for either engine with its helpers expanded, and the engine's parser takes it back
    for name in (n for n in models.model_names() if n.startswith("marts/")):
        sql = models.render(name, dialect=dialect, **{key: "'v1'" for key in models.placeholders(name)})
        calls = {f.name.lower() for f in sqlglot.parse_one(sql, read=dialect).find_all(exp.Anonymous)}
        assert not {c for c in calls if c.startswith("mm_")}, name  # every helper expanded

"""Great Expectations, running as SQL on DuckDB: the suite of record of the day's events.

The suite is built from :func:`transforms.rules.rules` (so from ``common.contracts.FIELDS``). GX computes each
expectation's unexpected count with SQL on the transform's own DuckDB connection (no pandas, no copy). The
transform runs it over ``stg_suspects``: every row the rules' SQL found broken (the rules the footer statistics did
not prove, checked row by row), the duplicate candidates and a sample of each file (docs/transform.md,
"Validation"); the row-level split into valid and quarantined rows is the staging model's, rendered from the same
rules, and :func:`check_agreement` proves GX and it agree there on every run.

GX 1.x does not know the duckdb SQLAlchemy dialect (DEPENDENCIES.md): without help it closes the connection
before fetching rows, so every expectation fails with "list index out of range". :func:`_teach_gx_duckdb` adds
duckdb to the dialects that keep one persisted connection and gives it PostgreSQL's dialect module for types.
GX is imported lazily: the import alone takes ~4 s.
"""

from __future__ import annotations

import gc
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from transforms.rules import Rule

_IMPORT_LOCK = threading.Lock()


@dataclass
class SuiteResult:
    """What GX found: rows checked, overall success, and the rules (by name) whose expectation failed."""

    success: bool
    element_count: int
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "element_count": self.element_count, "failed": self.failed}


def prefetch_import() -> threading.Thread:
    """Start importing GX in a background thread (it mostly overlaps DuckDB work, which releases the GIL)."""
    thread = threading.Thread(target=_import_gx, name="gx-import", daemon=True)
    thread.start()
    return thread


def _import_gx() -> Any:
    with _IMPORT_LOCK:
        first = "great_expectations" not in sys.modules
        # GX's first import makes a few hundred thousand objects that live as long as the process, and the cyclic
        # GC scanned them again and again while they were made (1.4 of the import's ~3.6 CPU-s) and once more at
        # exit (1.3 s): measured in docs/transform.md. So the collector pauses for the import, and what exists then
        # is frozen (gc.freeze: left out of later collections, the one at exit too; reference counting still
        # frees any of it that is dropped).
        collecting = gc.isenabled()
        if first:
            gc.disable()
        try:
            import great_expectations as gx
            import great_expectations.execution_engine.sqlalchemy_execution_engine as gx_engine
        finally:
            if first:
                if collecting:
                    gc.enable()
                gc.freeze()
        _teach_gx_duckdb(gx_engine)
        return gx


def _teach_gx_duckdb(gx_engine: Any) -> None:
    if "duckdb" not in [str(getattr(d, "value", d)) for d in gx_engine._PERSISTED_CONNECTION_DIALECTS]:
        gx_engine._PERSISTED_CONNECTION_DIALECTS = (*gx_engine._PERSISTED_CONNECTION_DIALECTS, "duckdb")


def _engine(con: Any) -> Any:
    """A SQLAlchemy engine over the transform's own DuckDB connection (one connection, never closed by GX)."""
    import sqlalchemy as sa
    from duckdb_engine import ConnectionWrapper
    from sqlalchemy.pool import StaticPool

    class _Borrowed(ConnectionWrapper):
        def close(self) -> None:  # the transform owns the connection; GX must not close it
            pass

    wrapper = _Borrowed(con)
    return sa.create_engine("duckdb://", creator=lambda: wrapper, poolclass=StaticPool)


def build_suite(gx: Any, rules: list[Rule]) -> Any:
    expectations = [getattr(gx.expectations, r.expectation)(column=r.column, meta={"rule": r.name}, **r.kwargs)
                    for r in rules]
    return gx.ExpectationSuite(name="usage_event_v1", expectations=expectations)


def validate(con: Any, *, table: str, rules: list[Rule]) -> SuiteResult:
    """Run the suite of ``rules`` over relation ``table`` of DuckDB connection ``con``, in SQL."""
    gx = _import_gx()
    import sqlalchemy.dialects.postgresql as postgresql
    from great_expectations.core.batch import Batch
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import SqlAlchemyExecutionEngine
    from great_expectations.execution_engine.sqlalchemy_batch_data import SqlAlchemyBatchData
    from great_expectations.validator.validator import Validator

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    engine = SqlAlchemyExecutionEngine(engine=_engine(con), create_temp_table=False)
    engine.dialect_module = postgresql  # types only; the SQL itself is generic
    batch_data: Any = SqlAlchemyBatchData(execution_engine=engine, table_name=table)
    batch = Batch(data=batch_data)
    validator = Validator(execution_engine=engine, batches=[batch], data_context=context)
    # BOOLEAN_ONLY: GX bundles every expectation's unexpected count into two aggregate scans; richer formats add
    # a "partial unexpected list" query per expectation, each a full scan when the column is clean (35 scans).
    try:
        result: Any = validator.validate(expectation_suite=build_suite(gx, rules), result_format="BOOLEAN_ONLY")
        rows = validator.get_metric(_row_count_metric(gx, batch))
    finally:
        engine.engine.dispose()
    failed = []
    for res in result.results:
        name = res.expectation_config.meta["rule"]
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX could not check {name}: {res.exception_info.get('exception_message')}")
        if not res.success:
            failed.append(name)
    return SuiteResult(success=bool(result.success), element_count=int(rows), failed=sorted(failed))


def _row_count_metric(gx: Any, batch: Any) -> Any:
    from great_expectations.validator.metric_configuration import MetricConfiguration

    return MetricConfiguration(metric_name="table.row_count", metric_domain_kwargs={"batch_id": batch.id})


def check_agreement(result: SuiteResult, *, rule_counts: dict[str, int]) -> str | None:
    """Each expectation GX failed must match rows in the staging model's SQL for the same rule (and vice versa).

    Args:
        rule_counts: rows breaking each rule GX failed, counted by the staging model's SQL.

    Returns:
        None when they agree, else a sentence naming the rules where they differ.
    """
    differ = sorted({name for name in result.failed if rule_counts.get(name, 0) == 0}
                    | {name for name, count in rule_counts.items() if count and name not in result.failed})
    if not differ:
        return None
    return "GX and the staging model disagree on " + ", ".join(
        f"{name} (GX {'failed' if name in result.failed else 'passed'}, SQL counts {rule_counts.get(name, 0)} rows)"
        for name in differ)

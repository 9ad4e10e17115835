"""The transform on Apache Spark (local mode here, an AWS Glue 5.0 job in AWS): the DuckDB engine's results, row for
row and to the last decimal, for days that outgrow one Lambda (docs/transform.md, "Engines").

What is shared with the DuckDB engine (``transforms/run.py``), not re-implemented:

- the SQL models: ``stg_usage_events``, ``stg_duplicate_candidates``, ``stg_invalid``, ``stg_invalid_ids``,
  ``stg_valid_events``, ``stg_duplicates`` (first copy wins: a real event before a crash placeholder, then by
  ``source_file``, ``source_row``), ``stg_price_combos``, ``usage_cost_pico``, ``usage_cost`` and
  ``team_model_daily``, rendered by sqlglot for ``dialect="spark"`` (:func:`sql.models.render`);
- the rules (:func:`transforms.rules.rules`): their problem conditions rendered for Spark count every rule in one
  aggregate scan (the validation suite: Great Expectations' SQL expectations are the same counts), and pick the
  invalid rows;
- the day's files and lineage (``transforms/spark_inputs.py``), the price table (:func:`transforms.prices.price_table`),
  the lock, publishing, the quarantine writer and the manifest (:mod:`transforms.run`'s own helpers).

The few rows that become quarantine rows (invalid rows, conflicting copies) are collected to the driver and given
their reasons and ``raw`` JSON by the DuckDB engine's models (``stg_quarantine``, ``stg_duplicate_conflicts``) on an
in-memory DuckDB: one definition of every reason's wording and of the row's JSON, which Spark's ``to_json`` would
spell differently. DuckDB also re-counts the rules on those rows; a difference from Spark's counts is reported like
GX's (``agrees_with_staging``). Costs stay whole BIGINT pico-dollars until ``mm_pico_to_money`` (exact DECIMAL
arithmetic in Spark as in DuckDB); Spark writes both Parquet files itself, one file per day.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.constants import RUN_MANIFESTS
from common.contracts import FIELD_NAMES, curated_arrow_schema
from common.lake import Lake
from common.locks import lake_lock
from pricing_catalog import load_catalog
from sql import models
from transforms import validate
from transforms.inputs import DayInputs, event_columns_sql
from transforms.late import raw_listing
from transforms.prices import PRICE_SCHEMA, PriceSource, price_table
from transforms.rules import PLACEHOLDER_STATUS, Rule, invalid_sql, reason_sql, rules
from transforms.run import (
    DEFAULT_LOCK_TIMEOUT,
    LOCKS,
    Manifest,
    _DayResult,
    _fill,
    _publish,
    _quarantine_table,
    _remove_leftovers,
    _rows_of,
    _Timer,
    _unpriced,
    _warn,
    _workdir,
    connect,
    days_between,
)
from transforms.spark_inputs import Scratch, day_inputs, raw_day
from transforms.spark_session import collect_arrow, spark_schema, with_schema

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import DataFrame, SparkSession

#: ``Manifest.validation["engine"]`` of a Spark run (the DuckDB engine's manifests have no such key: GX).
ENGINE = "spark"


def _render(name: str, **params: str) -> str:
    return models.render(name, dialect="spark", config=None, pretty=False, **params)


def _view(spark: SparkSession, name: str, sql: str) -> DataFrame:
    df = spark.sql(sql)
    df.createOrReplaceTempView(name)
    return df


def _frame(spark: SparkSession, name: str, table: pa.Table, like: DataFrame | None = None,
           schema: pa.Schema | None = None) -> DataFrame:
    """A small driver-side table (collected rows, the price table) as a Spark temp view."""
    spark_type = like.schema if like is not None else spark_schema(schema or table.schema)
    df = spark.createDataFrame(table.to_pylist(), spark_type)
    df.createOrReplaceTempView(name)
    return df


def _validate(spark: SparkSession, rule_list: list[Rule]) -> tuple[int, dict[str, int]]:
    """Rows, and rows breaking each rule, in one aggregate scan of ``stg_usage_events``."""
    counts = ", ".join(f"count_if({r.problem_sql}) as r{i}" for i, r in enumerate(rule_list))
    sql = models.render_sql(f"select count(*) as n, {counts} from stg_usage_events", read="duckdb", dialect="spark")
    row = spark.sql(sql).collect()[0]
    return int(row["n"]), {r.name: int(row[f"r{i}"]) for i, r in enumerate(rule_list)}


def _duckdb_rule_counts(con: duckdb.DuckDBPyConnection, rule_list: list[Rule]) -> dict[str, int]:
    """The same rules counted by DuckDB on the collected invalid rows (as ``transforms.run`` counts them)."""
    if not rule_list:
        return {}
    columns = ", ".join(f"count(*) filter (where {r.problem_sql}) as \"{r.name}\"" for r in rule_list)
    row = con.execute(f"select {columns} from stg_invalid").fetchone() or ()
    return {r.name: int(n) for r, n in zip(rule_list, row, strict=True)}


def _quarantine(spark: SparkSession, con: duckdb.DuckDBPyConnection, inputs: DayInputs, broken: list[Rule]
                ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``stg_invalid`` in Spark, collected (few rows) and made a Spark view again (so it is computed once); the
    quarantine rows and per-rule counts from it by the DuckDB engine's model and SQL."""
    invalid = spark.sql(_render("staging/stg_invalid", invalid=invalid_sql(broken) if broken else "false"))
    table = collect_arrow(invalid)  # on a clean day: `where false`, which Spark answers without a scan
    _frame(spark, "stg_invalid", table, like=invalid)
    _view(spark, "stg_invalid_ids", _render("staging/stg_invalid_ids"))
    _view(spark, "stg_valid_events", _render("staging/stg_valid_events"))
    if not table.num_rows:
        return [], {}
    con.register("stg_invalid", table)
    sql = models.render("staging/stg_quarantine", reason=reason_sql(broken),
                        raw_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES))
    return _rows_of(con, sql, inputs), _duckdb_rule_counts(con, broken)


def _dedupe(spark: SparkSession, con: duckdb.DuckDBPyConnection, inputs: DayInputs
            ) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``stg_duplicates`` in Spark (the shared model: first copy wins), collected (the dropped copies: few) and
    made a view again; each conflicting copy as a quarantine row, worded by ``stg_duplicate_conflicts`` in DuckDB."""
    _view(spark, "stg_duplicate_candidates", _render(
        "staging/stg_duplicate_candidates", content_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES)))
    duplicates = spark.sql(_render("staging/stg_duplicates", placeholder_status=models.literal(PLACEHOLDER_STATUS)))
    dropped = collect_arrow(duplicates)
    _frame(spark, "stg_duplicates", dropped, like=duplicates)
    kinds: dict[str, int] = {}
    for kind in dropped.column("kind").to_pylist():
        kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds.get("conflict"):
        return kinds, []
    copies = spark.sql(
        "select e.* from stg_usage_events as e left semi join ("
        "select source_file, source_row from stg_duplicates where kind = 'conflict' union "
        "select kept_source_file, kept_source_row from stg_duplicates where kind = 'conflict') as w "
        "on w.source_file = e.source_file and w.source_row = e.source_row")
    con.register("stg_duplicates", dropped)
    con.register("stg_usage_events", collect_arrow(copies))
    con.register("input_files", pa.table({"source_file": pa.array(range(len(inputs.files)), pa.int32()),
                                          "path": pa.array([f.path for f in inputs.files], pa.string())}))
    # the parameters transforms.run gives the same model
    differing = ", ".join(f"case when d.{c} is distinct from k.{c} then '{c}' end" for c in FIELD_NAMES)
    sql = models.render("staging/stg_duplicate_conflicts", differing=f"concat_ws(', ', {differing})",
                        raw_columns=", ".join(f"{c} := d.{c}" for c in FIELD_NAMES))
    return kinds, _rows_of(con, sql, inputs)


def _prices(spark: SparkSession, catalog: PriceSource, day: date) -> int:
    lookups = [r.asDict() for r in spark.sql(_render("staging/stg_price_combos")).collect()]
    _frame(spark, "prices", price_table(catalog=catalog, lookups=lookups, day=day), schema=PRICE_SCHEMA)
    return len(lookups)


def _write_one_file(spark: SparkSession, df: DataFrame, table: str, scratch: Scratch, lake: Lake) -> Path:
    """``df`` (re-typed to the curated table's contract schema) as one Parquet file; its local path."""
    out = with_schema(spark, df, spark_schema(curated_arrow_schema(table)))
    target = scratch.url("spark", table)
    out.write.mode("overwrite").parquet(target)
    if scratch.shared == str(scratch.local):
        parts = sorted(Path(target).glob("part-*.parquet"))
    else:  # Glue: the file is on S3; bring it to the driver, where publishing installs it
        listed = lake.fs.get_file_info(pafs.FileSelector(target.removeprefix("s3://")))
        remote = sorted(i.path for i in listed if i.base_name.startswith("part-") and i.path.endswith(".parquet"))
        parts = []
        for n, path in enumerate(remote):
            local = scratch.local / "spark" / f"{table}-{n}.parquet"
            local.parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(path, str(local), source_filesystem=lake.fs, destination_filesystem=pafs.LocalFileSystem())
            parts.append(local)
    if len(parts) != 1:
        raise RuntimeError(f"Spark wrote {len(parts)} files for {table}, expected one")
    return parts[0]


def _marts(spark: SparkSession, *, scratch: Scratch, lake: Lake, price_version: str, t: _Timer
           ) -> tuple[Path, Path]:
    """Price and write ``usage_cost`` (one file, written by one task after a shuffle, so the pricing stays
    parallel), then ``team_model_daily`` summed from the written rows (the mart's definition), ordered like the
    DuckDB engine's."""
    with t.step("price_and_write_usage_cost"):
        _view(spark, "usage_cost_pico", _render("marts/usage_cost_pico",
                                                price_version=models.literal(price_version)))
        usage = spark.sql(_render("marts/usage_cost")).repartition(1)
        usage_file = _write_one_file(spark, usage, "usage_cost", scratch, lake)
    with t.step("team_model_daily"):
        written = spark.read.parquet(str(usage_file) if scratch.shared == str(scratch.local)
                                     else scratch.url("spark", "usage_cost"))
        written.createOrReplaceTempView("usage_cost_day")
        daily = spark.sql(_render("marts/team_model_daily")).coalesce(1).sortWithinPartitions("team_id", "model_id")
        daily_file = _write_one_file(spark, daily, "team_model_daily", scratch, lake)
    return usage_file, daily_file


def _run_models(spark: SparkSession, *, lake: Lake, day: date, catalog: PriceSource, now: datetime,
                workdir: Path, t: _Timer, stage_locally: bool) -> tuple[_DayResult, str | None]:
    scratch = (Scratch(local=workdir, shared=str(workdir)) if stage_locally or lake.is_local
               else Scratch(local=workdir, shared=lake.url(RUN_MANIFESTS, "_work", workdir.name)))
    with t.step("find_inputs"):
        stale_tmp = _remove_leftovers(lake, day)
        inputs = day_inputs(lake=lake, day=day, workdir=workdir, stage_locally=stage_locally)
    rule_list = rules(day=day, now=now)
    raw_day(spark, lake=lake, inputs=inputs, scratch=scratch, stage_locally=stage_locally
            ).createOrReplaceTempView("raw_day")
    _view(spark, "stg_usage_events", _render("staging/stg_usage_events", event_columns=event_columns_sql()))
    with t.step("validate_spark"):
        rows, spark_counts = _validate(spark, rule_list)
    broken = [r for r in rule_list if spark_counts[r.name]]
    suite = validate.SuiteResult(success=not broken, element_count=rows, failed=sorted(r.name for r in broken))
    con = connect(threads=1)
    try:
        with t.step("quarantine"):
            invalid_rows, rule_counts = _quarantine(spark, con, inputs, broken)
        with t.step("dedupe"):
            duplicate_kinds, conflict_rows = _dedupe(spark, con, inputs)
    finally:
        con.close()
    with t.step("price_lookups"):
        lookups = _prices(spark, catalog, day)
    try:
        usage_file, daily_file = _marts(spark, scratch=scratch, lake=lake, price_version=catalog.version, t=t)
    finally:
        if scratch.shared != str(scratch.local):  # Glue: the S3 scratch (normalised inputs, Spark's output folders)
            lake.fs.delete_dir_contents(scratch.shared.removeprefix("s3://"), missing_dir_ok=True)
    with t.step("counts"):
        written = pq.ParquetFile(usage_file).metadata.num_rows
        unpriced, unpriced_models = _unpriced(pq.read_table(daily_file))
    disagreement = validate.check_agreement(suite, rule_counts=rule_counts)
    if disagreement:
        disagreement = disagreement.replace("GX and the staging model", "Spark and DuckDB").replace("GX ", "Spark ")
    refused = _quarantine_table(invalid_rows + conflict_rows, inputs, now)
    result = _DayResult(inputs=inputs, suite=suite, refused=refused,
                        invalid=len(invalid_rows), rule_counts=rule_counts, lookups=lookups, usage_cost=usage_file,
                        daily=daily_file, written=written, duplicate_kinds=duplicate_kinds, unpriced=unpriced,
                        unpriced_models=unpriced_models, stale_tmp=stale_tmp)
    return result, disagreement


def transform_day(spark: SparkSession, *, lake: Lake, day: date, catalog: PriceSource, now: datetime | None = None,
                  lock_timeout: float = DEFAULT_LOCK_TIMEOUT, stage_locally: bool = True) -> Manifest:
    """Transform one day on Spark holding the day's lock (as :func:`transforms.run.transform_day`); its manifest,
    already written. ``stage_locally``: read the raw files from the driver's disk (copied there from an ``s3://``
    lake, as the DuckDB engine does); False on Glue, where Spark reads and writes S3 itself."""
    now = now or datetime.now(UTC)
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    manifest = Manifest(run_id=run_id, day=day.isoformat(), started_at=now.isoformat(), price_version=catalog.version)
    with lake_lock(lake, RUN_MANIFESTS, LOCKS, f"dt={day.isoformat()}.lock", owner=f"spark transform run {run_id}",
                   what=f"the transform of {day}", timeout=lock_timeout) as lock:
        manifest.lock = {"path": lock.url, "waited_seconds": lock.waited_seconds,
                         "acquired_at": lock.acquired_at.isoformat()}
        manifest.raw_listing = [f.as_dict() for f in raw_listing(lake=lake, day=day)]
        t = _Timer(manifest.seconds, manifest.peak_rss_mb)
        with _workdir(lake, run_id) as workdir:
            res, disagreement = _run_models(spark, lake=lake, day=day, catalog=catalog, now=now, workdir=workdir,
                                            t=t, stage_locally=stage_locally)
            _warn(day, res, disagreement)
            lock.check()  # an S3 lease lost while Spark ran: another run may be publishing; write nothing
            with t.step("publish"):
                manifest.outputs = _publish(lake, day, res)
    _fill(manifest, res, disagreement)
    manifest.validation["engine"] = ENGINE
    where = (RUN_MANIFESTS, f"dt={day.isoformat()}", f"{manifest.run_id}.json")
    manifest.path = lake.url(*where)
    lake.write_bytes(manifest.to_json().encode(), *where)
    return manifest


def transform_days(spark: SparkSession, *, lake: Lake, days: list[date], price_version: str | None = None,
                   progress: Callable[[date, Manifest], None] | None = None, now: datetime | None = None,
                   lock_timeout: float = DEFAULT_LOCK_TIMEOUT, stage_locally: bool = True) -> list[Manifest]:
    """Transform each of ``days`` in order with one catalog version, on one Spark session (see
    :func:`transforms.run.transform_days`, whose arguments these are)."""
    catalog = load_catalog(lake=lake, version=price_version)
    manifests = []
    for day in days:
        manifest = transform_day(spark, lake=lake, day=day, catalog=catalog, now=now, lock_timeout=lock_timeout,
                                 stage_locally=stage_locally)
        manifests.append(manifest)
        if progress:
            progress(day, manifest)
    return manifests


def transform_range(spark: SparkSession, *, lake: Lake, date_from: date, date_to: date,
                    price_version: str | None = None, progress: Callable[[date, Manifest], None] | None = None,
                    now: datetime | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                    stage_locally: bool = True) -> list[Manifest]:
    """Every day from ``date_from`` to ``date_to`` (inclusive) on Spark: :func:`transforms.run.transform_range`."""
    return transform_days(spark, lake=lake, days=days_between(date_from, date_to), price_version=price_version,
                          progress=progress, now=now, lock_timeout=lock_timeout, stage_locally=stage_locally)

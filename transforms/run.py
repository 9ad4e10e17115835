"""``modelmeter transform``: per day, raw events → validated, deduped, priced curated tables (DESIGN.md).

SQL is the transform (``sql/staging`` → ``sql/marts``); this module decides which days, opens DuckDB, runs the
models in order, and publishes the day's files. Per day:

1. list the day's raw files (late ones included) and set aside any that cannot be read;
2. stage them (``stg_usage_events``: typed, defaulted, each row valid or not); prove what rules the files' footer
   statistics can (``transforms/proofs.py``), find the repeated ``event_id`` hashes in one narrow pass, and fetch
   the few rows needed whole in one more (``stg_suspects``: the rows breaking a rule the statistics did not prove,
   the copies of a repeated hash, a sample); Great Expectations validates those; the invalid rows go to
   ``quarantine/…/dt=D/transform.parquet`` with their reasons;
3. drop re-delivered duplicates (``stg_duplicates``), price and write (``usage_cost``, one wide pass), roll up
   (``team_model_daily``);
4. replace the day's curated files and write the run manifest under ``runs/transform/``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from sqlglot import exp

from common.constants import (
    CURATED_TEAM_MODEL_DAILY,
    CURATED_USAGE_COST,
    QUARANTINE_EVENTS,
    RAW_EVENTS,
    RUN_MANIFESTS,
)
from common.contracts import FIELD_NAMES, quarantine_arrow_schema
from common.errors import UserError
from common.lake import Lake
from common.locks import DEFAULT_TIMEOUT_SECONDS as DEFAULT_LOCK_TIMEOUT
from common.locks import LakeLock, lake_lock
from common.quarantine import write_quarantine_file
from pricing_catalog import load_catalog
from sql import models
from transforms import validate
from transforms.inputs import DayInputs, event_columns_sql, find_inputs, raw_view_sql
from transforms.late import raw_listing
from transforms.prices import PriceSource, price_table
from transforms.proofs import prove
from transforms.rules import PLACEHOLDER_STATUS, invalid_sql, reason_sql, rules
from transforms.writer import ROW_GROUP_ROWS, DayWriter, prefetched, query_columns

#: Rows at the start of each raw file that Great Expectations validates beside the rows the SQL found broken (its
#: sample of the rows the statistics and the SQL passed; fetched in the same pass as the broken rows).
GX_SAMPLE_ROWS_PER_FILE = 1000
#: Name of the transform's own quarantine file in each day (ingest writes ``ingest-*.parquet`` beside it).
QUARANTINE_FILE = "transform.parquet"
#: DuckDB's memory cap for the transform (it spills to the run's scratch folder beyond it); see docs/transform.md.
DEFAULT_MEMORY_LIMIT = "1GB"
#: Above this many batches of raw rows, the wide pass leaves the writer a core of its own (see ``_marts``).
SHARED_CORES_BATCHES = 4
#: The one file of each curated day partition; replacing it is atomic (a rename locally, one PUT on S3).
PART_FILE = "part-0.parquet"
#: Folder of the per-day transform locks, under ``runs/transform/`` (``locks/dt=D.lock``). Per day, not one for the
#: lake: two runs only collide on the same day's outputs, and a backfill must not stop the scheduled run of today.
LOCKS = "locks"


@dataclass
class Manifest:
    """What one day's run read, decided and wrote (saved as JSON under ``runs/transform/dt=D/``)."""

    run_id: str
    day: str
    started_at: str
    price_version: str
    finished_at: str = ""
    input_files: list[dict[str, Any]] = field(default_factory=list)
    unreadable_files: list[dict[str, str]] = field(default_factory=list)
    stale_tmp_files: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unpriced_models: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    lock: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, int] = field(default_factory=dict)
    #: How every row was validated against every rule: row groups the footer statistics proved per rule, the
    #: rules checked row by row in SQL, rows Great Expectations validated (docs/transform.md, "Validation").
    checks: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    #: The day's raw files (lake-relative path, size, mtime_ns) listed before any was read: what
    #: :func:`transforms.late.stale_days` compares the lake with to find late files (absent in older manifests).
    raw_listing: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)


class _Timer:
    """Seconds per step, and the process's peak RSS (MiB) after each step: where time and memory go."""

    def __init__(self, seconds: dict[str, float], peak_rss_mb: dict[str, int],
                 on_step: Callable[[str], None] | None = None):
        self.seconds = seconds
        self.peak_rss_mb = peak_rss_mb
        self.on_step = on_step  # told each step's name as it starts (progress on long days)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.on_step:
            self.on_step(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            self.peak_rss_mb[name] = _peak_rss_mb()


def _peak_rss_mb() -> int:
    try:
        import resource
    except ImportError:  # not on Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB


def days_between(date_from: date, date_to: date) -> list[date]:
    """Every day from ``date_from`` to ``date_to``, inclusive."""
    if date_to < date_from:
        raise UserError(f"--to {date_to} is before --from {date_from}")
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


def connect(*, threads: int | None = None, memory_limit: str | None = None, temp_dir: Path | None = None
            ) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for the transform: UTC, no insertion order to keep, bounded memory."""
    config: dict[str, Any] = {"threads": threads or os.cpu_count() or 1, "preserve_insertion_order": False}
    config["memory_limit"] = memory_limit or DEFAULT_MEMORY_LIMIT
    # DuckDB's allocator keeps what it freed, up to the memory limit, instead of handing it back to the system after
    # every task above 128 MiB (its default): the kernel zeroed the same pages again and again, ~1.5 s of system
    # time at 10 M events over paired runs (docs/transform.md, "Measured")
    config["allocator_flush_threshold"] = config["memory_limit"]
    if temp_dir:
        config["temp_directory"] = str(temp_dir)
    con = duckdb.connect(":memory:", config=config)
    con.execute("set TimeZone = 'UTC'")  # the models' UTC days (mm_utc_date) and timestamp literals rely on it
    return con


def _stage(con: duckdb.DuckDBPyConnection, inputs: DayInputs) -> None:
    con.execute(f"create or replace temp view raw_day as {raw_view_sql(inputs.files)}")
    # a plain (not temp) view: GX's column reflection finds it in the catalog; for a temp view it falls back to
    # "select * … limit 1", which opens every raw file (~1 s per 2 M events, measured)
    con.execute("create or replace view stg_usage_events as " + models.render(
        "staging/stg_usage_events", event_columns=event_columns_sql()))


def _from_suspects(name: str, **params: str) -> str:
    """Model ``name`` rendered to read ``stg_suspects`` where it reads ``stg_usage_events``: the same rows come out
    (see ``sql/staging/stg_suspects.sql``), from a small table instead of a pass over every raw file."""
    tree = exp.replace_tables(models.parse(name, **params), {"stg_usage_events": "stg_suspects"})
    return models.to_sql(tree, dialect=models.ENGINE)


def _invalid(con: duckdb.DuckDBPyConnection, rule_list: list[Any]) -> None:
    """``stg_invalid`` (whole rows) and ``stg_invalid_ids``: the rows breaking any rule, among the suspects (a row
    breaking a rule its statistics did not prove is one; no row breaks a proven one)."""
    invalid = invalid_sql(rule_list) if rule_list else "false"
    con.execute("create or replace temp table stg_invalid as " + _from_suspects("staging/stg_invalid", invalid=invalid))
    con.execute("create or replace temp table stg_invalid_ids as " + models.render("staging/stg_invalid_ids"))


def _rows_of(con: duckdb.DuckDBPyConnection, sql: str, inputs: DayInputs) -> list[dict[str, Any]]:
    """Quarantine rows from a model, their ``source_file`` index turned into the file's lake path."""
    rows = con.execute(sql).fetch_arrow_table().to_pylist()
    for row in rows:
        row["source_file"] = inputs.files[row["source_file"]].path
    return rows


def _invalid_rows(con: duckdb.DuckDBPyConnection, inputs: DayInputs, rule_list: list[Any]) -> list[dict[str, Any]]:
    """The rows breaking a rule, with every reason (``stg_quarantine``)."""
    sql = models.render("staging/stg_quarantine", reason=reason_sql(rule_list) if rule_list else "''",
                        raw_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES))
    return _rows_of(con, sql, inputs)


def _quarantine_table(rows: list[dict[str, Any]], inputs: DayInputs, now: datetime) -> pa.Table:
    """The day's refused rows (row-level, conflicting copies and file-level) as a table of the quarantine schema."""
    rows = rows + [{"reason": reason, "stage": "transform", "source_file": path} for path, reason in inputs.unreadable]
    for row in rows:
        row["quarantined_at"] = now
    return pa.Table.from_pylist(rows, schema=quarantine_arrow_schema())


def _dedupe(con: duckdb.DuckDBPyConnection, inputs: DayInputs) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``stg_duplicates`` (the copies to drop), counted per kind, and each conflicting copy as a quarantine row
    naming the kept copy (``stg_duplicate_conflicts``); both read the candidates' whole rows from the suspects."""
    con.execute("create or replace temp table stg_duplicate_candidates as " + _from_suspects(
        "staging/stg_duplicate_candidates", content_columns=", ".join(f"{c} := {c}" for c in FIELD_NAMES)))
    con.execute("create or replace temp table stg_duplicates as " + models.render(
        "staging/stg_duplicates", placeholder_status=models.literal(PLACEHOLDER_STATUS)))
    kinds = {str(kind): int(n) for kind, n in
             con.execute("select kind, count(*) from stg_duplicates group by kind").fetchall()}
    if not kinds.get("conflict"):
        return kinds, []
    con.register("input_files", pa.table({"source_file": pa.array(range(len(inputs.files)), pa.int32()),
                                          "path": pa.array([f.path for f in inputs.files], pa.string())}))
    differing = ", ".join(f"case when d.{c} is distinct from k.{c} then '{c}' end" for c in FIELD_NAMES)
    sql = _from_suspects("staging/stg_duplicate_conflicts", differing=f"concat_ws(', ', {differing})",
                         raw_columns=", ".join(f"{c} := d.{c}" for c in FIELD_NAMES))
    return kinds, _rows_of(con, sql, inputs)


def _url(lake: Lake, fs_path: str) -> str:
    """A path inside ``lake.fs`` as people read it (absolute local path or s3:// URL)."""
    return lake.url(fs_path[len(lake.base) + 1:])


def _rule_counts(con: duckdb.DuckDBPyConnection, rule_list: list[Any]) -> dict[str, int]:
    """Rows breaking each rule (only invalid rows can, so only they are read)."""
    if not rule_list:
        return {}
    columns = ", ".join(f"count(*) filter (where {r.problem_sql}) as \"{r.name}\"" for r in rule_list)
    row = con.execute(f"select {columns} from stg_invalid").fetchone() or ()
    return {r.name: int(n) for r, n in zip(rule_list, row, strict=True)}


def _install(lake: Lake, local: Path, *parts: str) -> str:
    """Put a finished local file at a lake location, replacing what is there in one step."""
    target = lake.path(*parts)
    lake.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    if lake.is_local:
        os.replace(local, target)
    else:
        pafs.copy_files(str(local), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=lake.fs)
    return target


def _replace_partition(lake: Lake, local: Path, prefix: str, day: date) -> str:
    """Make ``local`` the only file of ``prefix/dt=day``: install it, then remove any other file there."""
    target = _install(lake, local, prefix, f"dt={day.isoformat()}", PART_FILE)
    for stale in lake.list_files(prefix, f"dt={day.isoformat()}", suffix=""):
        if stale != target:
            lake.delete(stale)
    return target


def _write_quarantine(lake: Lake, table: pa.Table, day: date) -> str | None:
    # a re-run after the bad rows were fixed removes the file: the old reasons no longer hold
    return write_quarantine_file(lake, table, day=day.isoformat(), file_name=QUARANTINE_FILE)


def _prices(con: duckdb.DuckDBPyConnection, catalog: PriceSource, day: date) -> int:
    lookups = con.execute(models.render("staging/stg_price_combos")).fetch_arrow_table().to_pylist()
    table = price_table(catalog=catalog, lookups=lookups, day=day)
    con.register("prices", table)
    return len(lookups)


def _marts(con: duckdb.DuckDBPyConnection, *, workdir: Path, price_version: str, rows: int, t: _Timer
           ) -> tuple[Path, Path, DayWriter]:
    """Price and write ``usage_cost`` (streamed out of DuckDB into pyarrow), then ``team_model_daily`` from the
    same batches' sums (so both agree to the last decimal)."""
    usage_cost, daily = workdir / "usage_cost.parquet", workdir / "team_model_daily.parquet"
    writer = DayWriter(path=usage_cost, price_version=price_version)
    with t.step("price_and_write_usage_cost"):
        con.execute("create or replace temp view usage_cost_pico as "
                    + models.render("marts/usage_cost_pico", price_version=models.literal(price_version)))
        # a day of many batches: the writer's encoding keeps one core busy in this thread, so DuckDB gets the
        # others for the pass, not all of them (on two cores, 2 DuckDB threads beside the writer cost ~1 s more at
        # 10 M events; at 3 M no difference). A day of a few batches waits for its first one: DuckDB keeps them all
        threads = int(con.execute("select current_setting('threads')").fetchone()[0])  # type: ignore[index]
        if rows > SHARED_CORES_BATCHES * ROW_GROUP_ROWS:
            con.execute(f"set threads = {max(1, threads - 1)}")
        try:
            reader = con.execute(f"select {', '.join(query_columns())} from usage_cost_pico").fetch_record_batch(
                ROW_GROUP_ROWS)
            for batch in prefetched(reader):
                writer.write(batch)
        finally:
            writer.close()
            con.execute(f"set threads = {threads}")
    with t.step("team_model_daily"):
        pq.write_table(writer.team_model_daily(), daily, compression="zstd", compression_level=1)
    return usage_cost, daily, writer


def _unpriced(daily: pa.Table) -> tuple[int, list[dict[str, Any]]]:
    """Unpriced events in all and per model, most first (from the day's rollup: no pass over the events)."""
    per_model = daily.group_by("model_id").aggregate([("unpriced_invocations", "sum")]).to_pylist()
    rows = sorted(((r["model_id"], r["unpriced_invocations_sum"]) for r in per_model if r["unpriced_invocations_sum"]),
                  key=lambda r: (-r[1], r[0]))
    return sum(n for _, n in rows), [{"model_id": m, "events": n} for m, n in rows]


@dataclass
class _DayResult:
    """What the models produced for one day, before publishing."""

    inputs: DayInputs
    suite: validate.SuiteResult
    refused: pa.Table  # every quarantine row: invalid rows, conflicting copies, unreadable files
    invalid: int  # rows that broke a rule
    rule_counts: dict[str, int]
    lookups: int
    usage_cost: Path
    daily: Path
    written: int
    duplicate_kinds: dict[str, int]  # dropped copies per kind (stg_duplicates.kind)
    unpriced: int
    unpriced_models: list[dict[str, Any]]
    stale_tmp: list[str]  # killed writers' temporary files removed from the day's partitions
    checks: dict[str, Any] = field(default_factory=dict)  # how the rules were checked (Manifest.checks)

    @property
    def duplicates(self) -> int:
        return sum(self.duplicate_kinds.values())

    @property
    def conflicts(self) -> int:
        return self.duplicate_kinds.get("conflict", 0)


def _remove_leftovers(lake: Lake, day: date) -> list[str]:
    """Temporary files that killed writers left in the day's partitions, read (raw) or written, older than
    :data:`common.lake.STALE_TMP_AGE`: removed, and returned as lake URLs for the manifest."""
    partition = f"dt={day.isoformat()}"
    removed = []
    for prefix in (RAW_EVENTS, CURATED_USAGE_COST, CURATED_TEAM_MODEL_DAILY, QUARANTINE_EVENTS, RUN_MANIFESTS):
        removed += [_url(lake, path) for path in lake.remove_stale_tmp(prefix, partition)]
    return removed


def _run_models(con: duckdb.DuckDBPyConnection, *, lake: Lake, day: date, catalog: PriceSource, now: datetime,
                workdir: Path, t: _Timer) -> _DayResult:
    with t.step("find_inputs"):
        stale_tmp = _remove_leftovers(lake, day)
        inputs = find_inputs(lake=lake, day=day, workdir=workdir)
    for path, reason in inputs.unreadable:
        print(f"modelmeter transform: {path}: {reason} (set aside; the other files are processed)", file=sys.stderr)
    rule_list = rules(day=day, now=now)
    _stage(con, inputs)
    checks = _suspects(con, inputs, rule_list, t)
    with t.step("quarantine"):
        _invalid(con, rule_list)
        con.execute("create or replace temp view stg_valid_events as " + models.render("staging/stg_valid_events"))
        rule_counts = _rule_counts(con, rule_list)
        broken = [r for r in rule_list if rule_counts[r.name]]
        invalid_rows = _invalid_rows(con, inputs, broken)
    with t.step("dedupe"):
        duplicate_kinds, conflict_rows = _dedupe(con, inputs)
        # their rows are in the quarantine rows and stg_duplicates now: free DuckDB's memory for the wide pass
        for table in ("stg_invalid", "stg_duplicate_candidates", "stg_duplicate_hashes"):
            con.execute(f"drop table if exists {table}")
    with t.step("price_lookups"):
        lookups = _prices(con, catalog, day)
    usage_cost, daily, writer = _marts(con, workdir=workdir, price_version=catalog.version, rows=inputs.rows, t=t)
    with t.step("validate_gx"):
        # the suite of record over the suspects: every row the SQL found broken, the duplicate candidates and the
        # sample; it must agree with the SQL's count of each rule there (check_agreement). After the write, which
        # does not depend on it: GX's import (started with the run) then finishes during the write instead of
        # being waited for on a small day (1 M events: the wait was 1.5 s of 6-7)
        suite = validate.validate(con, table="stg_suspects", rules=rule_list)
        con.execute("drop table stg_suspects")
    checks["gx_rows"] = suite.element_count
    suite.element_count = inputs.rows  # rows validated against every rule (by statistics, SQL or GX)
    with t.step("counts"):
        written = writer.rows
        unpriced, unpriced_models = _unpriced(pq.read_table(daily))
    return _DayResult(inputs=inputs, suite=suite, refused=_quarantine_table(invalid_rows + conflict_rows, inputs, now),
                      invalid=len(invalid_rows), rule_counts=rule_counts, lookups=lookups, usage_cost=usage_cost,
                      daily=daily, written=written, duplicate_kinds=duplicate_kinds, unpriced=unpriced,
                      unpriced_models=unpriced_models, stale_tmp=stale_tmp, checks=checks)


def _suspects(con: duckdb.DuckDBPyConnection, inputs: DayInputs, rule_list: list[Any], t: _Timer) -> dict[str, Any]:
    """``stg_suspects``: the rules the footers prove, one narrow pass for the repeated ``event_id`` hashes, and one
    pass fetching the rows breaking an unproven rule, the copies of a repeated hash and the sample. A plain (not
    temp) table: GX reflects its columns from the catalog. Returns how the rules were checked, for the manifest."""
    with t.step("proofs"):
        proofs = prove(inputs.files, rule_list)
    with t.step("duplicate_hashes"):  # while GX is still importing in the background (DuckDB releases the GIL)
        con.execute("create or replace temp table stg_duplicate_hashes as "
                    + models.render("staging/stg_duplicate_hashes"))
    with t.step("suspects"):
        con.execute("create or replace table stg_suspects as " + models.render(
            "staging/stg_suspects", unproven=proofs.unproven_sql(), sample_rows=str(GX_SAMPLE_ROWS_PER_FILE)))
    return {**proofs.as_dict(), "gx_sample_rows_per_file": GX_SAMPLE_ROWS_PER_FILE}


def _publish(lake: Lake, day: date, res: _DayResult) -> dict[str, str]:
    outputs = {
        "usage_cost": _url(lake, _replace_partition(lake, res.usage_cost, CURATED_USAGE_COST, day)),
        "team_model_daily": _url(lake, _replace_partition(lake, res.daily, CURATED_TEAM_MODEL_DAILY, day)),
    }
    quarantine_path = _write_quarantine(lake, res.refused, day)
    if quarantine_path:
        outputs["quarantine"] = _url(lake, quarantine_path)
    return outputs


def _fill(manifest: Manifest, res: _DayResult, disagreement: str | None) -> None:
    inputs = res.inputs
    manifest.input_files = [{"path": f.path, "rows": f.rows} for f in inputs.files]
    manifest.unreadable_files = [{"path": p, "reason": r} for p, r in inputs.unreadable]
    # duplicates counts every dropped copy; duplicate_conflicts and superseded_placeholders are the part of it
    # that differed from the kept copy (each also in quarantine) and the crash placeholders a real event replaced
    manifest.counts = {"files": len(inputs.files), "unreadable_files": len(inputs.unreadable), "read": inputs.rows,
                       "valid": inputs.rows - res.invalid, "quarantined": res.invalid, "duplicates": res.duplicates,
                       "duplicate_conflicts": res.conflicts,
                       "superseded_placeholders": res.duplicate_kinds.get("superseded_placeholder", 0),
                       "written": res.written, "priced": res.written - res.unpriced, "unpriced": res.unpriced,
                       "price_lookups": res.lookups, "stale_tmp_files_removed": len(res.stale_tmp)}
    manifest.stale_tmp_files = res.stale_tmp
    manifest.checks = res.checks
    manifest.unpriced_models = res.unpriced_models
    manifest.validation = {**res.suite.as_dict(), "rule_counts": {k: v for k, v in res.rule_counts.items() if v},
                           "agrees_with_staging": disagreement is None}
    manifest.finished_at = datetime.now(UTC).isoformat()


def transform_day(*, lake: Lake, day: date, catalog: PriceSource, now: datetime | None = None,
                  threads: int | None = None, memory_limit: str | None = None,
                  lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                  on_step: Callable[[str], None] | None = None) -> Manifest:
    """Transform one day (see the module docstring) holding the day's lock; returns its manifest, already written.

    Another transform of the same day (another process, or on S3 another host) holds the lock meanwhile: this one
    waits up to ``lock_timeout`` seconds, then transforms the day again (idempotent: the same inputs give the same
    files), or raises :class:`common.locks.LockTimeout` naming the holder.
    """
    now = now or datetime.now(UTC)
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    manifest = Manifest(run_id=run_id, day=day.isoformat(), started_at=now.isoformat(),
                        price_version=catalog.version)
    with lake_lock(lake, RUN_MANIFESTS, LOCKS, f"dt={day.isoformat()}.lock", owner=f"transform run {run_id}",
                   what=f"the transform of {day}", timeout=lock_timeout) as lock:
        manifest.lock = {"path": lock.url, "waited_seconds": lock.waited_seconds,
                         "acquired_at": lock.acquired_at.isoformat()}
        # listed before the files are read: a file landing meanwhile is not in it, so it is found stale next time
        manifest.raw_listing = [f.as_dict() for f in raw_listing(lake=lake, day=day)]
        _transform_held(lake=lake, day=day, catalog=catalog, now=now, manifest=manifest, lock=lock,
                        threads=threads, memory_limit=memory_limit, on_step=on_step)
    return manifest


def _warn(day: date, res: _DayResult, disagreement: str | None) -> None:
    if disagreement:
        print(f"modelmeter transform: {day}: {disagreement}", file=sys.stderr)
    if res.conflicts:
        print(f"modelmeter transform: warning: {day}: {res.conflicts} conflicting "
              f"cop{'y' if res.conflicts == 1 else 'ies'} of an event_id (content differs from the kept copy): "
              "dropped and quarantined with the kept copy named", file=sys.stderr)


def _transform_held(*, lake: Lake, day: date, catalog: PriceSource, now: datetime, manifest: Manifest,
                    lock: LakeLock, threads: int | None, memory_limit: str | None,
                    on_step: Callable[[str], None] | None = None) -> None:
    t = _Timer(manifest.seconds, manifest.peak_rss_mb, on_step)
    with _workdir(lake, manifest.run_id) as workdir:
        con = connect(threads=threads, memory_limit=memory_limit, temp_dir=workdir / "spill")
        try:
            res = _run_models(con, lake=lake, day=day, catalog=catalog, now=now, workdir=workdir, t=t)
        finally:
            con.close()
        disagreement = validate.check_agreement(res.suite, rule_counts=res.rule_counts)
        _warn(day, res, disagreement)
        lock.check()  # an S3 lease lost while the models ran: another run may be publishing; write nothing
        with t.step("publish"):
            manifest.outputs = _publish(lake, day, res)
    _fill(manifest, res, disagreement)
    where = (RUN_MANIFESTS, f"dt={day.isoformat()}", f"{manifest.run_id}.json")
    manifest.path = lake.url(*where)
    lake.write_bytes(manifest.to_json().encode(), *where)


@contextmanager
def _workdir(lake: Lake, run_id: str) -> Iterator[Path]:
    """Scratch space: inside the lake when local (so finished files move in by rename), else a temp folder."""
    if lake.is_local:
        path = Path(lake.path(RUN_MANIFESTS, "_work", run_id))
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        with tempfile.TemporaryDirectory(prefix="modelmeter-transform-") as tmp:
            yield Path(tmp)


def transform_range(*, lake: Lake, date_from: date, date_to: date, price_version: str | None = None,
                    progress: Callable[[date, Manifest], None] | None = None, now: datetime | None = None,
                    threads: int | None = None, memory_limit: str | None = None,
                    lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[Manifest]:
    """Transform every day from ``date_from`` to ``date_to`` (inclusive) with one catalog version.

    Args:
        lake: the lake (local folder or S3).
        price_version: catalog version; None = the latest published one.
        progress: called after each day with its manifest.
        now: the run's clock (rules such as "event_time at most a day in the future" use it); default: now.
        threads, memory_limit: DuckDB settings (default: every core, DuckDB's own memory limit).
        lock_timeout: seconds to wait for a day another transform is working on (one day's lock at a time).
    """

    return transform_days(lake=lake, days=days_between(date_from, date_to), price_version=price_version,
                          progress=progress, now=now, threads=threads, memory_limit=memory_limit,
                          lock_timeout=lock_timeout)


def transform_days(*, lake: Lake, days: list[date], price_version: str | None = None,
                   progress: Callable[[date, Manifest], None] | None = None, now: datetime | None = None,
                   threads: int | None = None, memory_limit: str | None = None,
                   lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                   step_progress: Callable[[date, str], None] | None = None) -> list[Manifest]:
    """Transform each of ``days`` (any set, e.g. the stale days of :func:`transforms.late.stale_days`), in the
    order given, with one catalog version; the arguments are :func:`transform_range`'s, and ``step_progress``
    is told ``(day, step)`` as each step of a day starts."""
    validate.prefetch_import()  # overlaps the ~4 s GX import with the first day's file checks
    catalog = load_catalog(lake=lake, version=price_version)
    manifests = []
    for day in days:
        on_step = partial(step_progress, day) if step_progress else None
        manifest = transform_day(lake=lake, day=day, catalog=catalog, now=now, threads=threads,
                                 memory_limit=memory_limit, lock_timeout=lock_timeout, on_step=on_step)
        manifests.append(manifest)
        if progress:
            progress(day, manifest)
    return manifests



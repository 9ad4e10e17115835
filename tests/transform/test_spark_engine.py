"""The Spark engine (``transforms/spark_engine.py``, local mode: the same Spark 3.5.4 as Glue 5.0) against the DuckDB
engine: on the same lakes both write identical curated tables (every column, exact decimals, the schema), the same
quarantine rows with the same reasons, and manifests with the same counts.

pyspark is part of what ``make test`` installs (``requirements-spark.lock``), so a missing pyspark fails this module
with the line to run, never skips it. One local Spark session serves the module (~5 s to start); the two engines run
on twin lakes built from the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST, QUARANTINE_EVENTS, RAW_EVENTS, RUN_MANIFESTS
from common.contracts import FIELDS, REQUIRED, arrow_schema
from common.errors import UserError
from common.lake import Lake
from modelmeter.cli import main
from modelmeter.commands import transform as transform_command
from sql.dialect import render_helper
from tests.transform.conftest import (
    DAY,
    IMAGE_MODEL,
    MIDNIGHT,
    NOON,
    NOW,
    TEXT_MODEL,
    UNKNOWN_MODEL,
    build_catalog,
    event,
    write_raw,
)
from transforms import glue_job, run, spark_engine
from transforms.spark_session import SPARK_VERSION, find_java, java_version, local_session, spark_schema

try:
    import pyspark
except ImportError:  # make test installs it: a missing pyspark is a broken install, not a reason to skip
    pytest.fail("pyspark is not installed: run `make install-spark` (or pip install -r requirements-spark.lock)",
                pytrace=False)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = local_session(cores=2, memory="1g", shuffle_partitions=1, small_days=True)
    yield session
    session.stop()


# --- the lakes -------------------------------------------------------------------------------------------------

def _both(lakes: tuple[Lake, Lake], rows: list[dict[str, Any]], **kwargs: Any) -> None:
    for lake in lakes:
        write_raw(lake, rows, **kwargs)


def _write_table(lakes: tuple[Lake, Lake], table: pa.Table, name: str, hour: int) -> None:
    for lake in lakes:
        path = lake.path(RAW_EVENTS, f"dt={DAY.isoformat()}", f"hour={hour:02d}", name)
        lake.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with lake.fs.open_output_stream(path) as out:
            pq.write_table(table, out)


def _invalid_rows() -> list[dict[str, Any]]:
    """One row per kind of rule (a value rule of each check, a missing and an empty required field)."""
    return [
        event(input_tokens=-5), event(output_tokens=2 * 10**9), event(status="bogus"), event(event_id=None),
        event(team_id=""), event(schema_version=2), event(event_time=NOW + timedelta(days=3)),
        event(event_time=MIDNIGHT - timedelta(hours=1)), event(image_quality="ultra"), event(provider="nope"),
        event(operation="x", latency_ms=-1),  # two reasons in one row
    ]


def build_lake(lakes: tuple[Lake, Lake]) -> dict[str, Any]:
    """Raw files with everything the engines must agree on; the same files in both lakes."""
    before, after = MIDNIGHT + timedelta(hours=9), NOON + timedelta(hours=2)
    same = event(event_time=before)
    conflicting = event(event_time=before)
    placeholder = event(status="unknown", token_source="estimated", input_tokens=10)
    real = dict(placeholder, status="ok", token_source="exact", input_tokens=1234)
    first = [
        event(event_time=before), event(event_time=after, cache_read_input_tokens=500, cache_write_input_tokens=70),
        event(model_id=IMAGE_MODEL, operation="image", input_tokens=0, output_tokens=0, image_count=2),
        event(model_id=UNKNOWN_MODEL),  # unpriced: kept, NULL costs
        event(image_count=1),  # partly priced: the text model has no image price
        event(event_time=NOON),  # the first instant of the new price
        event(refusal_reason="budget", status="throttled", input_tokens=0, output_tokens=0, cost_usd="0"),
        same, same,  # a re-delivery inside one file
        conflicting, placeholder, *_invalid_rows(),
    ]
    _both(lakes, first, name="a.parquet", hour=9)
    # another file: re-delivered (identical), a conflicting copy, the real event the placeholder stood for
    _both(lakes, [same, dict(conflicting, input_tokens=999), real, event(team_id="team-b")], name="b.parquet", hour=10)
    # a producer writing input_tokens as text: "1200" is exact, "12k" is quarantined (values_cast_exactly)
    text = pa.schema([pa.field(f.name, pa.string() if f.name == "input_tokens" else f.type) for f in arrow_schema()])
    foreign = [event(input_tokens="1200"), event(input_tokens="12k")]
    _write_table(lakes, pa.Table.from_pylist(foreign, schema=text), "c.parquet", hour=11)
    # an older producer: required columns only (the optional ones take their defaults)
    old = pa.schema([f for f in arrow_schema() if f.name in REQUIRED])
    _write_table(lakes, pa.Table.from_pylist([{k: event()[k] for k in old.names}], schema=old), "d.parquet", 12)
    # a column named in another case is not the contract's: region is absent (NULL) in both engines
    cased = pa.schema([f.with_name("Region") if f.name == "region" else f for f in arrow_schema()])
    _write_table(lakes, pa.Table.from_pylist([{**event(team_id="team-cased"), "Region": "eu-west-1"}], schema=cased),
                 "f.parquet", 12)
    for lake in lakes:  # a file that is not Parquet: set aside, named, the others processed
        lake.write_bytes(b"PAR1 not really parquet", RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=13", "e.parquet")
    return {"same": same, "real": real}


def add_late_file(lakes: tuple[Lake, Lake], known: dict[str, Any]) -> None:
    """A file landing after the day's first run: new events, and another copy of one already billed."""
    _both(lakes, [event(event_time=MIDNIGHT + timedelta(hours=23)), known["same"], event(team_id="team-c")],
          name="late.parquet", hour=23)


# --- what the engines wrote, comparable --------------------------------------------------------------------------

def _one_file(lake: Lake, prefix: str) -> pa.Table:
    [part] = lake.list_files(prefix, f"dt={DAY.isoformat()}")
    assert part.endswith(f"dt={DAY.isoformat()}/{run.PART_FILE}")
    with lake.fs.open_input_file(part) as src:
        return pq.read_table(src)


def _relative(lake: Lake, text: str | None) -> str | None:
    return None if text is None else text.replace(lake.url(), "<lake>")


def outputs(lake: Lake) -> dict[str, Any]:
    """Both curated tables (sorted by their keys), the transform's quarantine rows and the last manifest."""
    usage = _one_file(lake, CURATED_USAGE_COST)
    daily = _one_file(lake, CURATED_TEAM_MODEL_DAILY)
    with lake.fs.open_input_file(lake.path(QUARANTINE_EVENTS, f"dt={DAY.isoformat()}", run.QUARANTINE_FILE)) as src:
        refused = pq.read_table(src).to_pylist()
    for row in refused:
        row["source_file"], row["reason"] = _relative(lake, row["source_file"]), _relative(lake, row["reason"])
    manifests = [json.loads(lake.read_bytes(path[len(lake.base) + 1:]))
                 for path in lake.list_files(RUN_MANIFESTS, f"dt={DAY.isoformat()}", suffix=".json")]
    manifest = max(manifests, key=lambda m: m["finished_at"])  # the runs share a clock (NOW): their ids tie
    return {"usage_cost": usage.sort_by("event_id"), "team_model_daily": daily.sort_by([("team_id", "ascending"),
                                                                                          ("model_id", "ascending")]),
            "quarantine": sorted(refused, key=lambda r: (r["source_file"], r["source_line"] or 0, r["reason"])),
            "manifest": manifest}


def assert_same(duck: dict[str, Any], spark: dict[str, Any]) -> None:
    for table in ("usage_cost", "team_model_daily"):
        # the schema as the files declare it (types and NOT NULL); Spark adds its own key-value metadata
        assert spark[table].schema.equals(duck[table].schema, check_metadata=False), table
        assert spark[table].equals(duck[table]), table
    assert spark["quarantine"] == duck["quarantine"]
    d, s = duck["manifest"], spark["manifest"]
    assert s["counts"] == d["counts"]
    assert s["validation"].pop("engine") == "spark"
    assert s["validation"] == d["validation"]
    assert s["unpriced_models"] == d["unpriced_models"]
    assert [_relative_url(f["path"]) for f in s["input_files"]] == [_relative_url(f["path"]) for f in d["input_files"]]
    assert [f["rows"] for f in s["input_files"]] == [f["rows"] for f in d["input_files"]]
    assert len(s["unreadable_files"]) == len(d["unreadable_files"])
    assert [f["path"] for f in s["raw_listing"]] == [f["path"] for f in d["raw_listing"]]
    assert s["price_version"] == d["price_version"]


def _relative_url(url: str) -> str:
    return url[url.index("/raw/"):]


@pytest.fixture(scope="module")
def twin_runs(spark, tmp_path_factory) -> dict[str, Any]:
    """The rich lake transformed by both engines, then again after a late file landed."""
    root = tmp_path_factory.mktemp("twins")
    duck_lake, spark_lake = Lake.open(root / "duckdb"), Lake.open(root / "spark")
    lakes = (duck_lake, spark_lake)
    known = build_lake(lakes)
    catalog = build_catalog()
    out: dict[str, Any] = {}
    for phase in ("first", "late"):
        if phase == "late":
            add_late_file(lakes, known)
        run.transform_day(lake=duck_lake, day=DAY, catalog=catalog, now=NOW, threads=2)
        spark_engine.transform_day(spark, lake=spark_lake, day=DAY, catalog=catalog, now=NOW)
        out[phase] = (outputs(duck_lake), outputs(spark_lake))
    out["known"] = known
    return out


# --- the tests ---------------------------------------------------------------------------------------------------

def test_spark_and_duckdb_write_identical_curated_tables(twin_runs):
    # GIVEN duplicates in and across files, a conflicting copy, a crash placeholder, a row breaking each kind of
    # rule, a value that does not cast, an old producer's file, a broken file and a price change at noon
    duck, spark = twin_runs["first"]
    # THEN both engines wrote the same tables, quarantine and counts
    assert_same(duck, spark)
    counts = spark["manifest"]["counts"]
    assert counts["unreadable_files"] == 1 and counts["duplicate_conflicts"] == 1
    assert counts["superseded_placeholders"] == 1 and counts["duplicates"] == 4  # 2 same, conflict, placeholder
    assert counts["quarantined"] == len(_invalid_rows()) + 1  # + "12k"
    assert counts["read"] == counts["valid"] + counts["quarantined"]
    assert counts["written"] == counts["valid"] - counts["duplicates"] == spark["usage_cost"].num_rows


def test_spark_keeps_the_first_copy_and_the_real_event_over_its_placeholder(twin_runs):
    _, spark = twin_runs["first"]
    rows = {r["event_id"]: r for r in spark["usage_cost"].to_pylist()}
    real = twin_runs["known"]["real"]
    assert rows[real["event_id"]]["input_tokens"] == 1234 and rows[real["event_id"]]["status"] == "ok"
    [conflict] = [r for r in spark["quarantine"] if r["reason"].startswith("conflicting copies")]
    assert "they differ in input_tokens" in conflict["reason"]
    assert "<lake>/raw/usage_events/dt=2026-11-20/hour=09/a.parquet row 10" in conflict["reason"]
    assert conflict["source_file"].endswith("hour=10/b.parquet") and conflict["source_line"] == 2


def test_spark_prices_by_the_price_in_force_at_event_time_exactly(twin_runs):
    _, spark = twin_runs["first"]
    rows = spark["usage_cost"].to_pylist()
    text = [r for r in rows if r["model_id"] == TEXT_MODEL and r["input_tokens"] == 1000 and r["image_count"] == 0
            and r["cache_read_input_tokens"] == 0 and r["team_id"] == "team-a"]
    by_time = {r["event_time"] < NOON for r in text}
    assert by_time == {True, False}  # events on both sides of the change
    for r in text:
        price = Decimal("3.00") if r["event_time"] < NOON else Decimal("2.50")
        assert r["input_cost"] == Decimal(1000) * price / 1_000_000  # 0.003 or 0.0025 USD, to the last decimal
    assert [r["region"] for r in rows if r["team_id"] == "team-cased"] == [None]  # "Region" is not region
    unknown = [r for r in rows if r["model_id"] == UNKNOWN_MODEL]
    assert unknown and all(r["total_cost"] is None and not r["priced"] for r in unknown)  # unpriced, never $0
    partly = [r for r in rows if r["model_id"] == TEXT_MODEL and r["image_count"] == 1]
    assert partly[0]["unpriced_dimensions"] == "images" and partly[0]["input_cost"] is not None


def test_spark_quarantines_each_rule_with_the_same_reasons(twin_runs):
    duck, spark = twin_runs["first"]
    reasons = [r["reason"] for r in spark["quarantine"]]
    assert "input_tokens: '12k' is not a valid integer" in reasons
    assert any("is not in partition dt=2026-11-20" in r for r in reasons)
    assert any(r.startswith("unreadable Parquet file") for r in reasons)
    assert any("; " in r and "operation 'x'" in r and "latency_ms -1 is negative" in r for r in reasons)
    assert reasons == [r["reason"] for r in duck["quarantine"]]


def test_spark_and_duckdb_agree_after_a_late_file(twin_runs):
    # GIVEN the same day re-run after a late file with new events and one more copy of a billed event
    duck, spark = twin_runs["late"]
    assert_same(duck, spark)
    first = twin_runs["first"][1]
    assert spark["usage_cost"].num_rows == first["usage_cost"].num_rows + 2  # the copy is not counted twice
    assert spark["manifest"]["counts"]["files"] == first["manifest"]["counts"]["files"] + 1


def test_spark_engine_on_an_s3_lake_under_moto(spark, s3_lake_uri, catalog):
    # GIVEN twin s3:// lakes (two buckets of moto's server): duplicates, a bad row, a broken file, the price change
    second = s3_lake_uri.replace("s3://lake-", "s3://lake2-")
    boto3.client("s3").create_bucket(Bucket=second.removeprefix("s3://").split("/")[0])
    lakes = (Lake.open(s3_lake_uri), Lake.open(second))
    dup = event()
    _both(lakes, [dup, event(event_time=NOON + timedelta(minutes=1)), event(status="fine")], name="a.parquet")
    _both(lakes, [dup, event(team_id="team-b")], name="b.parquet", hour=10)
    for lake in lakes:
        lake.write_bytes(b"PAR1 not really parquet", RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=09", "x.parquet")
    # WHEN DuckDB transforms one and Spark (files staged on the driver, as the DuckDB engine does) the other
    run.transform_day(lake=lakes[0], day=DAY, catalog=catalog, now=NOW, threads=2)
    manifest = spark_engine.transform_day(spark, lake=lakes[1], day=DAY, catalog=catalog, now=NOW)
    # THEN the S3 lakes hold the same tables, and Spark's outputs are single objects in the lake's layout
    assert_same(outputs(lakes[0]), outputs(lakes[1]))
    assert manifest.outputs["usage_cost"] == f"{second}/curated/usage_cost/dt={DAY}/{run.PART_FILE}"
    assert manifest.counts["written"] == 3 and manifest.counts["duplicates"] == 1


def test_transform_command_runs_the_spark_engine(spark, tmp_path, capsys, monkeypatch):
    # GIVEN a lake with a day of events (the command gets the module's session: one JVM per process)
    monkeypatch.setattr(transform_command, "local_session", lambda: spark)
    lake = Lake.open(tmp_path / "lake")
    write_raw(lake, [event(), event(), event(status="fine")])
    # WHEN `modelmeter transform --engine spark` runs it
    code = main(["transform", "--engine", "spark", "--from", str(DAY), "--to", str(DAY),
                 "--lake", str(tmp_path / "lake")])
    # THEN the day is written and summarised as by the DuckDB engine, and the manifest names the engine
    assert code == 0
    assert f"{DAY}: read 3 / valid 2 / quarantined 1 / duplicates 0 / written 2" in capsys.readouterr().out
    [manifest] = lake.list_files(RUN_MANIFESTS, suffix=".json")
    assert json.loads(Path(manifest).read_text())["validation"]["engine"] == "spark"


def test_the_glue_job_entry_point_runs_the_spark_engine(spark, tmp_path):
    # GIVEN a lake with a day of events; WHEN the Glue script's main runs with the arguments Glue passes (its own
    # --JOB_ID among them), files staged on the driver as in local mode
    lake = Lake.open(tmp_path / "lake")
    write_raw(lake, [event(), event(team_id="team-b")])
    manifests = glue_job.main(["--lake", str(tmp_path / "lake"), "--date-from", str(DAY), "--date-to", str(DAY),
                               "--stage-locally", "true", "--JOB_ID", "j_1"], now=NOW, spark=spark)
    # THEN the day is transformed by the Spark engine
    assert [(m.day, m.counts["read"], m.counts["written"]) for m in manifests] == [(str(DAY), 2, 2)]
    assert manifests[0].validation["engine"] == "spark"


def test_the_glue_job_schedules_yesterday_today_and_the_late_days(tmp_path, catalog):
    # GIVEN a lake whose day three days ago got a late file after its run
    lake = Lake.open(tmp_path / "lake")
    old = DAY - timedelta(days=3)
    write_raw(lake, [event(event_time=MIDNIGHT - timedelta(days=3, hours=-1))], day=old, hour=1)
    run.transform_day(lake=lake, day=old, catalog=catalog, now=NOW)
    write_raw(lake, [event(event_time=MIDNIGHT - timedelta(days=3, hours=-2))], day=old, hour=2, name="late.parquet")
    # WHEN the job picks its days on DAY's schedule; THEN yesterday and today, then the stale day at its version
    groups = glue_job.scheduled_days(lake, today=DAY, lookback_days=35, max_late_days=7)
    assert groups == [(None, [DAY - timedelta(days=1), DAY]), ("test-v1", [old])]
    with pytest.raises(SystemExit):  # half a range is a usage error, as in the CLI
        glue_job.parse_args(["--lake", "x", "--date-from", str(DAY)])


# --- the pieces --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("helper", "args", "spark_sql"), [
    ("mm_utc_date", ["t"], "CAST(t AS DATE)"),
    ("mm_money", ["x"], "CAST(x AS DECIMAL(38, 12))"),
    ("mm_pico_to_money", ["p"], "CAST(CAST(p AS DECIMAL(18, 0)) * CAST(0.000000000001 AS DECIMAL(18, 12)) "
                                "AS DECIMAL(38, 12))"),
    ("mm_hash64", ["e"], "XXHASH64(e)"),
])
def test_the_transforms_helpers_render_for_spark(helper, args, spark_sql):
    assert render_helper(helper, args, dialect="spark", config=None) == spark_sql


def test_the_helpers_compute_exactly_in_spark(spark):
    # pico-dollars near the top of BIGINT's range become DECIMAL(38,12) exactly; UTC days cut at UTC midnight
    money = render_helper("mm_pico_to_money", ["cast(999999999999999999 as bigint)"], dialect="spark", config=None)
    day = render_helper("mm_utc_date", ["timestamp'2026-11-20 23:59:59.999'"], dialect="spark", config=None)
    row = spark.sql(f"select {money} as money, {day} as day").collect()[0]
    assert row["money"] == Decimal("999999.999999999999") and str(row["day"]) == "2026-11-20"


def test_spark_is_the_glue_version():
    assert pyspark.__version__ == SPARK_VERSION == "3.5.4"


def test_an_unsupported_java_is_refused_with_what_to_set(tmp_path):
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho \'openjdk version "25.0.1" 2025-10-21\' >&2\n')
    fake.chmod(0o755)
    assert java_version(str(fake)) == 25
    with pytest.raises(UserError, match="is Java 25: set JAVA_HOME to a Java 17"):
        find_java({"JAVA_HOME": str(tmp_path / "jdk")})
    with pytest.raises(UserError, match="JAVA_HOME=.* has no bin/java"):
        find_java({"JAVA_HOME": str(tmp_path / "nowhere")})
    assert java_version(find_java()) in (8, 11, 17)  # the one this machine's Spark uses


def test_every_contract_field_reaches_spark():
    # the staged columns Spark reads are the contract's, in its order (a new field needs no engine change)
    assert spark_schema(arrow_schema()).names == [f.name for f in FIELDS]

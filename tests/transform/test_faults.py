"""Faults the transform must survive without losing or inventing money: values that do not cast to the contract
type, conflicting copies of one event, crash placeholders, and temporary files a killed writer left behind."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from common.constants import CURATED_USAGE_COST, RAW_EVENTS
from common.contracts import arrow_schema
from common.lake import STALE_TMP_AGE, Lake
from tests.transform.conftest import DAY, NOW, PER, TEXT_PRICES, event, quarantine, usage_cost, write_raw
from transforms.inputs import InputFile, raw_view_sql
from transforms.run import transform_day


def _run(lake, catalog):
    return transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)


def _write_foreign(lake: Lake, rows: list[dict], types: dict[str, pa.DataType], name: str) -> str:
    """A raw file as a foreign producer may write it: the contract's columns, but ``types`` stored otherwise."""
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in arrow_schema()])
    path = lake.path(RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=09", name)
    lake.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_a_value_that_does_not_cast_is_quarantined_not_billed_as_zero(lake, catalog):
    # GIVEN a producer that wrote input_tokens as text and output_tokens as floats
    exact, k_suffix, decimal_text, absent = (event(input_tokens="1200"), event(input_tokens="12k"),
                                             event(input_tokens="12.5"), event(input_tokens=None))
    whole, fraction = event(output_tokens=200.0), event(output_tokens=200.5)
    text_file = _write_foreign(lake, [exact, k_suffix, decimal_text, absent], {"input_tokens": pa.string()},
                               "a.parquet")
    _write_foreign(lake, [whole, fraction], {"output_tokens": pa.float64()}, "b.parquet")
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN each value that does not cast exactly makes its row invalid, named with its column and value
    reasons = {r["event_id"]: r for r in quarantine(lake)}
    assert {k: r["reason"] for k, r in reasons.items()} == {
        k_suffix["event_id"]: "input_tokens: '12k' is not a valid integer",
        decimal_text["event_id"]: "input_tokens: '12.5' is not a valid integer",  # DuckDB alone would bill 13
        fraction["event_id"]: "output_tokens: 200.5 is not a valid integer",
    }
    assert reasons[k_suffix["event_id"]]["source_file"] == text_file
    assert reasons[k_suffix["event_id"]]["source_line"] == 2
    assert manifest.counts["valid"] == 3 and manifest.counts["quarantined"] == 3
    assert manifest.validation["rule_counts"] == {"values_cast_exactly": 3}
    assert manifest.validation["agrees_with_staging"] is True  # GX's suite has the same rule
    # AND the values that cast exactly are billed as the numbers they spell; an absent one takes the default
    curated = {r["event_id"]: r for r in usage_cost(lake)}
    assert curated[exact["event_id"]]["input_tokens"] == 1200
    assert curated[exact["event_id"]]["input_cost"] == 1200 * TEXT_PRICES["input_tokens"] / PER
    assert curated[absent["event_id"]]["input_tokens"] == 0
    assert curated[whole["event_id"]]["output_tokens"] == 200


def test_a_file_of_the_contract_types_is_read_without_casts():
    # the clean path: no try_cast and no cast check, only a NULL cast_problems column
    file = InputFile(path="p", local_path="/x.parquet", rows=1, schema=arrow_schema())
    sql = raw_view_sql([file])
    assert "try_cast" not in sql and "cast(null as varchar) as cast_problems" in sql


def test_copies_of_one_event_that_differ_are_counted_and_quarantined_naming_the_kept_copy(lake, catalog, capsys):
    # GIVEN an event re-delivered identically, and another whose second copy claims more tokens
    same, first = event(), event(input_tokens=1000)
    changed = {**first, "input_tokens": 9000, "output_tokens": 999}
    kept_file = write_raw(lake, [same, first], name="a.parquet")
    dropped_file = write_raw(lake, [same, event(), changed], name="b.parquet")
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN the first copy read is billed, both dropped copies are counted, and only the differing one is a conflict
    assert {r["event_id"]: r["input_tokens"] for r in usage_cost(lake)}[first["event_id"]] == 1000
    assert manifest.counts["duplicates"] == 2 and manifest.counts["duplicate_conflicts"] == 1
    assert manifest.counts["superseded_placeholders"] == 0 and manifest.counts["written"] == 3
    # AND the dropped conflicting copy is in quarantine, its reason naming what differs and the kept copy
    [row] = quarantine(lake)
    assert row["event_id"] == first["event_id"]
    assert row["source_file"] == dropped_file and row["source_line"] == 3
    assert row["reason"] == (f"conflicting copies of event_id {first['event_id']} (they differ in input_tokens, "
                             f"output_tokens): kept the copy in {kept_file} row 2, dropped this one")
    assert json.loads(row["raw"])["input_tokens"] == 9000
    assert manifest.counts["quarantined"] == 0  # no row broke a rule
    # AND stderr carries a warning line for the day
    assert f"warning: {DAY}: 1 conflicting copy of an event_id" in capsys.readouterr().err


def test_a_crash_placeholder_gives_way_to_the_real_event_whatever_the_file_order(lake, catalog):
    # GIVEN a placeholder (status unknown, estimated counts) read before its real event, and a lone placeholder
    real = event(input_tokens=4000, output_tokens=300)
    placeholder = {**real, "status": "unknown", "token_source": "estimated", "input_tokens": 3500,
                   "output_tokens": 0, "http_status": None}
    lone = event(status="unknown", token_source="estimated", input_tokens=50, output_tokens=0)
    write_raw(lake, [placeholder, lone], name="a-recovered.parquet")
    write_raw(lake, [real], name="b-late.parquet")
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN the real copy is billed (not the first one read), the placeholder is counted as superseded, no conflict
    curated = {r["event_id"]: r for r in usage_cost(lake)}
    assert (curated[real["event_id"]]["status"], curated[real["event_id"]]["input_tokens"]) == ("ok", 4000)
    assert manifest.counts["superseded_placeholders"] == 1 and manifest.counts["duplicates"] == 1
    assert manifest.counts["duplicate_conflicts"] == 0 and quarantine(lake) == []
    # AND a placeholder with no real event is billed on its estimate
    assert (curated[lone["event_id"]]["status"], curated[lone["event_id"]]["input_tokens"]) == ("unknown", 50)


def test_a_killed_writers_old_tmp_files_are_removed_and_counted_and_a_fresh_one_left_alone(lake, catalog):
    # GIVEN a raw partition with one good file, a temporary file a writer killed two hours ago left (as
    # Lake.write_parquet names them), one being written right now, and an old one in the curated partition
    good = event()
    hour = os.path.dirname(write_raw(lake, [good]))
    stale = os.path.join(hour, ".modelmeter-usage-1-x.parquet.0123abcd.tmp")
    fresh = os.path.join(hour, ".modelmeter-usage-1-y.parquet.4567ef01.tmp")
    curated = lake.path(CURATED_USAGE_COST, f"dt={DAY.isoformat()}", ".part-0.parquet.89ab.tmp")
    os.makedirs(os.path.dirname(curated))
    two_hours_ago = time.time() - 2 * STALE_TMP_AGE.total_seconds()
    for path in (stale, fresh, curated):
        with open(path, "wb") as out:
            out.write(b"PAR1 half a file")
    for path in (stale, curated):
        os.utime(path, (two_hours_ago, two_hours_ago))
    # WHEN the day is transformed
    manifest = _run(lake, catalog)
    # THEN the old ones are gone and named in the manifest, the fresh one is untouched, and none was read as input
    assert not os.path.exists(stale) and not os.path.exists(curated) and os.path.exists(fresh)
    assert manifest.counts["stale_tmp_files_removed"] == 2
    assert sorted(manifest.stale_tmp_files) == sorted([stale, curated])
    assert manifest.counts["files"] == 1 and manifest.unreadable_files == []
    assert [r["event_id"] for r in usage_cost(lake)] == [good["event_id"]]


def test_listings_never_show_a_writers_tmp_files(lake):
    partition = (RAW_EVENTS, f"dt={DAY.isoformat()}", "hour=09")
    real = lake.write_parquet(pa.table({"x": [1]}), *partition, "a.parquet")
    for name in (".a.parquet.0123.tmp", ".b.parquet.4567.tmp"):
        with open(os.path.join(os.path.dirname(real), name), "wb") as out:
            out.write(b"")
    assert lake.list_files(*partition) == [real]
    assert lake.list_files(*partition, suffix="") == [real]  # the partition replacement's listing, too
    assert lake.remove_stale_tmp(*partition) == []  # too young to be a leftover

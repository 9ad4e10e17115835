"""`modelmeter ingest`: valid lines land as Firehose would, every other line is quarantined with file, line, reason."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from common.contracts import arrow_schema
from modelmeter.cli import main


def line(event_id, when="2026-11-25T13:45:01.123Z", **extra):
    obj = {"schema_version": 1, "event_id": event_id, "request_id": f"r-{event_id}", "event_time": when,
           "team_id": "search", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0", "operation": "chat",
           "status": "ok", "input_tokens": 10, "output_tokens": 20}
    obj.update(extra)
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_ingest_lands_good_lines_by_hour_and_quarantines_the_rest(tmp_path, capsys):
    # GIVEN a file with events in two hours of one day plus four bad lines
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join([
        line("a"),
        line("b", "2026-11-25T14:00:00Z"),
        "{not json",
        line("c", team_id=...),
        "",
        line("d", input_tokens="ten"),
        line("e", schema_version=7),
        line("f", "2026-11-25T14:59:59.999Z"),
    ]) + "\n")
    lake = tmp_path / "lake"

    # WHEN it is ingested
    code = main(["ingest", str(src), "--lake", str(lake)])

    # THEN the counts add up, good events land in dt/hour partitions with the v1 schema
    out, err = capsys.readouterr()
    assert code == 0
    assert "read 7 / landed 3 / quarantined 4" in out
    raw = lake / "raw" / "usage_events" / "dt=2026-11-25"
    assert sorted(p.name for p in raw.iterdir()) == ["hour=13", "hour=14"]
    files = sorted(raw.rglob("*.parquet"))
    assert all(f.name.startswith("modelmeter-usage-1-") for f in files)
    assert pq.read_schema(files[0]).remove_metadata().equals(arrow_schema().remove_metadata())
    landed = ds.dataset(str(raw), partitioning="hive").to_table()
    assert sorted(landed["event_id"].to_pylist()) == ["a", "b", "f"]
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"

    # AND each bad line is kept with its file, line and reason, and named on stderr
    q = ds.dataset(str(lake / "quarantine" / "usage_events"), partitioning="hive").to_table().to_pylist()
    by_line = {r["source_line"]: r for r in q}
    assert set(by_line) == {3, 4, 6, 7}
    assert by_line[3]["reason"].startswith("not valid JSON")
    assert by_line[4]["reason"] == "team_id is missing"
    assert by_line[4]["event_id"] == "c"  # best-effort keys kept for the analyst
    assert by_line[6]["reason"] == "input_tokens must be an integer, got a string 'ten'"
    assert by_line[7]["reason"] == "unknown schema_version 7 (this reader knows 1)"
    assert {r["source_file"] for r in q} == {str(src)}
    assert {r["stage"] for r in q} == {"ingest"}
    assert by_line[3]["raw"] == "{not json"
    assert f"quarantined {src}:3: not valid JSON" in err


def test_ingesting_twice_keeps_both_deliveries_for_the_transform_to_dedupe(tmp_path, capsys):
    src = tmp_path / "e.jsonl"
    src.write_text(line("a") + "\n")
    lake = tmp_path / "lake"

    assert main(["ingest", str(src), "--lake", str(lake)]) == 0
    assert main(["ingest", str(src), "--lake", str(lake)]) == 0

    table = ds.dataset(str(lake / "raw" / "usage_events"), partitioning="hive").to_table()
    assert table["event_id"].to_pylist() == ["a", "a"]  # at least once, as Firehose; the transform dedupes


def test_a_missing_file_is_a_one_line_error_and_exit_1(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "nope.jsonl"), "--lake", str(tmp_path / "lake")])

    _, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines()[0].endswith(f"no such file: {tmp_path / 'nope.jsonl'}")
    assert not (tmp_path / "lake").exists()


def test_non_utf8_lines_are_quarantined_not_fatal(tmp_path, capsys):
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(line("a").encode() + b"\n\xff\xfe garbage\n")

    assert main(["ingest", str(src), "--lake", str(tmp_path / "lake")]) == 0

    out, err = capsys.readouterr()
    assert "read 2 / landed 1 / quarantined 1" in out
    assert f"{src}:2: not UTF-8 text" in err


def test_an_event_dated_more_than_a_day_ahead_is_quarantined_at_ingest(tmp_path, capsys):
    # GIVEN an event from a producer whose clock says 2099, beside a good one
    src = tmp_path / "events.jsonl"
    src.write_text(line("now", "2026-11-25T13:45:01.123Z") + "\n" + line("future", "2099-01-01T00:00:00Z") + "\n")
    lake = tmp_path / "lake"
    # WHEN it is ingested
    code = main(["ingest", str(src), "--lake", str(lake)])
    # THEN it is set aside with its reason and line, not landed in dt=2099-01-01 where no transform would see it
    out, err = capsys.readouterr()
    assert code == 0 and "read 2 / landed 1 / quarantined 1" in out
    assert not (lake / "raw" / "usage_events" / "dt=2099-01-01").exists()
    q = ds.dataset(str(lake / "quarantine" / "usage_events"), partitioning="hive").to_table().to_pylist()
    assert [(r["event_id"], r["source_line"], r["reason"]) for r in q] == [
        ("future", 2, "event_time 2099-01-01T00:00:00.000Z is more than a day in the future")]
    assert f"{src}:2: event_time 2099-01-01T00:00:00.000Z is more than a day in the future" in err

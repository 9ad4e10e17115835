"""The fast path of `modelmeter ingest` lands exactly what the per-line path lands, and leaves it every other line.

Each test runs the same input through both paths (``ingest_files(..., fast=False)`` is the per-line reference) into
two real lakes and compares the raw Parquet and the quarantine they wrote.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from common.contracts import arrow_schema
from common.lake import Lake
from ingest import files
from ingest.files import ingest_files


def event(n: int, **extra) -> dict:
    obj = {"schema_version": 1, "event_id": f"e-{n:05d}", "request_id": f"line-{n}",
           "event_time": f"2026-11-25T{n % 24:02d}:{n % 60:02d}:01.{n % 1000:03d}Z", "team_id": "search",
           "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0", "operation": "chat", "status": "ok",
           "input_tokens": n, "output_tokens": 2 * n, "streaming": n % 2 == 0, "latency_ms": None}
    obj.update(extra)
    return {k: v for k, v in obj.items() if v is not ...}


def jl(n: int, **extra) -> bytes:
    return json.dumps(event(n, **extra)).encode()


# Lines the fast path must hand to the per-line path, each with what the per-line path does with it.
TRICKY: list[bytes] = [
    b"{not json",
    jl(0, team_id=5),                                  # a number for a string: refused
    jl(0, input_tokens="10"),                          # a string for an integer: refused
    jl(0, schema_version=True),                        # a boolean for the version: refused
    jl(0, input_tokens=12.0),                          # a whole float: the per-line path lands it as 12
    jl(0, latency_ms=-(2**63)),                        # out of the range it accepts: refused
    jl(0, team_id="   "),                              # blank: refused
    jl(0, team_id="équipe"),                           # non-ASCII text: landed
    jl(0, event_time="2026-11-25T15:00:00+02:00"),     # another offset: landed, converted to UTC
    jl(0, event_time="2026-11-25T13:00:00.1234567Z"),  # seven fraction digits: landed, truncated
    jl(0, event_time="2026-02-30T13:00:00.000Z"),      # no such day: refused
    jl(0, event_time="2026-11-25T13:00:00"),           # no zone: refused
    jl(0, event_time="2099-01-01T00:00:00.000Z"),      # more than a day ahead: refused
    jl(0, event_time="1969-12-31T23:59:59.999Z"),      # before 1970: landed by the per-line path
    jl(0) + jl(0),                                     # two objects on one line: refused
    jl(0)[:-1] + b', "team_id": "other"}',             # a key twice: the per-line path keeps the last
    jl(0)[:-1] + b', "extra": {"deep": [1, [2, {"x": null}]]}, "n": NaN}',  # unknown fields: ignored, landed
    jl(0)[:-1] + b', "x": "\xff"}',                    # not UTF-8 inside an unknown field: refused
    b"\xfe\xff garbage",
    jl(0)[:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",  # nested too deeply for json.loads: refused
    jl(0, team_id="\\ud800").replace(b"\\\\ud800", b"\\ud800"),  # a lone surrogate escape: refused
    jl(0)[:-1] + b', "note": "' + b"x" * (3 << 20) + b'"}',      # a very long line (3 MiB): landed
    b'["an", "array"]',
    b"   ",                                            # blank: skipped, not counted
    b"\x0c",                                           # form feed only: blank for the per-line path
]


def tricky_line(i: int) -> int:
    """The line number (and ``n``) of ``TRICKY[i]`` in :func:`mixed_file`: 40 good lines before each."""
    return 41 * (i + 1)


def mixed_file(path: Path) -> Path:
    """Good lines around every tricky line, CRLF and blank lines, a duplicate, and a truncated last line."""
    out: list[bytes] = []
    n = 1
    for tricky in TRICKY:
        for _ in range(40):
            out.append(jl(n))
            n += 1
        out.append(tricky.replace(b'"line-0"', f'"line-{n}"'.encode()).replace(b'"e-00000"', f'"x-{n}"'.encode()))
        n += 1
    out.append(out[3])  # a duplicate delivery of line 4: landed twice, as Firehose would
    out.append(jl(n) + b"\r")  # a CRLF line
    out.append(b"")
    out.append(jl(n + 1)[:-20])  # cut short, no newline at the end
    path.write_bytes(b"\n".join(out))
    return path


def run(tmp_path: Path, src: Path, *, fast: bool, name: str):
    lake = Lake.open(str(tmp_path / name))
    result = ingest_files(lake, [src], fast=fast)
    raw_folder = tmp_path / name / "raw" / "usage_events"
    raw = ds.dataset(str(raw_folder), partitioning="hive") if raw_folder.exists() else ds.dataset(
        arrow_schema().empty_table().append_column("dt", pa.array([], pa.string())))
    folder = tmp_path / name / "quarantine" / "usage_events"
    empty = {"source_line": pa.array([], pa.int64()), "reason": pa.array([], pa.string()),
             "raw": pa.array([], pa.string())}
    quarantine = ds.dataset(str(folder), partitioning="hive").to_table() if folder.exists() else pa.table(empty)
    return result, raw.to_table(), quarantine, raw


def landed(table: pa.Table) -> pa.Table:
    return table.sort_by([("request_id", "ascending"), ("event_id", "ascending"), ("team_id", "ascending")])


def refused(quarantine: pa.Table) -> list[tuple]:
    return sorted(zip(quarantine["source_line"].to_pylist(), quarantine["reason"].to_pylist(),
                      quarantine["raw"].to_pylist(), strict=True))


@pytest.fixture
def small_chunks(monkeypatch):
    # many chunks (and lines across chunk ends) and more than one write, on a file of a few MiB
    monkeypatch.setattr(files, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(files, "LAND_ROWS", 300)


def test_a_mixed_file_lands_and_quarantines_the_same_lines_on_both_paths(tmp_path, small_chunks):
    # GIVEN a file of good lines with every kind of line the fast path cannot prove in between
    src = mixed_file(tmp_path / "mixed.jsonl")

    # WHEN it is ingested by the per-line path and by the fast path
    slow, slow_table, slow_q, slow_raw = run(tmp_path, src, fast=False, name="slow")
    fast, fast_table, fast_q, fast_raw = run(tmp_path, src, fast=True, name="fast")

    # THEN the counts agree, and most lines took the fast path
    assert (fast.read, fast.landed, fast.quarantined) == (slow.read, slow.landed, slow.quarantined)
    assert fast.read == fast.landed + fast.quarantined
    assert fast.fast >= 0.9 * fast.landed
    # AND the raw lake holds the same rows, with the contract's types, in the same partitions
    assert fast_table.schema.remove_metadata().equals(slow_table.schema.remove_metadata())
    assert landed(fast_table).equals(landed(slow_table))
    assert {tuple(f.split("/")[-3:-1]) for f in fast_raw.files} == {tuple(f.split("/")[-3:-1]) for f in slow_raw.files}
    # AND each refused line is quarantined once, with its line and the per-line path's reason
    assert refused(fast_q) == refused(slow_q)
    lines = fast_q["source_line"].to_pylist()
    assert len(lines) == len(set(lines)) == fast.quarantined
    # AND every counted line is either landed or quarantined, never both, never neither
    landed_lines = [int(r.removeprefix("line-")) for r in fast_table["request_id"].to_pylist()]
    assert not set(landed_lines) & set(lines)
    assert len(landed_lines) == len(set(landed_lines)) + 1  # the duplicate delivery, landed twice


def test_the_tricky_lines_get_the_per_line_paths_verdicts(tmp_path, small_chunks):
    src = mixed_file(tmp_path / "mixed.jsonl")
    result, table, quarantine, _ = run(tmp_path, src, fast=True, name="fast")

    reasons = {r["raw"][:40]: r["reason"] for r in quarantine.to_pylist()}
    assert any(r.startswith("not valid JSON") for r in reasons.values())
    assert "team_id must be a string, got an integer" in reasons.values()
    assert "team_id is empty" in reasons.values()
    assert "latency_ms -9223372036854775808 is out of range" in reasons.values()
    assert "team_id holds a lone surrogate escape, not Unicode text" in reasons.values()
    assert "not valid JSON (nested too deeply)" in reasons.values()
    assert sum(r.startswith("not UTF-8 text") for r in reasons.values()) == 2
    rows = {int(r["request_id"].removeprefix("line-")): r for r in table.to_pylist()}
    assert rows[tricky_line(4)]["input_tokens"] == 12
    assert rows[tricky_line(7)]["team_id"] == "équipe"
    assert str(rows[tricky_line(8)]["event_time"]) == "2026-11-25 13:00:00+00:00"  # +02:00, stored in UTC
    assert rows[tricky_line(9)]["event_time"].microsecond == 123_000  # stored in milliseconds
    assert rows[tricky_line(15)]["team_id"] == "other"  # the last of a key given twice, as json.loads reads it
    assert {tricky_line(i) for i in (4, 7, 8, 9, 13, 15, 16, 21)} <= set(rows)
    # the truncated last line is quarantined with its own line number
    last = max(quarantine["source_line"].to_pylist())
    assert last == src.read_bytes().count(b"\n") + 1


def test_a_clean_file_takes_the_fast_path_only_and_writes_the_same_parquet(tmp_path, small_chunks):
    src = tmp_path / "clean.jsonl"
    src.write_bytes(b"\n".join(jl(n, image_quality="standard" if n % 3 else None) for n in range(1, 2001)) + b"\n")

    slow, slow_table, _, _ = run(tmp_path, src, fast=False, name="slow")
    fast, fast_table, _, _ = run(tmp_path, src, fast=True, name="fast")

    assert fast.fast == fast.landed == slow.landed == 2000 and fast.quarantined == 0
    assert landed(fast_table).equals(landed(slow_table))
    assert fast_table.select(arrow_schema().names).schema.remove_metadata().equals(arrow_schema().remove_metadata())


@pytest.mark.parametrize("when", ["2026-11-25T13:45:01Z", "2026-11-25T13:45:01.1Z", "2026-11-25T13:45:01.123456Z",
                                  "2026-11-25T13:45:01.999+00:00", "2024-02-29T23:59:59.999Z",
                                  "2026-11-25T13:45:01.123z", "2026-11-25 13:45:01.123Z", "2025-02-29T00:00:00.000Z",
                                  "2026-11-25T13:45:60.000Z", "2026-13-01T00:00:00.000Z", "0000-01-01T00:00:00Z"])
def test_every_event_time_form_reads_as_the_per_line_path_reads_it(tmp_path, when):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"\n".join(jl(n, event_time=when) for n in range(1, 4)) + b"\n")

    slow, slow_table, slow_q, _ = run(tmp_path, src, fast=False, name="slow")
    fast, fast_table, fast_q, _ = run(tmp_path, src, fast=True, name="fast")

    assert (fast.landed, fast.quarantined) == (slow.landed, slow.quarantined)
    assert landed(fast_table).equals(landed(slow_table))
    assert refused(fast_q) == refused(slow_q)


def test_a_chunk_of_short_bad_lines_is_flushed_within_the_chunk(tmp_path: Path, monkeypatch) -> None:
    # GIVEN one chunk of 1,000 bad lines and a batch of 100 lines (8 MiB of "x\n" would be 4 M lines held at once)
    monkeypatch.setattr(files, "BATCH_LINES", 100)
    flushes: list[int] = []
    real_flush = files._Lander.flush

    def counting_flush(self):
        flushes.append(self.held)
        return real_flush(self)

    monkeypatch.setattr(files._Lander, "flush", counting_flush)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"x\n" * 1000)
    result = ingest_files(Lake.open(str(tmp_path / "lake")), [path])
    # THEN every line is quarantined and never more than a batch was held before a flush
    assert result.quarantined == 1000 and result.landed == 0
    assert len(flushes) >= 10 and max(flushes) <= 100


def test_chunks_parsed_out_of_order_are_landed_in_line_order(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a file of many chunks whose first chunk's parse finishes only after the second chunk's (the two parser
    # threads race), with bad lines spread over it
    monkeypatch.setattr(files, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(files, "LAND_ROWS", 10_000)  # one write: one file per hour, rows in the order landed
    real_prepare = files._prepare
    second_done = threading.Event()
    calls: list[int] = []

    def racing_prepare(chunk, now):
        calls.append(len(calls))
        k = calls[-1]
        if k == 0:
            assert second_done.wait(timeout=10), "the second chunk was not parsed alongside the first"
        prepared = real_prepare(chunk, now)
        if k == 1:
            second_done.set()
        return prepared

    monkeypatch.setattr(files, "_prepare", racing_prepare)
    src = tmp_path / "many.jsonl"
    src.write_bytes(b"\n".join(b"{bad" if n % 97 == 0 else jl(n) for n in range(1, 1501)) + b"\n")

    # WHEN it is ingested by the fast path
    result, table, quarantine, raw = run(tmp_path, src, fast=True, name="fast")

    # THEN the second chunk was indeed ready first, every line is counted once, bad lines keep their own numbers
    assert second_done.is_set() and len(calls) > 2
    assert (result.read, result.landed, result.quarantined) == (1500, 1500 - 15, 15)
    assert sorted(quarantine["source_line"].to_pylist()) == [97 * k for k in range(1, 16)]
    # AND each raw file holds its rows in line order
    for name in raw.files:
        numbers = [int(r.removeprefix("line-")) for r in pq.read_table(name)["request_id"].to_pylist()]
        assert numbers == sorted(numbers) and len(numbers) > 1

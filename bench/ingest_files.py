"""Ingest benchmark (issue 15, item 3): ``modelmeter ingest`` of JSON Lines against DuckDB's ``read_json`` floor.

Steps: generate N events (default 10 M over one day; ``--quick``: 1 M) as one JSON Lines file, every field written as
the gateway writes it (``modelmeter.synthetic`` → DuckDB ``COPY … (FORMAT json)``), a few of them (``--bad-rate``)
with a null ``team_id`` so that the per-line path has work; then, in the same run and each in its own process:

* ``modelmeter ingest FILE --lake DIR``, the whole command as users run it (interpreter start-up included);
* the floor: DuckDB ``read_json`` with the contract's explicit column types → ``COPY … (FORMAT parquet,
  PARTITION_BY (dt, hour), COMPRESSION zstd)`` (no validation, no quarantine).

Prints both rates, CPU seconds, peak RSS and the load average at the start of each, then the best run against the
targets (ingest ≥ 270 k events/s; ≤ 1.5× the floor's time), each "met" or "missed". The machine is shared: the ratio
is the figure that travels, and runs alternate which goes first. Not a test: nothing here runs in ``make test``.

    python bench/ingest_files.py [--quick] [--events N] [--bad-rate 0.0001] [--dir DIR] [--keep] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = date(2026, 11, 20)
TARGET_RATE = 270_000
TARGET_RATIO = 1.5


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def _generate(events: int, bad_rate: float, work: Path) -> Path:
    """The JSON Lines file: synthetic raw events (``modelmeter.synthetic``) exported by DuckDB, times as the gateway
    writes them (``2026-11-20T13:45:01.123Z``)."""
    import duckdb

    from common.lake import Lake
    from modelmeter.synthetic import generate

    lake = work / "source-lake"
    generate(lake=Lake.open(str(lake)), n=events, days=1, start=DAY, teams=200, models=40, duplicate_rate=0.0,
             invalid_rate=0.0, seed=1, now=datetime(2026, 11, 21, 3, tzinfo=UTC))
    out = work / "events.jsonl"
    every = max(1, round(1 / bad_rate)) if bad_rate > 0 else 0
    spoil = f"case when hash(event_id) % {every} = 0 then null else team_id end" if every else "team_id"
    con = duckdb.connect()
    con.execute(f"""
        copy (select * replace (strftime(event_time at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') as event_time,
                                {spoil} as team_id)
              from read_parquet('{lake}/raw/usage_events/*/*/*.parquet', hive_partitioning = false)
              order by event_time)
        to '{out}' (format json)""")
    shutil.rmtree(lake)
    return out


def _floor_child(src: str, out: str) -> None:
    """In a child process: the DuckDB floor, timed from connect to the last file written."""
    import duckdb

    from common.contracts import sql_columns

    began = time.perf_counter()
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in sql_columns())
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    rows = con.execute(f"""
        copy (select *, strftime(event_time, '%Y-%m-%d') as dt, strftime(event_time, '%H') as hour
              from read_json('{src}', format = 'newline_delimited', columns = {{{columns}}}))
        to '{out}' (format parquet, partition_by (dt, hour), compression zstd)""").fetchone()
    print(json.dumps({"seconds": time.perf_counter() - began, "rows": rows[0] if rows else None}))


def _timed(command: list[str]) -> tuple[float, str, int, float]:
    """Wall seconds, stdout, peak RSS (MiB) and CPU seconds (user + system) of one child process: its own, from
    ``wait4`` (the children's high-water mark would also hold the generator's)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            sys.exit(f"bench: {' '.join(command[1:4])} … failed:\n{err.read()}")
        return seconds, out.read(), usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime  # Linux: KiB


def _landed(lake: Path) -> int:
    import duckdb

    row = duckdb.connect().execute(
        f"select count(*) from read_parquet('{lake}/raw/usage_events/*/*/*.parquet')").fetchone()
    return int(row[0]) if row else 0


def _one_run(src: Path, work: Path, events: int, *, floor_first: bool) -> dict[str, float]:
    """One run of each, in the order given (runs alternate it: load on a shared machine drifts)."""
    lake, floor_dir = work / "lake", work / "floor"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(floor_dir, ignore_errors=True)
    ingest_cmd = [sys.executable, "-m", "modelmeter.cli", "ingest", str(src), "--lake", str(lake)]
    floor_cmd = [sys.executable, __file__, "--child-floor", str(src), str(floor_dir)]
    timed: dict[str, tuple[float, str, int, float, str]] = {}
    for name, command in (("floor", floor_cmd), ("ingest", ingest_cmd)) if floor_first else \
            (("ingest", ingest_cmd), ("floor", floor_cmd)):
        load = _load()
        timed[name] = (*_timed(command), load)
    ingest_s, out, ingest_mb, ingest_cpu, ingest_load = timed["ingest"]
    floor_wall, floor_out, floor_mb, floor_cpu, floor_load = timed["floor"]
    floor = json.loads(floor_out.strip().splitlines()[-1])
    print(f"  modelmeter ingest: {ingest_s:6.1f} s  {events / ingest_s:9,.0f} events/s  CPU {ingest_cpu:6.1f} s  "
          f"RSS {ingest_mb:,} MiB  load {ingest_load}   {out.strip()}")
    print(f"  DuckDB floor:      {floor['seconds']:6.1f} s  {events / floor['seconds']:9,.0f} events/s  CPU "
          f"{floor_cpu:6.1f} s  RSS {floor_mb:,} MiB  load {floor_load}   {floor['rows']:,} rows "
          f"({floor_wall:.1f} s with start-up)")
    print(f"  landed {_landed(lake):,} rows; ratio {ingest_s / floor['seconds']:.2f}× (CPU "
          f"{ingest_cpu / floor_cpu:.2f}×)")
    return {"ingest": ingest_s, "floor": floor["seconds"], "floor_wall": floor_wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=None, help="events to generate (default 10 M; --quick 1 M)")
    p.add_argument("--quick", action="store_true", help="1 M events")
    p.add_argument("--bad-rate", type=float, default=0.0001, help="share of lines with a null team_id")
    p.add_argument("--runs", type=int, default=1, help="runs on the same file (the best of each is reported)")
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--per-line", type=int, default=0, metavar="N",
                   help="also time the per-line path against the fast path on the first N lines")
    p.add_argument("--child-floor", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--child-generate", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_floor:
        _floor_child(*args.child_floor)
        return 0
    if args.child_generate:
        events, bad_rate, folder = args.child_generate
        _generate(int(events), float(bad_rate), Path(folder))
        return 0
    events = args.events or (1_000_000 if args.quick else 10_000_000)
    work = Path(args.dir or tempfile.mkdtemp(prefix="modelmeter-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / "events.jsonl"
        if not src.exists():
            began = time.perf_counter()
            print(f"generating {events:,} events as JSON Lines in {work} …", flush=True)
            # in a child: the parent stays small, so the children's RSS figures are their own
            _timed([sys.executable, __file__, "--child-generate", str(events), str(args.bad_rate), str(work)])
            print(f"  {src.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - began:.1f} s", flush=True)
        runs = []
        for k in range(args.runs):
            print(f"run {k + 1} of {args.runs}:", flush=True)
            runs.append(_one_run(src, work, events, floor_first=k % 2 == 1))
        _verdict(runs, events)
        if args.per_line:
            _per_line(src, work, args.per_line)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _per_line(src: Path, work: Path, lines: int) -> None:
    """Both paths of ``ingest_files`` (the function, in a child each) on the first ``lines`` lines."""
    head = work / f"head-{lines}.jsonl"
    with src.open("rb") as full, head.open("wb") as out:
        for _, line in zip(range(lines), full, strict=False):
            out.write(line)
    seconds: dict[bool, float] = {}
    for fast in (False, True):
        lake = work / f"lake-{'fast' if fast else 'per-line'}"
        shutil.rmtree(lake, ignore_errors=True)
        code = ("import sys, time; from pathlib import Path; from common.lake import Lake; "
                "from ingest.files import ingest_files; t = time.perf_counter(); "
                f"ingest_files(Lake.open({str(lake)!r}), [Path({str(head)!r})], fast={fast}); "
                "print(time.perf_counter() - t)")
        _, printed, _, _ = _timed([sys.executable, "-c", code])
        seconds[fast] = float(printed.strip().splitlines()[-1])  # the function's own time, without start-up
    print(f"per-line path on {lines:,} lines: {seconds[False]:.1f} s ({lines / seconds[False]:,.0f} events/s); "
          f"fast path {seconds[True]:.1f} s ({lines / seconds[True]:,.0f} events/s): "
          f"{seconds[False] / seconds[True]:.1f}× faster   [load {_load()}]")


def _verdict(runs: list[dict[str, float]], events: int) -> None:
    best = min(runs, key=lambda r: r["ingest"] / r["floor"])
    rate = events / min(r["ingest"] for r in runs)
    # the whole command (interpreter start-up included) against the floor's query alone: the stricter ratio
    ratio = best["ingest"] / best["floor"]
    print(f"ingest events/s:      {rate:,.0f}  (target ≥ {TARGET_RATE:,}) {'met' if rate >= TARGET_RATE else 'missed'}")
    print(f"ingest ÷ DuckDB floor: {ratio:.2f}×  (target ≤ {TARGET_RATIO}×) "
          f"{'met' if ratio <= TARGET_RATIO else 'missed'}   [{os.cpu_count()} CPUs; process against process: "
          f"{best['ingest'] / best['floor_wall']:.2f}×]")


if __name__ == "__main__":
    sys.exit(main())

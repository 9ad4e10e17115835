"""Transform benchmark (issue 15): ``modelmeter transform`` against its price-and-write floor, on the same lake.

Steps: generate N raw events (default 10 M over one day, 200 teams, 40 models, 0.5 % duplicates, 0.1 % invalid)
into a lake; time the **floor** — a plain DuckDB ``COPY`` of the ``usage_cost`` columns over the raw files (the
marts ``usage_cost_pico`` → ``usage_cost``: hash join to the day's price table, integer pico-dollar costs →
DECIMAL(38,12), zstd level 1 as the writer does), no validation, no dedupe — before and after the transform; run
the whole ``modelmeter transform`` process as users run it, its peak RSS from ``wait4``. Prints seconds,
events/s, the ratio to the floor (mean of the two floors, which brackets the load's drift), peak RSS, each against
its target with met/missed, the load average, and the transform's seconds per step (its manifest).

``--check`` then compares the written tables and quarantine with the SQL models run plainly over every row
(``transforms/reference.py``): ``EXCEPT ALL`` both ways must find 0 rows.

    python bench/transform.py [--quick] [--events N] [--lake DIR [--keep] [--reuse]] [--runs 3] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 21, 3, tzinfo=UTC)
TARGET_RATIO = 1.3
TARGET_RATE = 1_000_000
TARGET_RSS_MB = 2048


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def _generate(args: argparse.Namespace, lake_dir: str) -> dict:
    """Generate the raw day in a child process (so this process stays small); returns the generator's summary."""
    code = ("import json, sys; from datetime import date, datetime, UTC; from common.lake import Lake; "
            "from modelmeter.synthetic import generate; "
            f"s = generate(lake=Lake.open({lake_dir!r}), n={args.events}, days=1, start=date({DAY.year}, {DAY.month}, "
            f"{DAY.day}), teams={args.teams}, models={args.models}, duplicate_rate={args.duplicate_rate}, "
            f"invalid_rate={args.invalid_rate}, seed=1, now=datetime(2026, 11, 21, 3, tzinfo=UTC)); "
            "print(json.dumps({'files': len(s.files), 'seconds': s.seconds, 'duplicates': s.duplicates, "
            "'expected_written': s.expected_written}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"bench: generating failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _floor(lake_dir: str) -> tuple[float, float]:
    """Seconds and CPU seconds of the floor's ``COPY`` (the price table built beforehand, as the transform builds
    it)."""
    import duckdb

    from common.lake import Lake
    from pricing_catalog import load_catalog
    from sql import models
    from transforms.prices import price_table

    files = sorted(str(p) for p in Path(lake_dir, "raw", "usage_events", f"dt={DAY}").rglob("*.parquet"))
    catalog = load_catalog(lake=Lake.open(lake_dir), version=None)
    con = duckdb.connect(config={"threads": os.cpu_count() or 1, "preserve_insertion_order": False,
                                 "memory_limit": "1GB"})
    con.execute("set TimeZone = 'UTC'")
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    # the marts read stg_valid_events and stg_duplicates: here every raw row as stored, and nothing to drop
    con.execute(f"create view stg_valid_events as select *, 0 as source_file, 0::bigint as source_row "
                f"from read_parquet([{listed}])")
    con.execute("create table stg_duplicates (source_file integer, source_row bigint)")
    lookups = con.execute(models.render("staging/stg_price_combos")).to_arrow_table().to_pylist()
    con.register("prices", price_table(catalog=catalog, lookups=lookups, day=DAY))
    con.execute("create view usage_cost_pico as "
                + models.render("marts/usage_cost_pico", price_version=models.literal(catalog.version)))
    out = Path(lake_dir, "bench-floor.parquet")
    began, cpu = time.perf_counter(), _cpu()
    con.execute(f"copy ({models.render('marts/usage_cost')}) to '{out}' "
                "(format parquet, compression zstd, compression_level 1)")
    seconds, cpu = time.perf_counter() - began, _cpu() - cpu
    con.close()
    out.unlink()
    return seconds, cpu


def _transform(lake_dir: str, source: Path = REPO) -> tuple[float, float, dict, float]:
    """Run ``modelmeter transform`` (of the checkout at ``source``) for the day as a child process: wall seconds,
    peak RSS (MiB), its manifest, CPU seconds (user + system: steadier than wall seconds on a shared machine)."""
    command = [sys.executable, "-m", "modelmeter", "transform", "--lake", lake_dir, "--from", str(DAY),
               "--to", str(DAY)]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=source)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    stderr = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: modelmeter transform failed:\n{stderr}")
    manifests = sorted(Path(lake_dir, "runs", "transform", f"dt={DAY}").glob("*.json"), key=os.path.getmtime)
    return (seconds, usage.ru_maxrss / 1024, json.loads(manifests[-1].read_text()),  # Linux: KiB
            usage.ru_utime + usage.ru_stime)


def _check(lake_dir: str) -> tuple[tuple[int, int], ...]:
    """``EXCEPT ALL`` both ways between the written tables and quarantine and the models run plainly."""
    import pyarrow.parquet as pq

    from common.lake import Lake
    from pricing_catalog import load_catalog
    from transforms import reference
    from transforms.inputs import find_inputs
    from transforms.run import connect

    lake = Lake.open(lake_dir)
    work = Path(tempfile.mkdtemp(prefix="modelmeter-bench-check-"))
    con = connect(memory_limit="2GB", temp_dir=work)
    try:
        inputs = find_inputs(lake=lake, day=DAY, workdir=work)
        # the transform ran with the wall clock: the reference uses the same "now" (no event is near it)
        reference.build(con, inputs=inputs, day=DAY, now=datetime.now(UTC), catalog=load_catalog(lake=lake))
        part = f"dt={DAY}/part-0.parquet"
        out = [reference.except_both_ways(
            con, f"select * from read_parquet('{lake_dir}/curated/{table}/{part}', hive_partitioning = false)",
            f"select * from ref_{table}") for table in ("usage_cost", "team_model_daily")]
        refused = pq.read_table(f"{lake_dir}/quarantine/usage_events/dt={DAY}/transform.parquet").drop_columns(
            ["quarantined_at"])
        con.register("refused", refused)
        columns = ", ".join(refused.column_names)
        out.append(reference.except_both_ways(con, "select * from refused", f"select {columns} from ref_quarantine"))
        return tuple(out)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _print_run(n: int, events: int, floors: tuple[tuple[float, float], tuple[float, float]],
               times: tuple[float, float], rss: float, manifest: dict, load: tuple[str, str]) -> float:
    seconds, cpu = times
    floor = (floors[0][0] + floors[1][0]) / 2
    floor_cpu = (floors[0][1] + floors[1][1]) / 2
    ratio = seconds / floor
    rate = events / seconds
    print(f"run {n}: load {load[0]} → {load[1]}")
    print(f"  floor (DuckDB COPY of usage_cost, priced): {floors[0][0]:.2f} s before, {floors[1][0]:.2f} s after "
          f"(CPU {floors[0][1]:.1f} s, {floors[1][1]:.1f} s)")
    print(f"  modelmeter transform: {seconds:.2f} s, {rate:,.0f} events/s, CPU {cpu:.1f} s, peak RSS {rss:,.0f} MiB")
    steps = manifest["seconds"]
    outside = seconds - sum(steps.values())
    print("  steps: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()) + f"; outside the steps {outside:.2f} s")
    print(f"  CPU seconds: {cpu / floor_cpu:.2f}× the floor's (on a shared machine steadier than the wall-clock ratio)")
    print(f"  ratio to the floor {ratio:.2f}× (target ≤ {TARGET_RATIO}×): {_verdict(ratio <= TARGET_RATIO)}; "
          f"events/s ≥ {TARGET_RATE:,}: {_verdict(rate >= TARGET_RATE)}; "
          f"peak RSS ≤ {TARGET_RSS_MB} MiB: {_verdict(rss <= TARGET_RSS_MB)}", flush=True)
    return ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--quick", action="store_true", help="1 M events (a quick check; the figures are the 10 M run's)")
    p.add_argument("--teams", type=int, default=200)
    p.add_argument("--models", type=int, default=40)
    p.add_argument("--duplicate-rate", type=float, default=0.005)
    p.add_argument("--invalid-rate", type=float, default=0.001)
    p.add_argument("--runs", type=int, default=1, help="transform runs (each between two floors)")
    p.add_argument("--lake", default=None, help="lake folder (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the lake")
    p.add_argument("--reuse", action="store_true", help="the --lake already holds this benchmark's raw day")
    p.add_argument("--check", action="store_true", help="compare the output with the models run plainly")
    p.add_argument("--baseline", default=None,
                   help="a checkout of another version (e.g. from git archive): its transform runs too, in each run")
    args = p.parse_args(argv)
    if args.quick:
        args.events = 1_000_000
    lake_dir = args.lake or tempfile.mkdtemp(prefix="modelmeter-bench-")
    try:
        summary_file = Path(lake_dir, "bench-summary.json")
        if args.reuse and summary_file.exists():
            summary = json.loads(summary_file.read_text())
            args.events = summary.get("events", args.events)
        else:
            print(f"generating {args.events:,} events in {lake_dir} …", flush=True)
            summary = {**_generate(args, lake_dir), "events": args.events}
            summary_file.write_text(json.dumps(summary))
        print(f"{args.events:,} events, {summary['files']} raw files, {os.cpu_count()} CPUs", flush=True)
        ratios = []
        for n in range(1, args.runs + 1):
            load_before = _load()
            before = _floor(lake_dir)
            if args.baseline:
                base_s, base_rss, _, base_cpu = _transform(lake_dir, Path(args.baseline))
            seconds, rss, manifest, cpu = _transform(lake_dir)
            after = _floor(lake_dir)
            if args.baseline:
                print(f"baseline ({args.baseline}): {base_s:.2f} s, CPU {base_cpu:.1f} s, "
                      f"peak RSS {base_rss:,.0f} MiB, {base_s / ((before[0] + after[0]) / 2):.2f}× the floor")
            ratios.append(_print_run(n, args.events, (before, after), (seconds, cpu), rss, manifest,
                                     (load_before, _load())))
            c = manifest["counts"]
            if c["written"] != summary["expected_written"] or c["duplicates"] != summary["duplicates"]:
                sys.exit(f"bench: wrong result: wrote {c['written']} (expected {summary['expected_written']}), "
                         f"duplicates {c['duplicates']} (expected {summary['duplicates']})")
        if args.runs > 1:
            mid = median(ratios)
            print(f"median ratio {mid:.2f}× over {args.runs} runs: {_verdict(mid <= TARGET_RATIO)}")
        if args.check:
            found = _check(lake_dir)
            print(f"EXCEPT ALL both ways against the plain models (usage_cost, team_model_daily, quarantine): {found}: "
                  f"{_verdict(all(f == (0, 0) for f in found))}")
    finally:
        if not args.keep and not args.lake:
            shutil.rmtree(lake_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

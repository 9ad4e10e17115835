"""Transform benchmark (issue 2, "Speed"): synthetic raw day → ``transform_range``, against a bare DuckDB scan.

Steps: generate N raw events (default 10 M over one day, 200 teams, 40 models, 0.5 % duplicates, 0.1 % invalid)
into a temporary lake; time a bare DuckDB ``GROUP BY team_id, model_id`` over the same raw files; run the full
transform exactly as users run it (``transform_range``: file checks, Great Expectations, quarantine, dedupe,
pricing, Parquet writes, manifest) in a child process, so its peak RSS is its own. Prints events/s, seconds per
step, the transform ÷ bare-scan ratio and peak RSS against the targets (≥ 1 M events/s, ≤ 20×, ≤ 2 GB).

    python bench/transform.py [--events 10000000] [--teams 200] [--models 40] [--lake DIR] [--keep]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = date(2026, 11, 20)
TARGET_RATE = 1_000_000
TARGET_RATIO = 20.0
TARGET_RSS_MB = 2048


def _child(args: argparse.Namespace) -> None:
    """Run in the child process: the transform as users run it; print its manifest figures as JSON."""
    began = time.perf_counter()
    from common.lake import Lake
    from transforms.run import transform_range

    lake = Lake.open(args.lake)
    manifests = transform_range(lake=lake, date_from=DAY, date_to=DAY, memory_limit=args.memory_limit,
                                now=datetime(2026, 11, 21, 3, tzinfo=UTC))
    seconds = time.perf_counter() - began
    m = manifests[0]
    print(json.dumps({"seconds": seconds, "steps": m.seconds, "rss": m.peak_rss_mb, "counts": m.counts}))


def _generate_child(args: argparse.Namespace) -> None:
    """Run in a child process, so the parent stays small and the transform child's RSS is its own."""
    from common.lake import Lake
    from modelmeter.synthetic import generate

    summary = generate(lake=Lake.open(args.lake), n=args.events, days=1, start=DAY, teams=args.teams,
                       models=args.models, duplicate_rate=args.duplicate_rate, invalid_rate=args.invalid_rate,
                       seed=1, now=datetime(2026, 11, 21, 3, tzinfo=UTC))
    print(json.dumps({"files": len(summary.files), "seconds": summary.seconds, "duplicates": summary.duplicates,
                      "expected_written": summary.expected_written}))


def _bare_scan(lake_dir: str) -> tuple[float, int]:
    import duckdb

    pattern = f"{lake_dir}/raw/usage_events/dt={DAY}/*/*.parquet"
    con = duckdb.connect()
    began = time.perf_counter()
    groups = con.execute(f"select team_id, model_id, count(*) from read_parquet('{pattern}') "
                         "group by team_id, model_id").fetchall()
    return time.perf_counter() - began, len(groups)


def _run_child(args: argparse.Namespace, lake_dir: str, mode: str = "--child") -> tuple[dict, float, float]:
    command = [sys.executable, __file__, mode, "--lake", lake_dir, "--events", str(args.events), "--teams",
               str(args.teams), "--models", str(args.models), "--duplicate-rate", str(args.duplicate_rate),
               "--invalid-rate", str(args.invalid_rate)]
    if args.memory_limit:
        command += ["--memory-limit", args.memory_limit]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"bench: {mode} failed:\n{done.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    return json.loads(done.stdout.strip().splitlines()[-1]), wall, peak_mb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--teams", type=int, default=200)
    p.add_argument("--models", type=int, default=40)
    p.add_argument("--duplicate-rate", type=float, default=0.005)
    p.add_argument("--invalid-rate", type=float, default=0.001)
    p.add_argument("--lake", default=None, help="lake folder (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the lake")
    p.add_argument("--reuse", action="store_true",
                   help="the --lake already holds raw events from an earlier --keep run: skip generating")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit of the transform (e.g. 1GB)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-generate", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if args.child_generate:
        _generate_child(args)
        return 0

    lake_dir = args.lake or tempfile.mkdtemp(prefix="modelmeter-bench-")
    try:
        verb = "reusing" if args.reuse else "generating"
        print(f"{verb} {args.events:,} events ({args.teams} teams, {args.models} models, "
              f"{args.duplicate_rate:.1%} duplicates, {args.invalid_rate:.1%} invalid) in {lake_dir} …", flush=True)
        summary_file = Path(lake_dir, "bench-summary.json")
        if args.reuse and summary_file.exists():
            summary = json.loads(summary_file.read_text())
        else:
            summary, _, _ = _run_child(args, lake_dir, "--child-generate")
            summary_file.write_text(json.dumps(summary))
        raw_mb = sum(f.stat().st_size for f in Path(lake_dir, "raw").rglob("*.parquet")) / 2**20
        print(f"  {summary['files']} files, {raw_mb:,.0f} MiB, {summary['seconds']:.1f} s", flush=True)
        result, wall, _ = _run_child(args, lake_dir)
        # the child's own high-water mark (RUSAGE_CHILDREN would report the generator child's, the larger one)
        peak_mb = max(result["rss"].values(), default=0)
        scan_s, groups = _bare_scan(lake_dir)  # after the transform: the parent grows only now
        _print(args, summary, result, scan_s, groups, wall, peak_mb)
    finally:
        if not args.keep and not args.lake:
            shutil.rmtree(lake_dir, ignore_errors=True)
    return 0


def _print(args, summary, result, scan_s, groups, wall, peak_mb) -> None:
    seconds = result["seconds"]
    rate = args.events / seconds
    ratio = seconds / scan_s
    c = result["counts"]
    print(f"bare DuckDB GROUP BY team_id, model_id: {scan_s:.2f} s ({groups} groups)")
    print(f"transform_range: {seconds:.2f} s in the child ({wall:.2f} s with interpreter start-up)")
    for step, s in result["steps"].items():
        print(f"  {step:<28} {s:6.2f} s   peak RSS so far {result['rss'].get(step, 0):,} MiB")
    print(f"  counts: read {c['read']:,} / quarantined {c['quarantined']:,} / duplicates {c['duplicates']:,} / "
          f"written {c['written']:,} / unpriced {c['unpriced']:,}")
    cpus = os.cpu_count()
    print(f"events/s:        {rate:,.0f}  (target ≥ {TARGET_RATE:,}) {'ok' if rate >= TARGET_RATE else 'MISSED'}")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(f"transform ÷ scan: {ratio:.1f}×  (target ≤ {TARGET_RATIO:.0f}×) {verdict}")
    print(f"peak RSS:        {peak_mb:,.0f} MiB  (target ≤ {TARGET_RSS_MB} MiB) "
          f"{'ok' if peak_mb <= TARGET_RSS_MB else 'MISSED'}   [{cpus} CPUs]")
    expected = summary["expected_written"]
    if c["written"] != expected or c["duplicates"] != summary["duplicates"]:
        sys.exit(f"bench: wrong result: wrote {c['written']} (expected {expected}), "
                 f"duplicates {c['duplicates']} (expected {summary['duplicates']})")


if __name__ == "__main__":
    sys.exit(main())

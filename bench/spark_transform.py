"""Engines benchmark (issue 15): the same synthetic raw day transformed by DuckDB and by Spark (local mode), timed,
and the two engines' curated tables compared.

Steps: generate N raw events (one day; the transform benchmark's shape: 200 teams, 40 models, 0.5 % duplicates,
0.1 % invalid) into a lake; run the DuckDB engine (``transforms.run.transform_range``) and keep its curated
files; run the Spark engine (``transforms.spark_engine.transform_range``, ``local[CORES]``) on the same lake;
print both times (Spark's session start apart), events/s, the Spark ÷ DuckDB ratio, and whether the two
``usage_cost`` and ``team_model_daily`` tables are equal row for row (sorted, every column, exact decimals).

    python bench/spark_transform.py [--events 1000000] [--cores 2] [--memory 2g] [--lake DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST  # noqa: E402
from common.lake import Lake  # noqa: E402

DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 21, 3, tzinfo=UTC)


def _table(lake: Lake, prefix: str, keys: list[str]):  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    [part] = lake.list_files(prefix, f"dt={DAY.isoformat()}")
    return pq.read_table(part).sort_by([(k, "ascending") for k in keys])


def _tables(lake: Lake) -> dict:  # type: ignore[type-arg]
    return {"usage_cost": _table(lake, CURATED_USAGE_COST, ["event_id"]),
            "team_model_daily": _table(lake, CURATED_TEAM_MODEL_DAILY, ["team_id", "model_id"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--memory", default="2g", help="Spark driver memory (local mode: the executors' too)")
    p.add_argument("--lake", default=None)
    p.add_argument("--reuse", action="store_true", help="the lake already holds the raw day: do not generate")
    args = p.parse_args(argv)
    lake_dir = args.lake or tempfile.mkdtemp(prefix="modelmeter-engines-")
    lake = Lake.open(lake_dir)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    if not args.reuse:
        from modelmeter.synthetic import generate

        began = time.perf_counter()
        generate(lake=lake, n=args.events, days=1, start=DAY, teams=200, models=40, duplicate_rate=0.005,
                 invalid_rate=0.001, seed=1, now=NOW)
        print(f"generated {args.events:,} events in {time.perf_counter() - began:.1f} s")
    from transforms import run, spark_engine
    from transforms.spark_session import local_session

    began = time.perf_counter()
    [duck] = run.transform_range(lake=lake, date_from=DAY, date_to=DAY, now=NOW)
    duck_s = time.perf_counter() - began
    duck_tables = _tables(lake)
    began = time.perf_counter()
    spark = local_session(cores=args.cores, memory=args.memory, shuffle_partitions=max(2 * args.cores, 4))
    start_s = time.perf_counter() - began
    began = time.perf_counter()
    [sp] = spark_engine.transform_range(spark, lake=lake, date_from=DAY, date_to=DAY, now=NOW)
    spark_s = time.perf_counter() - began
    spark_tables = _tables(lake)
    same = all(spark_tables[t].equals(duck_tables[t]) and spark_tables[t].schema.equals(duck_tables[t].schema)
               for t in duck_tables)
    n = duck.counts["read"]
    print(f"DuckDB: {duck_s:.1f} s ({n / duck_s / 1e6:.2f} M events/s); steps {duck.seconds}")
    print(f"Spark local[{args.cores}]: {spark_s:.1f} s ({n / spark_s / 1e6:.2f} M events/s) + {start_s:.1f} s "
          f"session start; steps {sp.seconds}")
    print(f"ratio Spark / DuckDB: {spark_s / duck_s:.1f}x; counts equal: {sp.counts == duck.counts}; "
          f"curated tables identical: {same}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    spark.stop()
    if not args.lake:
        shutil.rmtree(lake_dir, ignore_errors=True)
    return 0 if same and sp.counts == duck.counts else 1


if __name__ == "__main__":
    sys.exit(main())

"""Late-day detection benchmark (issue 14): how long :func:`transforms.late.stale_days` takes on a lake of many days.

Builds a local lake of ``--days`` days, each with ``--files`` tiny raw Parquet files and ``--runs`` manifests (as
hourly scheduled runs leave them; the manifests are written as the transform writes them, without running it),
makes ``--late`` of the days stale with one more file, then times ``stale_days`` over every day (what ``modelmeter
transform`` without dates and an open-ended ``report`` do) and over the schedule's 35-day look-back. Prints seconds,
ms per day and the ratio against the target (a year of days in under 2 s locally: the warning runs on every report).

    python bench/late_days.py [--days 365] [--files 24] [--runs 24] [--late 3] [--lake DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.constants import RAW_EVENTS, RUN_MANIFESTS  # noqa: E402  (after the path above)
from common.lake import Lake  # noqa: E402
from transforms.late import raw_listing, stale_days  # noqa: E402

TARGET_SECONDS = 2.0
FIRST = date(2025, 12, 1)


def _build(lake: Lake, *, days: int, files: int, runs: int, late: int) -> None:
    table = pa.table({"event_id": ["x"]})
    for n in range(days):
        day = FIRST + timedelta(days=n)
        for f in range(files):
            lake.write_parquet(table, RAW_EVENTS, f"dt={day}", f"hour={f % 24:02d}", f"part-{f}.parquet")
        listing = [f.as_dict() for f in raw_listing(lake=lake, day=day)]
        for r in range(runs):
            manifest = {"run_id": f"{day:%Y%m%d}T{r:02d}0000Z-bench", "day": str(day), "price_version": "v1",
                        "started_at": f"{day}T{r:02d}:00:00+00:00", "finished_at": f"{day}T{r:02d}:00:05+00:00",
                        "raw_listing": listing}
            lake.write_bytes(json.dumps(manifest).encode(), RUN_MANIFESTS, f"dt={day}", f"{manifest['run_id']}.json")
    for n in range(late):
        day = FIRST + timedelta(days=days - 1 - n * 7)
        lake.write_parquet(table, RAW_EVENTS, f"dt={day}", "hour=23", "late.parquet")


def _timed(lake: Lake, **bounds: date) -> tuple[float, int]:
    began = time.perf_counter()
    found = stale_days(lake=lake, **bounds)
    return time.perf_counter() - began, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--late", type=int, default=3)
    parser.add_argument("--lake", default=None, help="build the lake here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelmeter-late-bench-") as tmp:
        lake = Lake.open(args.lake or Path(tmp) / "lake")
        began = time.perf_counter()
        _build(lake, days=args.days, files=args.files, runs=args.runs, late=args.late)
        print(f"built {args.days} days × {args.files} raw files × {args.runs} manifests in "
              f"{time.perf_counter() - began:.1f} s")
        whole, found = _timed(lake)
        last = FIRST + timedelta(days=args.days - 1)
        window, in_window = _timed(lake, date_from=last - timedelta(days=35), date_to=last)
        print(f"stale_days over every day: {whole:.2f} s ({whole / args.days * 1000:.2f} ms per day), {found} stale "
              f"(expected {args.late}); target < {TARGET_SECONDS:.1f} s: ratio {whole / TARGET_SECONDS:.2f}")
        print(f"stale_days over the 35-day look-back: {window:.3f} s, {in_window} stale")


if __name__ == "__main__":
    main()

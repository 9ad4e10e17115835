"""The AWS Glue 5.0 job of ``transform.engine: glue``: the Spark engine (``transforms/spark_engine.py``) on the unit's
S3 lake, in Glue's own Spark session. Plain PySpark: PyPI's ``awsglue`` packages are stubs, and the engine needs
nothing of Glue's library, so the job's arguments are parsed here with ``argparse`` (Glue passes them as
``--name value`` pairs, with some of its own, which are ignored).

Which days: the ones given (``--date-from``/``--date-to``, a backfill), else yesterday and today (UTC) and the
stale days of the look-back (:func:`transforms.late.stale_days`: raw files changed since their last run), oldest
first, capped, each at its last run's catalog version, as the scheduled Lambda picks them.

``--stage-locally false`` (the default, what the Glue job passes) lets Spark read and write S3 itself (Glue's S3
connector): a cluster's executors cannot read files staged on the driver's disk. That path is not exercised here
(no S3 connector jars on the test machine). ``true`` copies each day's raw files to the driver, as the DuckDB engine
does, for Spark in local mode: the path the tests run, moto's S3 included.
The reference/teams refresh and the spend correction stay with the unit's transform Lambda, which runs on the same
schedule and, with engine glue, transforms nothing (``transforms/lambda_handler.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from common.lake import Lake
from transforms import spark_engine
from transforms.late import by_price_version, plan, stale_days
from transforms.run import Manifest, days_between
from transforms.spark_session import existing_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Days before yesterday a scheduled run looks back for late files, and how many of them it transforms at most
#: (the transform Lambda's defaults).
LOOKBACK_DAYS = 35
MAX_LATE_DAYS = 7


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelmeter-glue-transform", allow_abbrev=False)
    parser.add_argument("--lake", required=True, help="the unit's lake, s3://bucket[/prefix]")
    parser.add_argument("--date-from", type=date.fromisoformat, default=None)
    parser.add_argument("--date-to", type=date.fromisoformat, default=None)
    parser.add_argument("--price-version", default=None)
    parser.add_argument("--stage-locally", choices=("true", "false"), default="false")
    parser.add_argument("--lookback-days", type=int, default=LOOKBACK_DAYS)
    parser.add_argument("--max-late-days", type=int, default=MAX_LATE_DAYS)
    args, _glue_own = parser.parse_known_args(argv)  # --JOB_ID, --JOB_RUN_ID, --TempDir … are Glue's
    if bool(args.date_from) != bool(args.date_to):
        parser.error("give both --date-from and --date-to, or neither (the scheduled days)")
    return args


def scheduled_days(lake: Lake, *, today: date, lookback_days: int, max_late_days: int
                   ) -> list[tuple[str | None, list[date]]]:
    """(price version, days) groups of a scheduled run: yesterday and today at the latest prices, then the late
    days of the look-back at their last run's (as the transform Lambda groups them)."""
    groups: list[tuple[str | None, list[date]]] = [(None, [today - timedelta(days=1), today])]
    first, last = today - timedelta(days=lookback_days), today - timedelta(days=2)
    if last >= first:
        late = plan(stale_days(lake=lake, date_from=first, date_to=last), cap=max_late_days)
        groups += [(version, days) for version, days in by_price_version(late.run) if days]
    return groups


def main(argv: Sequence[str] | None = None, *, now: datetime | None = None, spark: SparkSession | None = None
         ) -> list[Manifest]:
    """Run the job; returns the manifests (printed as one JSON line each, for the job's log)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    lake = Lake.open(args.lake)
    session = spark or existing_session()
    if args.date_from:
        groups = [(args.price_version, days_between(args.date_from, args.date_to))]
    else:
        today = (now or datetime.now(UTC)).date()
        groups = scheduled_days(lake, today=today, lookback_days=args.lookback_days,
                                max_late_days=args.max_late_days)
    manifests: list[Manifest] = []
    for version, days in groups:
        manifests += spark_engine.transform_days(session, lake=lake, days=days, price_version=version, now=now,
                                                 stage_locally=args.stage_locally == "true")
    for m in manifests:
        print(json.dumps({"day": m.day, "counts": m.counts, "manifest": m.path}))
    return manifests


if __name__ == "__main__":
    main()

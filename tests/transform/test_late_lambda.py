"""Late data in the scheduled transform Lambda (``transforms.lambda_handler.run``) and on an ``s3://`` lake (moto's
S3 server on 127.0.0.1): a late file for last week is transformed by the next scheduled run, within the look-back
and the per-run cap."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from common import constants as c
from common.lake import Lake
from tests.transform.conftest import event, write_raw
from transforms import lambda_handler
from transforms.lambda_handler import ENV_LOOKBACK_DAYS, ENV_MAX_LATE_DAYS, TransformEventError
from transforms.late import CHANGED, UNTRANSFORMED, stale_days

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LAST_WEEK = date(2026, 11, 23)
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
NOVA = "amazon.nova-lite-v1:0"


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _raw(lake: Lake, day: date, team: str, name: str) -> None:
    write_raw(lake, [event(model_id=NOVA, team_id=team, event_time=_at(day, 8))], name=name, hour=8, day=day)


@pytest.mark.slow
def test_a_scheduled_run_transforms_last_weeks_late_file_on_s3(s3_lake_uri):
    # GIVEN an S3 lake whose 2026-11-23 was transformed (by hand, as a backfill), then received a late file
    lake = Lake.open(s3_lake_uri)
    environ = {c.ENV_LAKE: s3_lake_uri}
    _raw(lake, LAST_WEEK, "team-a", "first.parquet")
    assert stale_days(lake=lake)[0].reason == UNTRANSFORMED
    done = lambda_handler.run({"date_from": str(LAST_WEEK), "date_to": str(LAST_WEEK)}, environ=environ, now=NOW)
    assert done["days"] == [str(LAST_WEEK)] and done["late_days"] == []  # a backfill runs exactly its days
    assert stale_days(lake=lake) == []
    _raw(lake, LAST_WEEK, "team-late", "late.parquet")
    [stale] = stale_days(lake=lake)
    assert (stale.day, stale.reason, stale.new_files) == (
        LAST_WEEK, CHANGED, (f"{c.RAW_EVENTS}/dt={LAST_WEEK}/hour=08/late.parquet",))
    # WHEN the schedule runs (yesterday and today, plus the late days of the look-back)
    result = lambda_handler.run(SCHEDULED, environ=environ, now=NOW)
    # THEN last week's day is transformed again, at the price version it had, and holds both events once
    assert result["days"] == ["2026-11-29", "2026-11-30", str(LAST_WEEK)]
    [late] = result["late_days"]
    assert late["day"] == str(LAST_WEEK) and late["price_version"] == done["price_version"]
    [part] = lake.list_files(c.CURATED_USAGE_COST, f"dt={LAST_WEEK}")
    assert sorted(pq.read_table(part, filesystem=lake.fs).column("team_id").to_pylist()) == ["team-a", "team-late"]
    # AND the next scheduled run has no late day left
    assert stale_days(lake=lake) == [] and lambda_handler.late_days(lake, today=NOW.date(), environ=environ).run == ()


def test_the_schedule_caps_late_days_per_run_and_leaves_the_rest_for_the_next(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    days = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
    for d in days:
        _raw(lake, d, "team-a", "a.parquet")
    old = date(2026, 10, 1)  # before the look-back: never picked by the schedule
    _raw(lake, old, "team-a", "a.parquet")
    environ = {c.ENV_LAKE: lake.uri, ENV_MAX_LATE_DAYS: "2", ENV_LOOKBACK_DAYS: "35"}
    first = lambda_handler.run(SCHEDULED, environ=environ, now=NOW)
    assert [d["day"] for d in first["late_days"]] == ["2026-11-20", "2026-11-21"]
    assert first["late_days_left"] == ["2026-11-22"]
    assert first["days"] == ["2026-11-29", "2026-11-30", "2026-11-20", "2026-11-21"]
    # the next run's plan: the day left over; the day before the look-back stays for `modelmeter transform`
    following = lambda_handler.late_days(lake, today=NOW.date(), environ=environ)
    assert [s.day for s in following.run] == [date(2026, 11, 22)] and following.left == ()
    assert [s.day for s in stale_days(lake=lake)] == [old, date(2026, 11, 22)]
    # a setting that is not a number of days is refused, naming the variable
    with pytest.raises(TransformEventError, match=ENV_MAX_LATE_DAYS):
        lambda_handler.run(SCHEDULED, environ={**environ, ENV_MAX_LATE_DAYS: "many"}, now=NOW)

"""Late data: a raw file that lands after its day was transformed is found (``transforms.late``), warned about by
``report``, picked up by ``modelmeter transform`` without dates, and counted exactly once."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from common.constants import RAW_EVENTS, RUN_MANIFESTS
from common.contracts import to_json
from common.lake import Lake
from modelmeter.cli import main
from modelmeter.commands.late import select_days
from pricing_catalog import load_catalog
from tests.transform.conftest import NOW, event, usage_cost, write_raw
from transforms import run as run_module
from transforms.late import CHANGED, UNTRANSFORMED, by_price_version, check_day, plan, rerun_since, stale_days
from transforms.run import transform_day

LATE_DAY = date(2026, 11, 29)
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _ingest(tmp_path: Path, lake_dir: str, rows: list[dict], name: str) -> None:
    path = tmp_path / name
    path.write_text("\n".join(to_json(r) for r in rows) + "\n")
    assert main(["ingest", str(path), "--lake", lake_dir]) == 0


def _report(capsys, lake_dir: str) -> tuple[list[dict], str]:
    assert main(["report", "--from", str(LATE_DAY), "--format", "json", "--lake", lake_dir]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_a_late_file_is_warned_about_then_transformed_once_by_a_plain_transform(tmp_path, capsys):
    # GIVEN two events of 2026-11-29, ingested and transformed
    lake_dir = str(tmp_path / "lake")
    _ingest(tmp_path, lake_dir, [event(model_id=HAIKU, event_time=_at(LATE_DAY, h)) for h in (9, 10)], "a.jsonl")
    assert main(["transform", "--from", str(LATE_DAY), "--to", str(LATE_DAY), "--lake", lake_dir]) == 0
    capsys.readouterr()
    lake = Lake.open(lake_dir)
    assert stale_days(lake=lake) == []
    # WHEN a third event of that day lands late (a Firehose retry, a restored spool)
    late = event(model_id=HAIKU, team_id="team-late", event_time=_at(LATE_DAY, 23))
    _ingest(tmp_path, lake_dir, [late], "late.jsonl")
    capsys.readouterr()
    # THEN the day is stale, with the new file named
    [stale] = stale_days(lake=lake)
    assert (stale.day, stale.reason, len(stale.new_files), stale.changed_files) == (LATE_DAY, CHANGED, 1, ())
    assert stale.new_files[0].startswith(f"{RAW_EVENTS}/dt={LATE_DAY}/") and stale.new_bytes > 0
    # AND `report --from 2026-11-29` still exits 0 but warns on stderr, and says so in every JSON row
    rows, err = _report(capsys, lake_dir)
    assert sum(r["invocations"] for r in rows) == 2
    assert "warning: 1 day in range has raw usage events not transformed yet" in err and str(LATE_DAY) in err
    assert all(r["untransformed_days"] == [str(LATE_DAY)] for r in rows)
    # WHEN `modelmeter transform` runs without dates
    assert main(["transform", "--lake", lake_dir]) == 0
    out, err = capsys.readouterr()
    assert "1 day with raw events changed since their last transform:" in err
    assert f"{LATE_DAY}: read 3 / valid 3 / quarantined 0 / duplicates 0 / written 3" in out
    # THEN the report is complete and says nothing about late data
    rows, err = _report(capsys, lake_dir)
    assert sum(r["invocations"] for r in rows) == 3 and "team-late" in {r["team_id"] for r in rows}
    assert "not transformed yet" not in err and all(r["untransformed_days"] == [] for r in rows)
    # AND a second run finds nothing and transforms nothing
    manifests = len(lake.list_files(RUN_MANIFESTS, suffix=".json"))
    assert main(["transform", "--lake", lake_dir]) == 0
    out, err = capsys.readouterr()
    assert "0 days with raw events changed since their last transform (nothing to do)" in err
    assert str(LATE_DAY) not in out
    assert len(lake.list_files(RUN_MANIFESTS, suffix=".json")) == manifests


def test_given_dates_run_as_before_and_the_other_stale_days_are_counted(tmp_path, capsys):
    lake_dir = str(tmp_path / "lake")
    other = LATE_DAY - timedelta(days=3)
    _ingest(tmp_path, lake_dir, [event(model_id=HAIKU, event_time=_at(d, 9)) for d in (LATE_DAY, other)], "a.jsonl")
    assert main(["transform", "--from", str(LATE_DAY), "--to", str(LATE_DAY), "--lake", lake_dir]) == 0
    _, err = capsys.readouterr()
    assert f"note: 1 other day has raw events changed since their last transform ({other}: 1 raw file" in err
    assert "`modelmeter transform --changed`" in err
    # one of --from/--to alone is a clear error; --changed bounds the stale days by them
    assert main(["transform", "--from", str(LATE_DAY), "--lake", lake_dir]) == 2
    assert "give both --from and --to" in capsys.readouterr().err
    assert main(["transform", "--changed", "--from", str(LATE_DAY), "--lake", lake_dir]) == 0
    assert "0 days with raw events changed" in capsys.readouterr().err
    assert main(["transform", "--changed", "--to", str(other), "--lake", lake_dir]) == 0
    out, _ = capsys.readouterr()
    assert f"{other}: read 1" in out and f"{LATE_DAY}:" not in out


def test_what_makes_a_day_stale_is_exactly_its_listing_against_the_last_manifest(lake, catalog):
    day = date(2026, 11, 20)
    # raw files and no manifest: untransformed
    first = write_raw(lake, [event()], name="a.parquet")
    assert check_day(lake=lake, day=day).reason == UNTRANSFORMED
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    assert check_day(lake=lake, day=day) is None  # the manifest lists exactly the current files
    # a file rewritten under the same name (another size and mtime): changed
    write_raw(lake, [event(), event()], name="a.parquet")
    os.utime(first, ns=(1, 1))
    assert check_day(lake=lake, day=day).changed_files == (f"{RAW_EVENTS}/dt={day}/hour=09/a.parquet",)
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    # a file gone alone (raw retention) never makes the day stale: a re-run would drop its events
    second = write_raw(lake, [event()], name="b.parquet", hour=10)
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    os.remove(second)
    assert check_day(lake=lake, day=day) is None
    # ... but beside a new file it is flagged, and the automatic plan sets the day aside for a person
    write_raw(lake, [event()], name="c.parquet", hour=11)
    stale = check_day(lake=lake, day=day)
    assert stale.drops_events and stale.removed_files == (f"{RAW_EVENTS}/dt={day}/hour=10/b.parquet",)
    assert "a re-run would drop their events" in stale.describe()
    decided = plan([stale])
    assert decided.run == () and decided.set_aside == (stale,)
    # a day whose raw partition is empty is never stale, and a hidden temporary file is not a raw file
    lake.write_bytes(b"half", RAW_EVENTS, "dt=2026-11-21", "hour=01", ".x.parquet.123.tmp")
    assert check_day(lake=lake, day=date(2026, 11, 21)) is None


def test_a_manifest_written_before_raw_listing_is_compared_by_its_file_urls(lake, catalog):
    day = date(2026, 11, 20)
    write_raw(lake, [event()], name="a.parquet")
    manifest = transform_day(lake=lake, day=day, catalog=catalog, now=datetime.now(UTC))
    # GIVEN the manifest as older builds wrote it (no raw_listing; absolute file URLs)
    [path] = lake.list_files(RUN_MANIFESTS, f"dt={day}", suffix=".json")
    old = json.loads(Path(path).read_text())
    del old["raw_listing"]
    stat = os.stat(path)
    Path(path).write_text(json.dumps(old))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert manifest.input_files[0]["path"].startswith(lake.base)
    # THEN the same files are not stale, a new one is
    assert check_day(lake=lake, day=day) is None
    write_raw(lake, [event()], name="b.parquet", hour=10)
    assert check_day(lake=lake, day=day).new_files == (f"{RAW_EVENTS}/dt={day}/hour=10/b.parquet",)


def test_a_file_landing_while_the_day_is_read_is_found_next_time_and_counted_once(lake, catalog, monkeypatch):
    day = date(2026, 11, 20)
    write_raw(lake, [event()], name="a.parquet")
    real_find = run_module.find_inputs
    landed: list[str] = []

    def find_after_a_landing(**kwargs):
        # the run listed the day already (its manifest's raw_listing); a file lands before the files are read
        landed.append(write_raw(lake, [event(team_id="team-racing")], name="b.parquet", hour=10))
        monkeypatch.setattr(run_module, "find_inputs", real_find)
        return real_find(**kwargs)

    monkeypatch.setattr(run_module, "find_inputs", find_after_a_landing)
    first = transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    assert first.counts["written"] == 2 and len(first.raw_listing) == 1
    # THEN the day is stale (the run's listing did not have the file), and a re-run keeps each event once
    assert check_day(lake=lake, day=day).new_files == (f"{RAW_EVENTS}/dt={day}/hour=10/b.parquet",)
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    assert check_day(lake=lake, day=day) is None
    assert [r["team_id"] for r in usage_cost(lake, day)].count("team-racing") == 1
    assert len(usage_cost(lake, day)) == 2


def test_late_days_keep_their_last_runs_price_version_and_future_partitions_wait(tmp_path, capsys, catalog):
    lake_dir = str(tmp_path / "lake")
    lake = Lake.open(lake_dir)
    day = date(2026, 11, 20)
    write_raw(lake, [event()], name="a.parquet")
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)  # priced at test-v1 (not in the lake's store)
    write_raw(lake, [event()], name="b.parquet", hour=10)
    future = datetime.now(UTC).date() + timedelta(days=3)
    write_raw(lake, [event(event_time=_at(future, 9))], name="f.parquet", day=future)
    [stale] = stale_days(lake=lake, date_to=datetime.now(UTC).date())
    assert by_price_version([stale, LATE_DAY], default="latest") == [("test-v1", [day]), ("latest", [LATE_DAY])]
    # the CLI re-runs the day at test-v1, which this lake never published: refused, naming the version; the
    # partition dated after today is not among the stale days (its events would all be quarantined as future)
    assert main(["transform", "--lake", lake_dir]) == 1
    _, err = capsys.readouterr()
    assert "1 day with raw events changed since their last transform:" in err and "catalog version test-v1" in err
    assert str(future) not in err
    # --price-version re-prices explicitly
    published = load_catalog(lake=lake).version  # publishes the built-in catalog as the lake's first version
    assert main(["transform", "--changed", "--price-version", published, "--lake", lake_dir]) == 0
    out, _ = capsys.readouterr()
    assert f"{day}: read 2" in out and str(future) not in out
    assert {r["price_version"] for r in usage_cost(lake, day)} == {published}


def test_yesterday_and_today_take_the_latest_prices_as_the_schedule_does_older_late_days_their_last(lake, catalog):
    # GIVEN a day transformed at test-v1, then a late raw file for it
    day = date(2026, 11, 20)
    write_raw(lake, [event()], name="a.parquet")
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    write_raw(lake, [event()], name="b.parquet", hour=10)
    args = SimpleNamespace(date_from=None, date_to=None, changed=False, price_version=None)
    # WHEN the plain transform runs on that day or the next (the schedule's days): the latest version (None)
    for today in (day, day + timedelta(days=1)):
        assert select_days(lake, args, today=today).groups == [(None, [day])]
    # WHEN it runs later: the late day keeps the version its last run used
    assert select_days(lake, args, today=day + timedelta(days=2)).groups == [("test-v1", [day])]


def test_report_tells_raw_events_dated_after_today_apart_from_days_to_transform(tmp_path, capsys):
    # GIVEN a transformed day, and raw events dated three days ahead (a producer's clock ahead)
    lake_dir = str(tmp_path / "lake")
    today = datetime.now(UTC).date()
    future = today + timedelta(days=3)
    write_raw(Lake.open(lake_dir), [event(event_time=_at(today, 0))], name="t.parquet", day=today, hour=0)
    assert main(["transform", "--from", str(today), "--to", str(today), "--lake", lake_dir]) == 0
    write_raw(Lake.open(lake_dir), [event(event_time=_at(future, 9))], name="f.parquet", day=future)
    capsys.readouterr()
    # WHEN an open-ended report runs
    assert main(["report", "--from", str(future - timedelta(days=5)), "--format", "json", "--lake", lake_dir]) == 0
    err = capsys.readouterr().err
    # THEN it names the future day as waiting, without telling to run a transform that would skip it
    assert f"dated after today (UTC) wait untransformed: {future}" in err
    assert "`modelmeter transform` transforms them" not in err


def test_a_rerun_listed_in_the_same_whole_second_as_a_version_still_counts_as_after_it(lake, catalog):
    # GIVEN a day transformed, a version computed (``since``), a late file and a second run just after it
    day = date(2026, 11, 20)
    write_raw(lake, [event()], name="a.parquet")
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    since = datetime.now(UTC)
    write_raw(lake, [event()], name="b.parquet", hour=10)
    transform_day(lake=lake, day=day, catalog=catalog, now=NOW)
    # WHEN the lake lists the manifests' times in whole seconds, as S3 does: the second one's is not after ``since``
    for info in lake.list_file_infos(RUN_MANIFESTS, f"dt={day}", suffix=".json"):
        whole = int(since.timestamp())
        os.utime(info.path, (whole, whole))
    # THEN its own finished_at places it after the version: the day moved
    assert rerun_since(lake=lake, date_from=day, date_to=day, since=since) == [day]

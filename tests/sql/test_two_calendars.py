"""Two calendars, said plainly: ``report``, ``export focus`` and the views count days in the reporting time zone
alike (``MODELMETER_REPORTING_TZ``, or ``--tz`` for one command), and each says which calendar its figures use.

The disagreement this fixes: with ``MODELMETER_REPORTING_TZ=America/Los_Angeles`` a team's day read $1.21 in
``report`` (UTC days) and $1.41 in the views (local days), because an evening call in Los Angeles is after midnight
UTC. The lake here holds exactly that: $1.21 at noon UTC on November 20 and $0.20 at 03:00 UTC on November 21
(19:00 on November 20 in Los Angeles).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST, ENV_REPORTING_TZ
from common.contracts import COST_COLUMNS, COUNT_FIELDS, Team, curated_arrow_schema
from common.lake import Lake
from dashboards.focus import export_focus
from modelmeter.cli import main
from sql.config import ReportingConfig
from sql.reference import write_teams
from sql.render import connect
from tests.fixture_lake import UNPRICED_MODEL, FixtureFacts
from transforms.report import COLUMNS, report_rows, utc_days

WEST = "America/Los_Angeles"
DAY = date(2026, 11, 20)
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
#: (event time, team, total cost): team-west's $1.21 at noon UTC and $0.20 in its evening (after midnight UTC);
#: an evening call on November 30 in Los Angeles that is December 1 in UTC (the next billing period); team-east in
#: UTC office hours.
EVENTS: tuple[tuple[datetime, str, Decimal], ...] = (
    (datetime(2026, 11, 20, 12, 0, tzinfo=UTC), "team-west", Decimal("1.21")),
    (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), "team-west", Decimal("0.20")),
    (datetime(2026, 11, 20, 9, 0, tzinfo=UTC), "team-east", Decimal("0.40")),
    (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "team-west", Decimal("0.30")),
    (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "team-west", Decimal("0.50")),
)


def _usage_row(n: int, when: datetime, team: str, cost: Decimal) -> dict[str, Any]:
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    counts["input_tokens"] = int(cost * 1_000_000 / 3)  # $3 per million (the costs are given, not re-priced)
    costs: dict[str, Any] = dict.fromkeys(COST_COLUMNS, Decimal(0))
    costs["input_cost"] = costs["total_cost"] = cost
    return {"event_id": f"e-{n}", "event_time": when, "usage_date": when.date(), "team_id": team,
            "api_key_id": f"key-{team}", "business_unit": "sales", "provider": "bedrock", "region": "us-east-1",
            "model_id": MODEL, "operation": "chat", "status": "ok", "service_tier": "on_demand", **counts,
            "price_version": "v1", "priced": True, **costs}


def _daily(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["usage_date"], r["team_id"])].append(r)
    return [{"usage_date": d, "team_id": t, "model_id": MODEL, "invocations": len(g),
             **{c: sum(r[c] for r in g) for c in COUNT_FIELDS},
             **{c: sum((r[c] for r in g), Decimal(0)) for c in COST_COLUMNS},
             "unpriced_invocations": 0, "price_version": "v1"} for (d, t), g in sorted(groups.items())]


@pytest.fixture(scope="module")
def midnight_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curated lake of :data:`EVENTS` (usage_cost and team_model_daily agree, as the transform writes them)."""
    root = tmp_path_factory.mktemp("midnight") / "lake"
    lake = Lake.open(root)
    usage = [_usage_row(n, *e) for n, e in enumerate(EVENTS)]
    for name, prefix, rows in (("usage_cost", CURATED_USAGE_COST, usage),
                               ("team_model_daily", CURATED_TEAM_MODEL_DAILY, _daily(usage))):
        by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_day[r["usage_date"]].append(r)
        for day, part in by_day.items():
            lake.write_parquet(pa.Table.from_pylist(part, schema=curated_arrow_schema(name)), prefix,
                               f"dt={day}", "part-00000.parquet")
    write_teams(lake=lake, teams=[Team(team_id="team-west", cost_center="CC-3003"),
                                  Team(team_id="team-east", cost_center="CC-1001")])
    return root


def _report_total(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Decimal], str]:
    assert main(["report", "--lake", str(root), "--from", str(DAY), "--to", str(DAY), "--format", "json",
                 *args]) == 0
    out = capsys.readouterr()
    return {r["team_id"]: Decimal(r["total_cost"]) for r in json.loads(out.out)}, out.err


def _focus_total(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
                 ) -> tuple[dict[str, Decimal], list[dict[str, Any]], str]:
    out = tmp_path / "focus.parquet"
    assert main(["export", "focus", "--lake", str(root), "--from", str(DAY), "--to", str(DAY), "--out", str(out),
                 *args]) == 0
    printed = capsys.readouterr().out
    rows = pq.read_table(out).to_pylist()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        totals[r["SubAccountId"]] += r["BilledCost"]
    return dict(totals), rows, printed


def _view_total(root: Path, timezone: str) -> dict[str, Decimal]:
    con = connect(lake=Lake.open(root), config=ReportingConfig(timezone=timezone))
    try:
        return dict(con.execute("select team_id, sum(total_cost) from team_model_daily_local where local_date = ? "
                                "group by team_id", [DAY]).fetchall())
    finally:
        con.close()


def test_the_midnight_lake_holds_the_disagreement(midnight_lake: Path) -> None:
    # the curated rollup counts UTC days; the views count the configured zone's: the same day, two figures
    con = connect(lake=Lake.open(midnight_lake), config=ReportingConfig(timezone=WEST))
    utc_day = con.execute("select sum(total_cost) from team_model_daily where usage_date = ? and team_id = "
                          "'team-west'", [DAY]).fetchone()[0]
    con.close()
    assert (utc_day, _view_total(midnight_lake, WEST)["team-west"]) == (Decimal("1.21"), Decimal("1.41"))


@pytest.mark.parametrize(("timezone", "west", "east"), [
    ("UTC", Decimal("1.21"), Decimal("0.40")),
    (WEST, Decimal("1.41"), Decimal("0.40")),  # team-east's 09:00 UTC is 01:00 the same day in Los Angeles
])
@pytest.mark.parametrize("how", ["env", "flag"])
def test_report_focus_and_the_views_agree_on_a_day(midnight_lake: Path, tmp_path: Path, monkeypatch,
                                                   capsys: pytest.CaptureFixture[str], timezone: str, west: Decimal,
                                                   east: Decimal, how: str) -> None:
    # GIVEN the reporting zone from the environment, or from --tz over another environment
    if how == "env":
        monkeypatch.setenv(ENV_REPORTING_TZ, timezone)
        args: tuple[str, ...] = ()
    else:
        monkeypatch.setenv(ENV_REPORTING_TZ, "Asia/Tokyo")
        args = ("--tz", timezone)
    expected = {"team-west": west, "team-east": east}
    # WHEN November 20 is read by report, by the FOCUS export and by the views
    report, err = _report_total(midnight_lake, capsys, *args)
    focus, rows, printed = _focus_total(midnight_lake, tmp_path, capsys, *args)
    views = _view_total(midnight_lake, timezone)
    # THEN all three say the same, and each output says which calendar
    assert report == focus == views == expected
    assert f"days counted in {timezone} (reporting calendar" in err
    assert f"days counted in {timezone} (reporting calendar" in printed
    assert {(r["x_ReportingDate"], r["x_ReportingTimeZone"], r["x_CostBasis"]) for r in rows} == \
        {(DAY, timezone, "list")}  # no chargeback here: BilledCost is the list cost, and says so


def test_a_reporting_day_across_a_billing_period_boundary_is_cut_at_midnight_utc(midnight_lake: Path) -> None:
    # GIVEN November 30 in Los Angeles: 08:00 UTC on the 30th to 08:00 UTC on December 1
    summary = export_focus(lake=Lake.open(midnight_lake), date_from=date(2026, 11, 30), date_to=date(2026, 11, 30),
                           out=midnight_lake.parent / "boundary.parquet", config=ReportingConfig(timezone=WEST))
    rows = pq.read_table(summary.out).to_pylist()
    # THEN its usage is in two rows, one per billing period (UTC months), each charged over its part of the day
    got = {(r["BillingPeriodStart"], r["ChargePeriodStart"], r["ChargePeriodEnd"], r["BilledCost"]) for r in rows}
    assert got == {
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, 8, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
         Decimal("0.30")),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC),
         Decimal("0.50")),
    }
    assert {r["x_ReportingDate"] for r in rows} == {date(2026, 11, 30)}
    assert [p.period for p in summary.periods] == ["2026-11", "2026-12"]


@pytest.mark.parametrize("command", [["report"], ["export", "focus", "--out", "x.parquet"]])
def test_a_bad_tz_is_a_usage_error_naming_the_flag(midnight_lake: Path, capsys: pytest.CaptureFixture[str],
                                                   command: list[str]) -> None:
    assert main([*command, "--lake", str(midnight_lake), "--from", str(DAY), "--to", str(DAY),
                 "--tz", "Mars/Olympus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --tz: unknown time zone 'Mars/Olympus'" in err[0]
    assert main([*command, "--lake", str(midnight_lake), "--from", str(DAY), "--to", str(DAY),
                 "--tz", "UTC'; drop"]) == 2
    assert "argument --tz: " in capsys.readouterr().err


def test_a_bad_reporting_zone_in_the_environment_is_one_clear_line(midnight_lake: Path, monkeypatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV_REPORTING_TZ, "Mars/Olympus")
    assert main(["report", "--lake", str(midnight_lake)]) == 1
    assert "unknown reporting time zone 'Mars/Olympus'" in capsys.readouterr().err
    assert main(["report", "--lake", str(midnight_lake), "--tz", "UTC", "--format", "csv"]) == 0  # --tz wins


ZONES = ("UTC", WEST, "Asia/Kolkata", "Pacific/Kiritimati", "Etc/GMT+12")
RANGES = ((None, None), (date(2026, 11, 28), date(2026, 12, 3)), (date(2026, 12, 1), date(2026, 12, 1)),
          (None, date(2026, 11, 30)), (date(2026, 12, 1), None))


@pytest.mark.parametrize("timezone", ZONES)
def test_report_is_the_local_day_view_in_any_zone(facts: FixtureFacts, timezone: str) -> None:
    # GIVEN the fixture lake read in a zone from UTC−12 to UTC+14
    config = ReportingConfig(timezone=timezone)
    lake = Lake.open(facts.root)
    con = connect(lake=lake, config=config)
    summed = ", ".join(f"sum({c})" for c in COLUMNS[2:])
    try:
        for first, last in RANGES:
            # WHEN report adds up the reporting days (the rollup's whole UTC days plus the cut ones re-counted)
            got = {(r["team_id"], r["model_id"]): tuple(r[c] for c in COLUMNS[2:])
                   for r in report_rows(lake=lake, date_from=first, date_to=last, config=config)}
            # THEN it is the local-day view's answer, row for row, and the fixture's own total for those days
            want = {(t, m): tuple(v) for t, m, *v in con.execute(
                f"select team_id, model_id, {summed} from team_model_daily_local where local_date >= "
                "coalesce(?, local_date) and local_date <= coalesce(?, local_date) group by all",
                [first, last]).fetchall()}
            # (an unpriced amount, None in the report, is 0 in the view's sums of priced parts)
            assert {k: tuple(0 if x is None else x for x in v) for k, v in got.items()} == want, (timezone, first, last)
            days = [facts.local_day(r, timezone) for r in facts.priced_rows]
            total = sum((r["total_cost"] for r, d in zip(facts.priced_rows, days, strict=True)
                         if (first is None or d >= first) and (last is None or d <= last)), Decimal(0))
            at = COLUMNS[2:].index("total_cost")
            assert sum(v[at] or 0 for v in got.values()) == total
            # AND the model without a price reads unpriced, never 0, and only it
            assert {m for (_, m), v in got.items() if v[at] is None} <= {UNPRICED_MODEL}
            assert all(v[at] is None for (_, m), v in got.items() if m == UNPRICED_MODEL)
    finally:
        con.close()


def test_report_reads_the_rollup_for_whole_utc_days() -> None:
    # two reporting days in Los Angeles: the UTC day between them from the rollup, the two cut ones row by row
    west = ReportingConfig(timezone=WEST)
    assert utc_days(west, date(2026, 11, 20), date(2026, 11, 21)) == (
        (date(2026, 11, 21), date(2026, 11, 21)), (date(2026, 11, 20), date(2026, 11, 22)))
    assert utc_days(ReportingConfig(), date(2026, 11, 20), date(2026, 11, 21)) == (
        (date(2026, 11, 20), date(2026, 11, 21)), ())
    assert utc_days(west, None, None) == ((None, None), ())
    first, last = utc_days(west, date(2026, 11, 20), date(2026, 11, 20))[0]
    assert first is not None and last is not None and first > last  # one local day holds no whole UTC day

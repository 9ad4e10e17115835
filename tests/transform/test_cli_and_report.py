"""``modelmeter ingest`` → ``transform`` → ``report`` end to end through ``modelmeter.cli.main`` on a temporary lake."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from common.contracts import format_time, to_json
from common.lake import Lake
from modelmeter.cli import main
from pricing_catalog import interval_at, load_catalog
from tests.transform.conftest import DAY, MIDNIGHT, event
from transforms.report import COLUMNS, format_table, money_text, report_rows, shorten

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def _jsonl(tmp_path, rows) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(to_json(r) for r in rows) + "\n")
    return str(path)


@pytest.fixture
def cli_lake(tmp_path, capsys):
    """A lake after `ingest` and `transform` of two days: 3 calls of team-a, 1 of team-b, one re-delivery."""
    rows = [event(model_id=HAIKU, team_id="team-a", input_tokens=1000 * i, output_tokens=100 * i,
                  event_time=MIDNIGHT + timedelta(hours=i)) for i in (1, 2, 3)]
    rows.append(event(model_id=HAIKU, team_id="team-b", input_tokens=500, output_tokens=50,
                      event_time=MIDNIGHT + timedelta(days=1, hours=5)))
    rows.append(rows[0])  # re-delivered
    lake_dir = str(tmp_path / "lake")
    assert main(["ingest", _jsonl(tmp_path, rows), "--lake", lake_dir]) == 0
    assert main(["transform", "--from", str(DAY), "--to", str(DAY + timedelta(days=1)), "--lake", lake_dir]) == 0
    out = capsys.readouterr().out
    assert f"{DAY}: read 4 / valid 4 / quarantined 0 / duplicates 1 / written 3 / unpriced 0" in out
    return lake_dir, rows


def _expected_haiku_cost(tokens_in: int, tokens_out: int, when) -> Decimal:
    catalog = load_catalog()
    prices = catalog.prices_for(model_id=HAIKU, region="us-east-1", service_tier="on_demand")
    cost = Decimal(0)
    for dim, n in (("input_tokens", tokens_in), ("output_tokens", tokens_out)):
        interval = interval_at(prices, dimension=dim, instant=when)
        cost += Decimal(n) * interval.price_usd / interval.per
    return cost


def test_report_json_has_exact_money_per_team_and_model(cli_lake, capsys):
    lake_dir, rows = cli_lake
    assert main(["report", "--from", str(DAY), "--to", str(DAY + timedelta(days=1)), "--format", "json",
                 "--lake", lake_dir]) == 0
    report = {r["team_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(report["team-a"])[:8] == list(COLUMNS[:8])
    assert report["team-a"]["invocations"] == 3 and report["team-a"]["input_tokens"] == 6000
    expected = sum(_expected_haiku_cost(r["input_tokens"], r["output_tokens"], r["event_time"]) for r in rows[:3])
    assert Decimal(report["team-a"]["total_cost"]) == expected
    assert report["team-b"]["invocations"] == 1


def test_report_range_and_csv(cli_lake, capsys):
    lake_dir, _ = cli_lake
    assert main(["report", "--from", str(DAY), "--to", str(DAY), "--format", "csv", "--lake", lake_dir]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["team_id"] for r in table] == ["team-a"]  # team-b's call was on the next day
    assert set(table[0]) == set(COLUMNS)


def test_report_table_has_a_totals_row(cli_lake, capsys):
    lake_dir, _ = cli_lake
    assert main(["report", "--from", str(DAY), "--to", str(DAY + timedelta(days=1)), "--lake", lake_dir,
                 "--wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:8] == list(COLUMNS[:8])
    rows = report_rows(lake=Lake.open(lake_dir))
    total = sum(r["total_cost"] for r in rows)
    assert lines[-1].split()[0] == "TOTAL" and money_text(total) in lines[-1]


def test_report_without_data_fails_with_one_clear_line(tmp_path, capsys):
    assert main(["report", "--from", "2026-01-01", "--to", "2026-01-02", "--lake", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `modelmeter transform`" in err[0]


def test_transform_refuses_a_reversed_range(tmp_path, capsys):
    assert main(["transform", "--from", "2026-01-02", "--to", "2026-01-01", "--lake", str(tmp_path / "l")]) == 1
    assert "before" in capsys.readouterr().err


def test_money_text_is_exact():
    assert money_text(Decimal("12.500000000000")) == "12.50"
    assert money_text(Decimal("0.000003000000")) == "0.000003"
    assert money_text(Decimal("7")) == "7.00"
    assert format_table([]).splitlines()[-1].startswith("TOTAL")


def test_bad_jsonl_lines_stay_in_ingest_quarantine_after_transform(tmp_path, capsys):
    lake_dir = str(tmp_path / "lake")
    good = event(model_id=HAIKU)
    path = tmp_path / "mixed.jsonl"
    path.write_text(to_json(good) + "\n{not json\n")
    assert main(["ingest", str(path), "--lake", lake_dir]) == 0
    when = format_time(good["event_time"])[:10]
    assert main(["transform", "--from", when, "--to", when, "--lake", lake_dir]) == 0
    lake = Lake.open(lake_dir)
    names = [p.rsplit("/", 1)[1] for p in lake.list_files("quarantine/usage_events")]
    assert any(n.startswith("ingest-") for n in names)


@pytest.mark.parametrize("width", [80, 120])
def test_the_report_table_fits_the_terminal(cli_lake, capsys, monkeypatch, width):
    # GIVEN a terminal of 80 or 120 columns (shutil.get_terminal_size reads COLUMNS)
    lake_dir, _ = cli_lake
    monkeypatch.setenv("COLUMNS", str(width))
    # WHEN the table is printed
    assert main(["report", "--lake", lake_dir]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    # THEN no line wraps, team, model and total are there with the totals row, and stderr says how to see the rest
    assert max(len(line) for line in lines) <= width
    assert lines[0].split()[:2] == ["team_id", "model_id"] and "total_cost" in lines[0]
    assert lines[-1].split()[0] == "TOTAL"
    assert "--wide shows everything" in captured.err


def test_a_long_model_id_is_shortened_in_the_middle():
    assert shorten("us.anthropic.claude-3-5-haiku-20241022-v1:0", 20) == "us.anthro…41022-v1:0"  # 9 + 1 + 10 characters
    assert shorten("short", 20) == "short"

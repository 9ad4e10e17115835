"""Progress on long work (`common.progress`): bounded plain lines on stderr when it is not a terminal, a bar when it
is, nothing for quick work; and a command's stdout stays machine-readable while it reports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import common.progress
from common.contracts import to_json
from common.lake import Lake
from common.progress import Progress
from finance.cur import import_export
from modelmeter.cli import main
from modelmeter.simulated_bill import write_cur
from tests.finance.conftest import PERIOD, extra_line
from tests.transform.conftest import DAY, MIDNIGHT, event

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_bounded_by_tenths_and_time_and_say_how_far(tmp_path):
    # GIVEN 200 s of work in 100,000 updates, reported to a stream that is no terminal
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("ingest", total=100_000, unit="bytes", stream=out, interval=5.0, clock=clock)
    for done in range(1, 100_001):
        clock.now += 0.002
        progress.update(done, note="events.jsonl")
    progress.close()

    # THEN at most one line per tenth plus one per 5 s (200 s / 5 s = 40) are written, the last one at 100 %
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 10 + 40 + 1
    assert lines[-1] == "ingest: 100,000 / 100,000 bytes (100 %)  events.jsonl"
    shares = [int(line.split("(")[1].split(" %")[0]) for line in lines]
    assert shares == sorted(shares) and shares[0] > 0


def test_quick_work_prints_nothing_and_a_disabled_report_never_prints(tmp_path):
    clock, out = FakeClock(), io.StringIO()
    with Progress("transform", total=3, unit="days", stream=out, clock=clock) as progress:
        for day in range(1, 4):
            clock.now += 0.5  # 1.5 s in all: under the 2 s a report stays quiet for
            progress.update(day)
    assert out.getvalue() == ""

    quiet = Progress("transform", total=3, stream=out, enabled=False, clock=clock)
    clock.now += 100
    quiet.update(3)
    quiet.close()
    assert out.getvalue() == ""


def test_an_open_count_prints_by_time_and_a_failure_gets_no_closing_line():
    clock, out = FakeClock(), io.StringIO()
    with pytest.raises(RuntimeError), Progress("requests", stream=out, clock=clock) as progress:
        for done in range(1, 61):
            clock.now += 1.0
            progress.update(done)
        raise RuntimeError("the gateway went away")
    lines = out.getvalue().splitlines()
    assert lines == ["requests: 5", "requests: 10", "requests: 15", "requests: 20", "requests: 25", "requests: 30",
                     "requests: 35", "requests: 40", "requests: 45", "requests: 50", "requests: 55", "requests: 60"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_it_draws_a_bar_instead_of_lines():
    out = Terminal()
    with Progress("ingest", total=10, unit="bytes", stream=out) as progress:
        progress.update(10, note="events.jsonl")
    text = out.getvalue()
    assert "ingest" in text and "10/10" in text and "events.jsonl" in text
    assert "(100 %)" not in text  # not the plain line


def _events_file(tmp_path: Path) -> Path:
    rows = [event(team_id="team-a", input_tokens=10 * i, event_time=MIDNIGHT + timedelta(hours=i))
            for i in range(1, 9)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(to_json(r) for r in rows) + "\n")
    return path


def test_cli_progress_goes_to_stderr_and_stdout_stays_machine_readable(tmp_path, capsys, monkeypatch):
    # GIVEN reports that speak from the start (long work, in a test's time)
    monkeypatch.setattr(common.progress, "QUIET_FOR", 0.0)
    notes: list[str] = []
    update = Progress.update

    def recording(self, done, total=None, note=""):  # the real update, and a note of what it was told
        notes.append(note)
        update(self, done, total, note)

    monkeypatch.setattr(Progress, "update", recording)
    src, lake = _events_file(tmp_path), str(tmp_path / "lake")

    # WHEN events are ingested and their day transformed, with stderr no terminal
    assert main(["ingest", str(src), "--lake", lake]) == 0
    out, err = capsys.readouterr()
    # THEN the progress lines are on stderr, and stdout holds only the summary
    size = src.stat().st_size
    assert f"ingest: {size:,} / {size:,} bytes (100 %)  events.jsonl" in err.splitlines()
    assert len(out.splitlines()) == 1 and out.startswith("read 8 / landed 8 / quarantined 0")

    assert main(["transform", "--from", str(DAY), "--to", str(DAY), "--lake", lake]) == 0
    out, err = capsys.readouterr()
    assert f"transform: 1 / 1 days (100 %)  {DAY} (8 events)" in err.splitlines()
    assert "transform:" not in out
    steps = {note.split(": ", 1)[1] for note in notes if note.startswith(f"{DAY}: ")}  # each step, as it starts
    assert {"find_inputs", "publish"} <= steps and len(steps) >= 4

    # AND a JSON report after them parses
    assert main(["report", "--from", str(DAY), "--to", str(DAY), "--format", "json",
                 "--lake", lake]) == 0
    assert json.loads(capsys.readouterr().out)[0]["team_id"] == "team-a"


def test_a_real_process_with_piped_stderr_prints_plain_lines(tmp_path):
    src, lake = _events_file(tmp_path), str(tmp_path / "lake")
    code = ("import sys, common.progress as p; p.QUIET_FOR = 0.0; from modelmeter.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "ingest", str(src), "--lake", lake], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("read 8 / landed 8 / quarantined 0")
    assert "(100 %)  events.jsonl" in done.stderr
    assert "\x1b[" not in done.stderr  # no terminal control codes in a log


def test_the_cur_import_reports_files_read_then_periods_written(tmp_path):
    lines = [extra_line(usage_type="USE1-Claude3.5Sonnet-input-tokens", amount=10.0, cost=0.03)]
    first = write_cur(lines, tmp_path / "in" / "export-00001.snappy.parquet")
    second = write_cur(lines, tmp_path / "in" / "export-00002.csv.gz", fmt="csv.gz")
    told: list[tuple] = []

    import_export(lake=Lake.open(str(tmp_path / "lake")), paths=[str(first), str(second)],
                  progress=lambda done, total, note: told.append((done, total, note)))

    assert told == [(0, 2, str(first)), (1, 2, str(second)), (0, 1, f"billing period {PERIOD}"), (1, 1, "")]

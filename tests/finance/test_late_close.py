"""A late file for a day of a CLOSED billing period: the transform picks it up, the chargeback of record does not
move, and `chargeback`, `close`'s views and the dashboard say there is late usage only `restate` books."""

from __future__ import annotations

import json
from pathlib import Path

from common.contracts import to_json
from common.lake import Lake
from dashboards.html import render_dashboard
from dashboards.late import late_notice, notice_html
from modelmeter.cli import main
from sql.config import ReportingConfig
from tests.finance import test_close
from tests.finance.test_close import Books, _view

from .conftest import PERIOD, SONNET

#: The fixture lake with November's bill imported and a registry of its teams (tests/finance/test_close.py).
books = test_close.books

LATE_DAY = "2026-11-29"
_OWN = ("cost_center", "team_id", "metered_list_cost", "price_adjustment", "allocated_shared_cost",
        "chargeback_cost", "rules", "line_type", "corrects_period")


def _events(tmp: Path, name: str, team: str, hours: tuple[int, ...]) -> str:
    rows = [{"schema_version": 1, "event_id": f"{name}-{h}", "request_id": f"req-{name}-{h}",
             "event_time": f"{LATE_DAY}T{h:02d}:00:00Z", "team_id": team, "provider": "bedrock",
             "region": "us-east-1", "model_id": SONNET, "operation": "chat", "status": "ok",
             "input_tokens": 400_000, "output_tokens": 50_000} for h in hours]
    path = tmp / f"{name}.jsonl"
    path.write_text("\n".join(to_json(r) for r in rows) + "\n")
    return str(path)


def _own(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in _OWN} for r in rows]


def _dashboard(books: Books, tmp: Path) -> str:
    out = render_dashboard(lake=books.lake, date_from=None, date_to=None, out=tmp / "report.html",
                           config=ReportingConfig())
    return out.read_text(encoding="utf-8")


def test_a_late_file_in_a_closed_period_moves_the_usage_not_the_chargeback_of_record(books: Books, capsys,
                                                                                   tmp_path: Path) -> None:
    # GIVEN 2026-11-29 ingested and transformed, then November charged back and closed
    assert main(["ingest", _events(tmp_path, "on-time", "team-alpha", (9, 10)), "--lake", str(books.lake)]) == 0
    assert main(["transform", "--from", LATE_DAY, "--to", LATE_DAY, "--lake", str(books.lake)]) == 0
    capsys.readouterr()
    charged = books.rows(capsys)
    code, _, err = books.run(capsys, "close", "--period", PERIOD)
    assert code == 0 and "not transformed yet" not in err
    closed_view = _view(books.lake, PERIOD)
    # WHEN a late file for 2026-11-29 lands
    assert main(["ingest", _events(tmp_path, "late", "team-beta", (22,)), "--lake", str(books.lake)]) == 0
    capsys.readouterr()
    # THEN the closed chargeback is shown as closed, with a warning naming the untransformed day (exit 0)
    code, out, err = books.run(capsys, "chargeback", "--period", PERIOD, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and _own(rows) == _own(charged)
    assert f"billing period {PERIOD} is closed and has late usage its chargeback of record does not hold" in err
    assert f"raw events not transformed yet: {LATE_DAY}: 1 new raw file" in err
    assert {(tuple(r["untransformed_days"]), tuple(r["transformed_after_record"])) for r in rows} == {
        ((LATE_DAY,), ())}
    notice = late_notice(lake=Lake.open(books.lake), config=ReportingConfig(), date_from=None, date_to=None)
    assert [s.day.isoformat() for s in notice.stale] == [LATE_DAY] and notice.closed == ()
    assert 'id="late-untransformed"' in notice_html(notice)
    # WHEN the plain transform picks the late day up
    assert main(["transform", "--lake", str(books.lake)]) == 0
    out, err = capsys.readouterr()
    assert f"{LATE_DAY}: read 3 / valid 3" in out
    assert f"billing period {PERIOD} is closed (chargeback version 1): its chargeback of record stays" in err
    # THEN the chargeback of record, its view and its versions are what was closed ...
    code, out, err = books.run(capsys, "chargeback", "--period", PERIOD, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and _own(rows) == _own(charged) and _view(books.lake, PERIOD) == closed_view
    assert all(r[5] == "closed" for r in closed_view)
    code, out, _ = books.run(capsys, "chargeback", "--period", PERIOD, "--versions", "--format", "json")
    assert [(v["version"], v["of_record"]) for v in json.loads(out)] == [(1, True)]
    # ... and every surface of the close says the period's usage moved after its record, for restate to book
    assert f"transformed after version 1 was computed: {LATE_DAY}" in err
    assert f"`modelmeter restate --period {PERIOD}` shows and posts the difference" in err
    assert {(tuple(r["untransformed_days"]), tuple(r["transformed_after_record"])) for r in rows} == {
        ((), (LATE_DAY,))}
    page = _dashboard(books, tmp_path)
    assert f'class="late-closed" data-period="{PERIOD}"' in page and LATE_DAY in page
    assert 'id="late-untransformed"' not in page

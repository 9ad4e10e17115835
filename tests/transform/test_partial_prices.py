"""One unpriced dimension no longer nulls an event's cost (DESIGN.md "Curated tables"): each dimension is priced on
its own, ``unpriced_dimensions`` lists the others, ``total_cost`` is the priced part; the rollup, the views, the
report and the FOCUS export carry the priced part and count the unpriced invocations."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from common.contracts import COST_COLUMNS, COST_OF, COUNT_FIELDS
from common.lake import Lake
from dashboards.focus import export_focus
from modelmeter.cli import main
from sql import models
from sql.config import ReportingConfig
from sql.render import connect
from transforms import run
from transforms.run import transform_day

from .conftest import DAY, MIDNIGHT, NOW, TEXT_MODEL, UNKNOWN_MODEL, event, team_model_daily, usage_cost, write_raw

ZERO = Decimal(0)
M = Decimal(1_000_000)


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


#: The day's events (before noon on DAY: TEXT_MODEL's input costs $3, output $15, cache writes $3.75 per 1 M; the
#: test catalog has no 1-hour cache-write price and nothing at all for UNKNOWN_MODEL).
EVENTS = {
    "partly": event(event_id=_id(1), input_tokens=1000, output_tokens=200, cache_write_1h_input_tokens=500),
    "only_unpriced": event(event_id=_id(2), input_tokens=0, output_tokens=0, cache_write_1h_input_tokens=800),
    "unknown_model": event(event_id=_id(3), model_id=UNKNOWN_MODEL, input_tokens=100, output_tokens=10),
    "unknown_refused": event(event_id=_id(4), model_id=UNKNOWN_MODEL, status="throttled", http_status=429,
                             input_tokens=0, output_tokens=0),
    "known_refused": event(event_id=_id(5), status="throttled", http_status=429, input_tokens=0, output_tokens=0),
    "priced": event(event_id=_id(6), input_tokens=2000, output_tokens=100, cache_write_input_tokens=4000),
}


@pytest.fixture
def day_lake(lake: Lake, catalog) -> Lake:
    write_raw(lake, list(EVENTS.values()))
    manifest = transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)
    assert manifest.counts["written"] == 6 and manifest.counts["unpriced"] == 4
    return lake


def _rows(lake: Lake) -> dict[str, dict[str, Any]]:
    by_id = {r["event_id"]: r for r in usage_cost(lake)}
    return {name: by_id[e["event_id"]] for name, e in EVENTS.items()}


def test_each_dimension_is_priced_on_its_own_and_the_total_is_the_priced_part(day_lake: Lake) -> None:
    rows = _rows(day_lake)
    # a priced input and output beside unpriced 1-hour cache writes: both keep their cost, the writes are listed
    partly = rows["partly"]
    assert (partly["priced"], partly["unpriced_dimensions"]) == (False, "cache_write_1h_input_tokens")
    assert (partly["input_cost"], partly["output_cost"], partly["cache_write_1h_cost"]) == (
        1000 * Decimal(3) / M, 200 * Decimal(15) / M, None)
    assert partly["cache_read_cost"] == partly["cache_write_cost"] == partly["image_cost"] == ZERO  # not used
    assert partly["total_cost"] == partly["input_cost"] + partly["output_cost"] == Decimal("0.006")
    # nothing the event used had a price: no total (an unpriced event never reads $0)
    only = rows["only_unpriced"]
    assert (only["priced"], only["unpriced_dimensions"], only["cache_write_1h_cost"], only["total_cost"]) == (
        False, "cache_write_1h_input_tokens", None, None)
    assert only["input_cost"] == only["output_cost"] == ZERO
    # a model with no price: what it used is NULL and listed, the rest 0, no total
    unknown = rows["unknown_model"]
    assert (unknown["priced"], unknown["unpriced_dimensions"], unknown["total_cost"]) == (
        False, "input_tokens,output_tokens", None)
    assert unknown["input_cost"] is None and unknown["output_cost"] is None and unknown["cache_read_cost"] == ZERO
    # a refused call: 0 and priced when the model has prices; unpriced (no total, nothing to list) when it has none
    known, refused = rows["known_refused"], rows["unknown_refused"]
    assert (known["priced"], known["total_cost"], known["unpriced_dimensions"]) == (True, ZERO, None)
    assert (refused["priced"], refused["total_cost"], refused["unpriced_dimensions"]) == (False, None, "")
    # a wholly priced event, as before
    priced = rows["priced"]
    assert priced["priced"] and priced["unpriced_dimensions"] is None
    assert priced["total_cost"] == (2000 * Decimal(3) + 100 * Decimal(15) + 4000 * Decimal("3.75")) / M


def test_team_model_daily_carries_the_priced_part_and_the_gap(day_lake: Lake) -> None:
    usage = usage_cost(day_lake)
    daily = {r["model_id"]: r for r in team_model_daily(day_lake)}
    for model_id, r in daily.items():
        mine = [u for u in usage if u["model_id"] == model_id]
        # THEN each money column is the sum of usage_cost's non-NULL costs (so the total is the priced part)
        for c in COST_COLUMNS:
            assert r[c] == sum((u[c] for u in mine if u[c] is not None), ZERO), (model_id, c)
        assert r["total_cost"] == sum((r[c] for c in COST_OF), ZERO)
        assert r["unpriced_invocations"] == sum(1 for u in mine if not u["priced"])
        assert r["invocations"] == len(mine)
        for c in COUNT_FIELDS:
            assert r[c] == sum(u[c] for u in mine)
    assert daily[TEXT_MODEL]["unpriced_invocations"] == 2 and daily[UNKNOWN_MODEL]["unpriced_invocations"] == 2
    assert daily[TEXT_MODEL]["unpriced_dimensions"] == "cache_write_1h_input_tokens"
    assert daily[UNKNOWN_MODEL]["unpriced_dimensions"] == "input_tokens,output_tokens"
    assert daily[TEXT_MODEL]["total_cost"] == Decimal("0.006") + _rows(day_lake)["priced"]["total_cost"]
    assert daily[UNKNOWN_MODEL]["total_cost"] == ZERO


def _except_both_ways(con, a: str, b: str) -> tuple[int, int]:
    one = con.execute(f"select count(*) from (select * from ({a}) except all select * from ({b}))").fetchone()[0]
    two = con.execute(f"select count(*) from (select * from ({b}) except all select * from ({a}))").fetchone()[0]
    return one, two


def test_the_writer_equals_the_sql_marts_on_partly_priced_events(lake: Lake, catalog, tmp_path) -> None:
    # GIVEN the day's events run by the transform's own steps, its DuckDB connection kept open
    write_raw(lake, list(EVENTS.values()))
    con = run.connect(threads=2)
    try:
        res = run._run_models(con, lake=lake, day=DAY, catalog=catalog, now=NOW, workdir=tmp_path,
                              t=run._Timer({}, {}))
        # WHEN the SQL marts compute the same tables
        written = f"select * from read_parquet('{res.usage_cost}')"
        con.execute(f"create or replace temp view usage_cost_day as {written}")
        # THEN the files hold exactly the marts' rows, NULL costs and unpriced_dimensions included
        assert _except_both_ways(con, models.render("marts/usage_cost"), written) == (0, 0)
        assert _except_both_ways(con, models.render("marts/team_model_daily"),
                                 f"select * from read_parquet('{res.daily}')") == (0, 0)
        assert con.execute(f"select count(*) from ({written}) where unpriced_dimensions is not null"
                           ).fetchone()[0] == 4
    finally:
        con.close()


def test_the_views_split_priced_from_unpriced_usage(day_lake: Lake) -> None:
    con = connect(lake=day_lake, config=ReportingConfig())
    try:
        # priced_usage_daily: the priced usage only (the partly priced event's input and output, not its writes)
        priced = con.execute("select invocations, input_tokens, cache_write_1h_input_tokens, input_cost, "
                             "cache_write_1h_cost, total_cost from priced_usage_daily where model_id = ?",
                             [TEXT_MODEL]).fetchall()
        assert priced == [(3, 3000, 0, Decimal("0.009"), ZERO, Decimal("0.006") + _rows(day_lake)["priced"][
            "total_cost"])]
        assert con.execute("select count(*) from priced_usage_daily where model_id = ?",
                           [UNKNOWN_MODEL]).fetchone()[0] == 0
        # unpriced_usage: the usage without a price, by the dimensions that had none
        unpriced = con.execute("select model_id, unpriced_dimensions, invocations, input_tokens, "
                               "cache_write_1h_input_tokens from unpriced_usage order by all").fetchall()
        assert unpriced == [(TEXT_MODEL, "cache_write_1h_input_tokens", 2, 0, 1300),
                            (UNKNOWN_MODEL, "", 1, 0, 0), (UNKNOWN_MODEL, "input_tokens,output_tokens", 1, 100, 0)]
        # the chargeback view charges the priced part
        (charged,) = con.execute("select sum(total_cost) from chargeback_monthly").fetchone()
        assert charged == sum((r["total_cost"] for r in usage_cost(day_lake) if r["total_cost"] is not None), ZERO)
    finally:
        con.close()


def test_focus_bills_the_priced_part_and_counts_the_unpriced_invocations(day_lake: Lake, tmp_path) -> None:
    out = tmp_path / "focus.parquet"
    summary = export_focus(lake=day_lake, date_from=DAY, date_to=DAY, out=out, config=ReportingConfig())
    rows = pq.read_table(out).to_pylist()
    # THEN the priced dimensions of the partly priced event are billed (one row per priced dimension), its 1-hour
    # writes and the unknown model are not, and the unpriced invocations are counted
    billed = {(r["ResourceName"], r["x_UsageDimension"]): (r["ConsumedQuantity"], r["BilledCost"]) for r in rows}
    assert billed == {(TEXT_MODEL, "input_tokens"): (3000, Decimal("0.009")),
                      (TEXT_MODEL, "output_tokens"): (300, Decimal("0.0045")),
                      (TEXT_MODEL, "cache_write_input_tokens"): (4000, Decimal("0.015"))}
    assert summary.billed_cost == sum(c for _, c in billed.values()) == sum(
        (r["total_cost"] for r in usage_cost(day_lake) if r["total_cost"] is not None), ZERO)
    assert summary.unpriced_invocations == 4


def _report(lake: Lake, capsys, *extra: str) -> tuple[str, str]:
    assert main(["report", "--from", str(DAY), "--to", str(DAY), "--lake", lake.uri, *extra]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def _table(out: str) -> dict[str, dict[str, str]]:
    """The table's cells by model id ("TOTAL" for the totals row, whose model cell is empty)."""
    header, _, *body = out.splitlines()
    columns = header.split()
    cells = {}
    for line in body:
        words = line.split()
        if words[0] == "TOTAL":
            cells["TOTAL"] = dict(zip(columns[:1] + columns[2:], words, strict=True))
        elif not line.startswith("-"):
            cells[words[1]] = dict(zip(columns, words, strict=True))
    return cells


def test_report_table_reads_unpriced_never_zero(day_lake: Lake, capsys) -> None:
    out, err = _report(day_lake, capsys, "--wide")
    cells = _table(out)
    text, unknown, total = cells[TEXT_MODEL], cells[UNKNOWN_MODEL], cells["TOTAL"]
    # the partly priced row shows its priced part and its unpriced invocations; its 1-hour writes read unpriced
    assert (text["input_cost"], text["cache_write_1h_cost"], text["unpriced_invocations"]) == (
        "0.009", "unpriced", "2")
    # the model without a price: what it used and its total read unpriced, what it did not use 0.00
    assert (unknown["input_cost"], unknown["output_cost"], unknown["total_cost"], unknown["cache_read_cost"]) == (
        "unpriced", "unpriced", "unpriced", "0.00")
    # the totals row: the priced part of everything; the 1-hour writes (priced nowhere) unpriced
    assert (total["input_cost"], total["cache_write_1h_cost"], total["unpriced_invocations"]) == (
        "0.009", "unpriced", "4")
    assert "4 invocations used something without a price" in err


def test_report_csv_leaves_unpriced_empty_and_json_null(day_lake: Lake, capsys) -> None:
    out, _ = _report(day_lake, capsys, "--format", "csv")
    table = {r["model_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert (table[UNKNOWN_MODEL]["input_cost"], table[UNKNOWN_MODEL]["total_cost"]) == ("", "")
    assert table[TEXT_MODEL]["cache_write_1h_cost"] == "" and table[TEXT_MODEL]["input_cost"] == "0.009"
    out, _ = _report(day_lake, capsys, "--format", "json")
    doc = {r["model_id"]: r for r in json.loads(out)}
    assert doc[UNKNOWN_MODEL]["input_cost"] is None and doc[UNKNOWN_MODEL]["total_cost"] is None
    assert doc[UNKNOWN_MODEL]["cache_read_cost"] == "0.00"
    assert doc[TEXT_MODEL]["cache_write_1h_cost"] is None and Decimal(doc[TEXT_MODEL]["total_cost"]) > 0


def test_a_narrow_report_always_shows_the_unpriced_invocations(day_lake: Lake, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out, _ = _report(day_lake, capsys)
    header = out.splitlines()[0].split()
    assert header[:3] == ["team_id", "model_id", "total_cost"] and "unpriced_invocations" in header


def test_a_partly_priced_row_shows_its_priced_part(lake: Lake, catalog, capsys) -> None:
    # GIVEN two calls of the priced text model (1000 input, 200 output tokens: $0.006 each), one of which also
    # wrote 10 tokens to the 1-hour cache, which has no price
    write_raw(lake, [event(event_id=_id(7), cache_write_1h_input_tokens=10),
                     event(event_id=_id(8), event_time=MIDNIGHT + timedelta(hours=10))])
    transform_day(lake=lake, day=DAY, catalog=catalog, now=NOW, threads=2)
    # WHEN the day is reported
    out, _ = _report(lake, capsys, "--format", "json")
    (row,) = json.loads(out)
    # THEN the amounts are the priced part of both calls, beside the one unpriced invocation, and only the 1-hour
    # writes (none of them priced) are unpriced
    assert (row["input_cost"], row["total_cost"], row["unpriced_invocations"]) == ("0.006", "0.012", 1)
    assert row["cache_write_1h_cost"] is None

"""`modelmeter demo` end to end, small: the real gateway, lake, transform, report, dashboard and FOCUS export."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from modelmeter.cli import main


@pytest.mark.slow
def test_demo_runs_the_whole_local_path(tmp_path, capsys):
    # GIVEN an empty folder
    lake = tmp_path / "lake"

    # WHEN the demo runs a small week
    code = main(["demo", "--lake", str(lake), "--requests", "240", "--days", "3",
                 "--dashboard", str(tmp_path / "report.html")])

    # THEN every request became exactly one usage event in the raw lake, next to the partner batch
    out, _ = capsys.readouterr()
    assert code == 0, out
    raw = ds.dataset(str(lake / "raw" / "usage_events"), partitioning="hive").to_table()
    gateway_events = [e for e, p in zip(raw["request_id"].to_pylist(), raw["provider"].to_pylist(), strict=True)
                      if p == "simulator"]
    assert len(gateway_events) == len(set(gateway_events)) == 240
    # AND the curated table holds each event once (the partner batch's re-delivery and bad line excluded)
    cost = ds.dataset(str(lake / "curated" / "usage_cost"), partitioning="hive").to_table()
    assert cost.num_rows == 240 + 40
    assert len(cost["event_id"].unique()) == cost.num_rows
    # AND the chargeback table, the dashboard and the FOCUS export are there
    assert "TOTAL" in out and "support-bot" in out
    assert (tmp_path / "report.html").stat().st_size > 1000
    assert list((lake / "exports").glob("focus-*.parquet"))


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path, capsys):
    lake = tmp_path / "precious"
    lake.mkdir()
    (lake / "data.txt").write_text("keep me")

    assert main(["demo", "--lake", str(lake)]) == 1

    assert "was not made by the demo" in capsys.readouterr().err
    assert (lake / "data.txt").read_text() == "keep me"

"""`modelmeter demo` end to end, small: the real gateway, lake, transform, report, dashboard, FOCUS export, notebook."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import nbformat
import pyarrow.dataset as ds
import pytest
from nbclient import NotebookClient

from modelmeter.cli import main

NOTEBOOK = Path(__file__).resolve().parents[2] / "dashboards" / "notebooks" / "explore.ipynb"
REQUESTS = 240
PARTNER_EVENTS = 40  # the demo's partner batch: 40 events, one re-delivered, one malformed, one negative


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run the demo once for the module: a small week through the real gateway."""
    root = tmp_path_factory.mktemp("demo")
    lake = root / "lake"
    capture = root / "stdout.txt"
    saved = sys.stdout
    with capture.open("w") as out:
        sys.stdout = out
        try:
            code = main(["demo", "--lake", str(lake), "--requests", str(REQUESTS), "--days", "3",
                         "--dashboard", str(root / "report.html")])
        finally:
            sys.stdout = saved
    return code, lake, root, capture.read_text()


@pytest.mark.slow
def test_demo_runs_the_whole_local_path(demo):
    code, lake, root, out = demo
    assert code == 0, out
    # every request became exactly one usage event in the raw lake, next to the partner batch
    raw = ds.dataset(str(lake / "raw" / "usage_events"), partitioning="hive").to_table()
    gateway_events = [e for e, p in zip(raw["request_id"].to_pylist(), raw["provider"].to_pylist(), strict=True)
                      if p == "simulator"]
    assert len(gateway_events) == len(set(gateway_events)) == REQUESTS
    # the curated table holds each valid event once: the re-delivery counted once, the bad rows quarantined
    cost = ds.dataset(str(lake / "curated" / "usage_cost"), partitioning="hive").to_table()
    assert cost.num_rows == REQUESTS + PARTNER_EVENTS
    assert len(cost["event_id"].unique()) == cost.num_rows
    quarantine = ds.dataset(str(lake / "quarantine" / "usage_events"), partitioning="hive").to_table().to_pylist()
    assert sorted(q["stage"] for q in quarantine) == ["ingest", "transform"]
    # the chargeback table, the dashboard and the FOCUS export are there, and the validator had its say
    assert "TOTAL" in out and "support-bot" in out
    assert "403×" in out  # the spoofed team and the disallowed model were refused, and still produced events
    assert (root / "report.html").stat().st_size > 1000
    assert list((lake / "exports").glob("focus-*.parquet"))
    assert "focus-validator 1.2: accepted" in out or "FOCUS validator not installed" in out


@pytest.mark.slow
def test_the_notebook_runs_on_the_demo_lake(demo, tmp_path, monkeypatch):
    # GIVEN the demo lake and a kernelspec for this interpreter
    _, lake, _, _ = demo
    spec = tmp_path / "jupyter" / "kernels" / "modelmeter-demo"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "modelmeter demo", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MODELMETER_LAKE", str(lake))
    monkeypatch.delenv("MODELMETER_REPORTING_TZ", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    # WHEN every cell runs
    NotebookClient(notebook, kernel_name="modelmeter-demo", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    # THEN it states the lake's exact total
    cost = ds.dataset(str(lake / "curated" / "usage_cost"), partitioning="hive").to_table()
    total = sum((v for v in cost["total_cost"].to_pylist() if v is not None), Decimal(0))
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert f"total spend, all data: {total} USD (exact)" in text


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path, capsys):
    lake = tmp_path / "precious"
    lake.mkdir()
    (lake / "data.txt").write_text("keep me")

    assert main(["demo", "--lake", str(lake)]) == 1

    assert "was not made by the demo" in capsys.readouterr().err
    assert (lake / "data.txt").read_text() == "keep me"

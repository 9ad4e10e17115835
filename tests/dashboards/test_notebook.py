"""The exploration notebook runs top to bottom against the fixture lake (nbclient, a real IPython kernel)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.dashboards.conftest import UTC_CONFIG
from tests.fixture_lake import FixtureFacts

NOTEBOOK = Path(__file__).resolve().parents[2] / "dashboards" / "notebooks" / "explore.ipynb"
KERNEL = "modelmeter-test"


@pytest.fixture()
def kernel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this very interpreter, so the test needs no `ipykernel install` beforehand."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "modelmeter test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return tmp_path


def _text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in ("execute_result", "display_data"):
        return str(output.data.get("text/plain", ""))
    return ""


@pytest.mark.slow
def test_notebook_runs_and_shows_the_exact_total(facts: FixtureFacts, kernel_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the notebook pointed at the fixture lake through the environment, run from an unrelated folder
    monkeypatch.setenv("MODELMETER_LAKE", str(facts.root))
    monkeypatch.setenv("MODELMETER_REPORTING_TZ", UTC_CONFIG.timezone)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # WHEN every cell is executed in a fresh kernel
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=120,
                            resources={"metadata": {"path": str(kernel_home)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    # THEN no cell errored, and the outputs carry the fixture's exact total and the teams' chargeback
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(_text(o) for o in outputs)
    assert f"total spend, all data: {facts.total_cost} USD (exact)" in text
    assert f"{facts.invocations} usage events from" in text
    for team in ("team-alpha", "team-beta", "team-west"):
        assert team in text
    assert "CREATE OR REPLACE VIEW chargeback_monthly" in text


def test_notebook_is_committed_without_outputs() -> None:
    # outputs would carry someone's lake (and numbers) into git
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.metadata.kernelspec.name == "python3"

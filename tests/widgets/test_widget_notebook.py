"""notebooks/01_live_dashboard.ipynb runs top to bottom under nbclient, on its own server."""

from __future__ import annotations

import json
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_live_dashboard.ipynb"


def test_the_live_dashboard_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_the_live_dashboard_notebook_runs_standalone(tmp_path: pathlib.Path, monkeypatch) -> None:
    for var in ("RTNB_URL", "RTNB_TOKEN", "RTNB_CHAOS_URL", "RTNB_CHAOS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=dict(os.environ))
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    widgets = [
        o for c in nb.cells for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]  # fmt: skip
    assert len(widgets) >= 2  # the dashboard and the prices table
    last_table = json.dumps(nb.cells[-3].outputs)
    assert "subscribed" in last_table  # the chaos cell's log ends live again

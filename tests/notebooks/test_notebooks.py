"""Notebooks 02 and 03 run top to bottom in a real kernel (this venv's Python) without errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
OURS = ("02_post_incident_analysis.ipynb", "03_chaos_lab.ipynb")
KERNEL = "rtnb-test-venv"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that starts ipykernel with *this* interpreter, in a private Jupyter path."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rtnb (venv)", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    return KERNEL


@pytest.mark.parametrize("name", OURS)
def test_the_notebook_is_committed_with_outputs_cleared(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", OURS)
def test_the_notebook_runs_top_to_bottom_without_errors(name: str, kernel: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    before = sorted(NOTEBOOKS.rglob("*"))
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=240,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error" or (out.get("name") == "stderr" and "Traceback" in out.text)
    ]
    assert not errors, errors
    assert sum(1 for c in nb.cells if c.cell_type == "code" and c.outputs) >= 5
    assert sorted(NOTEBOOKS.rglob("*")) == before, "the notebook writes nothing next to itself"

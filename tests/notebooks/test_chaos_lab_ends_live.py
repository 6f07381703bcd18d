"""Notebook 03 (chaos lab) under "Run all" ends live: the clean-up cell is labelled and does nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "03_chaos_lab.ipynb"
KERNEL = "rtnb-test-venv"
PROBE = (
    "import json\n"
    "conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=30)  # live (a busy CI box may be mid-retry)\n"
    "print(json.dumps({'status': conn.status.value, 'server': srv.url is not None,"
    " 'charts_live': not lag_chart._stopped.is_set() and not outcomes_chart._stopped.is_set()}))"
)


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that starts ipykernel with *this* interpreter, in a private Jupyter path."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL


def test_the_clean_up_cell_is_labelled_and_guarded() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    heading, cleanup = nb.cells[-2], nb.cells[-1]
    assert heading.cell_type == "markdown" and "not run by" in heading.source.lower()
    assert cleanup.cell_type == "code"
    assert cleanup.source.startswith("CLEAN_UP = False") and "if CLEAN_UP:" in cleanup.source


@pytest.mark.timeout(600)
def test_run_all_ends_with_the_connection_the_server_and_the_charts_live(kernel: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=240, startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )  # fmt: skip
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == [], errors
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    live = {"status": "subscribed", "server": True, "charts_live": True}
    assert json.loads(printed) == live, nb.cells[-1].outputs

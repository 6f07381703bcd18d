"""An nbconvert HTML export of an executed notebook, opened offline, tells the truth.

The notebook runs in a real kernel against the reference server (``jupyter
nbconvert --to html --execute``, the command people use); the HTML is opened in
headless Chromium with every network request refused. Each rtnb widget's recorded
twin must show its rows as of then, labelled "Recorded HH:MM:SS UTC — not live",
and nothing rendered may say "Live".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import rtnb
from tests.widgets.lab_harness import BrowserUnavailable, chromium_page, require_chromium

pytestmark = [pytest.mark.notebook, pytest.mark.browser, pytest.mark.slow]

KERNEL = "rtnb-export-venv"
CELLS = [
    "import os, time, rtnb\n"
    "from rtnb.widgets import Dashboard, Freshness, StreamTable\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=20)",
    "inc = conn.subscribe('incidents')\ntable = StreamTable(inc, title='incidents')\ntable",
    "Freshness(conn)",
    "dash = Dashboard(conn, ['fleet'])\ndash",
    # wait (on a condition, with a deadline) for the data; the twins are brought up
    # to date at the end of the cell, before its reply (IPython's post_run_cell)
    "deadline = time.monotonic() + 30\n"
    "while len(inc) < 5 or len(dash.tables[0].topic) < 3:\n"
    "    assert time.monotonic() < deadline\n"
    "    time.sleep(0.05)\n"
    "print('data in')",
]


@pytest.fixture
def kernel(tmp_path: Path) -> dict[str, str]:
    """A kernelspec that starts ipykernel with *this* interpreter, in a private Jupyter path."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rtnb (venv)", "language": "python"})
    )
    return {
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }


def test_an_exported_notebook_shows_recorded_rows_offline_and_never_live(
    tmp_path: Path, kernel: dict[str, str]
) -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    with rtnb.serve(port=0, heartbeat_interval=1.0) as srv:
        for i in range(5):
            srv.publish("incidents", "incident.opened", {"status": "open", "title": f"t{i}"},
                        tenant="acme", entity_id=f"inc-{i}")  # fmt: skip
        for i in range(3):
            srv.publish("fleet", "truck.moved", {"km": i * 10}, tenant="acme",
                        entity_id=f"truck-{i}")  # fmt: skip
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "rtnb", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
        path = tmp_path / "incident.ipynb"
        nbformat.write(nb, str(path))
        env = {**os.environ, **kernel, "RTNB_URL": srv.url, "RTNB_TOKEN": token}
        done = subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
             "--ExecutePreprocessor.timeout=120", str(path)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    exported = tmp_path / "incident.html"
    assert token not in exported.read_text(encoding="utf-8")

    with chromium_page(tmp_path / ".chromium") as (context, page):
        refused: list[str] = []

        def offline(route: object) -> None:
            request = route.request  # type: ignore[attr-defined]
            if request.url.startswith("file://"):
                route.continue_()  # type: ignore[attr-defined]
            else:
                refused.append(request.url)
                route.abort()  # type: ignore[attr-defined]

        context.route("**/*", offline)
        page.goto(exported.as_uri())
        page.wait_for_load_state("load")
        text: str = page.evaluate("() => document.body.innerText")
        twins: int = page.evaluate(
            "() => Array.from(document.querySelectorAll('.rtnb-recorded'))"
            ".filter(e => e.offsetParent !== null).length"
        )
    labels = re.findall(r"Recorded \d\d:\d\d:\d\d UTC — not live", text)
    # StreamTable, Freshness, the Dashboard's counters and its fleet table
    assert len(labels) >= 4 and twins >= 4, text
    for eid in [f"inc-{i}" for i in range(5)] + [f"truck-{i}" for i in range(3)]:
        assert eid in text
    assert "5 rows" in text and "3 rows" in text
    assert re.search(r"\bLive\b", text) is None, text

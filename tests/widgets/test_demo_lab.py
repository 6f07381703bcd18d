"""``make demo``'s lab serves all three notebooks and their data (python -m rtnb.widgets.demo),
from a working copy outside the venv that keeps a user's edits."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence

import pytest

from rtnb.widgets.demo import copy_notebooks
from tests.widgets.lab_harness import wait_py

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
DATA = sorted(p.name for p in (ROOT / "notebooks" / "data").iterdir())


def run_demo(
    cmd: Sequence[str], cwd: pathlib.Path, out: pathlib.Path, env: dict[str, str] | None = None
) -> str:
    """Start ``cmd`` (a demo), check its lab serves every notebook and the data, stop it with
    Ctrl-C; returns what it printed."""
    with out.open("w") as sink:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
            env=env or dict(os.environ), start_new_session=True,
        )  # fmt: skip
    try:
        printed = wait_py(
            lambda: "Ctrl-C stops the demo." in out.read_text() and out.read_text(),
            180,
            f"the demo to print its URLs (output: {out})",
        )
        urls = re.findall(r"http://127\.0\.0\.1:\d+/lab/tree/\S+", printed)
        assert sorted(u.split("/lab/tree/")[1].split("?")[0] for u in urls) == NOTEBOOKS, printed
        parts = urllib.parse.urlsplit(urls[0])
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        base = f"{parts.scheme}://{parts.netloc}/api/contents"
        headers = {"Authorization": f"token {token}"}
        listing = _get(f"{base}?content=1", headers)
        names = {item["name"] for item in listing["content"]}
        assert set(NOTEBOOKS) | {"data"} <= names, names
        for name in NOTEBOOKS:  # each one opens (no 404)
            assert _get(f"{base}/{name}?content=1", headers)["type"] == "notebook"
        data = _get(f"{base}/data?content=1", headers)
        assert set(DATA) <= {item["name"] for item in data["content"]}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    printed = out.read_text()
    assert "rtnb demo stopped." in printed
    return printed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_demo_lab_serves_every_notebook_and_the_recording(tmp_path: pathlib.Path) -> None:
    assert len(NOTEBOOKS) == 3, NOTEBOOKS
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rtnb.widgets.demo", "--dir", str(tmp_path / "work")]
    run_demo(cmd, tmp_path, tmp_path / "demo.out", env)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_make_demo_twice_keeps_an_edit_outside_the_venv_and_says_where(
    tmp_path: pathlib.Path,
) -> None:
    # The Makefile's own `demo` recipe, run in an empty directory: STAMP= and LOCK=true skip the
    # venv set-up and the editable install (this venv has them), the rest runs as written.
    make = [
        "make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "demo",
        f"VENV={sys.prefix}", "STAMP=", "LOCK=true",
    ]  # fmt: skip
    first = run_demo(make, tmp_path, tmp_path / "first.out")
    work = tmp_path / "rtnb-demo"
    assert f"demo notebooks: {work}" in first and "kept" not in first
    assert not (pathlib.Path(sys.prefix) / "rtnb-demo").exists()
    edited = work / NOTEBOOKS[0]
    nb = json.loads(edited.read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["my note"]})
    edited.write_text(json.dumps(nb))
    (work / NOTEBOOKS[-1]).unlink()  # deleted: the shipped copy comes back

    second = run_demo(make, tmp_path, tmp_path / "second.out")
    assert "my note" in edited.read_text()
    assert (work / NOTEBOOKS[-1]).read_bytes() == (ROOT / "notebooks" / NOTEBOOKS[-1]).read_bytes()
    assert f"demo notebooks: {work}" in second
    kept = next(line for line in second.splitlines() if "kept as they were" in line)
    assert NOTEBOOKS[0] in kept and NOTEBOOKS[-1] not in kept


def test_copy_notebooks_copies_only_what_is_absent(tmp_path: pathlib.Path) -> None:
    names, kept = copy_notebooks(tmp_path)
    assert names == NOTEBOOKS and kept == []
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == DATA
    (tmp_path / NOTEBOOKS[1]).write_text("mine")
    names, kept = copy_notebooks(tmp_path)
    assert (tmp_path / NOTEBOOKS[1]).read_text() == "mine"
    assert sorted(kept) == sorted([*NOTEBOOKS, *(f"data/{d}" for d in DATA)])


def _get(url: str, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]

"""``make demo``'s lab serves all three notebooks and their data (python -m rtnb.widgets.demo)."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from tests.widgets.lab_harness import wait_py

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.timeout(240)
def test_the_demo_lab_serves_every_notebook_and_the_recording(tmp_path: pathlib.Path) -> None:
    assert len(NOTEBOOKS) == 3, NOTEBOOKS
    out = tmp_path / "demo.out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtnb.widgets.demo", "--state", str(tmp_path / "state")],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True,
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
        assert "chaos_run.parquet" in {item["name"] for item in data["content"]}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "rtnb demo stopped." in out.read_text()


def _get(url: str, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    import json

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]

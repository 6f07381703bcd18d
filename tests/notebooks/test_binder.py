"""The Binder set-up installs what the package and the notebooks need, and checks itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def _names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower()
        for r in requirements
        if r.strip()
    }


def test_requirements_cover_the_package_its_widgets_and_jupyterlab() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [
        line
        for line in (BINDER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    needed = _names(project["dependencies"]) | _names(project["optional-dependencies"]["widgets"])
    assert needed | {"jupyterlab", "ipykernel"} <= _names(lines)


def test_post_build_stops_at_the_first_failure_and_is_executable() -> None:
    script = BINDER / "postBuild"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -e", text, re.MULTILINE)
    assert os.access(script, os.X_OK)
    assert "pip install" in text and "--editable ." in text


def test_the_python_binder_runs_satisfies_requires_python() -> None:
    version = (BINDER / "runtime.txt").read_text().strip()
    major, minor = map(int, version.removeprefix("python-").split("."))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = tuple(map(int, project["requires-python"].removeprefix(">=").split(".")))
    assert (major, minor) >= low


@pytest.mark.slow
def test_the_post_build_smoke_check_passes_here() -> None:
    text = (BINDER / "postBuild").read_text()
    check = text.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "ready:" in out.stdout

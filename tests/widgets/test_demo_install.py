"""``rtnb demo`` after a plain (non-editable) ``pip install``: the notebooks and their data
ship as package data, and ``rtnb demo`` in an empty directory starts the lab on them.

rtnb itself is built into a wheel and installed, without ``-e``, into a new virtual
environment; its dependencies are borrowed from this one (a ``.pth`` line and a link to its
``share/jupyter``) rather than downloaded again, so nothing of the source checkout is on the
path: the test runs in an empty directory, without ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.widgets.test_demo_lab import DATA, NOTEBOOKS, ROOT, run_demo

pytestmark = pytest.mark.slow


def _run(*cmd: str | pathlib.Path, cwd: pathlib.Path) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT, cwd=out)
    (built,) = out.glob("rtnb-*.whl")
    return built


def test_the_wheel_ships_every_notebook_and_data_file(wheel: pathlib.Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        n.removeprefix("rtnb/_notebooks/") for n in names if n.startswith("rtnb/_notebooks/")
    }
    assert shipped == {*NOTEBOOKS, *(f"data/{d}" for d in DATA)}


@pytest.mark.timeout(400)
def test_rtnb_demo_from_a_non_editable_install_serves_the_notebooks(
    wheel: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = pathlib.Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
        ).strip()
    )
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (venv / "share").mkdir()
    (venv / "share" / "jupyter").symlink_to(pathlib.Path(sys.prefix) / "share" / "jupyter")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
         cwd=tmp_path)  # fmt: skip

    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(
        python, "-c", "from rtnb.widgets.demo import shipped_notebooks as s; print(s())", cwd=empty
    ).strip()
    assert where == str(site / "rtnb" / "_notebooks")

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    printed = run_demo([str(venv / "bin" / "rtnb"), "demo"], empty, tmp_path / "demo.out", env)
    assert f"demo notebooks: {empty / 'rtnb-demo'}" in printed
    assert sorted(p.name for p in (empty / "rtnb-demo").glob("*.ipynb")) == NOTEBOOKS

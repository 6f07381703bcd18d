"""The widgets' JavaScript is checked, not just marked ``// @ts-check``.

``tsc --checkJs`` (TypeScript pinned in ``package.json``, installed by
``npm ci`` from ``package-lock.json`` in ``make test``) type-checks every
module in ``rtnb/widgets/static/`` against the DOM's types and each other's
JSDoc; ``node --check`` parses each *composed* module (what anywidget
actually loads: :func:`rtnb.widgets.assets.compose`), so a helper dropped by
the composer or a duplicate declaration across files fails here, not in a
user's browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rtnb.widgets.assets import STATIC, compose

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "node_modules" / ".bin" / "tsc"
ENTRY_MODULES = sorted(p.name for p in STATIC.glob("*.js") if "export default" in p.read_text())

pytestmark = [
    pytest.mark.browser,  # runs node: not in make test-fast
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


def test_every_module_opts_into_type_checking() -> None:
    for path in STATIC.glob("*.js"):
        assert path.read_text(encoding="utf-8").startswith("// @ts-check\n"), path.name


def test_the_entry_modules_are_found() -> None:
    # the five widgets that load a module of their own; a rename must be seen here
    assert ENTRY_MODULES == [
        "counters.js", "dashboard.js", "freshness.js", "replay_controls.js", "table.js",
    ]  # fmt: skip


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_each_composed_module_parses(module: str, tmp_path: Path) -> None:
    path = tmp_path / module.replace(".js", ".mjs")
    path.write_text(compose(module), encoding="utf-8")
    out = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_tsc_check_js_finds_nothing() -> None:
    if not TSC.exists():
        if os.environ.get("CI"):
            pytest.fail(
                "node_modules/.bin/tsc is missing: `npm ci` did not run (make test runs it)"
            )
        pytest.skip("TypeScript is not installed here: run `npm ci` (make test does)")
    out = subprocess.run(
        [str(TSC), "-p", str(ROOT / "jsconfig.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"tsc --checkJs found problems:\n{out.stdout}{out.stderr}"

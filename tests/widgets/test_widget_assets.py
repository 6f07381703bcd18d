"""The front-end modules: composed into one string, hot-reloadable only in development."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtnb.widgets.assets import STATIC, compose, sources

WIDGET_MODULES = ["table.js", "freshness.js", "counters.js", "dashboard.js"]


@pytest.mark.parametrize("module", WIDGET_MODULES)
def test_each_widget_module_is_one_es_module_with_its_dependencies_first(module: str) -> None:
    text = compose(module)
    assert "\nimport " not in text
    assert "\nexport function" not in text and "\nexport class" not in text
    # only the module's own widget object is exported (a Dashboard part's is not)
    assert text.count("\nexport const") == 1
    assert text.count("export default") == 1
    assert text.index("function describe(") < text.index("export default")  # common.js first
    assert sources(module)[0] == "common.js" and sources(module)[-1] == module


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("module", WIDGET_MODULES)
def test_each_composed_module_parses_as_one_es_module(module: str, tmp_path: Path) -> None:
    """No name is declared twice when the dashboard joins the three widgets' modules."""
    path = tmp_path / f"{module}.mjs"
    path.write_text(compose(module))
    out = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_dashboard_draws_its_parts_with_the_widgets_own_modules() -> None:
    parts = sources("dashboard.js")
    assert {"counters.js", "freshness.js", "table.js"} < set(parts) and parts[-1] == "dashboard.js"


def test_the_table_is_split_into_small_modules() -> None:
    assert sources("table.js") == ["common.js", "table_order.js", "table_store.js", "table.js"]
    for path in STATIC.glob("*.js"):
        assert len(path.read_text().splitlines()) < 800, path.name


def test_css_uses_theme_variables_and_respects_reduced_motion() -> None:
    css = (STATIC / "rtnb.css").read_text()
    assert "var(--jp-ui-font-color1" in css and "var(--jp-layout-color1" in css
    assert "prefers-reduced-motion" in css
    assert "tabular-nums" in css


def _esm_type(env: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from rtnb.widgets import StreamTable\n"
        "print(json.dumps({'type': type(StreamTable._esm).__name__,"
        " 'warnings': [str(x.message) for x in w if 'rtnb' in str(x.message)]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_esm_is_a_plain_string_outside_development_mode() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANYWIDGET_HMR"}
    assert _esm_type(env) == {"type": "str", "warnings": []}


@pytest.mark.slow
def test_hmr_mode_hot_reloads_or_says_why_not() -> None:
    env = {**os.environ, "ANYWIDGET_HMR": "1"}
    result = _esm_type(env)
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        assert result["type"] == "str"
        assert any("watchfiles" in w for w in result["warnings"])
    else:
        assert result["type"] == "VirtualFileContents"

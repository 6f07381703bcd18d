"""rtnb.css in Chromium: which host's colours win, and the contrast they give.

A page stands for each host by defining what that host defines (the variables and the
page background), with widget-like markup styled by the shipped ``rtnb.css``; the real
hosts are in ``test_hosts_browser.py``. VS Code and a page that only follows the
browser's colour scheme are covered here only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rtnb.widgets.assets import STATIC
from tests.widgets.hosts_harness import CONTRAST_JS, DEEP_INIT
from tests.widgets.lab_harness import BrowserUnavailable, chromium_page, new_workdir

pytestmark = pytest.mark.browser

MARKUP = """
<div class="rtnb rtnb-dashboard">
  <div class="rtnb-dashboard-header">
    <div class="rtnb rtnb-counters"><div class="rtnb-counter">
      <span class="rtnb-counter-value">12</span><span class="rtnb-counter-label">events/s</span>
    </div></div>
  </div>
  <div class="rtnb rtnb-table">
    <div class="rtnb-strip"><span class="rtnb-title">incidents</span>
      <span class="rtnb-status" data-status="live"><span class="rtnb-status-text">Live</span></span>
      <span class="rtnb-count">3 rows</span></div>
    <div class="rtnb-scroll"><table><thead><tr><th>id</th><th>status</th></tr></thead>
      <tbody><tr><td>inc-1</td><td>open</td></tr><tr><td>inc-2</td><td>ack</td></tr></tbody>
    </table></div>
  </div>
</div>"""

VSCODE_DARK = (
    "--vscode-editor-background:#1e1e1e;--vscode-editor-foreground:#cccccc;"
    "--vscode-editorWidget-background:#252526;--vscode-panel-border:#80808059;"
    "--vscode-focusBorder:#007fd4;--vscode-font-family:system-ui"
)
VSCODE_LIGHT = (
    "--vscode-editor-background:#ffffff;--vscode-editor-foreground:#3b3b3b;"
    "--vscode-editorWidget-background:#f8f8f8;--vscode-panel-border:#e5e5e5;"
    "--vscode-focusBorder:#005fb8"
)
#: (name, <html> attributes, page CSS, browser colour scheme, dark?)
HOSTS = [
    ("vscode-dark", 'class="vscode-dark"',
     f":root{{{VSCODE_DARK}}} body{{background:var(--vscode-editor-background)}}", "light", True),
    ("vscode-light", 'class="vscode-light"',
     f":root{{{VSCODE_LIGHT}}} body{{background:var(--vscode-editor-background)}}", "dark", False),
    ("scheme-dark", "", ":root{color-scheme:light dark} body{background:Canvas}", "dark", True),
    ("scheme-light", "", ":root{color-scheme:light dark} body{background:Canvas}", "light", False),
    # JupyterLab's variables win over any other host's (a Panel pane inside JupyterLab)
    ("jupyterlab-over-panel", 'data-jp-theme-light="false"',
     ":root{--jp-ui-font-color1:rgba(255,255,255,.87);--jp-layout-color1:#111;"
     "--panel-on-background-color:#000;--panel-background-color:#fff} body{background:#111}",
     "light", True),
]  # fmt: skip


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    try:
        with chromium_page(new_workdir("rtnb-css-") / "chromium") as (_context, pg):
            yield pg
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize(
    ("name", "attrs", "css", "scheme", "dark"), HOSTS, ids=[h[0] for h in HOSTS]
)
def test_text_keeps_aa_contrast_in_the_hosts_colours(
    page: Any, name: str, attrs: str, css: str, scheme: str, dark: bool
) -> None:
    page.emulate_media(color_scheme=scheme)
    rtnb_css = (STATIC / "rtnb.css").read_text()
    page.set_content(
        f"<!doctype html><html {attrs}><head><style>{css}</style><style>{rtnb_css}</style>"
        f"</head><body>{MARKUP}</body></html>"
    )
    page.evaluate(f"() => {{ {DEEP_INIT} }}")
    ratio, text, measured, behind = page.evaluate(CONTRAST_JS)
    assert measured >= 8
    assert (behind < 0.2) if dark else (behind > 0.5), f"{name}: wrong scheme ({behind:.2f})"
    assert ratio >= 4.5, f"{name}: contrast {ratio:.2f}:1 for {text}"

"""Notebook 02 in a real JupyterLab whose page cannot reach the internet: every chart draws.

Chromium's every request that is not for 127.0.0.1/localhost is aborted
(and recorded), the notebook runs top to bottom (Run all), and each chart
output -- ``rtnb.charts`` through rtnb's offline renderer, and the
``LiveChart`` widget -- must hold an SVG or canvas with marks drawn. The
screenshots of the charts go to ``test-artifacts/``; with
``RTNB_UPDATE_SCREENSHOTS=1`` they also replace the ones in ``docs/img/``.

If Chromium is missing this FAILS with the command that installs it.
"""

from __future__ import annotations

import shutil
import urllib.parse
from typing import Any

import nbformat
import pytest

from rtnb.widgets.lab import Lab
from tests.widgets.lab_harness import (
    ROOT,
    BrowserUnavailable,
    LabPage,
    chromium_page,
    new_workdir,
    publish_screenshot,
    require_chromium,
    screenshot_path,
    wait_py,
)

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

NOTEBOOK = "02_post_incident_analysis.ipynb"
#: chart titles in notebook 02, in order, and the docs/img name of each screenshot
CHARTS = {"Connection timeline": "timeline", "Receive lag": "lag", "Envelope outcomes": "outcomes"}
PROBE = (
    "import ipywidgets as W\n"
    "from rtnb.widgets.livechart import LiveChart\n"
    "probe = LiveChart(log, 'outcomes', window=None)\n"
    "W.VBox([W.HTML('a LiveChart in a VBox'), probe])"
)
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

# Per vega-embed output: its marks outside axes, legends and titles (SVG), or a drawn canvas.
DRAWN = """() => [...document.querySelectorAll('.jp-OutputArea-output .vega-embed')].map(el => {
  const svg = el.querySelector('svg.marks');
  const canvas = el.querySelector('canvas.marks');
  const marks = svg ? [...svg.querySelectorAll('g.role-mark')].filter(g =>
      !g.closest('.role-axis, .role-legend, .role-title') && g.children.length > 0).length : 0;
  const title = svg ? [...svg.querySelectorAll('.role-title-text text')]
      .map(t => t.textContent).join(' ') : '';
  return {svg: !!svg, canvas: !!(canvas && canvas.width > 0), marks, title,
          error: el.textContent.includes('failed to render')};
})"""


def _is_loopback(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("data", "blob", "about"):
        return True
    return (parsed.hostname or "") in LOOPBACK


@pytest.mark.timeout(420)
def test_notebook_02_draws_every_chart_with_the_network_blocked() -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    work = new_workdir("rtnb-offline-")
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))  # a LiveChart inside a VBox
    nbformat.write(nb, str(work / NOTEBOOK))
    shutil.copytree(ROOT / "notebooks" / "data", work / "data")
    blocked: list[str] = []
    allowed: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if _is_loopback(url):
            allowed.append(url)
            r.continue_()
        else:
            blocked.append(url)
            r.abort("internetdisconnected")

    with (
        Lab(work, work / ".state", expose_app=True) as server,
        chromium_page(work / ".chromium", width=1300, height=1000) as (context, page),
    ):
        context.route("**/*", route)
        lp = LabPage(page)
        lp.open(server.notebook_url(NOTEBOOK), timeout=120)
        lp.run_all()
        lp.wait_js(  # the last cell ran: Run all is done
            "() => { const cells = window.jupyterapp.shell.currentWidget.content.widgets;"
            " const last = cells[cells.length - 1];"
            " return last.model.type !== 'code' || last.model.executionCount !== null; }",
            240,
            "Run all to reach the last cell",
        )
        lp.kernel_idle(120)
        errors = page.evaluate(
            "() => [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="
            '"application/vnd.jupyter.stderr"]\')].map(e => e.textContent)'
            ".filter(t => t.includes('Error'))"
        )
        assert errors == [], errors
        # every chart output (5 rtnb.charts + the LiveChart) drew marks, none failed
        drawn = lp.wait_js(
            f"() => {{ const d = ({DRAWN})(); return d.length >= 6"
            " && d.every(c => (c.svg && c.marks > 0) || c.canvas) ? d : null; }",
            60,
            "six charts, each drawn with marks",
            debug=DRAWN,
        )
        assert not any(c["error"] for c in drawn), drawn
        svg = [c for c in drawn if c["svg"]]
        assert len(svg) >= 5, drawn
        for title in CHARTS:
            assert any(title in c["title"] for c in svg), (title, drawn)
        # the charts really came from the page's own origin: nothing reached the internet
        assert allowed, "the route saw no requests at all"
        assert not any("cdn.jsdelivr" in u for u in allowed)
        assert not any("Error loading script" in e for e in lp.console_errors), lp.console_errors
        assert not lp.errors, f"JavaScript errors in the page: {lp.errors}"

        # the LiveChart inside a VBox told the kernel its view is on screen: it refreshes
        def probe_views() -> bool:
            (work / "views.txt").unlink(missing_ok=True)
            lp.execute(
                "import pathlib; pathlib.Path('views.txt').write_text("
                "f'{probe._views} {probe._active.is_set()}')"
            )
            seen = wait_py(lambda: (work / "views.txt").exists(), 20, "the kernel to answer")
            return bool(seen) and (work / "views.txt").read_text() == "1 True"

        wait_py(probe_views, 30, "the LiveChart in a VBox to report its view")
        for title, name in CHARTS.items():
            embed = page.locator(".jp-OutputArea-output .vega-embed").filter(
                has=page.locator(".role-title-text text", has_text=title)
            )
            embed.first.scroll_into_view_if_needed()
            shot = screenshot_path(f"offline-{name}.png")
            embed.first.screenshot(path=str(shot))
            publish_screenshot(shot, f"{name}.png")
    print(f"blocked {len(blocked)} non-loopback requests: {sorted(set(blocked))[:5]}")

"""rtnb.charts render with no network: inline Vega, in a notebook and in an nbconvert HTML export.

The export test opens the exported HTML in headless Chromium with every
non-file, non-loopback request aborted, and checks that each chart drew an
SVG with marks. If Chromium is missing it FAILS with the command to install it.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import altair as alt
import nbformat
import pytest
from nbconvert import HTMLExporter

import rtnb.charts as charts
from rtnb.charts import render
from rtnb.telemetry import EnvelopeLog
from tests.widgets.lab_harness import BrowserUnavailable, chromium_page, require_chromium

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDING = ROOT / "notebooks" / "data" / "chaos_run.parquet"
CHARTS = ("lag", "timeline", "outcomes", "mutations")
_SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc=", re.I)


@pytest.fixture(scope="module")
def log() -> EnvelopeLog:
    return EnvelopeLog.read_parquet(RECORDING)


@pytest.fixture
def default_renderer() -> Iterator[None]:
    """Leave altair's renderer as this test found it."""
    before = alt.renderers.active
    yield
    alt.renderers.enable(before)


def bundle_of(chart: Any) -> dict[str, Any]:
    out = chart._repr_mimebundle_()
    bundle: dict[str, Any] = out[0] if isinstance(out, tuple) else out
    return bundle


def test_importing_rtnb_charts_makes_the_offline_renderer_active() -> None:
    assert alt.renderers.active == render.RENDERER


@pytest.mark.parametrize("name", CHARTS)
def test_each_chart_displays_as_html_that_carries_vega_inline(log: EnvelopeLog, name: str) -> None:
    html = bundle_of(getattr(charts, name)(log))["text/html"]
    assert "window.vegaEmbed=" in html  # the bundle itself, not a loader
    assert not _SCRIPT_SRC.search(html), "no <script src=...>: nothing is fetched"
    assert "cdn.jsdelivr" not in html and "requirejs" not in html
    assert "</script" not in html.split("<script>", 2)[1].rsplit("</script>", 1)[0]


def test_a_renderer_the_user_chose_is_left_alone(default_renderer: None) -> None:
    alt.renderers.enable("svg")
    render.enable()
    assert alt.renderers.active == "svg"
    alt.renderers.enable("default")
    render.enable()
    assert alt.renderers.active == render.RENDERER


DRAWN = """() => [...document.querySelectorAll('.vega-embed')].map(el => {
  const svg = el.querySelector('svg.marks');
  return svg ? [...svg.querySelectorAll('g.role-mark')].filter(g =>
      !g.closest('.role-axis, .role-legend, .role-title') && g.children.length > 0).length : -1;
})"""


@pytest.mark.timeout(240)
@pytest.mark.browser
def test_an_nbconvert_html_export_draws_every_chart_offline(
    log: EnvelopeLog, tmp_path: pathlib.Path
) -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    nb = nbformat.v4.new_notebook()
    for name in CHARTS:
        data = bundle_of(getattr(charts, name)(log))
        out = nbformat.v4.new_output("display_data", data=data)
        nb.cells.append(nbformat.v4.new_code_cell(f"charts.{name}(log)", outputs=[out]))
    html, _ = HTMLExporter().from_notebook_node(nb)
    page_path = tmp_path / "report.html"
    page_path.write_text(html)
    blocked: list[str] = []

    def route(r: Any) -> None:
        url: str = r.request.url
        if url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort("internetdisconnected")

    with chromium_page(tmp_path / "chromium") as (context, page):
        context.route("**/*", route)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        handle = page.wait_for_function(
            f"() => {{ const d = ({DRAWN})(); return d.length === {len(CHARTS)}"
            " && d.every(n => n > 0) ? d : null; }",
            timeout=60_000,
            polling=100,
        )
        marks = handle.json_value()
    assert len(marks) == len(CHARTS) and all(n > 0 for n in marks), marks
    assert not [e for e in errors if "vega" in e.lower()], errors


def test_bundling_vega_leaves_other_threads_running() -> None:
    """vl-convert holds the GIL while bundling; rtnb bundles in a child process instead, so a
    connection's runtime thread keeps its heartbeats (a thread here runs while bundling)."""
    import threading

    started, ran = threading.Event(), threading.Event()

    def other() -> None:
        started.wait(30)
        ran.set()  # needs the GIL: blocked if bundling held it

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    render._bundle.cache_clear()
    started.set()
    bundle = render._bundle()
    ran_while_bundling = ran.is_set()
    thread.join(30)
    assert "window.vegaEmbed=" in bundle
    assert ran_while_bundling, "another thread could not run while Vega was bundled"


HOSTILE_IDS = ["x<!--<script>", "</script><p id='injected'>", "a&amp;b", "\u202eevil-id"]


def _hostile_chart_html() -> str:
    spec = (
        alt.Chart(alt.Data(values=[{"id": i, "n": k + 1} for k, i in enumerate(HOSTILE_IDS)]))
        .mark_bar()
        .encode(x="id:N", y="n:Q")
        .to_dict()
    )
    return render.offline_html(spec, {"renderer": "svg"})


def test_data_in_chart_html_can_neither_end_nor_comment_out_its_script() -> None:
    html = _hostile_chart_html()
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    data_script = scripts[-1]  # the one that embeds the spec
    assert "<" not in data_script and "&" not in data_script
    assert html.count("</script>") == 2 and "<!--" not in html
    assert render.script_json(HOSTILE_IDS) != '["x<!--<script>"'


@pytest.mark.timeout(240)
@pytest.mark.browser
def test_a_chart_of_hostile_ids_draws_and_the_rest_of_the_page_survives(
    tmp_path: pathlib.Path,
) -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    page_path = tmp_path / "page.html"
    page_path.write_text(
        "<!doctype html><html><body>"
        + _hostile_chart_html()
        + "<p id='after'>after the chart</p></body></html>"
    )
    with chromium_page(tmp_path / "chromium") as (_context, page):
        page.goto(page_path.as_uri())
        drawn = page.wait_for_function(
            "() => { const t = [...document.querySelectorAll('.rtnb-chart svg text')]"
            ".map(e => e.textContent); return t.length ? t : null; }",
            timeout=60_000,
            polling=100,
        ).json_value()
        assert page.locator("#after").count() == 1
        assert page.locator("#injected").count() == 0
    for hostile in HOSTILE_IDS:
        assert hostile in drawn, (hostile, drawn)

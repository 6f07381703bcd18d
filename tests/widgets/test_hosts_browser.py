"""rtnb's widgets in every front-end people use: Notebook 7, Voilà, marimo, Panel (offline).

Each host is a real server process showing a Dashboard, a StreamTable, a Freshness pill and
a LiveChart of one reference server (this process's, so the test can publish and cut
connections), in headless Chromium where every request to a host other than loopback is
aborted. For each host: all four render, values change, a forced disconnect shows stale
then live, no page error comes from rtnb, and the text of every widget keeps a contrast of
at least 4.5:1 (WCAG AA) in the host's light and dark themes. marimo also runs two sessions
of one app: one closes its connection, the other stays live. (JupyterLab:
``test_widget_browser.py``.) Screenshots go to ``test-artifacts/hosts-*.png``.
"""

from __future__ import annotations

import json
import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

import rtnb
from rtnb.server import ServerHandle
from tests.widgets.hosts_harness import (
    CONTRAST_JS,
    SETUP,
    WIDGETS,
    OfflinePage,
    bin_path,
    free_port,
    host_server,
    offline_browser,
)
from tests.widgets.lab_harness import (
    BrowserUnavailable,
    new_workdir,
    require_chromium,
    screenshot_path,
    write_notebook,
)

# a host starts, renders and recovers twice per test: more than the default 180 s under load
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

TENANT = "hosts"
#: WCAG 2.x AA for normal text.
AA = 4.5
#: Seconds a loaded machine may take to start a host and render its page.
RENDER_TIMEOUT = 120.0

ALL_FOUR = """() => {
  const d = window.__rtnbDeep;
  return d('.rtnb-dashboard .rtnb-table').length >= 2
    && d('.rtnb-dashboard .rtnb-counter').length >= 4
    && d('.rtnb-table[data-title="rows"]').length >= 1
    && d('.rtnb-pill-wrap[data-role="standalone"] .rtnb-status[data-status="live"]').length >= 1
    && d('.vega-embed svg, .vega-embed canvas').length >= 1
    && d('.rtnb-dashboard .rtnb-counter-value')[0].textContent !== '–';
}"""
ROWS_COUNT = """n => window.__rtnbDeep('.rtnb-table[data-title="rows"] .rtnb-count')
  .some(c => c.textContent === `${n} rows`)"""
WATCH_PILL = """() => {
  window.__rtnbPill = [];
  const p = window.__rtnbDeep('.rtnb-pill-wrap[data-role="standalone"] .rtnb-status')[0];
  const note = () => window.__rtnbPill.push(p.dataset.status);
  note();
  new MutationObserver(note).observe(p, {attributes: true, subtree: true, childList: true});
}"""
STALE_THEN_LIVE = """() => { const seen = window.__rtnbPill; const i = seen.indexOf('stale');
  return i >= 0 && seen.slice(i).includes('live'); }"""


@pytest.fixture(scope="module")
def browser_ready() -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    demo = {"tenants": [TENANT], "rates": {"incidents": 1.0, "fleet": 5.0}}
    with rtnb.serve(port=0, demo=demo, heartbeat_interval=1.0) as handle:
        handle.publish("rows", "row.updated", {"n": 0}, tenant=TENANT, entity_id="seed")
        yield handle


@pytest.fixture(scope="module")
def env(srv: ServerHandle) -> dict[str, str]:
    token = srv.issue_token(tenant=TENANT, user="ana", role="operator")
    return {"RTNB_URL": srv.url, "RTNB_TOKEN": token, "PYTHONUNBUFFERED": "1"}


def jupyter_env(work: pathlib.Path) -> dict[str, str]:
    """Jupyter's config, data and runtime files under ``work`` (nothing in the home directory)."""
    dirs = {k: work / ".state" / k for k in ("config", "data", "runtime", "ipython", "settings")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return {
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
    }


def widget_notebook(path: pathlib.Path) -> None:
    write_notebook(path, [SETUP, *WIDGETS])


def publish_rows(srv: ServerHandle, start: int, n: int) -> None:
    for i in range(start, start + n):
        srv.publish("rows", "row.updated", {"n": i}, tenant=TENANT, entity_id=f"live-{i}")


def exercise(srv: ServerHandle, op: OfflinePage, name: str, rows_before: int) -> int:
    """All four render, values change, stale → live after a disconnect; returns the row count."""
    op.wait_js(ALL_FOUR, RENDER_TIMEOUT, f"all four widgets to render and go live in {name}")
    publish_rows(srv, rows_before, 3)
    rows = rows_before + 3
    op.wait_js(ROWS_COUNT, 30, f"the new rows to show in {name}", arg=rows)
    op.page.evaluate(WATCH_PILL)
    srv.chaos.disconnect_all()
    op.wait_js(STALE_THEN_LIVE, 60, f"the pill to go stale then live again in {name}")
    assert op.rtnb_errors() == [], op.rtnb_errors()
    return rows


def contrast(op: OfflinePage, name: str) -> None:
    op.page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )
    op.page.screenshot(path=str(screenshot_path(f"hosts-{name}.png")))
    ratio, text, measured, behind = op.page.evaluate(CONTRAST_JS)
    assert measured > 20, f"{name}: only {measured} texts measured"
    dark = name.endswith("-dark")
    assert (behind < 0.2) if dark else (behind > 0.5), f"{name}: not that theme ({behind:.2f})"
    assert ratio >= AA, f"{name}: contrast {ratio:.2f}:1 < {AA}:1 for {text}"


def offline_page(work: pathlib.Path, scheme: str = "light") -> Any:
    return offline_browser(work / f"chromium-{secrets.token_hex(4)}", color_scheme=scheme)


# -- Notebook 7 ---------------------------------------------------------------------------


def test_notebook7(srv: ServerHandle, env: dict[str, str], browser_ready: None) -> None:
    work = new_workdir("rtnb-nb7-")
    widget_notebook(work / "widgets.ipynb")
    port, token = free_port(), secrets.token_urlsafe(16)
    argv = [
        bin_path("jupyter-notebook"), "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
        f"--JupyterNotebookApp.user_settings_dir={work / '.state' / 'settings'}",
        "--JupyterNotebookApp.expose_app_in_browser=True", "--allow-root",
    ]  # fmt: skip
    with (
        host_server(argv, work, {**env, **jupyter_env(work)}, port, "/api/status") as host,
        offline_page(work) as new_page,
    ):
        op = new_page()
        op.page.goto(f"http://127.0.0.1:{port}/notebooks/widgets.ipynb?token={token}")
        op.wait_js(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            "?.status === 'idle'",
            RENDER_TIMEOUT,
            "the notebook's kernel to start",
        )
        op.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        exercise(srv, op, "Notebook 7", len(srv.truth("rows", tenant=TENANT)))
        contrast(op, "notebook7-light")
        op.page.evaluate(
            "() => window.jupyterapp.commands.execute('apputils:change-theme',"
            " {theme: 'JupyterLab Dark'})"
        )
        op.wait_js("() => document.body.dataset.jpThemeLight === 'false'", 30, "the dark theme")
        contrast(op, "notebook7-dark")
        assert not host.tracebacks(), host.log()


# -- Voilà --------------------------------------------------------------------------------


def test_voila(srv: ServerHandle, env: dict[str, str], browser_ready: None) -> None:
    work = new_workdir("rtnb-voila-")
    widget_notebook(work / "widgets.ipynb")
    port = free_port()
    argv = [
        bin_path("voila"), "widgets.ipynb", "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
    ]  # fmt: skip
    with (
        host_server(argv, work, {**env, **jupyter_env(work)}, port) as host,
        offline_page(work) as new_page,
    ):
        rows = len(srv.truth("rows", tenant=TENANT))
        for theme in ("light", "dark"):
            op = new_page()
            op.page.goto(f"http://127.0.0.1:{port}/?theme={theme}")
            rows = exercise(srv, op, f"Voilà ({theme})", rows)
            contrast(op, f"voila-{theme}")
            op.page.close()
        assert not host.tracebacks(), host.log()


# -- marimo -------------------------------------------------------------------------------

MARIMO_APP = """import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import os

    import marimo as mo

    import rtnb
    from rtnb.widgets import Dashboard, Freshness, StreamTable
    from rtnb.widgets.livechart import LiveChart

    conn = rtnb.connect(os.environ["RTNB_URL"], token=os.environ["RTNB_TOKEN"], timeout=20)
    rows = conn.subscribe("rows")
    return Dashboard, Freshness, LiveChart, StreamTable, conn, mo, rows


@app.cell
def _(Dashboard, Freshness, LiveChart, StreamTable, conn, mo, rows):
    closer = mo.ui.button(label="close my connection", on_click=lambda _: conn.close())
    mo.vstack(
        [
            closer,
            mo.ui.anywidget(Dashboard(conn, ["incidents", "fleet"])),
            mo.ui.anywidget(StreamTable(rows, title="rows")),
            mo.ui.anywidget(Freshness(conn)),
            mo.ui.anywidget(LiveChart(conn, "lag", interval=1)),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.fixture(scope="module")
def marimo_app(env: dict[str, str], browser_ready: None) -> Iterator[tuple[pathlib.Path, int]]:
    work = new_workdir("rtnb-marimo-")
    (work / "app.py").write_text(MARIMO_APP)
    # the page's theme follows the browser's colour scheme
    (work / ".marimo.toml").write_text('[display]\ntheme = "system"\n')
    port = free_port()
    argv = [
        bin_path("marimo"), "run", "app.py", "--port", str(port), "--host", "127.0.0.1",
        "--headless", "--no-token",
    ]  # fmt: skip
    with host_server(argv, work, {**env, "HOME": str(work)}, port):
        yield work, port


def test_marimo(srv: ServerHandle, marimo_app: tuple[pathlib.Path, int]) -> None:
    work, port = marimo_app
    rows = len(srv.truth("rows", tenant=TENANT))  # earlier tests of this module added some
    with offline_page(work) as new_page:
        op = new_page()
        op.page.goto(f"http://127.0.0.1:{port}/")
        exercise(srv, op, "marimo", rows)
        contrast(op, "marimo-light")
        op.page.emulate_media(color_scheme="dark")
        op.wait_js("() => document.body.classList.contains('dark')", 30, "marimo's dark mode")
        contrast(op, "marimo-dark")


def test_two_marimo_sessions_one_closes_the_other_stays_live(
    srv: ServerHandle, marimo_app: tuple[pathlib.Path, int]
) -> None:
    """``marimo run`` runs both visitors' apps in one process: each gets its own connection,
    so one visitor's ``conn.close()`` leaves the other's stream alone."""
    work, port = marimo_app
    with offline_page(work) as new_page:
        alice, bob = new_page(), new_page()
        for op in (alice, bob):
            op.page.goto(f"http://127.0.0.1:{port}/")
        for op, who in ((alice, "alice"), (bob, "bob")):
            op.wait_js(ALL_FOUR, RENDER_TIMEOUT, f"{who}'s widgets to render and go live")
        alice.page.get_by_text("close my connection").click()
        alice.wait_js(
            "() => window.__rtnbDeep('.rtnb-pill-wrap[data-role=\"standalone\"] .rtnb-status')"
            "[0].dataset.status === 'closed'",
            30,
            "alice's pill to show her connection closed",
        )
        rows = len(srv.truth("rows", tenant=TENANT))
        publish_rows(srv, rows, 2)
        bob.wait_js(ROWS_COUNT, 30, "bob's table to keep streaming", arg=rows + 2)
        status = bob.page.evaluate(
            "() => window.__rtnbDeep('.rtnb-pill-wrap[data-role=\"standalone\"] .rtnb-status')"
            "[0].dataset.status"
        )
        assert status == "live"
        assert alice.rtnb_errors() == [] and bob.rtnb_errors() == []


# -- Panel, offline -----------------------------------------------------------------------

PANEL_APP = """import os
import panel as pn
{enable}
pn.extension("ipywidgets")
exec(open("setup.py").read())
pn.Column({panes}).servable()
"""


@pytest.mark.parametrize(
    "style",
    [
        # no call: Panel layouts take rtnb widgets (their __panel__ serves the bundle)
        pytest.param({"enable": "", "panes": "*[eval(w) for w in WIDGETS]"}, id="layout"),
        # pn.pane.IPyWidget directly: rtnb.panel.enable() first
        pytest.param(
            {
                "enable": "import rtnb\nrtnb.panel.enable()",
                "panes": "*[pn.pane.IPyWidget(eval(w)) for w in WIDGETS]",
            },
            id="IPyWidget",
        ),
    ],
)
def test_panel_offline(
    srv: ServerHandle, env: dict[str, str], browser_ready: None, style: dict[str, str]
) -> None:
    work = new_workdir("rtnb-panel-")
    (work / "setup.py").write_text(
        SETUP + "from rtnb.widgets.livechart import LiveChart\n" + f"WIDGETS = {list(WIDGETS)!r}\n"
    )
    (work / "app.py").write_text(PANEL_APP.format(**style))
    port = free_port()
    argv = [
        bin_path("panel"), "serve", "app.py", "--port", str(port), "--address", "127.0.0.1",
        "--allow-websocket-origin", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with host_server(argv, work, env, port, "/app") as host, offline_page(work) as new_page:
        rows = len(srv.truth("rows", tenant=TENANT))
        for theme in ("default", "dark"):
            op = new_page()
            op.page.goto(f"http://127.0.0.1:{port}/app?theme={theme}")
            rows = exercise(srv, op, f"Panel ({theme})", rows)
            contrast(op, f"panel-{(style['enable'] and 'enable') or 'layout'}-{theme}")
            op.page.close()
        widget_cdn = [u for u in op.blocked if "anywidget" in u or "unpkg" in u]
        assert widget_cdn == [], widget_cdn
        assert not host.tracebacks(), host.log()
        # what Panel's own page template asked the internet for (fonts, icons): not rtnb's
        print(json.dumps(sorted(set(op.blocked)), indent=1))

"""The widgets in a real browser: JupyterLab + the reference server + headless Chromium.

One JupyterLab, one reference server (in this process, so the tests can
publish and inject faults) and one page for the whole module; the notebook's
kernel reaches the server through ``RTNB_URL`` / ``RTNB_TOKEN``. Every wait
is a DOM condition with a deadline, never a sleep. Transitions are recorded
in the page by MutationObservers, so a short-lived state is never missed by
polling. Screenshots (light and dark) go to ``test-artifacts/``; with
``RTNB_UPDATE_SCREENSHOTS=1`` the ones the README shows replace those in ``docs/img/``.

If Chromium is missing these tests FAIL with the command that installs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import rtnb
from rtnb.server import ServerHandle
from rtnb.widgets.lab import Lab
from tests.widgets.lab_harness import (
    BrowserUnavailable,
    LabPage,
    axe_source,
    chromium_page,
    new_workdir,
    publish_screenshot,
    require_chromium,
    screenshot_path,
    write_notebook,
)

pytestmark = pytest.mark.browser

TENANT = "lab"
BIG = 100_000
#: the screenshots of this module the README shows (``RTNB_UPDATE_SCREENSHOTS=1`` refreshes them)
README_SHOTS = {"dashboard-light.png", "widgets-dark.png"}

CELLS = [
    "import os, time, rtnb\n"
    "from rtnb.widgets import Action, Dashboard, Freshness, StreamTable\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=20)",
    "rows = conn.subscribe('rows')\nStreamTable(rows, title='rows')",
    "Freshness(conn)",
    "inc = conn.subscribe('incidents')\n"
    "StreamTable(inc, title='incident actions', actions=[\n"
    "    Action('Acknowledge', {'status': 'ack'}, when={'status': 'open'}),\n"
    "    Action('Reopen', {'status': 'open'}, when={'status': 'resolved'}),\n"
    "])",
    "Dashboard(conn, ['incidents', 'fleet'])",
    "big = conn.subscribe('big')\nStreamTable(big, title='big', height=300)",
    "import ipywidgets as W\npill = Freshness(conn)\nbox = W.VBox([pill, Dashboard(conn, ['prices'])])\nbox",
]


def table(title: str) -> str:
    return f'.rtnb-table[data-title="{title}"]'


@pytest.fixture(scope="module")
def browser_ready() -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    demo = {"tenants": [TENANT], "rates": {"incidents": 1.0, "fleet": 10.0, "prices": 0.0}}
    with rtnb.serve(port=0, demo=demo, heartbeat_interval=1.0, retention=200_000) as handle:
        yield handle


@pytest.fixture(scope="module")
def lab(srv: ServerHandle, browser_ready: None) -> Iterator[tuple[Lab, LabPage]]:
    work = new_workdir()
    write_notebook(work / "widgets.ipynb", CELLS)
    for k in range(BIG // 10_000):  # 100,000 entities before the notebook subscribes
        srv.publish_many(
            "big",
            [("row.updated", f"r{k * 10_000 + i:06d}", {"n": i, "label": f"row {i}"})
             for i in range(10_000)],
            tenant=TENANT,
        )  # fmt: skip
    srv.publish("rows", "row.updated", {"n": 0}, tenant=TENANT, entity_id="seed")
    srv.publish(
        "incidents", "incident.opened", {"status": "resolved", "title": "old outage"},
        tenant=TENANT, entity_id="inc-900",
    )  # fmt: skip
    srv.publish(
        "incidents", "incident.opened", {"status": "open", "title": "disk filling"},
        tenant=TENANT, entity_id="inc-901",
    )  # fmt: skip
    token = srv.issue_token(tenant=TENANT, user="ana", role="operator")
    env = {"RTNB_URL": srv.url, "RTNB_TOKEN": token}
    with (
        Lab(work, work / ".state", env=env, expose_app=True) as server,
        chromium_page(work / ".chromium") as (_context, page),
    ):
        lp = LabPage(page)
        lp.open(server.notebook_url("widgets.ipynb"))
        lp.run_all()
        lp.wait_js(
            f"() => document.querySelector('{table('big')} .rtnb-count')?.textContent"
            " === '100,000 rows'",
            90,
            "every widget to render (the last one holds 100,000 rows)",
        )
        lp.kernel_idle()
        yield server, lp
        assert not lp.errors, f"JavaScript errors in the page: {lp.errors}"
        assert "IOPub message rate exceeded" not in server.log_text()


def show(lp: LabPage, title: str) -> None:
    """Scroll a table into view (off-screen tables keep no rows in the DOM); wait for its rows."""
    lp.page.evaluate(
        "sel => document.querySelector(sel).scrollIntoView({block: 'center'})", table(title)
    )
    lp.wait_js(  # rendered since it became visible: every row it holds is counted
        "sel => { const t = document.querySelector(sel); const v = t.parentElement.__rtnb;"
        " return v.visible && v.raf === null"
        " && t.querySelector('table').ariaRowCount === String(v.order.length + 1); }",
        15,
        f"the {title!r} table to render its rows",
        arg=table(title),
    )


def artifact(lp: LabPage, selector: str, name: str) -> None:
    """A screenshot of one element for test-artifacts/ (to look at, not asserted)."""
    lp.page.locator(selector).first.screenshot(path=str(screenshot_path(f"{name}.png")))


def count_rows(lp: LabPage, title: str) -> int:
    n: int = lp.page.evaluate(
        f"() => document.querySelectorAll('{table(title)} tbody tr[data-id]').length"
    )
    return n


def cell_text(lp: LabPage, title: str, entity: str) -> list[str]:
    texts: list[str] = lp.page.evaluate(
        "([sel, id]) => Array.from(document.querySelector(sel)?.querySelector("
        '`tr[data-id="${id}"]`)?.children ?? []).map(c => c.textContent)',
        [table(title), entity],
    )
    return texts


def test_rows_appear_and_update(srv: ServerHandle, lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    show(lp, "rows")
    for i in range(5):
        srv.publish(
            "rows", "row.updated", {"n": i, "name": f"r{i}"}, tenant=TENANT, entity_id=f"e{i}"
        )
    lp.wait_js(
        f"() => document.querySelectorAll('{table('rows')} tr[data-id^=e]').length === 5",
        15,
        "five new rows",
    )
    srv.publish("rows", "row.updated", {"n": 4242}, tenant=TENANT, entity_id="e3")
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} tr[data-id=\"e3\"]')"
        "?.textContent.includes('4,242')",
        15,
        "e3 to show its new value",
    )
    assert cell_text(lp, "rows", "e3")[0] == "e3"


def test_sorting_happens_in_the_browser(lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    show(lp, "rows")
    lp.page.click(f'{table("rows")} thead button[data-key="n"]')
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} thead th[aria-sort]')"
        "?.getAttribute('aria-sort') === 'ascending'",
        10,
        "ascending sort by n",
    )
    ids = lp.page.evaluate(
        f"() => Array.from(document.querySelectorAll('{table('rows')} tbody tr[data-id]'))"
        ".map(tr => tr.dataset.id)"
    )
    assert ids[:5] == ["e0", "seed", "e1", "e2", "e4"]  # n = 0, 0 (ties by id), 1, 2, 4
    lp.page.click(f'{table("rows")} thead button[data-key="n"]')  # descending
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} tbody tr[data-id]')?.dataset.id === 'e3'",
        10,
        "descending sort by n",
    )
    lp.page.mouse.move(0, 0)


def test_keyboard_focus_survives_row_updates(srv: ServerHandle, lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    show(lp, "incident actions")
    button = f'{table("incident actions")} button[aria-label="Acknowledge inc-901"]'
    lp.page.wait_for_selector(button, timeout=15_000)
    lp.page.focus(button)
    for i in range(20):
        srv.publish(
            "incidents", "incident.updated", {"note": f"n{i}"}, tenant=TENANT, entity_id="inc-901"
        )
    lp.wait_js(
        f"() => document.querySelector('{table('incident actions')} tr[data-id=\"inc-901\"]')"
        "?.textContent.includes('n19')",
        15,
        "the focused row to update",
    )
    focused = lp.page.evaluate("() => document.activeElement?.getAttribute('aria-label')")
    assert focused == "Acknowledge inc-901"
    lp.page.evaluate("() => document.activeElement.blur()")


def test_pending_change_is_visible_then_confirmed(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    _, lp = lab
    show(lp, "incident actions")
    row = f'{table("incident actions")} tr[data-id="inc-901"]'
    srv.chaos.set(delay_ms=(1500, 1500))  # hold the confirming event back
    try:
        lp.page.click(f'{row} button[aria-label="Acknowledge inc-901"]')
        lp.wait_js(
            f"() => document.querySelector('{row}')?.classList.contains('rtnb-pending')"
            f" && document.querySelector('{row}').textContent.includes('Pending')",
            10,
            "the row to show its pending change",
        )
        artifact(lp, table("incident actions"), "table-pending")
    finally:
        srv.chaos.set()
    lp.wait_js(
        f"() => {{ const r = document.querySelector('{row}'); return r && "
        "!r.classList.contains('rtnb-pending') && r.textContent.includes('ack'); }",
        15,
        "the change to be confirmed",
    )
    lp.page.mouse.move(0, 0)
    assert srv.truth("incidents", tenant=TENANT)["inc-901"]["status"] == "ack"


def test_rejected_change_shows_its_error_then_rolls_back(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    _, lp = lab
    show(lp, "incident actions")
    row = f'{table("incident actions")} tr[data-id="inc-900"]'
    lp.page.evaluate(
        """sel => { window.__rtnbRows = [];
          const tb = document.querySelector(sel).closest('tbody');
          new MutationObserver(() => {
            const r = tb.querySelector('tr[data-id="inc-900"]');
            if (r) window.__rtnbRows.push([r.className, r.textContent]);
          }).observe(tb, {subtree: true, childList: true, characterData: true, attributes: true});
        }""",
        row,
    )
    lp.page.click(f'{row} button[aria-label="Reopen inc-900"]')
    lp.wait_js(
        "() => (window.__rtnbRows || []).some(([c, t]) => c === 'rtnb-rejected'"
        " && t.includes('Rejected') && t.includes('open'))",
        15,
        "the rejection and its error on the row",
    )
    artifact(lp, table("incident actions"), "table-rejected")
    alert = lp.page.evaluate(
        f"() => document.querySelector('{table('incident actions')} .rtnb-alerts').textContent"
    )
    assert "inc-900" in alert and "only be re-opened by an admin" in alert
    lp.wait_js(
        f"() => {{ const r = document.querySelector('{row}'); return r && r.className === ''"
        " && r.textContent.includes('resolved') && !r.textContent.includes('Rejected'); }",
        15,
        "the row to roll back to the server's state",
    )
    lp.page.mouse.move(0, 0)
    seen = lp.page.evaluate("() => window.__rtnbRows.map(([c]) => c)")
    first_rejected = seen.index("rtnb-rejected")
    assert "" in seen[first_rejected:], "rolled back after showing the error"
    assert srv.truth("incidents", tenant=TENANT)["inc-900"]["status"] == "resolved"
    said = lp.page.evaluate(
        f"() => document.querySelector('{table('incident actions')} [role=status]').textContent"
    )
    assert "rejected" in said and "Rolled back" in said


def test_updates_continue_while_a_cell_sleeps(srv: ServerHandle, lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    show(lp, "rows")
    lp.execute("import time; time.sleep(5)")
    lp.wait_js(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'busy'",
        10,
        "the kernel to be busy",
    )
    srv.publish("rows", "row.updated", {"n": 777}, tenant=TENANT, entity_id="during-sleep")
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} tr[data-id=\"during-sleep\"]')"
        "?.textContent.includes('777')",
        4,
        "a row published while the cell sleeps",
    )
    assert lp.kernel_status() == "busy", "the update arrived while the cell was still running"
    lp.kernel_idle()


def test_changed_cells_flash_except_under_reduced_motion(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    _, lp = lab
    show(lp, "rows")
    flashes = (
        "sel => document.querySelector(sel).getAnimations({subtree: true})"
        ".filter(a => a.animationName?.startsWith('rtnb-flash')).length"
    )
    srv.publish("rows", "row.updated", {"n": 501}, tenant=TENANT, entity_id="e1")
    lp.wait_js(f"sel => ({flashes})(sel) > 0", 10, "a flash", arg=table("rows"))
    lp.page.emulate_media(reduced_motion="reduce")
    try:
        lp.wait_js(f"sel => ({flashes})(sel) === 0", 10, "no flash", arg=table("rows"))
        srv.publish("rows", "row.updated", {"n": 502}, tenant=TENANT, entity_id="e1")
        lp.wait_js(
            f"() => document.querySelector('{table('rows')} tr[data-id=\"e1\"]')"
            "?.textContent.includes('502')",
            10,
            "the update under reduced motion",
        )
        assert lp.page.evaluate(flashes, table("rows")) == 0
    finally:
        lp.page.emulate_media(reduced_motion="no-preference")


def test_freshness_goes_stale_then_reconnecting_then_live_and_live_region_tracks_transitions(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    _, lp = lab
    show(lp, "rows")
    pill = '.rtnb-pill-wrap[data-scope="connection"] .rtnb-status'
    region = f"{table('rows')} [role=status]"
    lp.page.evaluate(
        """([pill, region]) => {
          window.__rtnbPill = []; window.__rtnbSaid = [];
          const p = document.querySelector(pill);
          const note = () => window.__rtnbPill.push([p.dataset.status, p.textContent]);
          note();
          new MutationObserver(note).observe(p, {subtree: true, childList: true,
            characterData: true, attributes: true});
          const r = document.querySelector(region);
          new MutationObserver(() => window.__rtnbSaid.push(r.textContent))
            .observe(r, {subtree: true, childList: true, characterData: true});
        }""",
        [pill, region],
    )
    for i in range(100):  # a stream of events: the live region must stay quiet
        srv.publish("rows", "row.updated", {"n": i}, tenant=TENANT, entity_id=f"s{i % 10}")
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} tr[data-id=\"s9\"]')"
        "?.textContent.includes('99')",
        15,
        "the stream to be shown",
    )
    assert lp.page.evaluate("() => window.__rtnbSaid") == []
    srv.chaos.disconnect_all()
    lp.wait_js(
        "() => window.__rtnbPill.some(([s, t]) => s === 'stale' && /reconnecting/.test(t))",
        15,
        "the pill to show stale data and the reconnect",
    )
    artifact(lp, f"{table('rows')} .rtnb-strip", "strip-stale")
    lp.wait_js(
        "() => { const seen = window.__rtnbPill; const i = seen.findIndex(([s]) => s === 'stale');"
        " return i >= 0 && seen.slice(i).some(([s]) => s === 'live'); }",
        30,
        "the pill to be live again",
    )
    stale = next(t for s, t in lp.page.evaluate("() => window.__rtnbPill") if s == "stale")
    assert stale.startswith("Stale — data as of ")
    said = lp.wait_js(
        "() => window.__rtnbSaid.some(t => /live/.test(t)) && window.__rtnbSaid",
        15,
        "the live region to announce the way back to live",
    )
    assert any("reconnecting" in t or "stale" in t for t in said), said
    assert len(said) <= 4, f"announced too often: {said}"


def test_freshness_shows_a_silent_stall_within_two_server_heartbeats(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    """The notebook connects with the client's default heartbeat (5 s): the 1 s the
    server announces is what makes a silent stall show within 2 intervals + 1 s."""
    _, lp = lab
    show(lp, "rows")
    pill = '.rtnb-pill-wrap[data-scope="connection"] .rtnb-status'
    lp.wait_js(
        f"() => document.querySelector('{pill}')?.dataset.status === 'live'",
        30,
        "the pill to be live before the stall",
    )
    lp.page.evaluate(
        """(pill) => {
          window.__rtnbStall = [];
          const p = document.querySelector(pill);
          new MutationObserver(() => window.__rtnbStall.push([p.dataset.status, Date.now()]))
            .observe(p, {subtree: true, childList: true, characterData: true, attributes: true});
        }""",
        pill,
    )
    interval = srv.config.heartbeat_interval
    stalled_at_ms = time.time() * 1000.0  # the page's Date.now() reads the same clock
    srv.chaos.stall(4.0)
    shown_at_ms = lp.wait_js(
        "() => window.__rtnbStall.find(([s]) => s === 'stale')?.[1]",
        15,
        "the pill to show stale during a silent stall",
    )
    assert shown_at_ms - stalled_at_ms <= (2 * interval + 1.0) * 1000.0, (
        f"stale shown {shown_at_ms - stalled_at_ms:.0f} ms after the stall began"
    )
    lp.wait_js(
        "() => { const seen = window.__rtnbStall; const i = seen.findIndex(([s]) => s === 'stale');"
        " return i >= 0 && seen.slice(i).some(([s]) => s === 'live'); }",
        30,
        "the pill to be live again after the stall",
    )


#: per cell output holding a dashboard, the roles of the connection pills on screen
VISIBLE_PILLS = """() => [...document.querySelectorAll('.jp-OutputArea')]
  .filter(a => a.querySelector('.rtnb-dashboard'))
  .map(a => [...a.querySelectorAll('.rtnb-pill-wrap[data-scope="connection"]')]
    .filter(p => p.offsetParent !== null).map(p => p.dataset.role).join('+'))
  .join(' | ')"""


def test_one_freshness_pill_per_connection_in_a_cell(lab: tuple[Lab, LabPage]) -> None:
    """A dashboard alone shows its pill; beside ``Freshness(conn)`` in one cell it steps
    aside (one pill per connection), and comes back when that pill is gone."""
    _, lp = lab
    lp.wait_js(
        f"() => ({VISIBLE_PILLS})() === 'embedded | standalone'",
        20,
        "the dashboard cell to show its own pill and the shared cell only the standalone one",
        debug=VISIBLE_PILLS,
    )
    lp.execute("box.children = box.children[1:]\npill.close()")
    lp.wait_js(
        f"() => ({VISIBLE_PILLS})() === 'embedded | embedded'",
        20,
        "the dashboard's pill to come back once the standalone one is gone",
        debug=VISIBLE_PILLS,
    )


def test_100k_entities_keep_fewer_than_500_rows_in_the_dom(lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    show(lp, "big")
    lp.wait_js(
        f"() => document.querySelector('{table('big')} .rtnb-count')?.textContent === '100,000 rows'",
        60,
        "all 100,000 rows in the browser",
    )
    assert count_rows(lp, "big") < 500
    lp.page.evaluate(
        f"() => {{ const s = document.querySelector('{table('big')} .rtnb-scroll');"
        " s.scrollTop = s.scrollHeight / 2; }"
    )
    middle = lp.wait_js(
        f"() => {{ const r = document.querySelector('{table('big')} tbody tr[data-id]');"
        " const i = Number(r?.getAttribute('aria-rowindex'));"
        " return i > 45000 && i < 55000 && r.dataset.id; }",
        10,
        "the middle rows after scrolling",
        debug=f"() => {{ const s = document.querySelector('{table('big')} .rtnb-scroll');"
        " const v = s.parentElement.parentElement.__rtnb; return [s.scrollHeight, s.scrollTop,"
        " s.clientHeight, s.querySelectorAll('tr[data-id]').length, s.querySelector("
        "'tr[data-id]')?.getAttribute('aria-rowindex'), v.visible, v.order.length]; }",
    )
    assert middle.startswith("r0")
    assert count_rows(lp, "big") < 500
    rowcount = lp.page.evaluate(
        f"() => document.querySelector('{table('big')} table').ariaRowCount"
    )
    assert rowcount == str(BIG + 1)


def test_a_reload_renders_from_a_fresh_snapshot(
    srv: ServerHandle, lab: tuple[Lab, LabPage]
) -> None:
    server, lp = lab
    # the save's own promise: the model's dirty flag is no signal any more, since the
    # widgets' recorded twins (update_display_data, <= 1/s while rows change) dirty it again
    saved = lp.page.evaluate(
        """async () => {
          const ctx = window.jupyterapp.shell.currentWidget.context;
          await ctx.save();
          return ctx.contentsModel && ctx.contentsModel.last_modified;
        }"""
    )
    assert saved, "the notebook was not saved"
    lp.open(server.notebook_url("widgets.ipynb"))
    lp.wait_js(
        f"() => document.querySelector('{table('rows')}')", 60, "the widgets after the reload"
    )
    show(lp, "rows")
    srv.publish("rows", "row.updated", {"n": 31337}, tenant=TENANT, entity_id="after-reload")
    lp.wait_js(
        f"() => document.querySelector('{table('rows')} tr[data-id=\"after-reload\"]')"
        f" && document.querySelector('{table('rows')} tr[data-id=\"e3\"]')",
        60,
        "the table to be rebuilt from a snapshot after the reload",
        debug=f"() => {{ const t = document.querySelector('{table('rows')}');"
        " const v = t.parentElement.__rtnb; return [t.querySelectorAll('tr[data-id]').length,"
        " v.store.rows.size, v.store.messages, v.visible, t.querySelector('.rtnb-status-text')"
        ".textContent, window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status,"
        " v.order.length, v.frozen, v.raf, v.scroll.clientHeight, v.scroll.scrollTop,"
        " Array.from(t.querySelectorAll('tr[data-id]')).map(r => r.dataset.id).join(','),"
        " document.querySelectorAll('.rtnb-table[data-title=rows]').length,"
        " Array.from(v.store.rows.keys()).join(',')]; }",
    )


def _axe(lp: LabPage) -> list[dict[str, Any]]:
    lp.page.add_script_tag(content=axe_source())
    result = lp.page.evaluate(
        """async () => {
          const r = await axe.run({include: [['.rtnb']]}, {resultTypes: ['violations']});
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + n.failureSummary)}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_screenshots_and_axe_in_light_and_dark(lab: tuple[Lab, LabPage]) -> None:
    _, lp = lab
    found: dict[str, list[dict[str, Any]]] = {}
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        lp.theme(theme)
        lp.page.evaluate(
            f"() => document.querySelector('{table('incident actions')}').scrollIntoView()"
        )
        lp.page.evaluate(  # two frames: the new theme's styles are applied and painted
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        shot = screenshot_path(f"widgets-{name}.png")
        lp.page.screenshot(path=str(shot))
        dash = lp.page.locator(".rtnb-dashboard").first
        dash.scroll_into_view_if_needed()
        dash_shot = screenshot_path(f"dashboard-{name}.png")
        dash.screenshot(path=str(dash_shot))
        if shot.name in README_SHOTS:
            publish_screenshot(shot, shot.name)
        if dash_shot.name in README_SHOTS:
            publish_screenshot(dash_shot, dash_shot.name)
        found[name] = _axe(lp)
    lp.theme("JupyterLab Light")
    assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)


def test_no_iopub_rate_limit_was_hit(lab: tuple[Lab, LabPage]) -> None:
    server, _ = lab
    assert "IOPub message rate exceeded" not in server.log_text()

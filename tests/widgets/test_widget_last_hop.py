"""The last hop in a real browser: a view never says "Live" when its kernel is gone.

JupyterLab + headless Chromium + the reference server (as in test_widget_browser).
A silent topic shows quiet and a fourth subscription (over ``max_subscriptions=3``)
refused with the server's reason, in the browser; the notebook saved from the page
holds each table's rows as of then ("Recorded … UTC — not live"). The kernel
*process* is SIGKILLed (an OOM kill, a crash), and separately restarted through
the kernel API: every rtnb view on the page must leave "Live" within 3 s
and say why ("No kernel — data as of …" or "Kernel restarted — this output is
frozen"), and the counters stop. A page frozen and thawed (Chrome's Page Lifecycle,
what a background tab goes through) must not raise a false alarm.
"""

from __future__ import annotations

import os
import signal
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
    chromium_page,
    new_workdir,
    require_chromium,
    wait_py,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TENANT = "lab"
CELLS = [
    "import os, rtnb\n"
    "from rtnb.widgets import Dashboard, Freshness, StreamTable\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=20)\n"
    "open(os.environ['RTNB_PID_FILE'], 'w').write(str(os.getpid()))",
    "fleet = conn.subscribe('fleet')\nStreamTable(fleet, title='fleet')",
    "Freshness(conn)",
    "Dashboard(conn, ['incidents'])",
    # nothing is published to prices: quiet 1 s after its snapshot
    "prices = conn.subscribe('prices', stale_after=1.0)\nStreamTable(prices, title='prices')",
    # the server allows 3 subscriptions per connection: a 4th is refused, with its reason
    "audit = conn.subscribe('audit')\nFreshness(audit)",
]
#: every status badge of every rtnb view, and the Dashboard's counters
BADGES = ".rtnb-status"
COUNTERS = ".rtnb-counters"

OBSERVE = """() => {
  window.__rtnbLeft = null;
  const badges = Array.from(document.querySelectorAll('.rtnb-status'));
  const check = () => {
    const gone = badges.every(b => b.dataset.state !== 'live' && b.dataset.state !== 'replaying'
      && /^(No kernel — |Kernel restarted — )/.test(b.textContent));
    if (gone && window.__rtnbLeft === null) window.__rtnbLeft = performance.now();
    if (badges.some(b => /^(No kernel|Kernel restarted)/.test(b.textContent)))
      window.__rtnbAlarm = (window.__rtnbAlarm || 0) + 1;
  };
  for (const b of badges) new MutationObserver(check).observe(b,
    {subtree: true, childList: true, characterData: true, attributes: true});
  return badges.length;
}"""
# live, except the quiet table (and the connection pill that says so) and the refused pill
ALL_LIVE = """() => { const b = Array.from(document.querySelectorAll('.rtnb-status'));
  return b.length >= 6 && b.every(x => ['live', 'quiet', 'refused'].includes(x.dataset.state))
    && b.some(x => x.dataset.state === 'live'); }"""


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    demo = {"tenants": [TENANT], "rates": {"incidents": 2.0, "fleet": 5.0, "prices": 0.0}}
    with rtnb.serve(port=0, demo=demo, heartbeat_interval=1.0, max_subscriptions=3) as handle:
        handle.declare("audit")
        handle.declare("prices")  # declared, nothing published: quiet
        yield handle


def _open(srv: ServerHandle) -> Any:
    work = new_workdir()
    write_notebook(work / "hop.ipynb", CELLS)
    pid_file = work / "kernel.pid"
    token = srv.issue_token(tenant=TENANT, user="ana", role="operator")
    env = {"RTNB_URL": srv.url, "RTNB_TOKEN": token, "RTNB_PID_FILE": str(pid_file)}
    return work, pid_file, env


def _run(lp: LabPage, server: Lab) -> None:
    lp.open(server.notebook_url("hop.ipynb"))
    lp.run_all()
    lp.wait_js(ALL_LIVE, 90, "every view to be live", debug=_STATES)
    # the browser shows a silent topic quiet and a refusal with the server's reason
    lp.wait_js(
        "() => Array.from(document.querySelectorAll('.rtnb-status')).some(b =>"
        " b.dataset.state === 'quiet' && b.dataset.status === 'stale'"
        " && /^Quiet — no events for .* \\(expected within 1\\.0 s\\)$/.test(b.textContent))",
        15,
        "the prices table to say it is quiet, in the stale style",
        debug=_STATES,
    )
    refused = lp.wait_js(
        "() => Array.from(document.querySelectorAll('.rtnb-status')).map(b => b.textContent)"
        ".find(t => t.startsWith('Refused — '))",
        15,
        "the audit pill to show the refusal",
        debug=_STATES,
    )
    assert "at most 3 subscriptions" in refused and "too_many_subscriptions" in refused


_STATES = "() => Array.from(document.querySelectorAll('.rtnb-status')).map(b => b.textContent)"


def _left_within(lp: LabPage, t0: float) -> float:
    lp.wait_js("() => window.__rtnbLeft !== null", 10, "every view to leave Live", debug=_STATES)
    left: float = lp.page.evaluate("() => window.__rtnbLeft")
    return (left - t0) / 1000.0


def _recorded_fleet(path: Any) -> str | None:
    """The saved text/html twin of the fleet table, once it holds rows."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # being written
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            text = "".join(html) if isinstance(html, list) else html
            if "rtnb-recorded" in text and ">fleet<" in text and "veh-" in text:
                return text
    return None


def _counters_stopped(lp: LabPage) -> None:
    lp.wait_js(
        f"() => {{ const c = document.querySelector('{COUNTERS}');"
        " return c && c.dataset.kernel && c.dataset.stale === 'true'"
        " && c.querySelector('[data-key=\"eps\"] .rtnb-counter-value').textContent === '–'; }",
        5,
        "the counters to stop",
    )


def test_a_killed_kernel_takes_every_view_out_of_live_within_3_s(srv: ServerHandle) -> None:
    work, pid_file, env = _open(srv)
    with (
        Lab(work, work / ".state", env=env, expose_app=True) as server,
        chromium_page(work / ".chromium") as (_context, page),
    ):
        lp = LabPage(page)
        _run(lp, server)
        # saved as it is, the notebook holds each table's rows as of then, never "Live"
        lp.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = wait_py(lambda: _recorded_fleet(work / "hop.ipynb"), 30, "the saved twins")
        assert "veh-" in saved and "UTC — not live" in saved and "Live" not in saved
        pid = int(wait_py(lambda: pid_file.exists() and pid_file.read_text(), 30, "the pid"))
        assert lp.page.evaluate(OBSERVE) >= 6
        t0 = lp.page.evaluate("() => performance.now()")
        os.kill(pid, signal.SIGKILL)
        took = _left_within(lp, t0)
        assert took <= 3.0 + 0.2, f"views left Live after {took:.2f} s"  # 0.1 s ticks
        _counters_stopped(lp)
        texts = lp.page.evaluate(_STATES)
        assert all(t.startswith(("No kernel — ", "Kernel restarted — ")) for t in texts), texts
        assert not any("Live" in t for t in texts), texts
        print(f"SIGKILL: every view left Live {took:.2f} s after the kill: {texts[0]!r}")


def test_a_restarted_kernel_freezes_every_view_within_3_s(srv: ServerHandle) -> None:
    work, _pid_file, env = _open(srv)
    with (
        Lab(work, work / ".state", env=env, expose_app=True) as server,
        chromium_page(work / ".chromium") as (context, page),
    ):
        lp = LabPage(page)
        _run(lp, server)
        # a frozen and thawed page (a background tab) raises no false alarm
        cdp = context.new_cdp_session(page)
        lp.page.evaluate(OBSERVE)
        cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
        frozen_at = time.monotonic()
        # the scenario is a page frozen longer than the alarm (2 x 1 s + 1 s): 4 s
        wait_py(lambda: time.monotonic() - frozen_at > 4.0, 10, "4 s of frozen page")
        cdp.send("Page.setWebLifecycleState", {"state": "active"})
        lp.wait_js(ALL_LIVE, 5, "every view live after the thaw", debug=_STATES)
        thawed = lp.page.evaluate("() => performance.now()")
        lp.wait_js(f"() => performance.now() - {thawed} > 1500", 5, "1.5 s after the thaw")
        assert lp.page.evaluate("() => window.__rtnbAlarm || 0") == 0, "a false alarm"
        assert lp.page.evaluate(ALL_LIVE)

        t0 = lp.page.evaluate("() => performance.now()")
        lp.page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()"
        )
        took = _left_within(lp, t0)
        assert took <= 3.0 + 0.2, f"views left Live after {took:.2f} s"
        _counters_stopped(lp)
        texts = lp.page.evaluate(_STATES)
        assert all(t == "Kernel restarted — this output is frozen" for t in texts) or all(
            t.startswith(("No kernel — ", "Kernel restarted — ")) for t in texts
        ), texts
        print(f"restart: every view left Live {took:.2f} s after the request: {texts[0]!r}")

"""Front-ends other than JupyterLab, for the browser tests: Notebook 7, Voilà, marimo, Panel.

Each host runs as a real server process on a free loopback port, serving a small app or
notebook that shows the four widgets people use (a Dashboard, a StreamTable, a Freshness
pill and a LiveChart) of one reference server, reached through ``RTNB_URL`` /
``RTNB_TOKEN``. The page is headless Debian Chromium with a fresh profile in which every
request to a host other than loopback is aborted and recorded: what renders, renders
offline.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rtnb.widgets.lab import free_port
from tests.conftest import wait_until
from tests.widgets.lab_harness import CHROMIUM_ARGS, require_chromium

LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
#: The code every host runs: the four widgets of one connection.
SETUP = (
    "import os, rtnb\n"
    "from rtnb.widgets import Dashboard, Freshness, StreamTable\n"
    "from rtnb.widgets.livechart import LiveChart\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=20)\n"
    "rows = conn.subscribe('rows')\n"
)
WIDGETS = (
    "Dashboard(conn, ['incidents', 'fleet'])",
    "StreamTable(rows, title='rows')",
    "Freshness(conn)",
    "LiveChart(conn, 'lag', interval=1)",
)


class HostServer:
    """A host's server process (``marimo run``, ``panel serve``, ``voila``, ``jupyter notebook``)."""

    def __init__(
        self, argv: Sequence[str], cwd: pathlib.Path, env: Mapping[str, str], port: int
    ) -> None:
        self.port = port
        self.log_path = cwd / "host.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str = "/", timeout: float = 90.0) -> None:
        url = f"http://127.0.0.1:{self.port}{path}"

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the host exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return bool(r.status < 500)
            except urllib.error.HTTPError as exc:
                return exc.code < 500
            except (OSError, urllib.error.URLError):
                return False

        wait_until(answers, timeout, 0.2, f"the host to answer on {url}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def tracebacks(self) -> list[str]:
        """Every traceback in the host's whole log but its own teardown noise (see
        :func:`tracebacks`)."""
        self._log.flush()
        return tracebacks(self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self._log.close()


#: The last exception of a chain that is the host's own noise when a page goes away: tornado
#: (Voilà, Notebook 7) logs a websocket write that raced the page's close as a task
#: exception never retrieved ("StreamClosedError", then "WebSocketClosedError").
_HOST_NOISE = ("tornado.websocket.WebSocketClosedError",)


def tracebacks(log: str) -> list[str]:
    """The tracebacks in ``log``, each chain (``During handling of the above exception``)
    as one, less those whose last exception is in :data:`_HOST_NOISE`."""
    links = ("During handling", "The above exception")
    lines = log.splitlines()
    chains: list[tuple[str, str]] = []  # (the chain, its last exception line)
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        begin = i
        i += 1
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line or line.startswith((" ", "Traceback", *links)):
                continue
            # the exception line: the chain goes on if a link follows it
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and lines[j].startswith(links):
                i = j
                continue
            chains.append(("\n".join(lines[begin:i]), line))
            break
        else:  # the log ends inside a traceback: reported as it is
            chains.append(("\n".join(lines[begin:]), ""))
    return [chain for chain, last in chains if not last.strip().startswith(_HOST_NOISE)]


@contextlib.contextmanager
def host_server(
    argv: Sequence[str], cwd: pathlib.Path, env: Mapping[str, str], port: int, ready: str = "/"
) -> Iterator[HostServer]:
    server = HostServer(argv, cwd, env, port)
    try:
        server.wait_ready(ready)
        yield server
    finally:
        server.stop()


class OfflinePage:
    """A headless Chromium page where only loopback is reachable; records what it refused."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )

    def wait_js(self, expr: str, timeout: float, what: str, arg: Any = None) -> Any:
        from playwright.sync_api import TimeoutError as PwTimeout

        try:
            handle = self.page.wait_for_function(expr, arg=arg, timeout=timeout * 1000, polling=50)
        except PwTimeout:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; blocked: {self.blocked[:5]}; "
                f"page errors: {self.errors[-3:]}; console: {self.console_errors[-3:]}"
            ) from None
        return handle.json_value()

    def rtnb_errors(self) -> list[str]:
        """Page errors whose text or stack names rtnb's code."""
        return [e for e in self.errors if "rtnb" in e.lower()]


def _route(blocked: list[str]) -> Any:
    def handler(route: Any) -> None:
        url = route.request.url
        host = urllib.parse.urlsplit(url).hostname or ""
        if url.startswith(("http://", "https://", "ws://", "wss://")) and host not in LOOPBACK:
            blocked.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    return handler


@contextlib.contextmanager
def offline_browser(profile: pathlib.Path, *, color_scheme: str = "light") -> Iterator[Any]:
    """A fresh Chromium profile (``--user-data-dir``) that reaches nothing but loopback.

    Yields a ``new_page()`` function; each page is an :class:`OfflinePage`.
    """
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            ],
            viewport={"width": 1300, "height": 1000},
            color_scheme=color_scheme,  # type: ignore[arg-type]
        )
        blocked: list[str] = []
        context.add_init_script(DEEP_INIT)
        context.route("**/*", _route(blocked))
        pages: list[OfflinePage] = []

        def new_page() -> OfflinePage:
            page = context.pages[0] if not pages and context.pages else context.new_page()
            op = OfflinePage(context, page)
            op.blocked = blocked
            pages.append(op)
            return op

        try:
            yield new_page
        finally:
            context.close()


#: ``window.__rtnbDeep(selector)``: every match in the page, inside shadow roots too (marimo
#: and Panel render widgets in shadow DOM); installed in every page before its scripts run.
DEEP_INIT = """window.__rtnbDeep = (sel) => {
  const out = [];
  const visit = (root) => {
    out.push(...root.querySelectorAll(sel));
    for (const e of root.querySelectorAll('*')) if (e.shadowRoot) visit(e.shadowRoot);
  };
  visit(document);
  return out;
};"""

#: WCAG 2.x contrast of every visible text inside rtnb's widgets against the colour painted
#: behind it (the backgrounds of its ancestors, across shadow roots, over the page's):
#: ``[lowest ratio, that text and its colours, texts measured, luminance behind a title]``.
CONTRAST_JS = """() => {
  // any CSS colour (rgb, color(srgb …) as color-mix computes it, oklab …) through a canvas
  const ctx = Object.assign(document.createElement('canvas'), {width: 1, height: 1})
    .getContext('2d', {willReadFrequently: true});
  const parse = (c) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = '#000';
    ctx.fillStyle = c;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return {r, g, b, a: a / 255};
  };
  const lum = ({r, g, b}) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const up = (e) => e.parentElement || (e.getRootNode() instanceof ShadowRoot ? e.getRootNode().host : null);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = up(e)) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let bg = {r: 255, g: 255, b: 255, a: 1};
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  let worst = [99, ""];
  let measured = 0;
  for (const root of window.__rtnbDeep('.rtnb')) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || !el.getClientRects().length) continue;
      const st = getComputedStyle(el);
      if (st.visibility === 'hidden' || el.closest('[hidden], .rtnb-sr')) continue;
      const fg0 = parse(st.color);
      const bg = background(el);
      const fg = over(fg0, bg);
      const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      measured += 1;
      if (ratio < worst[0]) worst = [ratio, `${n.textContent.trim().slice(0, 40)} (${st.color} on rgb(${Math.round(bg.r)},${Math.round(bg.g)},${Math.round(bg.b)}))`];
    }
  }
  const title = window.__rtnbDeep('.rtnb-title')[0];
  return [worst[0], worst[1], measured, title ? lum(background(title)) : null];
}"""


def bin_path(name: str) -> str:
    return str(pathlib.Path(sys.executable).with_name(name))


__all__ = [
    "CONTRAST_JS",
    "DEEP_INIT",
    "SETUP",
    "WIDGETS",
    "HostServer",
    "OfflinePage",
    "bin_path",
    "free_port",
    "host_server",
    "offline_browser",
]

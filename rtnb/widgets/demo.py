"""``make demo`` / ``rtnb demo``: the reference server with demo data plus JupyterLab.

``python -m rtnb.widgets.demo`` (``rtnb demo``) starts

1. the reference server with its demo producers (what ``rtnb serve --demo``
   runs), in this process, on loopback;
2. a tiny *chaos relay* beside it (loopback, secret token): the notebook's
   kernel runs in another process and cannot call ``srv.chaos`` directly, so
   the relay lets its "inject chaos" cell reach the server's fault injection;
3. JupyterLab, token-protected on loopback, on a working copy of the demo
   notebooks -- all three and their ``data/`` -- opening ``01_live_dashboard.ipynb``.

The notebooks come from the package (a ``pip install`` ships them as package
data, ``rtnb/_notebooks``) or, in a source checkout, from ``notebooks/``. The
working copy is ``./rtnb-demo`` (``--dir``): a notebook or data file is copied
there only if absent, so edits survive a restart (delete a file to get the
shipped one back), and nothing lives inside the virtual environment, so
``make clean`` never deletes a user's notebooks. JupyterLab's and IPython's
state go to ``<dir>/.lab`` (``--state``). The server's URL, a demo token
(operator role, 24 h) and the relay's address reach the notebook as
``RTNB_URL``, ``RTNB_TOKEN``, ``RTNB_CHAOS_URL`` and ``RTNB_CHAOS_TOKEN``.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import hmac
import http.server
import json
import os
import pathlib
import secrets
import shutil
import signal
import sys
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

from ..protocol.errors import DemoFilesMissing, SetupError

#: Seconds a demo token stays valid: 86,400 (24 h).
DEMO_TOKEN_TTL: Final = 86_400.0
#: JupyterLab's port when free (otherwise any free port): 8888.
DEFAULT_LAB_PORT: Final = 8888
NOTEBOOK: Final = "01_live_dashboard.ipynb"
#: The notebooks' working copy, relative to the current directory: ``rtnb-demo``.
DEFAULT_DIR: Final = "rtnb-demo"
#: Fault-injection calls the relay accepts (names of ``srv.chaos`` methods).
CHAOS_ACTIONS: Final = frozenset(
    {"set", "disconnect_all", "stall", "stall_heartbeats", "expire_tokens", "restart"}
)


class ChaosRelay:
    """``POST /chaos/<action>`` with a JSON object of keyword arguments → ``srv.chaos.<action>``."""

    def __init__(self, srv: Any, host: str = "127.0.0.1") -> None:
        self.token = secrets.token_urlsafe(24)
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                auth = self.headers.get("Authorization", "")
                if not hmac.compare_digest(auth, f"Bearer {relay.token}"):
                    self._reply(401, {"error": "unauthorized"})
                    return
                action = self.path.removeprefix("/chaos/")
                if action not in CHAOS_ACTIONS:
                    self._reply(404, {"error": f"unknown action {action!r}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    kwargs = json.loads(self.rfile.read(length) or b"{}")
                    getattr(srv.chaos, action)(**kwargs)
                except Exception as exc:  # report it to the notebook, keep serving
                    self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                self._reply(200, {"ok": True})

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chaos(srv: Any, action: str, **kwargs: Any) -> None:
    """Inject a fault: on ``srv`` if this process runs the server, else through the relay.

    ``chaos(srv, "disconnect_all")``, ``chaos(srv, "stall", seconds=5)``.
    """
    if action not in CHAOS_ACTIONS:
        raise ValueError(f"unknown chaos action {action!r}; one of {sorted(CHAOS_ACTIONS)}")
    if srv is not None:
        getattr(srv.chaos, action)(**kwargs)
        return
    url, token = os.environ.get("RTNB_CHAOS_URL"), os.environ.get("RTNB_CHAOS_TOKEN")
    if not (url and token):
        raise SetupError(
            "this notebook does not run the server and no chaos relay is configured "
            "(RTNB_CHAOS_URL / RTNB_CHAOS_TOKEN, set by `make demo`)"
        )
    request = urllib.request.Request(
        f"{url}/chaos/{action}",
        data=json.dumps(kwargs).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def shipped_notebooks() -> pathlib.Path:
    """Where the demo notebooks are: the package's ``_notebooks`` (a wheel), else a checkout's."""
    here = pathlib.Path(__file__).resolve()
    packaged = here.parents[1] / "_notebooks"
    if (packaged / NOTEBOOK).exists():
        return packaged
    for parent in here.parents:
        candidate = parent / "notebooks"
        if (candidate / NOTEBOOK).exists():
            return candidate
    raise DemoFilesMissing(
        f"the demo notebooks are missing: neither {packaged} (a pip install ships them there) "
        f"nor notebooks/{NOTEBOOK} above {here} (a source checkout); "
        'reinstall with `pip install --force-reinstall "rtnb[demo]"`'
    )


def copy_notebooks(work: pathlib.Path) -> tuple[list[str], list[str]]:
    """Copy every demo notebook and ``data/`` file into ``work`` unless already there.

    Returns ``(notebook names, paths kept)``: files in ``work`` are never overwritten, so a
    user's edits survive a restart; ``kept`` lists (relative to ``work``) those left as found.
    """
    source = shipped_notebooks()
    names = sorted(p.name for p in source.glob("*.ipynb"))
    files = [source / n for n in names]
    if (source / "data").is_dir():
        files += sorted(p for p in (source / "data").rglob("*") if p.is_file())
    kept: list[str] = []
    for path in files:
        rel = path.relative_to(source)
        target = work / rel
        if target.exists():
            kept.append(rel.as_posix())
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return names, kept


def _lab_port(wanted: int | None) -> int:
    from .lab import free_port

    if wanted:
        return wanted
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DEFAULT_LAB_PORT))
        except OSError:
            return free_port()
    return DEFAULT_LAB_PORT


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m rtnb.widgets.demo") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="rtnb demo: reference server with demo data + JupyterLab on the dashboard",
    )
    parser.add_argument("--port", type=int, default=0, help="reference server port (0: any)")
    parser.add_argument("--lab-port", type=int, default=0, help="JupyterLab port (8888 if free)")
    parser.add_argument("--tenant", default="acme", help="demo tenant (acme)")
    parser.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"working copy of the notebooks (./{DEFAULT_DIR}); files already there are kept",
    )
    parser.add_argument("--state", help="where JupyterLab keeps its state (<dir>/.lab)")
    args = parser.parse_args(argv)

    import rtnb

    from .lab import Lab

    work = pathlib.Path(args.dir).resolve()
    state = pathlib.Path(args.state).resolve() if args.state else work / ".lab"
    work.mkdir(parents=True, exist_ok=True)
    names, kept = copy_notebooks(work)
    print(f"demo notebooks: {work}", flush=True)
    if kept:
        print(
            f"  kept as they were (yours; delete one to get the shipped copy back): "
            f"{', '.join(kept)}",
            flush=True,
        )

    srv = rtnb.serve(port=args.port, demo={"tenants": (args.tenant,)})
    relay = ChaosRelay(srv)
    token = srv.issue_token(tenant=args.tenant, user="demo", role="operator", ttl=DEMO_TOKEN_TTL)
    env = {
        "RTNB_URL": srv.url,
        "RTNB_TOKEN": token,
        "RTNB_CHAOS_URL": relay.url,
        "RTNB_CHAOS_TOKEN": relay.token,
    }
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lab: Lab | None = None
    try:
        print(f"rtnb reference server (demo data, tenant {args.tenant}) on {srv.url}", flush=True)
        print("starting JupyterLab …", flush=True)
        lab = Lab(work, state, env=env, port=_lab_port(args.lab_port))
        others = "".join(f"    {lab.notebook_url(n)}\n" for n in names if n != NOTEBOOK)
        print(
            "\nOpen the live dashboard:\n\n"
            f"    {lab.notebook_url(NOTEBOOK)}\n\n"
            f"and the other notebooks (also in the lab's file browser):\n{others}\n"
            f"(notebooks: {work} -- your edits stay there; JupyterLab log: {lab.log_path})\n"
            "Ctrl-C stops the demo.",
            flush=True,
        )
        while not stop.wait(0.5):
            if lab.proc.poll() is not None:
                print(f"JupyterLab exited ({lab.proc.returncode}); see {lab.log_path}")
                return 1
    finally:
        if lab is not None:
            lab.stop()
        relay.stop()
        srv.stop()
        print("rtnb demo stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

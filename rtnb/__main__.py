"""The ``rtnb`` command line.

``rtnb serve [--host H] [--port P] [--demo] [--data DIR [--fsync always|never]]
[--chaos SPEC]`` runs the reference server in the foreground, prints its URL, a
demo token (only with ``--demo`` or when stdout is a terminal: under systemd or
Docker stdout is a log) and the ``rtnb token …`` line that mints more for it, and
stops cleanly on Ctrl-C.
``rtnb token --tenant T --user U --role R`` mints a token for a server started
with the same secret (``RTNB_SECRET``, ``--secret-file FILE``, or ``--data DIR``,
whose ``secret.key`` the server created). ``rtnb demo`` starts the server with
demo data and JupyterLab on ``notebooks/01_live_dashboard.ipynb`` (``make demo``).
``rtnb --version`` prints the version.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import types
from collections.abc import Sequence
from typing import Any

DEMO_TOKEN_TTL = 24 * 3600.0

_SECRETS = """\
the token secret (HS256; tokens are valid only on a server with the same one):
  1. RTNB_SECRET  environment variable, at least 32 bytes, e.g.
                  export RTNB_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')
  2. --secret-file FILE  the secret in FILE (hex); created (mode 0600) if missing
  3. --data DIR   DIR/secret.key, created (mode 0600) by the first server using DIR
  otherwise a random secret lives in memory only -- except with --demo, which
  keeps it in a private temporary file so that `rtnb token` works against it.
The secret is never logged or printed; the server prints the `rtnb token` line
that mints more tokens for it."""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="rtnb",
        description="rtnb: live, event-driven data in Jupyter (reference server and tools).",
        epilog="run 'rtnb COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"rtnb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the reference server in the foreground",
        description="Run the rtnb reference server (WebSocket /ws, SSE /sse, polling /poll) "
        "until Ctrl-C. Prints the URL, a 24 h operator token (with --demo, or when stdout is a "
        "terminal) and the command to mint more.",
        epilog=_SECRETS,
        formatter_class=raw,
    )
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    s.add_argument(
        "--demo",
        action="store_true",
        help="run the demo producers (topics incidents, fleet, prices for each tenant)",
    )
    s.add_argument(
        "--demo-scale", type=float, default=1.0, help="multiply every demo rate (default 1.0)"
    )
    s.add_argument(
        "--tenants",
        default="acme,globex",
        help="demo tenants, comma-separated (default acme,globex); the printed token is for "
        "the first",
    )
    s.add_argument(
        "--data",
        metavar="DIR",
        help="persist topic logs in SQLite under DIR (and keep the secret in DIR/secret.key); "
        "default: in memory",
    )
    s.add_argument(
        "--fsync",
        choices=("always", "never"),
        default="always",
        help="with --data: 'always' acknowledges a publish only once it is on disk (default); "
        "'never' writes behind every 0.2 s (a crash loses recent events; clients re-snapshot)",
    )
    s.add_argument(
        "--store",
        metavar="URL",
        help="keep topic logs in Redis Streams (redis://HOST:PORT/DB), shared by every gateway "
        "started with the same store and secret; see docs/redis.md",
    )
    s.add_argument(
        "--secret-file",
        metavar="FILE",
        help="read the token secret from FILE (hex), creating it if missing (see below)",
    )
    s.add_argument(
        "--chaos",
        metavar="SPEC",
        help="inject faults into live events: drop, duplicate, reorder (probabilities), "
        "reorder_window, delay_ms=LO-HI, seed; e.g. drop=0.01,duplicate=0.05,delay_ms=0-50",
    )
    s.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="SECONDS",
        help="heartbeat interval, announced to clients (default 5.0)",
    )
    s.add_argument(
        "--retention",
        type=int,
        default=None,
        metavar="N",
        help="events kept per topic for replay (default 10000)",
    )
    s.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=("debug", "info", "warning", "error"),
        help="rtnb log level (default info)",
    )

    t = sub.add_parser(
        "token",
        help="mint an access token",
        description="Mint an access token (HS256 JWT) for a server with the same secret; "
        "prints it on stdout.",
        epilog=_SECRETS,
        formatter_class=raw,
    )
    t.add_argument("--tenant", required=True, help="the tenant the token speaks for")
    t.add_argument("--user", required=True, help="the user name")
    t.add_argument(
        "--role",
        default="viewer",
        choices=("viewer", "operator", "admin"),
        help="viewer reads; operator also mutates; admin also publishes (default viewer)",
    )
    t.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default 3600)")
    t.add_argument("--secret-file", metavar="FILE", help="use the secret in FILE")
    t.add_argument("--data", metavar="DIR", help="use the secret of the server using DIR")

    # `rtnb demo ...` hands everything after `demo` to the widgets demo (see main).
    sub.add_parser(
        "demo",
        help="reference server with demo data plus JupyterLab ('rtnb demo --help')",
        add_help=False,
    )
    return parser


def _read_secret_file(path: str, *, create: bool) -> bytes:
    if create and not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def _serve(args: argparse.Namespace) -> int:
    from .server import serve
    from .server.chaos import parse_spec

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("rtnb").setLevel(args.log_level.upper())
    options: dict[str, Any] = {}
    if args.heartbeat is not None:
        options["heartbeat_interval"] = args.heartbeat
    if args.retention is not None:
        options["retention"] = args.retention
    demo: bool | dict[str, object] = False
    if args.demo:
        tenants = tuple(t for t in args.tenants.split(",") if t)
        demo = {"tenants": tenants, "scale": args.demo_scale}
    # How `rtnb token` finds this server's secret (printed for the user; never the secret).
    secret: str | bytes | None = os.environ.get("RTNB_SECRET") or None
    minted_with = ""
    scratch: str | None = None
    try:
        if secret is not None:
            minted_with = ""  # RTNB_SECRET, as set for this server
        elif args.secret_file:
            secret = _read_secret_file(args.secret_file, create=True)
            minted_with = f" --secret-file {shlex.quote(args.secret_file)}"
        elif args.data:
            minted_with = f" --data {shlex.quote(args.data)}"
        elif args.demo:
            scratch = tempfile.mkdtemp(prefix="rtnb-demo-")  # mode 0700
            path = os.path.join(scratch, "secret.key")
            secret = _read_secret_file(path, create=True)
            minted_with = f" --secret-file {shlex.quote(path)}"
        chaos = parse_spec(args.chaos) if args.chaos else None
        srv = serve(
            host=args.host,
            port=args.port,
            demo=demo,
            data=args.data,
            store=args.store,
            secret=secret,
            fsync=args.fsync,
            chaos=chaos,
            **options,
        )
    except (ValueError, OSError, RuntimeError) as exc:
        busy = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE  # strerror says it all
        print(f"rtnb serve: {exc.strerror if busy else exc}", file=sys.stderr)  # type: ignore[union-attr]
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tenant = demo["tenants"][0] if isinstance(demo, dict) and demo["tenants"] else "acme"  # type: ignore[index]
    print(f"rtnb reference server on {srv.url}  (WebSocket: {srv.ws_url})", flush=True)
    # A token on stdout ends up in the log of whatever runs the server (systemd,
    # Docker): printed only for a demo or a person at a terminal.
    if args.demo or sys.stdout.isatty():
        token = srv.issue_token(
            tenant=str(tenant), user="demo", role="operator", ttl=DEMO_TOKEN_TTL
        )
        print(f"demo token (tenant {tenant}, role operator, 24 h):\n{token}", flush=True)
    else:
        print(
            "no token printed: stdout is not a terminal (a log, under systemd or Docker) and "
            "--demo is off; mint tokens with 'rtnb token' (below)",
            flush=True,
        )
    if secret is not None or args.data:
        env = "with RTNB_SECRET set as for this server: " if not minted_with else ""
        print(
            f"more tokens ({env}roles viewer|operator|admin):\n"
            f"  rtnb token{minted_with} --tenant {tenant} --user YOU --role viewer",
            flush=True,
        )
    else:
        print(
            "more tokens: this server's secret is in memory only; restart it with "
            "RTNB_SECRET, --secret-file or --data to mint more with 'rtnb token'",
            flush=True,
        )
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        print("rtnb server stopped.", flush=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from .server.auth import TokenAuthority
    from .server.runner import SECRET_FILE

    secret = os.environ.get("RTNB_SECRET")
    key: bytes
    try:
        if secret:
            key = secret.encode()
        elif args.secret_file:
            key = _read_secret_file(args.secret_file, create=False)
        elif args.data and os.path.exists(os.path.join(args.data, SECRET_FILE)):
            key = _read_secret_file(os.path.join(args.data, SECRET_FILE), create=False)
        else:
            print(
                "rtnb token: no secret; set RTNB_SECRET (as for 'rtnb serve'), or pass "
                "--secret-file FILE or --data DIR as the server was started with "
                "('rtnb serve' prints the exact command)",
                file=sys.stderr,
            )
            return 2
    except (OSError, ValueError) as exc:
        print(f"rtnb token: cannot read the secret: {exc}", file=sys.stderr)
        return 2
    try:
        token = TokenAuthority(key).issue(
            tenant=args.tenant, user=args.user, role=args.role, ttl=args.ttl
        )
    except ValueError as exc:
        print(f"rtnb token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from .widgets.demo import main as demo_main  # JupyterLab: imported only for `rtnb demo`

        return demo_main(argv[1:], prog="rtnb demo")
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

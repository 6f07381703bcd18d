"""The ``rtnb`` command line.

``rtnb serve [--host H] [--port P] [--demo] [--data DIR [--fsync always|never]] [--chaos SPEC]`` runs the
reference server in the foreground, prints its URL and a demo token, and stops
cleanly on Ctrl-C. ``rtnb token --tenant T --user U --role R`` mints a token for
a server started with the same secret (``RTNB_SECRET``, or ``--data DIR``,
whose ``secret.key`` the server created). ``rtnb demo`` starts the server with
demo data and JupyterLab on ``notebooks/01_live_dashboard.ipynb`` (``make demo``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

DEMO_TOKEN_TTL = 24 * 3600.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtnb", description="rtnb: live data in Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the reference server in the foreground")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    s.add_argument("--demo", action="store_true", help="run the demo producers")
    s.add_argument("--demo-scale", type=float, default=1.0, help="multiply every demo rate")
    s.add_argument(
        "--tenants", default="acme,globex", help="demo tenants, comma-separated (acme,globex)"
    )
    s.add_argument("--data", metavar="DIR", help="persist logs in SQLite under DIR")
    s.add_argument(
        "--fsync",
        choices=("always", "never"),
        default="always",
        help="with --data: 'always' acknowledges a publish only once it is on disk (default); "
        "'never' writes behind every 0.2 s (a crash loses recent events; clients re-snapshot)",
    )
    s.add_argument(
        "--chaos", metavar="SPEC", help="faults, e.g. drop=0.01,duplicate=0.05,delay_ms=0-50"
    )
    s.add_argument("--heartbeat", type=float, default=None, help="heartbeat interval, seconds")
    s.add_argument("--retention", type=int, default=None, help="events kept per topic")
    s.add_argument("--log-level", default="info", help="rtnb log level (default info)")

    t = sub.add_parser("token", help="mint an access token")
    t.add_argument("--tenant", required=True)
    t.add_argument("--user", required=True)
    t.add_argument("--role", default="viewer", choices=("viewer", "operator", "admin"))
    t.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (3600)")
    t.add_argument("--data", metavar="DIR", help="use the secret of the server using DIR")

    # `rtnb demo ...` hands everything after `demo` to the widgets demo (see main).
    sub.add_parser("demo", help="reference server with demo data plus JupyterLab")
    return parser


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
    try:
        chaos = parse_spec(args.chaos) if args.chaos else None
        srv = serve(
            host=args.host,
            port=args.port,
            demo=demo,
            data=args.data,
            fsync=args.fsync,
            secret=os.environ.get("RTNB_SECRET") or None,
            chaos=chaos,
            **options,
        )
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"rtnb serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tenant = demo["tenants"][0] if isinstance(demo, dict) and demo["tenants"] else "acme"  # type: ignore[index]
    token = srv.issue_token(tenant=str(tenant), user="demo", role="operator", ttl=DEMO_TOKEN_TTL)
    print(f"rtnb reference server on {srv.url}  (WebSocket: {srv.ws_url})", flush=True)
    print(f"demo token (tenant {tenant}, role operator, 24 h):\n{token}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
        print("rtnb server stopped.", flush=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from .server.auth import TokenAuthority
    from .server.runner import SECRET_FILE

    secret = os.environ.get("RTNB_SECRET")
    key: bytes
    if secret:
        key = secret.encode()
    elif args.data and os.path.exists(os.path.join(args.data, SECRET_FILE)):
        with open(os.path.join(args.data, SECRET_FILE)) as f:
            key = bytes.fromhex(f.read().strip())
    else:
        print(
            "rtnb token: no secret; set RTNB_SECRET (as for 'rtnb serve') or pass --data DIR "
            "of a server started with --data",
            file=sys.stderr,
        )
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

        return demo_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

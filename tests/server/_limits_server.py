"""A reference server in a subprocess, for tests that measure or starve the process.

Run as ``python _limits_server.py [--nofile N] [--topic-bytes B] [config=value ...]``;
prints one JSON line ``{"url", "viewer", "admin"}`` and then answers each line on
stdin: ``stats`` → ``srv.stats()`` plus ``rss`` (bytes) as JSON; ``quit`` stops.
"""

from __future__ import annotations

import json
import resource
import sys


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> None:
    options: dict[str, object] = {}
    topic_bytes = 0
    args = iter(argv)
    for arg in args:
        if arg == "--nofile":
            soft = int(next(args))
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        elif arg == "--topic-bytes":
            topic_bytes = int(next(args))
        else:
            name, _, value = arg.partition("=")
            options[name] = json.loads(value)
    import rtnb
    from rtnb.server.runner import connection_cap

    srv = rtnb.serve(**options)  # type: ignore[arg-type]
    blob = "x" * 4000
    srv.publish_many(
        "big",
        [("x.set", f"e{i}", {"blob": blob}) for i in range(max(1, topic_bytes // 4096))],
        tenant="acme",
    )
    print(
        json.dumps(
            {
                "url": srv.url,
                "viewer": srv.issue_token(tenant="acme", user="viewer"),
                "admin": srv.issue_token(tenant="acme", user="root", role="admin"),
                "cap": connection_cap(srv.config),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps({**srv.stats(), "rss": rss_bytes()}), flush=True)
        elif line.strip() == "quit":
            break
    srv.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

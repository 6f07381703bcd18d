"""The one URL normaliser: what ``rtnb.connect`` and every transport call a server's URL.

An rtnb server has one base URL, ``http(s)://host:port[/prefix]``; its WebSocket
endpoint is that base with ``ws(s)://`` and ``/ws``. Users may give either.
"""

from __future__ import annotations

_TO_HTTP = {"ws://": "http://", "wss://": "https://"}
_TO_WS = {"http://": "ws://", "https://": "wss://"}


def http_base_url(url: str) -> str:
    """The server's base URL: ``ws://h:p/ws`` → ``http://h:p``; ``http(s)://…`` kept.

    Surrounding whitespace and trailing slashes go. Raises ``ValueError`` naming
    what was expected for any other scheme.
    """
    u = url.strip().rstrip("/")
    lower = u.lower()
    for ws, http in _TO_HTTP.items():
        if lower.startswith(ws):
            u = http + u[len(ws) :]
            if u.endswith("/ws"):
                u = u[: -len("/ws")].rstrip("/")
            return u
    if lower.startswith(tuple(_TO_WS)) and len(u) > len(u.split("://", 1)[0]) + 3:
        return u
    raise ValueError(f"expected an http(s):// or ws(s):// URL of an rtnb server, got {url!r}")


def ws_url(url: str) -> str:
    """The server's WebSocket endpoint: ``http://h:p`` → ``ws://h:p/ws`` (any form in)."""
    base = http_base_url(url)
    for http, ws in sorted(_TO_WS.items(), key=lambda kv: -len(kv[0])):
        if base.lower().startswith(http):
            return ws + base[len(http) :] + "/ws"
    raise AssertionError(base)  # pragma: no cover - http_base_url returned http(s)

"""The one URL normaliser: what ``rtnb.connect`` and every transport call a server's URL.

An rtnb server has one base URL, ``http(s)://host:port[/prefix]``; its WebSocket
endpoint is that base with ``ws(s)://`` and ``/ws``. Users may give either.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

_TO_HTTP = {"ws://": "http://", "wss://": "https://"}
_TO_WS = {"http://": "ws://", "https://": "wss://"}
#: Query parameter names refused as carrying a secret, normalised (see :func:`secret_param`).
_SECRET_PARAMS = frozenset(
    {"token", "accesstoken", "idtoken", "jwt", "bearer", "authorization", "auth", "cursor"}
    | {"replayfrom", "replaytoken", "lasteventid"}
)
_NAME_NOISE = re.compile(r"[^0-9a-z]")


def secret_param(name: str) -> bool:
    """Whether a query parameter name looks like one that carries a token or cursor.

    Matched after normalising, since a fixed list of spellings is easy to miss:
    percent-decoded until stable (``access%255Ftoken``), NFKC-normalised
    (fullwidth letters), casefolded, and everything but ASCII letters and digits
    dropped (``access_token%20``, ``Access-Token``, ``access_token[]`` all become
    ``accesstoken``).
    """
    for _ in range(8):
        decoded = urllib.parse.unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    name = unicodedata.normalize("NFKC", name).casefold()
    return _NAME_NOISE.sub("", name) in _SECRET_PARAMS


def http_base_url(url: str) -> str:
    """The server's base URL: ``ws://h:p/ws`` → ``http://h:p``; ``http(s)://…`` kept.

    Surrounding whitespace and trailing slashes go. Raises ``ValueError`` naming
    what was expected for any other scheme, and for a query string or fragment
    (without echoing it: it may hold a token).
    """
    u = url.strip()
    split = urllib.parse.urlsplit(u)
    if split.query or split.fragment:
        names = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if any(secret_param(k) for k in names):
            raise ValueError(
                "a token or replay cursor was given in the URL's query string; URLs end up in "
                "logs, so rtnb never sends one: pass the token as rtnb.connect(url, token=...) "
                "and give the server's URL alone (e.g. http://host:port)"
            )
        raise ValueError(
            "an rtnb server URL takes no query string or fragment "
            f"(got {split.scheme}://{split.hostname}{split.path}?…); give the server's base URL, "
            "e.g. http://host:port"
        )
    u = u.rstrip("/")
    lower = u.lower()
    for ws, http in _TO_HTTP.items():
        if lower.startswith(ws):
            rest = u[len(ws) :]
            # the endpoint's "/ws" is a path segment, never the host ("ws://ws" is host ws)
            if "/" in rest and rest.endswith("/ws"):
                rest = rest[: -len("/ws")].rstrip("/")
            return http + rest
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

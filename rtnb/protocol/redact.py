"""Keep tokens and replay cursors out of log lines, client and server alike.

At DEBUG, websockets logs every frame (``> TEXT '{"op":"authenticate","token":
"eyJ…' [218 bytes]``), shortened to its head *and tail*: the tail of an
``authenticate`` frame is the token's signature, which no JWT-shaped pattern
finds. httpx/httpcore log requests, and a misconfigured caller may put
secrets in a URL. :class:`Redact` rewrites such records; :func:`install`
puts it on every logger that logs them (a filter does not see records that
propagate from child loggers, so each logger is named). The client installs
it when a transport module is imported (``rtnb.transports.base``), the server
in ``rtnb.server.runner``: a client-only process is covered too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Final

_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}")
_SECRET_HEADERS: Final = ("authorization", "cookie", "set-cookie", "last-event-id")
#: Loggers a client process logs secrets-bearing records on.
CLIENT_LOGGERS: Final = (
    "websockets",
    "websockets.client",
    "websockets.protocol",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "rtnb",
    "rtnb.widgets",
)


def _is_frame(value: Any) -> bool:
    """A websockets ``Frame`` (duck-typed: this layer does not import websockets)."""
    return type(value).__name__ == "Frame" and hasattr(value, "opcode") and hasattr(value, "data")


class Redact(logging.Filter):
    """Rewrite a record so it carries no secret:

    * WebSocket frames are logged as their type and size only (frames carry access
      and replay tokens);
    * query strings are cut (``"WebSocket /ws?..." [accepted]``): rtnb never puts
      secrets in URLs, but a misconfigured caller might;
    * header values that carry credentials or cursors are replaced, as is anything
      shaped like a JWT that is left.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            out = []
            for a in args:
                if _is_frame(a):
                    frame: Any = a
                    a = f"{frame.opcode.name} [{len(frame.data)} bytes, content not logged]"
                elif isinstance(a, str) and "?" in a:
                    a = a.split("?", 1)[0] + "?<redacted>"
                out.append(a)
            if (
                len(out) == 2
                and isinstance(out[0], str)
                and out[0].lower() in _SECRET_HEADERS
                and record.msg in ("< %s: %s", "> %s: %s")
            ):
                out[1] = "<redacted>"
            record.args = tuple(out)
        message = record.getMessage()
        if "eyJ" in message:
            record.msg = _JWT.sub("<token redacted>", message)
            record.args = ()
        return True


#: The one filter instance (installing twice adds it once).
redact: Final = Redact()


def install(names: Iterable[str] = CLIENT_LOGGERS) -> None:
    """Put :data:`redact` on each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if redact not in logger.filters:
            logger.addFilter(redact)

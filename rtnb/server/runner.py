"""Running uvicorn in a background thread, the server secret, and log redaction.

Kept apart from ``handle.py`` (the public handle) so each stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Final

import uvicorn

from .app import ServerRuntime

__all__ = ["SECRET_FILE", "Incarnation", "resolve_secret", "until_started"]

#: The file under ``data=DIR`` holding the server secret (hex, mode 0600).
SECRET_FILE: Final = "secret.key"


def resolve_secret(secret: str | bytes | None, data: str | os.PathLike[str] | None) -> bytes:
    if secret is not None:
        return secret.encode() if isinstance(secret, str) else bytes(secret)
    if data is None:
        return secrets.token_bytes(32)
    path = Path(data) / SECRET_FILE
    Path(data).mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class _RedactQueries(logging.Filter):
    """Cut query strings out of uvicorn's log lines (``"WebSocket /ws?..." [accepted]``).

    rtnb never puts secrets in URLs, but a misconfigured client might; whatever
    it put there must not reach a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "?" in a for a in record.args
        ):
            record.args = tuple(
                a.split("?", 1)[0] + "?<redacted>" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


_redact = _RedactQueries()
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    if _redact not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_redact)


class Incarnation:
    """One uvicorn server on one loop thread."""

    def __init__(self, runtime: ServerRuntime, server: uvicorn.Server, sock: socket.socket):
        self.runtime = runtime
        self.server = server
        self.sock = sock
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="rtnb-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # SystemExit from a failed lifespan included
            self.error = exc
        finally:
            self.runtime.ready.set()  # unblock a waiting start() on failure
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


async def until_started(server: uvicorn.Server) -> None:
    while not server.started:
        await asyncio.sleep(0.005)

"""Running uvicorn in a background thread, the server secret, and log redaction.

Also the socket-level limits uvicorn does not offer: TCP_NODELAY on accepted
sockets, a deadline for completing a request's headers, and a connection cap
answered 503 with ``Retry-After`` (:class:`GuardedH11Protocol`).

Kept apart from ``handle.py`` (the public handle) so each stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import socket
import struct
import threading
from pathlib import Path
from typing import ClassVar, Final

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..protocol.redact import install, redact
from .app import ServerRuntime
from .config import FD_RESERVE, ServerConfig
from .hub import error_text

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


#: Listen queue, and the most sockets asyncio accepts in one go (uvicorn's
#: ``backlog``; its default 2048 would need as many spare file descriptors).
ACCEPT_BACKLOG: Final = 128
#: Seconds a connection answered 503 (over the connection cap) may take to read it.
SHED_LINGER: Final = 1.0
_redact = redact
#: Loggers whose records are redacted (filters do not apply to records that
#: propagate from child loggers, so every logger that logs is named).
REDACTED_LOGGERS: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "websockets",
    "websockets.server",
    "websockets.client",
    "websockets.protocol",
    "rtnb",
    "rtnb.server",
)
install(REDACTED_LOGGERS)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, created with ``IPPROTO_TCP`` so accepted sockets get TCP_NODELAY.

    asyncio turns Nagle's algorithm off on every accepted TCP socket — but only
    when the socket's ``proto`` is ``IPPROTO_TCP`` (``base_events._set_nodelay``),
    and ``socket.socket(AF_INET)`` leaves it 0, which accepted sockets inherit.
    With Nagle on, a response written in two pieces (h11 writes the headers,
    then the body) waits for the ACK of the first, which the client delays by
    ~40 ms: every keep-alive response paid that. :class:`GuardedH11Protocol`
    sets the option itself too, so this does not depend on how the socket was made.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def connection_cap(config: ServerConfig) -> int:
    """``max_connections``, lowered to what the file-descriptor limit allows:
    the soft ``RLIMIT_NOFILE`` minus :data:`FD_RESERVE` minus :data:`ACCEPT_BACKLOG`."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - platforms without rlimits
        return config.max_connections
    if soft == resource.RLIM_INFINITY:
        return config.max_connections
    # asyncio accepts up to ``backlog`` sockets per wake-up before any protocol
    # sees them, so that many descriptors must be free beyond the cap.
    return max(1, min(config.max_connections, soft - FD_RESERVE - ACCEPT_BACKLOG))


def _busy_response(retry_after: int) -> bytes:
    body = error_text("busy", "the server has too many open connections; retry later").encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"retry-after: {retry_after}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guards uvicorn lacks.

    * TCP_NODELAY on every accepted socket (see :func:`listen`);
    * a connection that has not completed a request's headers within
      ``request_timeout`` seconds of connecting — or of starting its next
      request — is closed (uvicorn's ``timeout_keep_alive`` only covers idle time
      *between* requests and is cancelled by the first byte, so a socket that
      sends nothing or half a request line would otherwise be held forever);
    * over the connection cap, a new connection is answered ``503`` with
      ``Retry-After`` and closed at once, before the process runs out of file
      descriptors (uvicorn's ``limit_concurrency`` answers 503 without a retry hint);
    * a response (an SSE stream, say) whose peer has stopped reading — the
      socket's send buffer full for ``write_timeout`` seconds — is aborted,
      so a consumer cut for being slow cannot keep its socket by never reading.

    :func:`guarded_protocol` binds it to one runtime.
    """

    runtime: ClassVar[ServerRuntime]
    cap: ClassVar[int]
    shedding: ClassVar[int] = 0  # connections answered 503 and not yet closed
    _deadline: asyncio.TimerHandle | None = None
    _deadline_cycle: object = None
    _stall: asyncio.TimerHandle | None = None
    _shed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self.connections) > self.cap:
            self._shed = True
            cls = type(self)
            cls.shedding += 1
            self.runtime.stats.count("connections_shed")
            transport.write(_busy_response(1))
            if cls.shedding > FD_RESERVE // 4:  # a flood: free the descriptor now
                transport.close()
                return
            # Half-close, and close when the peer answers or after SHED_LINGER:
            # closing at once with its request unread would reset the connection
            # and could destroy the 503 before the client reads it.
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
            self._deadline = self.loop.call_later(SHED_LINGER, transport.close)
            return
        self._arm()

    def eof_received(self) -> None:
        if self._shed:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._shed:
            self.transport.close()
            return
        idle = self.cycle is None or self.cycle.response_complete
        if idle and (self._deadline is None or self._deadline_cycle is not self.cycle):
            self._arm()  # a new request starts: its headers have request_timeout s
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        self._deadline = self._stall = None
        if self._shed:
            type(self).shedding -= 1
            self.connections.discard(self)
            return
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None and not self._shed:
            self._stall = self.loop.call_later(self.runtime.config.write_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        if not self.transport.is_closing() and self.transport.get_protocol() is self:
            self.runtime.stats.count("write_timeouts")
            # The peer stopped reading: reset the connection (SO_LINGER 0), so the
            # kernel drops the unsent data too instead of trickling it out.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline_cycle = self.cycle
        self._deadline = self.loop.call_later(self.runtime.config.request_timeout, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed already, or upgraded to a WebSocket (which has its auth timeout)
        if self.cycle is self._deadline_cycle:  # no request's headers completed since armed
            self.runtime.stats.count("request_timeouts")
            transport.close()


def guarded_protocol(runtime: ServerRuntime) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass bound to ``runtime`` (one per incarnation)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"runtime": runtime, "cap": connection_cap(runtime.config)},
    )


def uvicorn_config(app: Starlette, runtime: ServerRuntime, log_level: str) -> uvicorn.Config:
    """uvicorn's settings for one incarnation (the limits come from ``runtime.config``)."""
    config = runtime.config
    return uvicorn.Config(
        app,
        http=guarded_protocol(runtime),
        log_config=None,
        log_level=log_level,
        access_log=False,  # never log URLs; tokens are in headers, but be safe
        lifespan="on",
        ws_max_size=2 * config.max_frame_size,
        timeout_keep_alive=config.keep_alive_timeout,
        backlog=ACCEPT_BACKLOG,
        timeout_graceful_shutdown=3,
        server_header=False,
    )


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

"""The one small interface every transport implements.

A transport moves frames; it knows nothing of topics, ordering or state.
The driver creates one per connection attempt with two callbacks:

* ``on_frame(data, now)`` for every received frame (``str`` or ``bytes``),
  called on the runtime loop, in order (the HTTP transports may also be given
  ``on_frames(frames, now)``, the same for all the frames of one chunk);
* ``on_close(code, reason, retry_after)`` exactly once when the transport
  ends for any reason after :meth:`Transport.open` returned.

:meth:`Transport.open` raises :class:`TransportError` when the attempt fails;
its ``kind`` tells the connection machine whether the *server* is unreachable
(retry the same transport later) or this *transport* was rejected (e.g. a
proxy refused the WebSocket upgrade: fall back to the next one).
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..core.machine_table import FailureKind as FailureKind
from ..protocol.errors import RtnbError
from ..protocol.redact import install as install_redaction
from ..protocol.retry import parse_retry_after as parse_retry_after
from ..protocol.retry import retry_hint_in_reason as retry_hint_in_reason

# Tokens stay out of a client process's logs too (websockets logs frames at DEBUG).
install_redaction()

OnFrame = Callable[[Any, float], None]
#: ``on_frames(frames, now)``: the frames of one received chunk (same ``now``), in order;
#: the same as ``on_frame(f, now)`` for each, for less per frame
OnFrames = Callable[[list[Any], float], None]
OnClose = Callable[[int, str, "float | None"], None]

#: Seconds a transport may take to open before the attempt counts as failed: 10.
DEFAULT_OPEN_TIMEOUT: Final = 10.0
#: Bytes a WebSocket message may have at the socket (16 MiB); websockets closes
#: the connection (1009) past it. Frames over the protocol's own 1 MiB limit but
#: under this one are logged ``invalid`` by the pipeline and the stream goes on.
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: Characters one SSE line, or one event's data, may hold (4 MiB): past it the
#: stream is closed (1009) and the client reconnects. Above the 1 MiB frame
#: limit, so an oversized frame is logged ``invalid`` like on WebSocket.
DEFAULT_MAX_SSE_EVENT_SIZE: Final = 4 * 1024 * 1024
#: Bytes one long-poll response may have (64 MiB): past it the response is
#: abandoned unread, the transport closes (1009) and the client reconnects.
DEFAULT_MAX_POLL_RESPONSE_SIZE: Final = 64 * 1024 * 1024
#: Messages one long-poll response may carry (100,000: twice the reference server's
#: send queue, 50,000): past it the rest of the response is dropped unread and the
#: transport closes (1009), so 30 M tiny messages under the byte cap cost 100,000.
DEFAULT_MAX_POLL_MESSAGES: Final = 100_000
#: Seconds the runtime thread may spend delivering received frames before it yields
#: to other work (user calls, timers): 0.02.
YIELD_AFTER: Final = 0.02


class TransportError(RtnbError):
    """A connection attempt failed; ``kind`` says whose fault it was."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.code = code
        self.retry_after = retry_after


def network_cause(exc: BaseException, url: str) -> str:
    """What went wrong reaching ``url``, concretely: ``connection refused at host:port``,
    ``TLS handshake failed: is the server https?``, ... (never a token: URLs carry none).

    Looks through the exception's chain (httpx wraps the socket error).
    """
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme in ("https", "wss") else 80
    where = f"{parts.hostname}:{parts.port or default}"
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return f"connection refused at {where}: is the server running on that port?"
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            if parts.scheme in ("https", "wss"):
                return f"TLS handshake failed with {where}: is the server https? ({seen.__class__.__name__})"
            return f"TLS error with {where}: {seen.__class__.__name__}"
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve host {parts.hostname!r}"
        if isinstance(seen, TimeoutError) or type(seen).__name__.endswith("Timeout"):
            return f"no answer from {where} in time"
        if isinstance(seen, ConnectionResetError | BrokenPipeError):
            return f"connection reset by {where}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return f"cannot reach {where}: {type(exc).__name__}" + (f" ({text[:80]})" if text else "")


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportOptions:
    """Settings shared by all transports (keyword-only, like ``httpx.Timeout``)."""

    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    #: receive limit at the socket; the pipeline enforces the protocol's own limit
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: long-poll wait for the polling transport, seconds
    poll_wait: float = 10.0
    #: longest SSE line and largest SSE event data, in characters
    max_sse_event_size: int = DEFAULT_MAX_SSE_EVENT_SIZE
    #: largest long-poll response body, in bytes
    max_poll_response_size: int = DEFAULT_MAX_POLL_RESPONSE_SIZE
    #: most messages in one long-poll response
    max_poll_messages: int = DEFAULT_MAX_POLL_MESSAGES


class Transport(Protocol):
    kind: str

    async def open(self, token: str) -> None: ...

    async def send(self, frame: Any) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Yielder:
    """When a receive loop should yield to the event loop: after :data:`YIELD_AFTER`
    seconds of work since it last did (a flood of buffered frames never yields by
    itself, and every call into the client waits on this thread). ``due()`` is one
    clock read."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.perf_counter()

    def due(self) -> bool:
        t = time.perf_counter()
        if t - self._since >= YIELD_AFTER:
            self._since = t
            return True
        return False


def now() -> float:
    """Wall-clock receive time (envelope lag is measured against server time)."""
    return time.time()

"""WebSocket transport over the ``websockets`` asyncio client.

Decisions:

* websockets' own keepalive pings are off: liveness is the connection
  machine's job (application heartbeats + ping RTT), so a silent network cut
  and a stalled server look the same to it — the thing users care about.
* The socket's receive limit is generous (16 MiB); the *protocol's* 1 MiB limit
  is enforced by the pipeline, so an oversized frame is logged ``invalid``
  and the connection survives (websockets would close it with 1009).
* ``permessage-deflate`` is off: frames are small JSON on loopback or LAN and
  compression costs more CPU than it saves (the end-to-end benchmark decides).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..protocol.codec import encode_str
from ..protocol.urls import ws_url
from .base import (
    FailureKind,
    OnClose,
    OnFrame,
    TransportError,
    TransportOptions,
    Yielder,
    network_cause,
    now,
    parse_retry_after,
    retry_hint_in_reason,
)

#: Seconds ``close()`` waits for the peer's close frame before dropping the TCP
#: connection (RFC 6455 §7.1.1 lets the client give up): 1. A peer flooding us
#: never answers; ``conn.close()`` must still return within 2 s.
CLIENT_CLOSE_TIMEOUT = 1.0


class WebSocketTransport:
    kind = "websocket"

    def __init__(
        self, base_url: str, on_frame: OnFrame, on_close: OnClose, options: TransportOptions
    ) -> None:
        self.url = ws_url(base_url)
        self._on_frame = on_frame
        self._on_close = on_close
        self._options = options
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self, token: str) -> None:
        """Connect; the token goes in the first frame (sent by the machine), never the URL."""
        try:
            self._ws = await connect(
                self.url,
                open_timeout=self._options.open_timeout,
                ping_interval=None,
                max_size=self._options.max_message_size,
                compression=None,
                close_timeout=CLIENT_CLOSE_TIMEOUT,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = parse_retry_after(exc.response.headers.get("Retry-After"), now())
            kind: FailureKind = "unreachable" if status in (429, 502, 503, 504) else "rejected"
            raise TransportError(
                kind, f"WebSocket upgrade refused with HTTP {status}", code=status, retry_after=hint
            ) from None
        except InvalidHandshake as exc:
            raise TransportError("rejected", f"WebSocket handshake failed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise TransportError("unreachable", network_cause(exc, self.url)) from None
        self._reader = asyncio.get_running_loop().create_task(self._read(self._ws))

    async def _read(self, ws: ClientConnection) -> None:
        on_frame = self._on_frame
        code, reason = 1006, "connection lost"
        too_big = False
        due = Yielder().due
        try:
            async for message in ws:
                on_frame(message, now())
                if due():
                    # a flood of buffered messages never yields by itself: let
                    # timers, gap checks and user calls in every few milliseconds
                    await asyncio.sleep(0)
        except ConnectionClosed as exc:
            # we closed with 1009: a message over the socket limit (never buffered whole)
            too_big = exc.sent is not None and exc.sent.code == 1009
        except Exception as exc:  # a bug in a callback must not go unreported
            code, reason = 1011, f"receive loop failed: {type(exc).__name__}: {exc}"
        finally:
            if too_big:
                limit = self._options.max_message_size
                code, reason = 1009, f"message over {limit:,} bytes (max_message_size)"
            elif ws.close_code is not None:
                code, reason = ws.close_code, ws.close_reason or ""
            self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(code, reason, retry_hint_in_reason(reason))

    async def send(self, frame: Any) -> None:
        ws = self._ws
        if ws is None or self._closed:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_str(frame))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code, reason), CLIENT_CLOSE_TIMEOUT)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._finish(code, reason)

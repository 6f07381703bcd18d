"""Server-Sent Events transport: an httpx stream parsed by rtnb's ``SSEParser``.

``GET /sse?topic=a&topic=b`` with the token in ``Authorization`` and the
resume cursor in ``Last-Event-ID``. Every SSE message's ``data`` is one JSON
frame (events as plain messages, other frames as events named by their op),
so the session feeds it to the pipeline like a WebSocket frame. A change of
topic set (a new subscription, or a re-subscribe after a gap) restarts the
stream internally from the client's own per-topic tokens.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import msgspec

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.sse import SSEParser
from .base import TransportError, now
from .http import HttpTransportBase, _json, failure_for

__all__ = ["SSETransport"]


class SSETransport(HttpTransportBase):
    kind = "sse"

    async def open(self, token: str) -> None:
        self._token = token
        if not self._topics:
            # Nothing to stream yet: the first subscription opens the stream
            # (and is where the server first judges the token).
            return
        response = await self._connect()
        self._reader = asyncio.get_running_loop().create_task(self._read(response))

    async def _connect(self) -> httpx.Response:
        client = self._client_or_new()
        request = client.build_request(
            "GET",
            "/sse",
            params=self._params(),
            headers={**self._headers(), "Accept": "text/event-stream", "Cache-Control": "no-cache"},
        )
        try:
            response = await asyncio.wait_for(
                client.send(request, stream=True), self._options.open_timeout
            )
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            await self._close_client()
            raise TransportError(
                "unreachable", f"cannot reach {self.base}/sse: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            await self._close_client()
            raise failure_for(response, "SSE stream")
        return response

    async def _read(self, response: httpx.Response) -> None:
        # A "data: " line carries one whole frame: a frame at the limit must fit.
        parser = SSEParser(max_line_length=DEFAULT_MAX_FRAME_SIZE + len("data: "))
        on_frame = self._on_frame
        code, reason = 1006, "SSE stream ended"
        try:
            async for chunk in response.aiter_raw():
                for ev in parser.feed(chunk):
                    if ev.type == "error":
                        with contextlib.suppress(msgspec.MsgspecError):
                            self._note_error(_json.decode(ev.data))
                    on_frame(ev.data, now())
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as exc:
            reason = f"SSE stream broken: {type(exc).__name__}"
        except Exception as exc:
            code, reason = 1011, f"SSE receive loop failed: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()
        self._finish(code, reason)

    async def _topics_changed(self) -> None:
        """Restart the stream with the new topic set (not a connection loss)."""
        await self._stop_reader()
        if self._closed or not self._topics:
            return
        try:
            response = await self._connect()
        except TransportError as exc:
            self._finish(exc.code or 1006, str(exc))
            return
        self._reader = asyncio.get_running_loop().create_task(self._read(response))

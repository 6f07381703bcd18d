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

from ..protocol.errors import ErrorCode
from ..protocol.sse import SSEEventTooLarge, SSELineTooLong, SSEParser
from .base import TransportError, Yielder, network_cause, now
from .http import HttpTransportBase, _json, failure_for


class SSETransport(HttpTransportBase):
    kind = "sse"
    _ended_because = ""  # a stream-level error the server sent before ending it

    async def open(self, token: str) -> None:
        self._token = token
        if not self._topics:
            # Nothing to stream yet: the first subscription opens the stream; a
            # probe proves meanwhile that the server is there and takes the token.
            await self._probe()
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
            raise TransportError("unreachable", network_cause(exc, self.base)) from None
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            await self._close_client()
            raise failure_for(response, "SSE stream")
        return response

    async def _read(self, response: httpx.Response) -> None:
        limit = self._options.max_sse_event_size
        parser = SSEParser(max_line_length=limit, max_data_length=limit)
        code, reason = 1006, "SSE stream ended"
        self._ended_because = ""
        due = Yielder().due
        try:
            async for chunk in response.aiter_raw():
                self._dispatch(parser.feed_tuples(chunk))
                if due():  # let user calls and timers in (a chunk is at most 64 KiB)
                    await asyncio.sleep(0)
            if self._ended_because:  # the server said why it ended the stream
                code, reason = 1013, f"SSE stream ended: {self._ended_because}"
        except asyncio.CancelledError:
            raise
        except (SSELineTooLong, SSEEventTooLarge) as exc:
            # The stream cannot be resynchronised: reconnect (the cursor is the
            # client's own, so nothing applied is lost). Bounded: the parser
            # never holds more than ``limit`` characters of a line or an event.
            if isinstance(exc, SSEEventTooLarge):
                self._dispatch(exc.events)
            what = "line" if isinstance(exc, SSELineTooLong) else "event"
            code, reason = 1009, f"SSE {what} over {limit:,} characters (max_sse_event_size)"
        except httpx.HTTPError as exc:
            reason = f"SSE stream broken: {type(exc).__name__}"
        except Exception as exc:
            code, reason = 1011, f"SSE receive loop failed: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()
        self._finish(code, reason)

    def _dispatch(self, events: list[tuple[str, str, str]]) -> None:
        """Hand a chunk's events (``(type, data, id)``) to the session: a chunk of event
        frames alone (the common case) at once, any other one by one."""
        if not events:
            return
        at = now()  # the events of one chunk arrived together
        frames = [ev[1] for ev in events if ev[0] == "message"]  # event frames
        if len(frames) == len(events):
            self._on_frames(frames, at)
            return
        on_frame = self._on_frame
        for kind, data, _ in events:
            if kind == "error":
                with contextlib.suppress(msgspec.MsgspecError, RecursionError):
                    frame = _json.decode(data)
                    self._note_error(frame)
                    if isinstance(frame, dict) and frame.get("code") == ErrorCode.SLOW_CONSUMER:
                        # its last event; the message carries the retry hint
                        self._ended_because = str(frame.get("message", ""))[:300]
            on_frame(data, at)

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

"""Long-polling transport: ``GET /poll`` in a loop.

Each request carries the token (``Authorization``) and the client's resume
cursor (``Last-Event-ID``, built from the tokens it applied) and returns
``{"messages": [...], "cursor": ...}`` — the same frames as on WebSocket —
after at most ``wait`` seconds. The wait stays below the heartbeat deadline
so an idle but healthy server never looks dead.

The server answers ``subscribed`` only when a topic starts fresh or its
replay is refused; a poll that resumes cleanly carries no confirmation. The
first response after the topic set changes therefore confirms every topic it
did not mention (``replay: "complete"``), so the machine can report
SUBSCRIBED honestly: the server *has* accepted the request for those topics.
"""

from __future__ import annotations

import asyncio

import msgspec

from ..protocol.codec import encode
from ..protocol.frames import Subscribed
from .base import TransportError, now
from .http import HttpTransportBase, _response

__all__ = ["PollingTransport"]


class PollingTransport(HttpTransportBase):
    kind = "polling"

    _unconfirmed: set[str]

    async def open(self, token: str) -> None:
        self._token = token
        self._unconfirmed = set(self._topics)
        if not self._topics:
            await self._probe()  # the first subscription starts polling
            return
        # The first poll does not wait: it proves auth and topics, and returns
        # the snapshot or replay at once.
        body = await self._first_poll()
        # Delivered by the reader task, i.e. after the driver has been told the
        # transport is open (frames before that would be out of place).
        self._reader = asyncio.get_running_loop().create_task(self._loop(first=body))

    def _deliver(self, body: bytes) -> None:
        try:
            data = _response.decode(body)
            messages = data["messages"]
        except (msgspec.MsgspecError, KeyError, TypeError, RecursionError):
            self._on_frame(body, now())  # let the pipeline log it as invalid
            return
        received = now()
        mentioned: set[str] = set()
        for msg in messages:
            if isinstance(msg, dict) and msg.get("op") in ("subscribed", "error"):
                topic = msg.get("topic")
                if isinstance(topic, str):
                    mentioned.add(topic)
                if msg.get("op") == "error":
                    self._note_error(msg)
            self._on_frame(encode(msg), received)
        for topic in sorted(self._unconfirmed - mentioned):
            self._on_frame(encode(Subscribed(topic=topic, replay="complete")), received)
        self._unconfirmed.clear()

    async def _loop(self, first: bytes | None = None) -> None:
        code, reason = 1006, "polling stopped"
        try:
            if first is not None:
                self._deliver(first)
            while not self._closed:
                body = await self._poll(wait=self._options.poll_wait)
                if self._closed:
                    break
                self._deliver(body)
        except asyncio.CancelledError:
            raise
        except TransportError as exc:
            code, reason = exc.code or 1006, str(exc)
            if exc.retry_after is not None:
                reason += f"; retry_after={exc.retry_after:g}"
        except Exception as exc:
            code, reason = 1011, f"polling loop failed: {type(exc).__name__}: {exc}"
        self._finish(code, reason)

    async def _topics_changed(self) -> None:
        """Interrupt the current long poll and start again with the new topic set."""
        await self._stop_reader()
        if self._closed or not self._topics:
            return
        self._unconfirmed = set(self._topics)
        self._reader = asyncio.get_running_loop().create_task(self._loop())

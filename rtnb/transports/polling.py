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

A response is read one message at a time (:func:`poll_messages`) and handed to
the session as it is read, yielding to the loop every few milliseconds: one
response of 30 M tiny messages under the 64 MiB byte cap must not hold the
runtime thread (every user call waits on it). Past ``max_poll_messages`` the
rest is dropped unread and the transport closes (1009), as past the byte cap.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

from ..protocol.codec import encode
from ..protocol.frames import Subscribed
from .base import TransportError, Yielder, now
from .http import HttpTransportBase

_scan = json.JSONDecoder().raw_decode
_space = re.compile(r"[ \t\n\r]*")


def poll_messages(text: str) -> Iterator[tuple[Any, str]]:
    """``(message, its JSON text)`` for each element of a poll response's
    ``messages`` array, parsed one at a time (the C scanner of :mod:`json`), so a
    consumer may stop or pause anywhere. Raises ``ValueError`` (or
    ``RecursionError``) on a body that is not ``{"messages": [...], ...}``."""

    def skip(at: int) -> int:
        m = _space.match(text, at)
        return m.end() if m is not None else at

    pos = skip(0)
    if text[pos : pos + 1] != "{":
        raise ValueError("a poll response is a JSON object")
    pos = skip(pos + 1)
    found = False
    while text[pos : pos + 1] != "}":
        key, pos = _scan(text, pos)
        pos = skip(pos)
        if not isinstance(key, str) or text[pos : pos + 1] != ":":
            raise ValueError("malformed poll response")
        pos = skip(pos + 1)
        if key == "messages" and text[pos : pos + 1] == "[":
            found = True
            pos = skip(pos + 1)
            while text[pos : pos + 1] != "]":
                start = pos
                msg, pos = _scan(text, pos)
                yield msg, text[start:pos]
                pos = skip(pos)
                if text[pos : pos + 1] == ",":
                    pos = skip(pos + 1)
                elif text[pos : pos + 1] != "]":
                    raise ValueError("malformed messages array")
            pos += 1
        else:
            _, pos = _scan(text, pos)
        pos = skip(pos)
        if text[pos : pos + 1] == ",":
            pos = skip(pos + 1)
        elif text[pos : pos + 1] != "}":
            raise ValueError("malformed poll response")
    if not found:
        raise ValueError("a poll response has a messages array")


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

    async def _deliver(self, body: bytes) -> None:
        """Hand the response's messages to the session as they are parsed, yielding
        every few milliseconds; past ``max_poll_messages`` raise (1009)."""
        received = now()
        mentioned: set[str] = set()
        cap = self._options.max_poll_messages
        due = Yielder().due
        count = 0
        try:
            for msg, text in poll_messages(body.decode("utf-8")):
                count += 1
                if count > cap:
                    raise TransportError(
                        "unreachable",
                        f"poll response over {cap:,} messages (max_poll_messages)",
                        code=1009,
                    )
                if isinstance(msg, dict) and msg.get("op") in ("subscribed", "error"):
                    topic = msg.get("topic")
                    if isinstance(topic, str):
                        mentioned.add(topic)
                    if msg.get("op") == "error":
                        self._note_error(msg)
                self._on_frame(text, received)
                if due():
                    await asyncio.sleep(0)
                    if self._closed:
                        return
        except (ValueError, RecursionError):
            self._on_frame(body, now())  # let the pipeline log it as invalid
            return
        for topic in sorted(self._unconfirmed - mentioned):
            self._on_frame(encode(Subscribed(topic=topic, replay="complete")), received)
        self._unconfirmed.clear()

    async def _loop(self, first: bytes | None = None) -> None:
        code, reason = 1006, "polling stopped"
        try:
            if first is not None:
                await self._deliver(first)
            while not self._closed:
                body = await self._poll(wait=self._options.poll_wait)
                if self._closed:
                    break
                await self._deliver(body)
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

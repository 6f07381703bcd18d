"""What the SSE and polling transports share: the HTTP client, auth, cursors, mutations.

Both carry the access token in ``Authorization: Bearer`` and the resume
position in ``Last-Event-ID`` — never in the URL, which ends up in logs. The
position is built by the client from the last replay token it *applied* per
topic (``tokens(topic)``), not from what the server last sent: an event that
was received but is still buffered behind a gap is asked for again, and a
targeted re-subscribe after a gap is just a new request from an older token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from ..protocol.codec import encode
from ..protocol.errors import TOPIC_REFUSALS
from ..protocol.frames import Authenticate, Mutate, Subscribe, Unsubscribe
from ..protocol.urls import http_base_url
from .base import (
    FailureKind,
    OnClose,
    OnFrame,
    OnFrames,
    TransportError,
    TransportOptions,
    network_cause,
    now,
    parse_retry_after,
    retry_hint_in_reason,
)

TokenLookup = Callable[[str], "str | None"]
#: topic-level error codes after which a topic is not requested again
_REFUSALS = TOPIC_REFUSALS


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every SSE/polling client of the process: httpx builds a new
    one per ``AsyncClient`` by default, loading the CA bundle (~20-50 ms of CPU) at
    every reconnect, even for ``http://`` URLs. It is httpx's own default context."""
    return httpx.create_ssl_context(trust_env=False)


_json = msgspec.json.Decoder()
_response = msgspec.json.Decoder(dict[str, Any])
#: bytes a probe's answer may have (``authenticated`` and a heartbeat: a few hundred)
PROBE_MAX_BYTES = 64 * 1024


def base_http_url(url: str) -> str:
    """``ws://h:p/ws`` → ``http://h:p``; an http(s) base URL is kept (see :mod:`rtnb.protocol.urls`)."""
    return http_base_url(url)


def failure_for(response: httpx.Response, what: str) -> TransportError:
    """Classify a refused HTTP request for the connection machine."""
    status = response.status_code
    hint = parse_retry_after(response.headers.get("Retry-After"), now())
    kind: FailureKind
    if status == 401:
        kind = "unauthorized"
    elif status == 403:
        kind = "forbidden"
    elif status in (408, 429, 502, 503, 504) or status >= 500:
        kind = "unreachable"
    else:
        kind = "rejected"
    text = f"{what} refused with HTTP {status}"
    if status in (401, 403):  # the server says why (rtnb: {"code", "message"}); never a token
        try:
            body = response.json()
            text = f"{body['code']}: {str(body['message'])[:160]}"
        except (ValueError, KeyError, TypeError):
            pass
    return TransportError(kind, text, code=status, retry_after=hint)


class HttpTransportBase:
    """Token, topic set, cursor and ``POST /mutate`` for the HTTP transports."""

    kind = "http"

    def __init__(
        self,
        base_url: str,
        on_frame: OnFrame,
        on_close: OnClose,
        options: TransportOptions,
        subscriptions: tuple[Subscribe, ...],
        tokens: TokenLookup,
        *,
        on_frames: OnFrames | None = None,
    ) -> None:
        self.base = base_http_url(base_url)
        self._on_frame = on_frame
        #: the frames of one chunk at once (``on_frame`` for each when not given)
        self._on_frames: OnFrames = on_frames or self._each
        self._on_close = on_close
        self._options = options
        self._tokens = tokens
        self._topics: list[str] = []
        self._resume: dict[str, str] = {}
        for sub in subscriptions:
            self._add_topic(sub)
        self._token = ""
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def _each(self, frames: list[Any], at: float) -> None:
        on_frame = self._on_frame
        for frame in frames:
            on_frame(frame, at)

    # -- state shared with the session ---------------------------------------------

    def set_token(self, token: str) -> None:
        """Use ``token`` from the next request on."""
        self._token = token

    def _add_topic(self, sub: Subscribe) -> None:
        if sub.topic not in self._topics:
            self._topics.append(sub.topic)
        if sub.replay_from is not None:
            self._resume[sub.topic] = sub.replay_from

    def _note_error(self, frame: Any) -> None:
        """Stop asking for a topic the server refused (as the machine stops re-subscribing)."""
        if isinstance(frame, dict) and frame.get("code") in _REFUSALS:
            topic = frame.get("topic")
            if isinstance(topic, str) and topic in self._topics:
                self._topics.remove(topic)

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}"}
        cursor = self._cursor()
        if cursor:
            headers["Last-Event-ID"] = cursor
        return headers

    def _cursor(self) -> str:
        parts = []
        for topic in self._topics:
            token = self._resume.pop(topic, None) or self._tokens(topic)
            if token:
                parts.append(token)
        return ".".join(parts)

    def _params(self, **extra: Any) -> list[tuple[str, Any]]:
        return [("topic", t) for t in self._topics] + list(extra.items())

    def _client_or_new(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base,
                timeout=httpx.Timeout(self._options.open_timeout, read=None),
                trust_env=False,
                verify=_tls(),
            )
        return self._client

    # -- requests -------------------------------------------------------------------

    async def _poll(self, wait: float, probe: bool = False) -> bytes:
        """``GET /poll`` for the current topics and cursor; the body, read up to
        ``max_poll_response_size`` bytes (:data:`PROBE_MAX_BYTES` for a probe): an
        endless body must not grow the client."""
        client = self._client_or_new()
        limit = PROBE_MAX_BYTES if probe else self._options.max_poll_response_size
        what = "connection check" if probe else "poll"
        try:
            async with client.stream(
                "GET",
                "/poll",
                params=self._params(wait=f"{wait:g}"),
                headers=self._headers(),
                timeout=httpx.Timeout(self._options.open_timeout + wait),
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise failure_for(resp, what)
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        cap = "a probe's answer" if probe else "max_poll_response_size"
                        raise TransportError(
                            "unreachable",
                            f"{what} response over {limit:,} bytes ({cap})",
                            code=1009,
                        )
        except (httpx.HTTPError, OSError) as exc:
            raise TransportError("unreachable", network_cause(exc, self.base)) from None
        return bytes(body)

    async def _probe(self) -> None:
        """Opened with no topic: a ``GET /poll`` naming none proves the server is there
        and takes the token (or raises why not), so the connection never reports
        ``subscribed`` on the strength of no request at all. Its ``authenticated``
        frame (identity, heartbeat interval) is delivered once ``open`` has returned."""
        body = await self._first_poll(probe=True)
        asyncio.get_running_loop().call_soon(self._deliver_probe, body)

    async def _first_poll(self, probe: bool = False) -> bytes:
        """The poll that opens the transport: on failure, its HTTP client is closed
        here (a transport that failed to open is dropped, never closed)."""
        try:
            return await self._poll(wait=0.0, probe=probe)
        except BaseException:
            await self._close_client()
            raise

    def _deliver_probe(self, body: bytes) -> None:
        if self._closed:
            return
        try:
            messages = _response.decode(body)["messages"]
        except (msgspec.MsgspecError, KeyError, TypeError, RecursionError):
            self._on_frame(body, now())  # let the pipeline log it as invalid
            return
        received = now()
        for msg in messages if isinstance(messages, list) else ():
            self._on_frame(encode(msg), received)

    # -- frames from the machine ----------------------------------------------------

    async def send(self, frame: Any) -> None:
        if isinstance(frame, Authenticate):
            self._token = frame.token
        elif isinstance(frame, Subscribe):
            self._add_topic(frame)
            await self._topics_changed()
        elif isinstance(frame, Unsubscribe):
            if frame.topic in self._topics:
                self._topics.remove(frame.topic)
                await self._topics_changed()
        elif isinstance(frame, Mutate):
            await self._mutate(frame)
        # Ping: over HTTP the server's heartbeats are the liveness signal.

    async def _topics_changed(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _mutate(self, frame: Mutate) -> None:
        """``POST /mutate``; a refusal is fed back as the frame the server answered.

        The confirming event arrives on the stream like any other, so a 200
        response is not fed (it would be a duplicate).
        """
        client = self._client_or_new()
        try:
            resp = await client.post(
                "/mutate",
                content=encode(frame),
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/json",
                },
            )
        except httpx.HTTPError:
            return  # the ledger's timeout resolves it
        if resp.status_code >= 400 and resp.content:
            self._on_frame(resp.content, now())

    _reader: asyncio.Task[None] | None = None

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._stop_reader()
        await self._close_client()
        self._finish(code, reason)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _finish(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(code, reason, retry_hint_in_reason(reason))

"""The WebSocket transport, ``/ws`` (DESIGN.md §3).

Bad-input policy — what the server does with frames it cannot use:

* Before authentication, anything but a valid ``authenticate`` frame ends the
  connection: ``error`` then close 4401 for a valid frame sent too early
  (``unauthenticated``) or a refused token, 4400 for garbage. No ``authenticate``
  within ``auth_timeout`` (5 s): ``error {code: "auth_timeout"}`` and 4400 —
  a protocol violation, not a refused token: a client that lost its first
  frame in a network cut must back off and retry, not conclude that a fresh
  token is refused too and give up (what 4401 means to rtnb's client).
* After authentication a bad frame is *recoverable*: malformed JSON, wrong
  types, an unknown ``op``, a binary frame (the protocol is JSON text) or a
  frame over ``max_frame_size`` (1 MiB) is answered with ``error {code:
  "bad_frame" | "frame_too_large"}`` naming the JSON path, and the connection
  stays up. More than ``max_bad_frames`` (10) within a minute is persistent
  abuse: close 4400. Frames above twice the limit are refused by the WebSocket
  layer itself (close 1009, RFC 6455 "message too big") before being buffered.
* More inbound frames than ``rate_limit`` allows, or more ``snapshot`` and
  ``subscribe`` frames than ``snapshot_rate`` allows (each builds a snapshot or
  a replay): close 4429 with the retry hint in the reason (``"rate limited;
  retry_after=0.5"``).
* Frames nested deeper than the decoder allows are ``bad_frame`` like any other
  malformed frame; the read loop goes on.
* A consumer's send queue is bounded by ``send_queue_bytes`` (8 MiB) and
  ``send_queue_limit`` frames. A replay is not pushed whole: it is read from the
  log as the queue drains (``catchup.py``), and a live topic whose events would
  pass three quarters of a cap falls behind and is read the same way, on the same
  connection, so a client behind by more than the queue catches up as fast as it
  reads. One that falls further behind than the retention is cut (close 1013
  ``slow consumer``), as is one whose non-event frames pass a cap.
* More than ``max_connections_per_identity`` (64) connections authenticated as one
  (tenant, user), counting SSE streams and HTTP requests being answered too:
  ``error {code: "too_many_connections"}``, close 4429 with a retry hint.
* A refused topic is not a connection error: ``error {code: "unknown_topic" |
  "forbidden" | "too_many_subscriptions", topic}``; the connection stays up.
* Re-authenticating in-band refreshes the token; it may not switch tenant or
  user (``error {code: "forbidden"}``, close 4403).

Nothing here logs a frame's content: frames carry tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from starlette.websockets import WebSocket

from ..protocol.codec import encode_str
from ..protocol.errors import ErrorCode, FrameTooLarge, InvalidFrame
from ..protocol.frames import (
    Authenticate,
    Authenticated,
    Mutate,
    Ping,
    Pong,
    ServerBound,
    SnapshotRequest,
    Subscribe,
    Unsubscribe,
)
from ..protocol.urls import secret_param
from .app import ServerRuntime
from .auth import AuthError
from .hub import TopicError, error_text
from .limits import IDENTITY_RETRY_AFTER, Strikes, TokenBucket, retry_reason
from .mutations import MutationOutcome
from .session import CLOSE_SLOW_CONSUMER, Session, now
from .snapshots import SnapshotStream
from .topiclog import Fetched

logger = logging.getLogger("rtnb.server")

#: Seconds allowed for queued frames and the close frame to go out when closing.
CLOSE_TIMEOUT: Final = 2.0
_TOKEN_IN_URL: Final = "token_in_url: send the token in the authenticate frame, never in the URL"
_OPS = "authenticate, subscribe, unsubscribe, snapshot, ping, mutate"


async def endpoint(websocket: WebSocket) -> None:
    runtime: ServerRuntime = websocket.app.state.runtime
    await websocket.accept()
    if any(secret_param(k) for k in websocket.query_params):
        # The same guard as HTTP's (the URL is already in access logs and proxies'
        # logs): refuse, say why and what to do, never echo the value.
        runtime.stats.count("protocol_closes")
        await websocket.close(4400, _TOKEN_IN_URL)
        return
    retry = runtime.admission.try_admit()
    if retry is not None:
        runtime.stats.count("admissions_shed")
        await websocket.close(4429, retry_reason("server busy", retry))
        return
    runtime.stats.count("connections")
    await _Connection(runtime, websocket).run()


def _describe(exc: InvalidFrame) -> str:
    """What was wrong with a frame, without quoting it (frames carry tokens)."""
    if exc.reason.startswith("malformed JSON"):
        return "$: malformed JSON; send one JSON object per text frame"
    if exc.path == "$.op" or "field `op`" in exc.reason or "field op" in exc.reason:
        return f"$.op: unknown or missing op; expected one of {_OPS}"
    return f"{exc.path}: {exc.reason}"


class _Connection:
    def __init__(self, runtime: ServerRuntime, websocket: WebSocket) -> None:
        config = runtime.config
        self.rt = runtime
        self.ws = websocket
        self.session = Session(
            "ws", config.send_queue_limit, runtime.chaos, config.send_queue_bytes
        )
        self.session.on_kill = asyncio.Event()
        self.session.on_behind = lambda: runtime.stats.count("fell_behind")
        self.bucket = TokenBucket(*config.rate_limit) if config.rate_limit else None
        self.snapshots = TokenBucket(*config.snapshot_rate) if config.snapshot_rate else None
        self.strikes = Strikes(config.max_bad_frames)
        self._timer: asyncio.TimerHandle | None = None
        self._claimed: tuple[str, str] | None = None  # counted for this identity

    async def run(self) -> None:
        session, hub = self.session, self.rt.hub
        assert session.on_kill is not None
        hub.attach(session)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.rt.config.auth_timeout, self._auth_timeout)
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        killed = asyncio.create_task(session.on_kill.wait())
        try:
            await asyncio.wait({reader, writer, killed}, return_when=asyncio.FIRST_COMPLETED)
            if session.killed:
                if session.close_code == CLOSE_SLOW_CONSUMER:
                    self.rt.stats.count("slow_consumers")
                    logger.info("ws session %d: %s", session.id, session.close_reason)
                writer.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.ws.close(session.close_code, session.close_reason), CLOSE_TIMEOUT
                    )
            else:
                if reader.done() and not session.closed:
                    session.disconnected = True
                    session.close(1000, "")
                await asyncio.wait({writer}, timeout=CLOSE_TIMEOUT)
        finally:
            for task in (reader, writer, killed):
                task.cancel()
            if self._timer is not None:
                self._timer.cancel()
            if self._claimed is not None:
                self.rt.per_identity.release(self._claimed)
            hub.detach(session)

    # -- receiving ---------------------------------------------------------------

    async def _read(self) -> None:
        session, chaos, decoder = self.session, self.rt.chaos, self.rt.decoder
        while not session.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                session.disconnected = True
                return
            if chaos.cut_until and chaos.is_cut():
                chaos.count("stalled_inbound")
                continue
            if self.bucket is not None:
                wait = self.bucket.take()
                if wait is not None:
                    self.rt.stats.count("rate_limited")
                    session.push(
                        error_text("rate_limited", "too many frames; slow down and reconnect")
                    )
                    session.close(4429, retry_reason("rate limited", wait))
                    return
            text = message.get("text")
            if text is None:
                self._bad("bad_frame", "binary frames are not accepted; send JSON as text frames")
                continue
            try:
                frame = decoder.decode(text)
            except FrameTooLarge as exc:
                self._bad("frame_too_large", exc.reason)
                continue
            except InvalidFrame as exc:
                self._bad("bad_frame", _describe(exc))
                continue
            # Redis: what needs the store is read first, on the loop, without blocking it;
            # frames stay in order (the next frame is read once this one is handled).
            fetched = outcome = None
            who, hub = session.identity, self.rt.hub
            if who is not None and type(frame) is Subscribe:
                fetched = await hub.prefetch(who, frame.topic, frame.replay_from)
            elif who is not None and type(frame) is SnapshotRequest and hub.bridge is not None:
                await hub.preload(who, frame.topic)
            elif who is not None and type(frame) is Mutate and hub.bridge is not None:
                outcome = await self.rt.mutations.apply_shared(hub, who, frame)
            self._dispatch(frame, fetched, outcome)

    def _bad(self, code: str, message: str) -> None:
        session = self.session
        self.rt.stats.count("bad_frames")
        logger.info("ws session %d: %s: %s", session.id, code, message)
        session.push(error_text(code, message))
        if session.identity is None:
            self.rt.stats.count("protocol_closes")
            session.close(4400, "protocol violation before authentication")
        elif self.strikes.strike():
            self.rt.stats.count("protocol_closes")
            session.push(error_text("protocol_violation", "too many invalid frames"))
            session.close(4400, "too many invalid frames")

    def _dispatch(
        self,
        frame: ServerBound,
        fetched: Fetched | None = None,
        outcome: MutationOutcome | None = None,
    ) -> None:
        session, hub = self.session, self.rt.hub
        if type(frame) is Authenticate:
            self._authenticate(frame.token)
            return
        who = session.identity
        if who is None:
            self.rt.stats.count("auth_failures")
            session.push(
                error_text("unauthenticated", "send an authenticate frame before anything else")
            )
            session.close(4401, "unauthenticated")
            return
        if type(frame) is Subscribe:
            if self._snapshot_allowed():
                try:
                    hub.subscribe(session, frame.topic, frame.replay_from, fetched)
                except TopicError as exc:
                    session.push(exc.frame())
        elif type(frame) is Unsubscribe:
            hub.unsubscribe(session, frame.topic)
        elif type(frame) is SnapshotRequest:
            if self._snapshot_allowed():
                try:
                    session.push(SnapshotStream(hub.check(who, frame.topic)))
                except TopicError as exc:
                    session.push(exc.frame())
        elif type(frame) is Ping:
            session.push(encode_str(Pong(id=frame.id, server_time=now())))
        elif type(frame) is Mutate:
            if outcome is None:
                outcome = self.rt.mutations.apply(hub, who, frame)
            if outcome.rejected is not None:
                self.rt.stats.count("mutations_rejected")
                session.push(encode_str(outcome.rejected))
            elif not outcome.duplicate:
                self.rt.stats.count("mutations_applied")

    def _snapshot_allowed(self) -> bool:
        """Charge one snapshot (or re-subscribe) to the connection's ``snapshot_rate``."""
        if self.snapshots is None:
            return True
        wait = self.snapshots.take()
        if wait is None:
            return True
        self.rt.stats.count("rate_limited")
        session = self.session
        logger.info("ws session %d: too many snapshots or subscribes", session.id)
        session.push(
            error_text(
                "rate_limited", "too many snapshot or subscribe requests; slow down and reconnect"
            )
        )
        session.close(4429, retry_reason("too many snapshots", wait))
        return False

    def _authenticate(self, token: str) -> None:
        session = self.session
        try:
            who = self.rt.auth.verify(token)
        except AuthError as exc:
            self.rt.stats.count("auth_failures")
            logger.info("ws session %d: authentication refused: %s", session.id, exc.code)
            session.push(error_text(exc.code, exc.message))
            session.close(4401, exc.code)
            return
        before = session.identity
        if before is not None and (before.tenant, before.user) != (who.tenant, who.user):
            session.push(
                error_text(
                    "forbidden",
                    "re-authentication cannot switch tenant or user; open a new connection",
                )
            )
            session.close(4403, "identity change")
            return
        if before is None and not self._claim(who.tenant, who.user):
            return
        session.identity = who
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, who.expires_at - time.time()), self._expired)
        session.push(
            encode_str(
                Authenticated(
                    tenant=who.tenant,
                    user=who.user,
                    role=who.role,
                    expires_at=who.expires_at,
                    heartbeat_interval=self.rt.config.heartbeat_interval,
                )
            )
        )
        if before is not None and before.role != who.role:
            for topic in list(session.subscriptions):
                try:
                    self.rt.hub.check(who, topic)
                except TopicError as exc:
                    self.rt.hub.unsubscribe(session, topic)
                    session.push(exc.frame())

    def _claim(self, tenant: str, user: str) -> bool:
        """Count this connection for its identity, or close it 4429 at the cap."""
        per_identity = self.rt.per_identity
        if per_identity.claim((tenant, user)):
            self._claimed = (tenant, user)
            return True
        self.rt.stats.count("identity_capped")
        logger.info("ws session %d: too many connections for one identity", self.session.id)
        self.session.push(error_text(ErrorCode.TOO_MANY_CONNECTIONS, per_identity.refusal()))
        self.session.close(4429, retry_reason("too many connections", IDENTITY_RETRY_AFTER))
        return False

    def _auth_timeout(self) -> None:
        session = self.session
        if session.identity is None and not session.closed:
            self.rt.stats.count("auth_failures")
            session.push(
                error_text(
                    "auth_timeout",
                    f"no authenticate frame within {self.rt.config.auth_timeout:g} s",
                )
            )
            session.close(4400, "authentication timeout")

    def _expired(self) -> None:
        session = self.session
        if session.identity is not None and session.identity.expires_at <= time.time():
            session.push(
                error_text(
                    "token_expired", "the access token has expired; reconnect with a fresh one"
                )
            )
            session.close(4401, "token expired")

    # -- sending -----------------------------------------------------------------------

    async def _write(self) -> None:
        session, chaos, ws = self.session, self.rt.chaos, self.ws
        max_messages = self.rt.config.batch_max_messages
        max_bytes = self.rt.config.batch_max_bytes
        while True:
            await session.wait()
            if session.killed:
                return
            if session.queue:
                if chaos.cut_until and chaos.is_cut():
                    chaos.count("stalled_frames", len(session.queue))
                    session.clear()
                    continue
                text = session.take_text(max_messages, max_bytes)
                assert text is not None
                try:
                    await ws.send_text(text)
                except Exception:
                    session.disconnected = True
                    session.close(1006, "")
                    return
                continue
            if not session.disconnected:
                with contextlib.suppress(Exception):
                    await ws.close(session.close_code, session.close_reason)
            return

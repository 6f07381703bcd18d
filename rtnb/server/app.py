"""The Starlette app factory and the runtime it serves.

A :class:`ServerRuntime` is one incarnation of the server: its hub, its tasks
(the committer, heartbeats, write-behind flushes, demo producers) and its connections. ``restart``
(chaos) builds a new runtime around the same storage, secret, chaos and
idempotency memory; everything that must survive a restart lives outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from ..protocol.codec import ServerDecoder
from ..protocol.errors import ServerStartError
from .auth import Identity, TokenAuthority
from .chaos import Chaos
from .config import ServerConfig
from .hub import Hub, error_text
from .idempotency import Remembered
from .limits import Admission, PerIdentity, TokenBucket
from .mutations import Mutations
from .storage import FLUSH_INTERVAL, LogStorage
from .tokens import ReplayTokens

logger = logging.getLogger("rtnb.server")

#: Close code for server shutdown and restart (RFC 6455 §7.4.1 / IANA: "Service Restart").
CLOSE_RESTART = 1012
#: Close code for ``chaos.disconnect_all`` (RFC 6455 §7.4.1: "going away").
CLOSE_GOING_AWAY = 1001

STAT_NAMES = (
    "connections",
    "auth_failures",
    "bad_frames",
    "protocol_closes",
    "rate_limited",
    "admissions_shed",
    "connections_shed",
    "identity_capped",
    "request_timeouts",
    "write_timeouts",
    "slow_consumers",
    "fell_behind",
    "mutations_applied",
    "mutations_rejected",
    "http_requests",
)


class Stats:
    """Server counters, readable from any thread (``srv.stats()``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(STAT_NAMES, 0)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


Producer = Callable[[Hub], Coroutine[Any, Any, None]]


#: seconds a gateway waits at start for the Redis live channel before giving up
BRIDGE_START_TIMEOUT = 10.0


class ServerRuntime:
    """One running incarnation of the server (lives on its event loop)."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        auth: TokenAuthority,
        tokens: ReplayTokens,
        storage: LogStorage,
        chaos: Chaos,
        mutations: Mutations,
        declared: dict[str, str],
        stats: Stats,
        producers: list[Producer] | None = None,
        remembered: Remembered | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.tokens = tokens
        self.storage = storage
        self.chaos = chaos
        self.mutations = mutations
        self.stats = stats
        for topic, role in config.topics.items():
            declared.setdefault(topic, role)
        self.hub = Hub(config, storage, tokens, chaos, declared, remembered)
        self.admission = Admission(config.admission_rate)
        self.per_identity = PerIdentity(config.max_connections_per_identity)
        self.decoder = ServerDecoder(config.max_frame_size)
        self.started_at = time.time()
        self._producers = producers or []
        self._tasks: list[asyncio.Task[None]] = []
        self._committer: asyncio.Task[None] | None = None
        self._http_buckets: dict[tuple[str, str], TokenBucket] = {}
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._committer = asyncio.create_task(self.hub.run_committer())
        self._tasks.append(asyncio.create_task(self.hub.run_heartbeats()))
        if self.hub.bridge is not None:  # the shared store's live channel (redis_store.py)
            listening = asyncio.Event()

            async def heard() -> None:
                listening.set()

            self._tasks.append(asyncio.create_task(self.hub.bridge.listen(heard)))
            try:  # ready only once it hears every append (see Bridge.listen in redis_store.py)
                await asyncio.wait_for(listening.wait(), BRIDGE_START_TIMEOUT)
            except TimeoutError:
                raise ServerStartError(
                    f"could not subscribe to the Redis live channel within "
                    f"{BRIDGE_START_TIMEOUT:g} s: is Redis reachable at the --store URL?"
                ) from None
        if not self.storage.durable:  # write-behind; a durable store is written by the committer
            self._tasks.append(asyncio.create_task(self._flush_forever()))
        for producer in self._producers:
            self._tasks.append(asyncio.create_task(producer(self.hub)))
        self.ready.set()

    async def shutdown(self) -> None:
        self.close_all(CLOSE_RESTART, "server restarting")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.hub.drain()  # what was staged is committed before the store closes
        if self._committer is not None:
            self._committer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            if self._committer is not None:
                await self._committer
        if self.hub.bridge is not None:
            await self.hub.bridge.aclose()
        self.storage.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                self.storage.flush()
            except Exception:  # a full disk must not stop the server
                logger.exception("storage flush failed; will retry")

    # -- control (called on the loop) ----------------------------------------------

    def close_all(self, code: int, reason: str) -> int:
        sessions = tuple(self.hub.sessions)
        for session in sessions:
            session.kill(code, reason)
        return len(sessions)

    def disconnect_all(self) -> int:
        return self.close_all(CLOSE_GOING_AWAY, "disconnected by fault injection")

    def expire_tokens(self) -> int:
        """Revoke every token so far; close each authenticated connection with 4401."""
        self.auth.expire_all()
        n = 0
        for session in tuple(self.hub.sessions):
            if session.identity is not None:
                n += 1
                session.push(
                    error_text(
                        "token_expired", "the access token has expired; reconnect with a fresh one"
                    )
                )
                session.close(4401, "token expired")
        return n

    # -- HTTP helpers ------------------------------------------------------------------

    def http_rate(self, who: Identity) -> float | None:
        """None if this identity may make another HTTP request now, else seconds to wait."""
        limit = self.config.http_rate_limit
        if limit is None:
            return None
        key = (who.tenant, who.user)
        bucket = self._http_buckets.get(key)
        if bucket is None:
            if len(self._http_buckets) > 100_000:
                self._http_buckets.clear()
            bucket = self._http_buckets[key] = TokenBucket(*limit)
        return bucket.take()


def create_app(runtime: ServerRuntime) -> Starlette:
    """The ASGI app: ``/ws``, ``/sse``, ``/poll``, ``/snapshot``, ``/mutate``,
    ``/publish`` and ``/healthz`` over one :class:`ServerRuntime`."""
    from . import http, streams, ws

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.startup()
        try:
            yield
        finally:
            await runtime.shutdown()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws", ws.endpoint),
            Route("/sse", streams.sse, methods=["GET"]),
            Route("/poll", streams.poll, methods=["GET"]),
            Route("/snapshot", http.snapshot, methods=["GET"]),
            Route("/mutate", http.mutate, methods=["POST"]),
            Route("/publish", http.publish, methods=["POST"]),
            Route("/healthz", http.healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app

"""``serve(...)`` and :class:`ServerHandle`: the reference server in a background thread.

uvicorn runs on its own event loop in a daemon thread, listening on a socket
bound here (``port=0`` picks a free port, known before ``serve`` returns).
``publish`` and ``truth`` are thread-safe: they run on the server's loop, so a
publish from the notebook thread is ordered with everything else the server
does. Calling them from the server's own thread runs them inline.

Secrets: with ``secret=None`` a random 256-bit secret is generated — or, with
``data=DIR``, read from (or created in) ``DIR/secret.key`` (mode 0600), so
that tokens and replay tokens stay valid across a restart on the same
directory. The secret is never logged or printed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
import uvicorn

from ..protocol.errors import PortInUse, ServerStartError, ServerStopped
from ..protocol.frames import Event
from . import bulk
from .app import CLOSE_RESTART, Producer, ServerRuntime, Stats, create_app
from .auth import TokenAuthority
from .bulk import check_publish_id as _check_publish_id
from .chaos import Chaos, parse_spec
from .config import DEFAULT_TOKEN_TTL, ServerConfig
from .datadir import DataDirLock
from .hub import StorageFailed, validate_publish
from .idempotency import IdempotencyConflict, Remembered
from .mutations import Mutations
from .runner import Incarnation, listen, resolve_secret, until_started, uvicorn_config
from .staged import events_of
from .storage import Fsync, LogStorage, MemoryStorage, SQLiteStorage
from .tokens import ReplayTokens
from .topiclog import new_epoch

logger = logging.getLogger("rtnb.server")
T = TypeVar("T")

#: Seconds a thread-safe call (publish, truth, chaos) waits for the server loop.
CALL_TIMEOUT: Final = 30.0
#: Seconds ``serve`` waits for the server to start listening.
START_TIMEOUT: Final = 15.0


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    demo: bool | Mapping[str, Any] = False,
    data: str | os.PathLike[str] | None = None,
    fsync: Fsync = "always",
    store: str | None = None,
    secret: str | bytes | None = None,
    topics: Mapping[str, str] | None = None,
    chaos: str | Mapping[str, Any] | None = None,
    log_level: str = "warning",
    **options: Any,
) -> ServerHandle:
    """Start the reference server in a background thread and return its handle.

    ``options`` are :class:`~rtnb.server.config.ServerConfig` fields
    (``heartbeat_interval=5.0``, ``retention=10_000``, ``auth_timeout``, ...).
    ``demo=True`` (or a dict of :func:`rtnb.server.demo.producers` options) runs
    the demo producers; ``chaos="drop=0.01,..."`` (or a dict) sets faults at start.
    ``data=DIR`` persists the logs in SQLite; ``fsync="always"`` (default)
    acknowledges a publish only once it is durable, ``fsync="never"`` writes
    behind (faster, but a crash loses the last ~0.2 s and starts new epochs).
    ``store="redis://HOST:PORT/DB"`` keeps the logs in Redis Streams, shared by
    every gateway started with that store and the same ``secret`` (``docs/redis.md``).
    """
    config = ServerConfig(topics=dict(topics or {}), **options)
    producers: list[Producer] = []
    if demo:
        from .demo import producers as demo_producers

        producers = demo_producers(**({} if demo is True else dict(demo)))
    handle = ServerHandle(
        host=host,
        port=port,
        config=config,
        data=data,
        fsync=fsync,
        store=store,
        secret=secret,
        producers=producers,
        log_level=log_level,
    )
    if chaos:
        handle.chaos.set(**(parse_spec(chaos) if isinstance(chaos, str) else dict(chaos)))
    return handle


def _resolved(runtime: ServerRuntime, result: T) -> T:
    """Published events as committed (a sequenced store, Redis, numbers them on commit)."""
    if isinstance(result, Event):
        return runtime.hub.resolve(result)  # type: ignore[return-value]
    if isinstance(result, list):
        if runtime.hub.bridge is None:  # nothing renumbers
            return result
        return [runtime.hub.resolve(e) if isinstance(e, Event) else e for e in result]  # type: ignore[return-value]
    return result


class ServerHandle:
    """A running reference server (DESIGN.md §2). Also a context manager."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        config: ServerConfig,
        data: str | os.PathLike[str] | None,
        secret: str | bytes | None,
        producers: list[Producer],
        fsync: Fsync = "always",
        store: str | None = None,
        log_level: str = "warning",
    ) -> None:
        self.host = host
        self.config = config
        self._data = data
        # One directory, one writer: locked first, until stop (released if start fails: datadir.py)
        self._dir_lock = DataDirLock.acquire(data) if data is not None else None
        key = resolve_secret(secret, data)
        self._auth = TokenAuthority(key)
        self._tokens = ReplayTokens(hmac.digest(key, b"rtnb replay tokens v1", hashlib.sha256))
        self._fsync: Fsync = fsync
        if store is not None and data is not None:
            raise ValueError("use either data=DIR (SQLite) or store=redis://... (Redis), not both")
        self._storage: LogStorage
        if store is not None:
            from .redis_store import RedisStorage

            self._storage = RedisStorage(store, retention=config.retention)
            self._storage.window = max(1, round(config.idempotency_window))
        else:
            self._storage = self._open_sqlite(data, fsync) if data is not None else MemoryStorage()
        self._declared: dict[str, str] = {}
        self._remembered = self._new_remembered()
        self._mutations = Mutations()
        self._stats = Stats()
        self._producers = producers
        self._log_level = log_level
        self._lock = threading.RLock()
        self._stopped = False
        self.chaos = Chaos(self)
        self.port = port
        self._inc: Incarnation | None = None
        self._loading: set[asyncio.Task[None]] = set()  # topics loaded before a publish
        self._start()

    # -- lifecycle --------------------------------------------------------------------

    def _new_remembered(self) -> Remembered:
        """The idempotency keys (kept across chaos restarts); a SQLite store's are loaded."""
        config = self.config
        remembered = Remembered(
            max_bytes=config.idempotency_bytes, window=config.idempotency_window
        )
        if isinstance(self._storage, SQLiteStorage):
            remembered.load(self._storage.remembered(time.time() - config.idempotency_window))
        return remembered

    def _open_sqlite(self, data: str | os.PathLike[str], fsync: Fsync) -> SQLiteStorage:
        storage = SQLiteStorage(data, fsync=fsync)
        storage.window = self.config.idempotency_window
        return storage

    def _start(self) -> None:
        runtime = ServerRuntime(
            config=self.config,
            auth=self._auth,
            tokens=self._tokens,
            storage=self._storage,
            chaos=self.chaos,
            mutations=self._mutations,
            remembered=self._remembered,
            declared=self._declared,
            stats=self._stats,
            producers=self._producers,
        )
        try:
            sock = listen(self.host, self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                exc.errno,
                f"port {self.port} on {self.host} is already in use (another server?); "
                "choose another port, or port 0 (CLI: --port 0) for any free one",
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn_config(create_app(runtime), runtime, self._log_level)
        inc = Incarnation(runtime, uvicorn.Server(config), sock)
        inc.thread.start()
        if not runtime.ready.wait(START_TIMEOUT) or inc.error is not None:
            raise ServerStartError(f"the rtnb server failed to start: {inc.error!r}")
        # Wait until uvicorn listens; it flips ``started`` right after.
        future = asyncio.run_coroutine_threadsafe(until_started(inc.server), inc.loop)
        future.result(START_TIMEOUT)
        self._inc = inc
        logger.info("rtnb server listening on %s", self.url)

    def _stop_incarnation(self) -> None:
        inc, self._inc = self._inc, None
        if inc is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            inc.loop.call_soon_threadsafe(inc.runtime.close_all, CLOSE_RESTART, "server stopping")
        inc.server.should_exit = True
        inc.thread.join(START_TIMEOUT)

    def stop(self) -> None:
        """Stop the server: connections close (1012), data is flushed. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stop_incarnation()
            self._storage.close()
            if self._dir_lock is not None:
                self._dir_lock.release()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ServerHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._stopped and self._inc is not None:
                self._inc.server.should_exit = True

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<rtnb ServerHandle {self.url} {state}>"

    @property
    def running(self) -> bool:
        return not self._stopped and self._inc is not None

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/ws"

    # -- tokens --------------------------------------------------------------------------

    def issue_token(
        self, *, tenant: str, user: str, role: str = "viewer", ttl: float = DEFAULT_TOKEN_TTL
    ) -> str:
        """A signed access token for this server (HS256 JWT)."""
        return self._auth.issue(tenant=tenant, user=user, role=role, ttl=ttl)

    # -- data ------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        tenant: str,
        entity_id: str,
        occurred_at: datetime | None = None,
        version: int = 1,
        publish_id: str | None = None,
    ) -> Event:
        """Append an event to ``tenant``'s ``topic`` (declaring it) and fan it out.

        Returns once the event is committed — durable, with a persistent store
        (``data=DIR``; unless ``fsync="never"``) — and queued for every
        subscriber. Raises ValueError for an event no client could receive (its
        frame, or the entity's resulting state, over the frame limit) and
        RuntimeError if the store failed (``OutcomeUnknown``, a RuntimeError, when the
        store did not confirm a write it may have made: retry with the same ``publish_id``).
        Called from the server's own thread (a producer), it cannot wait: the event is
        then committed shortly after.

        ``publish_id``: an idempotency key (per topic, 1-256 characters). A publish with a
        key already stored (within ``idempotency_window``, on any gateway, across
        restarts with ``data=`` or Redis) returns the original event and stores nothing;
        the same key with other content raises ValueError (``IdempotencyConflict``).
        """
        validate_publish(topic, type, entity_id)
        _check_publish_id(publish_id)
        try:  # a deep copy in JSON types: later edits by the caller change nothing
            data = msgspec.json.decode(msgspec.json.encode(dict(payload or {})))
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"publish: the payload is not JSON-serialisable: {exc}") from None
        return self._call_committed(
            lambda rt: rt.hub.publish_once(
                tenant,
                topic,
                type,
                data,
                entity_id,
                publish_id,
                occurred_at=occurred_at,
                version=version,
            )[0],
            (tenant, topic),
        )

    def publish_many(
        self,
        topic: str,
        events: Iterable[
            tuple[str, str, Mapping[str, Any]] | tuple[str, str, Mapping[str, Any], str | None]
        ],
        *,
        tenant: str,
    ) -> list[Event]:
        """Publish ``(type, entity_id, payload)`` tuples in one step on the server loop.

        A fourth element is the event's ``publish_id`` (see :meth:`publish`): an event
        whose key is already stored returns its original and stores nothing.

        Much cheaper than ``publish`` per event at high rates (one thread hop,
        one commit), and nothing else runs between them. Returns once all are
        committed. If one is refused (ValueError: too large), the events before
        it are published and the rest are not; the message says which. Every event
        of one call gets the same ``occurred_at`` (one clock read).
        """
        prepared, keys = bulk.prepare(topic, tenant, events)
        return events_of(
            self._call_committed(
                lambda rt: bulk.publish_batch(rt.hub, tenant, topic, prepared, keys),
                (tenant, topic),
            )
        )

    async def publish_async(self, *args: Any, **kwargs: Any) -> Event:
        """``publish`` for asyncio code (runs it without blocking the caller's loop)."""
        return await asyncio.to_thread(self.publish, *args, **kwargs)

    def truth(self, topic: str, *, tenant: str) -> dict[str, dict[str, Any]]:
        """``{entity_id: state}`` of ``tenant``'s ``topic``, as the server holds it (a copy)."""
        return self._call(lambda rt: rt.hub.truth(tenant, topic))

    async def truth_async(self, topic: str, *, tenant: str) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.truth, topic, tenant=tenant)

    def declare(self, topic: str, role: str = "viewer") -> None:
        """Declare a topic (for every tenant) readable from ``role`` up."""
        validate_publish(topic, "declare", "declare")
        self._call(lambda rt: rt.hub.declare(topic, role))

    def latest_sequence(self, topic: str, *, tenant: str) -> int:
        """The sequence of the last event in ``tenant``'s ``topic`` (0 if none)."""
        return self._call(
            lambda rt: rt.hub.log(tenant, topic).latest if rt.hub.exists(tenant, topic) else 0
        )

    def stats(self) -> dict[str, int]:
        """Counters (connections, refusals, slow consumers, ...) plus live figures."""

        def collect(rt: ServerRuntime) -> dict[str, int]:
            out = self._stats.snapshot()
            out["open_sessions"] = len(rt.hub.sessions)
            out["published"] = rt.hub.published
            return out

        return self._call(collect)

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[ServerRuntime], T]) -> T:
        inc = self._inc
        if inc is not None and threading.current_thread() is inc.thread:
            return fn(inc.runtime)
        with self._lock:
            inc = self._inc
            if inc is None:
                raise ServerStopped("the rtnb server is stopped")
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            runtime = inc.runtime

            def run() -> None:
                try:
                    future.set_result(fn(runtime))
                except BaseException as exc:
                    future.set_exception(exc)

            inc.loop.call_soon_threadsafe(run)
            return future.result(CALL_TIMEOUT)

    def _call_committed(
        self, fn: Callable[[ServerRuntime], T], key: tuple[str, str] | None = None
    ) -> T:
        """``_call`` for publishing: also wait until what ``fn`` staged is committed.

        ``key``: the (tenant, topic) ``fn`` publishes to; with Redis, a topic new to this
        gateway is loaded first on the loop's asyncio client (the loop is not blocked).
        Called on the server's own thread (a producer), ``fn`` runs at once: it cannot wait.
        """
        inc = self._inc
        if inc is not None and threading.current_thread() is inc.thread:
            return fn(inc.runtime)  # the server's own loop cannot wait for itself
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            inc = self._inc
            if inc is None:
                raise ServerStopped("the rtnb server is stopped")
            runtime = inc.runtime

            def run() -> None:
                loading = runtime.hub.loading(*key) if key is not None else None
                if loading is None:
                    stage()
                    return
                self._loading.add(loading)  # a strong reference while it runs

                def loaded(task: asyncio.Task[None]) -> None:
                    self._loading.discard(task)
                    exc = None if task.cancelled() else task.exception()
                    if task.cancelled() or exc is not None:
                        future.set_exception(RuntimeError(str(exc or "the server stopped")))
                    else:
                        stage()

                loading.add_done_callback(loaded)

            def stage() -> None:
                try:
                    result = fn(runtime)
                    committed = runtime.hub.committed()
                except BaseException as exc:
                    future.set_exception(exc)
                    return

                def done(outcome: asyncio.Future[None]) -> None:
                    exc = None if outcome.cancelled() else outcome.exception()
                    if isinstance(exc, StorageFailed):
                        future.set_exception(exc)  # a RuntimeError; OutcomeUnknown says so
                    elif outcome.cancelled() or exc is not None:
                        future.set_exception(RuntimeError(str(exc or "the server stopped")))
                    else:
                        try:
                            future.set_result(_resolved(runtime, result))
                        except IdempotencyConflict as conflict:
                            future.set_exception(conflict)

                committed.add_done_callback(done)

            inc.loop.call_soon_threadsafe(run)
        # Wait outside the lock: concurrent publishers share one group commit.
        return future.result(CALL_TIMEOUT)

    def _chaos_call(self, name: str, *args: Any) -> Any:
        if name == "disconnect_all":
            return self._call(lambda rt: rt.disconnect_all())
        if name == "expire_tokens":
            return self._call(lambda rt: rt.expire_tokens())
        if name == "restart":
            self._restart(*args)
            return None
        raise ValueError(f"unknown chaos action {name!r}")

    def _restart(self, keep_data: bool) -> None:
        inc = self._inc
        if inc is not None and threading.current_thread() is inc.thread:
            raise RuntimeError("chaos.restart() cannot be called from the server's own thread")
        with self._lock:
            if self._stopped:
                raise ServerStopped("the rtnb server is stopped")
            self._stop_incarnation()
            if not keep_data:
                for key in self._storage.streams():
                    self._storage.reset(key, new_epoch())
                self._remembered = self._new_remembered()  # keys died with the data
            elif self._data is not None:  # prove durability: reload from disk
                self._storage.close()
                self._storage = self._open_sqlite(self._data, self._fsync)
            self._start()

"""``rtnb.connect`` and ``Connection``: the one shared connection layer.

``connect(url, token=...)`` returns the same :class:`Connection` for the same
(url, token) in a host session (the token stands for the identity: the client never
decodes it), so every widget and cell that asks for a topic
shares one socket, one log and one store. A host session is the process in a
Jupyter kernel, and one visitor's session under ``marimo run`` or ``panel serve``
(:mod:`rtnb.client.hosts`): two visitors never share a connection. ``close()`` is
reference-counted too: every ``connect`` that returned the connection is one
holder, each ``close()`` releases one, and the connection ends with the last. ``subscribe`` is reference-counted:
two widgets on one topic share one server subscription, a late subscriber is
filled from the local store without a round trip, and the server subscription
ends when the last handle is released.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import inspect
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, cast

from ..core.backoff import Backoff
from ..core.dedupe import Deduper
from ..core.freshness import check_stale_after
from ..core.ledger import OnDegraded, ResolutionCursor
from ..core.machine_table import MachineConfig
from ..core.merge import MergeFn
from ..core.orderer import DEFAULT_GAP_TIMEOUT
from ..core.pipeline import TopicState
from ..core.status import Status
from ..protocol.errors import LocalProtocolError, RtnbError
from ..protocol.frames import Event
from ..protocol.urls import http_base_url
from ..telemetry import EnvelopeLog
from ..transports.base import TransportOptions
from .base import BaseSource
from .flight import FlightRecorder
from .hosts import on_session_end, session_key
from .limits import Limits
from .mutation import Mutation
from .session import ClientSession, Tap
from .source import ConfirmedIdentity
from .state import ConnectionState
from .tokens import TokenProvider
from .topic import Topic

if TYPE_CHECKING:
    from .recording import Recorder
    from .replay import Replay
    from .source import Source

    def _both_are_sources(c: Connection, r: Replay) -> tuple[Source, Source]:
        return c, r  # mypy proves both implement rtnb.Source


TRANSPORTS: Final = ("auto", "websocket", "sse", "polling")

# (gateways, token key, host session) -> the shared connection
_registry: dict[tuple[str, str, str], Connection] = {}
_registry_lock = threading.Lock()


def _token_key(token: str | TokenProvider) -> str:
    """A key for the token (never the token itself): the same token shares a
    connection; the client never decodes a token (who we are comes from the server)."""
    if not isinstance(token, str):
        return f"provider:{id(token)}"
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def connect(
    url: str | Sequence[str],
    *,
    token: str | TokenProvider,
    transport: str = "auto",
    backoff: Backoff | None = None,
    heartbeat_interval: float | None = None,
    on_degraded: OnDegraded = "queue",
    log: EnvelopeLog | None = None,
    timeout: float | None = None,
    shared: bool = True,
    limits: Limits | None = None,
) -> Connection:
    """Connect to an rtnb server; returns a :class:`Connection` at once (it connects in
    the background, reconnecting on its own until ``close()``).

    Args:
        url: the server's base URL, ``http(s)://host:port`` (``ws(s)://…/ws`` works too),
            or a list of gateways sharing one store (``--store redis://…``, same
            secret): the first is tried first; when a connection attempt fails or
            a live connection drops, the next attempt (after the backoff delay)
            goes to the next gateway, in order, round the list. Each state row of
            the log names the gateway in its reason (``… [gateway 2/2 URL]``).
        token: an access token (str), or a callable — sync or async — returning a
            fresh one; it is called again whenever the server refuses or expires
            the token. It travels in the first WebSocket frame or an
            ``Authorization`` header, never in a URL, log or repr.
        transport: ``"auto"`` (WebSocket, then SSE, then polling: each is tried
            when the one before is refused), or ``"websocket"``, ``"sse"``,
            ``"polling"`` to use only that one.
        backoff: the reconnect delay policy (:class:`rtnb.core.backoff.Backoff`);
            the documented default when None.
        heartbeat_interval: the server heartbeat interval to assume, in seconds,
            until the server announces its own (every rtnb server does, on every
            transport): the connection is declared degraded after two intervals
            without any frame, plus a small grace. Default 5.0.
        on_degraded: what ``topic.mutate`` does while the connection is not live:
            ``"queue"`` (sent once live again) or ``"reject"`` (refused at once).
        log: the telemetry log to write to (a new ``EnvelopeLog`` when None).
        timeout: if given, block until SUBSCRIBED, raising ``TimeoutError`` (with
            the connection's last state and its cause) after that many seconds.
        shared: True (default): one connection per (url, token) in this
            host session (the process in a Jupyter kernel; each visitor's own
            under ``marimo run`` or ``panel serve``) — a second ``connect`` with
            the same url and token returns the same object, so widgets and cells
            share one socket, log and store. Each such ``connect`` is one holder:
            ``close()`` releases one hold, and the connection ends when every
            holder closed it. False: always a new, separate connection.
        limits: caps on every buffer the client keeps (:class:`rtnb.Limits`: frame,
            SSE event, poll response, snapshot parts, gap buffer, dedupe, open
            mutations); the documented defaults when None.

    The shared-connection rule: asking for a shared connection with an option
    (``transport``, ``backoff``, ``heartbeat_interval``, ``on_degraded``,
    ``log``, ``limits``) set to something other than its default *and* other than what
    the existing connection uses raises ``ValueError`` naming the option;
    pass ``shared=False`` for a separate connection with its own options.

    Raises:
        ValueError: a bad ``url`` or ``transport``, or options conflicting with
            the existing shared connection.
        TypeError: ``token`` is neither a non-empty str nor a callable.
        TimeoutError: with ``timeout``, not SUBSCRIBED in time.
        rtnb.ConnectionClosed: with ``timeout``, the connection closed for good
            while waiting (e.g. the server refused a fresh token, or 4403).
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}; got {transport!r}")
    if not (isinstance(token, str) and token) and not callable(token):
        raise TypeError("token must be a non-empty str or a callable returning one")
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("rtnb.connect: give a server URL, or a non-empty list of gateway URLs")
    gateways = tuple(http_base_url(u) for u in urls)
    base = gateways[0]
    session = session_key() if shared else ""
    key = (" ".join(gateways), _token_key(token), session)
    wanted: dict[str, Any] = {
        "transport": transport,
        "backoff": backoff,
        "heartbeat_interval": heartbeat_interval,
        "on_degraded": on_degraded,
        "log": log,
        "limits": limits,
    }
    with _registry_lock:
        existing = _registry.get(key) if shared else None
        # a connection whose last holder is closing it (holds 0) is not handed out again
        if existing is not None and existing._holds and existing.state.status is not Status.CLOSED:
            _check_shared_options(existing, wanted)
            existing._holds += 1
            conn = existing
        else:
            conn = Connection(
                base,
                token,
                transport=transport,
                backoff=backoff,
                heartbeat_interval=heartbeat_interval,
                on_degraded=on_degraded,
                log=log,
                limits=limits,
                gateways=gateways,
            )
            conn._options = wanted
            if shared:
                _registry[key] = conn
                if session:
                    on_session_end(session, conn._session_ended)
    if timeout is not None:
        conn.wait_for(Status.SUBSCRIBED, timeout)
    return conn


_P = ParamSpec("_P")


def _awaitable(
    sync: Callable[_P, Connection],
) -> Callable[_P, Coroutine[Any, Any, Connection]]:
    """``connect_async``: ``sync``'s parameters (for type checkers and ``help``), run in a
    worker thread, except ``timeout``, which awaits SUBSCRIBED on the caller's loop."""

    async def connect_async(*args: _P.args, **kwargs: _P.kwargs) -> Connection:
        timeout = cast("float | None", kwargs.pop("timeout", None))
        conn = await asyncio.to_thread(sync, *args, **kwargs)
        if timeout is not None:
            await conn.wait_for_async(Status.SUBSCRIBED, timeout)
        return conn

    connect_async.__wrapped__ = sync  # type: ignore[attr-defined]  # inspect.signature
    connect_async.__qualname__ = "connect_async"
    doc = sync.__doc__ or ""  # None under python -OO
    connect_async.__doc__ = (
        "The awaitable form of :func:`connect` (same arguments, same errors); with\n"
        "    ``timeout`` it awaits SUBSCRIBED without blocking the caller's event loop.\n\n"
        "    ``async with await rtnb.connect_async(url, token=t) as conn:`` closes it at the end.\n"
        + (doc[doc.index("\n    Args:") :] if "\n    Args:" in doc else "")
    )
    return connect_async


connect_async = _awaitable(connect)

# Options a shared connection must agree on; their defaults are connect()'s.
_OPTION_DEFAULTS: Final[dict[str, Any]] = {
    name: inspect.signature(connect).parameters[name].default
    for name in ("transport", "backoff", "heartbeat_interval", "on_degraded", "log", "limits")
}


def _check_shared_options(existing: Connection, wanted: dict[str, Any]) -> None:
    for name, value in wanted.items():
        have = existing._options.get(name, _OPTION_DEFAULTS[name])
        same = value is have if name == "log" else value == have
        if value != _OPTION_DEFAULTS[name] and not same:
            shown = "a different EnvelopeLog" if name == "log" else repr(value)
            raise ValueError(
                f"rtnb.connect({existing.url!r}) already has a shared connection for this "
                f"token with {name}={'its own log' if name == 'log' else repr(have)}; "
                f"you asked for {name}={shown}. Pass shared=False for a separate connection "
                "with its own options, or close() the shared one first."
            )


class Connection(BaseSource):
    """A live connection: state, topics, mutations and the telemetry log.

    Create it with :func:`rtnb.connect`. Every public call is safe from any
    thread and has an awaitable form (``*_async``).
    """

    def __init__(
        self,
        url: str,
        token: str | TokenProvider,
        *,
        transport: str = "auto",
        backoff: Backoff | None = None,
        heartbeat_interval: float | None = None,
        on_degraded: OnDegraded = "queue",
        log: EnvelopeLog | None = None,
        rng: random.Random | None = None,
        limits: Limits | None = None,
        gateways: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.log = log if log is not None else EnvelopeLog()
        config_kw: dict[str, Any] = {"transport": transport}
        if transport != "auto":
            config_kw["fallback_order"] = (transport,)
        if heartbeat_interval is not None:
            config_kw["heartbeat_interval"] = heartbeat_interval
        self._session = ClientSession(
            url,
            token,
            transport=transport if transport != "auto" else "websocket",
            log=self.log,
            backoff=backoff or Backoff(),
            machine_config=MachineConfig(**config_kw),
            options=TransportOptions(),
            on_degraded=on_degraded,
            dedupe=Deduper(max_entries=(limits or Limits()).max_dedupe_entries),
            rng=rng,
            limits=limits,
            gateways=gateways,
        )
        self._session.on_state(self._notify_state)
        #: holders: the ``rtnb.connect`` calls that returned it, less the ``close()`` calls
        self._holds = 1
        #: the options it was made with (compared by connect() for shared connections)
        self._options: dict[str, Any] = {}
        cap = limits or Limits()
        #: the flight recorder: recent raw frames, written by ``conn.log.to_parquet``
        self.flight = FlightRecorder(self, cap.flight_bytes, cap.flight_seconds)
        self.call(self.flight.install, what="flight recorder")
        if self.flight.enabled:
            self.log.set_frame_source(self.flight.recording)
        self._runtime.run(self._session.start(), what="rtnb.connect")
        self._runtime.on_shutdown(self._session.close)

    @property
    def url(self) -> str:
        """The server this connection uses (with gateways: the one in use or being tried,
        so after a failover it names the live gateway, not the dead one)."""
        return self._session.url

    # -- what BaseSource asks of a connection --------------------------------------------

    def _send_mutation(
        self, topic: str, entity_id: str, patch: dict[str, Any], timeout: float
    ) -> Coroutine[Any, Any, Mutation]:
        return self._session.mutate(topic, entity_id, patch, timeout)

    def _set_apply_hook(self, hook: Callable[[TopicState, Event, Any], None] | None) -> None:
        self._session.set_apply_hook(hook)

    def _topic_released(self, topic: str) -> None:
        self._session.unsubscribe(topic)

    def now(self) -> float:
        """The wall clock ages are measured on: ``time.time()``."""
        return time.time()

    # -- what widgets, charts and the recorder read (rtnb.Source) ----------------------

    @property
    def topic_states(self) -> Mapping[str, TopicState]:
        """The pipeline's state of each subscribed topic (read on the runtime thread)."""
        return self._session.pipeline.topics

    def open_resolutions(self) -> ResolutionCursor:
        """A cursor over mutations resolved from now on (use it on the runtime thread)."""
        return self._session.ledger.open_resolutions()

    @property
    def identity(self) -> ConfirmedIdentity | None:
        """Who the server authenticated us as (tenant, user, role); None until it has.

        From the server's ``authenticated`` frame: the client never decodes a token.
        Over WebSocket it comes with the handshake; over SSE and polling with the
        first request (a probe when the connection opens with no topic).
        """
        return self._session.identity

    def wait_identity(self, timeout: float = 5.0) -> ConfirmedIdentity | None:
        """:attr:`identity`, waiting up to ``timeout`` s for the server to confirm it."""
        if self._session.identity is not None:
            return self._session.identity
        found: ConfirmedIdentity | None = self._runtime.run(
            self._session.wait_identity(timeout), what="wait_identity", timeout=timeout + 5.0
        )
        return found

    @property
    def live(self) -> bool:
        """True: a live connection (it can mutate; a replay cannot)."""
        return True

    def add_tap(self, tap: Tap) -> Callable[[], None]:
        """Observe every raw frame received: ``tap(data, received_at, transport, attempt)``,
        called on the runtime thread before the pipeline (keep it cheap; do not keep
        ``data`` beyond the call unless you copy it). Returns a callable removing the tap."""
        remove: Callable[[], None] = self.call(lambda: self._session.add_tap(tap), what="add_tap")
        return remove

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current state (an immutable snapshot: status, reason, attempt, …)."""
        return self._session.state

    def wait_for(self, status: Status | str, timeout: float | None = 10.0) -> ConnectionState:
        """Block until the connection reaches ``status``.

        Raises ``TimeoutError`` (naming the current state and its cause) if it
        does not within ``timeout`` s, and :class:`rtnb.ConnectionClosed` if the
        connection is or becomes closed.
        """
        want = Status(status)
        try:
            result: ConnectionState = self._runtime.run(
                self._session.wait_for(want, timeout),
                what=f"wait_for({want.value})",
                timeout=None if timeout is None else timeout + 5.0,
            )
        except (TimeoutError, RtnbError) as exc:  # the message says it all: no traceback wall
            raise exc.with_traceback(None) from None
        return result

    async def wait_for_async(
        self, status: Status | str, timeout: float | None = 10.0
    ) -> ConnectionState:
        result: ConnectionState = await self._runtime.wrap(
            self._session.wait_for(Status(status), timeout)
        )
        return result

    # -- topics --------------------------------------------------------------------------

    def subscribe(
        self,
        topic: str,
        ordering: str = "sequence",
        *,
        merge: MergeFn | None = None,
        gap_timeout: float = DEFAULT_GAP_TIMEOUT,
        stale_after: float | None = None,
    ) -> Topic:
        """A handle on ``topic``; shares the server subscription with other handles.

        ``stale_after``: seconds without an event of this topic after which it
        reads ``quiet`` while the connection is fine (the producer may have
        stopped); None (the default): never. Subscribing again to a refused
        topic asks the server again. Raises :class:`rtnb.ConnectionClosed` on a
        closed connection.
        """
        if ordering not in ("sequence", "entity", "none"):
            raise ValueError(f"ordering must be 'sequence', 'entity' or 'none', got {ordering!r}")
        check_stale_after(stale_after)

        def sub() -> Topic:
            existing = self._session.pipeline.topics.get(topic)
            if existing is not None and existing.ordering != ordering:
                raise LocalProtocolError(
                    f"topic {topic!r} is already subscribed with ordering "
                    f"{existing.ordering!r} on this connection; use the same ordering"
                )
            state = self._session.subscribe(topic, ordering, merge, gap_timeout, stale_after)
            return Topic(self, state)

        return self._add_handle(topic, sub, what=f"subscribe({topic!r})")

    async def subscribe_async(self, topic: str, ordering: str = "sequence", **kw: Any) -> Topic:
        return await asyncio.to_thread(self.subscribe, topic, ordering, **kw)

    # -- recording ---------------------------------------------------------------------------

    def record(self, path: str | os.PathLike[str], **options: Any) -> Recorder:
        """Stream this connection's log (with payloads) to rolling parquet files.

        See :mod:`rtnb.client.recording` for the options; returns the recorder
        (``.stop()`` flushes; it is also flushed on close and at interpreter exit).
        """
        if self.state.status is Status.CLOSED:
            raise self._session.closed_error(f"record to {os.fspath(path)!r}").with_traceback(None)
        from .recording import record  # pyarrow is imported only when recording

        return record(self, path, **options)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release this holder's hold; the last one closes the connection (CLOSED is
        terminal; the log stays readable).

        Every ``rtnb.connect`` that returned this connection is one holder (two
        cells, or two widgets' cells, asking for the same url and token): a
        ``close()`` by one leaves the connection open for the others.
        """
        if not self._release_hold():
            return
        if self._runtime.thread.is_alive():
            self._run(self._session.close(), what="conn.close")
        self._closed()

    async def close_async(self) -> None:
        """The awaitable form of :meth:`close` (does all it does)."""
        if not self._release_hold():
            return
        if self._runtime.thread.is_alive():
            await self._runtime.wrap(self._session.close())
        self._closed()

    def _release_hold(self) -> bool:
        """Drop one hold; True when none is left (the caller closes)."""
        with _registry_lock:
            if self._holds > 1:
                self._holds -= 1
                return False
            self._holds = 0
            return True

    def _session_ended(self) -> None:
        """The host session that shared this connection ended: close it for every
        holder, off the host's thread (this runs in its teardown or a GC callback)."""
        with _registry_lock:
            self._holds = 1

        def close() -> None:
            # the runtime may be gone (interpreter exit): then there is nothing to close
            with contextlib.suppress(Exception):
                self.close()

        threading.Thread(target=close, name="rtnb-session-end", daemon=True).start()

    def _closed(self) -> None:
        self._runtime.forget(self._session.close)
        with _registry_lock:
            for key, conn in list(_registry.items()):
                if conn is self:
                    del _registry[key]

    def __repr__(self) -> str:
        st = self.state
        return (
            f"<Connection {self.url} {st.status.value} via {st.transport} "
            f"attempt={st.attempt} topics={sorted(self._handles)} holders={self._holds}>"
        )


@atexit.register
def _close_all() -> None:  # pragma: no cover - interpreter exit
    with _registry_lock:
        _registry.clear()

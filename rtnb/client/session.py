"""The driver: runs the connection machine and the pipeline over real transports.

Everything here runs on the runtime loop thread. The session is deliberately
thin: the :class:`~rtnb.core.machine.ConnectionMachine` decides *what* to do
(open, send, arm a timer, back off, ask for a token), the
:class:`~rtnb.core.pipeline.Pipeline` decides what each frame *means*, and
this module only moves bytes, runs timers and calls callbacks — in the manner
of python-websockets' asyncio layer over its sans-I/O protocol.

Per frame the hot path is: transport callback → ``pipeline.feed`` → (rarely)
control frames to the machine. Gap checks and mutation timeouts run on a
maintenance tick (``MAINTENANCE_INTERVAL``), not per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from ..core.backoff import Backoff
from ..core.dedupe import Deduper
from ..core.ledger import MutationLedger, MutationRecord, OnDegraded
from ..core.machine import ConnectionMachine
from ..core.machine_table import (
    CancelTimer,
    CloseTransport,
    MachineAction,
    MachineConfig,
    OpenTransport,
    RecordRtt,
    RequestToken,
    SendFrame,
    StartTimer,
    StateChanged,
    Timer,
)
from ..core.merge import MergeFn
from ..core.pipeline import REFUSED_STATUSES, Pipeline, TopicState
from ..core.status import Status
from ..protocol.errors import ConnectionClosed, WaitTimeout
from ..protocol.frames import Authenticated
from ..telemetry import EnvelopeLog
from ..transports.base import Transport, TransportError, TransportOptions
from ..transports.polling import PollingTransport
from ..transports.sse import SSETransport
from ..transports.websocket import WebSocketTransport
from .limits import Limits
from .mutation import Mutation, log_mutation, mutate_frame
from .source import ConfirmedIdentity
from .state import ConnectionState, cause_of
from .tokens import TokenProvider, Tokens

logger = logging.getLogger("rtnb")

#: Seconds between gap checks and mutation-timeout sweeps: 0.1.
MAINTENANCE_INTERVAL: Final = 0.1
_LOSSES: Final = frozenset({Status.DEGRADED, Status.RECONNECTING, Status.CLOSED})

#: A raw-frame observer: ``tap(data, received_at, transport, attempt)``.
Tap = Callable[[Any, float, str, int], None]

#: ``make_transport(open_action, on_frame, on_close) -> Transport`` (see ``ClientSession``)
MakeTransport = Callable[
    [OpenTransport, Callable[[Any, float], None], Callable[..., None]], Transport
]


class ClientSession:
    """One connection's runtime: machine + pipeline + transport + timers."""

    def __init__(
        self,
        url: str,
        token: str | TokenProvider,
        *,
        transport: str,
        log: EnvelopeLog,
        backoff: Backoff,
        machine_config: MachineConfig,
        options: TransportOptions,
        on_degraded: OnDegraded,
        dedupe: Deduper,
        rng: random.Random | None = None,
        limits: Limits | None = None,
        make_transport: MakeTransport | None = None,
        gateways: tuple[str, ...] = (),
    ) -> None:
        limits = limits if limits is not None else Limits()
        #: builds the transport for an ``OpenTransport`` (the shipped ones when None;
        #: a test passes a scripted fake implementing :class:`rtnb.transports.base.Transport`)
        self._make_custom_transport = make_transport
        self.limits = limits
        options = dataclasses.replace(
            options,
            max_message_size=limits.max_message_size,
            max_sse_event_size=limits.max_sse_event_size,
            max_poll_response_size=limits.max_poll_response_size,
            max_poll_messages=limits.max_poll_messages,
        )
        self.url = url
        #: Gateways sharing one store, tried in order (failover); ``url`` is the current one.
        self.gateways = gateways if len(gateways) > 1 else (url,)
        self._gateway = 0
        self._tokens = Tokens(token)
        self.log = log
        self.options = options
        self.ledger = MutationLedger(on_degraded=on_degraded, max_open=limits.max_open_mutations)
        self.pipeline = Pipeline(
            log,
            deduper=dedupe,
            ledger=self.ledger,
            max_frame_size=limits.max_frame_size,
            max_snapshot_entities=limits.max_snapshot_entities,
            max_gap_buffer=limits.max_gap_buffer,
            transport=transport,
            max_snapshot_bytes=limits.max_snapshot_bytes,
            max_topic_bytes=limits.max_topic_bytes,
            max_gap_buffer_bytes=limits.max_gap_buffer_bytes,
        )
        self.machine = ConnectionMachine(
            machine_config, backoff=backoff, rng=rng, replay_tokens=self._replay_token
        )
        self.state = ConnectionState(
            Status.IDLE, None, "created", 0, None, self.machine.transport, time.time()
        )
        #: the last concrete cause of a failure ("websocket unreachable: connection
        #: refused at …"), for messages given while the state says something else
        self.last_cause: str | None = None
        self._transport: Transport | None = None
        self._outbox: asyncio.Queue[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_callbacks: list[Callable[[ConnectionState], Any]] = []
        self._state_waiters: list[tuple[Status, asyncio.Future[ConnectionState]]] = []
        self._mutations: dict[str, Mutation] = {}
        self._maintenance: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._mid_prefix = uuid.uuid4().hex[:12]
        self._closed = asyncio.Event()
        self._tearing_down = False
        #: transport closes in flight: awaited, never cancelled, by the teardown
        self._closing: set[asyncio.Task[Any]] = set()
        #: raw-frame observers ``tap(data, received_at, transport, attempt)`` (recording);
        #: called on the runtime thread before the pipeline, so keep them cheap
        self._taps: list[Tap] = []
        #: who the server's last ``authenticated`` frame said we are
        self.identity: ConfirmedIdentity | None = None
        self._identified = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        token = await self._tokens.fetch()
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())
        self._run(self.machine.start(time.time(), token))

    async def close(self) -> None:
        if self.machine.status is not Status.CLOSED:
            self._run(self.machine.close(time.time()))
        await self._teardown()

    def closed_error(self, doing: str) -> ConnectionClosed:
        """The error for using this connection after it closed (``doing``: what was tried)."""
        return ConnectionClosed(
            f"cannot {doing}: the connection to {self.url} is closed "
            f"({self.state.reason}); open a new one with rtnb.connect(...)"
        )

    def _cancel_mutations(self, now: float, reason: str) -> None:
        """Closed: resolve every open mutation (``cancelled``) so no ``wait()`` hangs."""
        self._settle(self.pipeline.cancel_mutations(now, f"connection closed ({reason})"))

    async def _teardown(self) -> None:
        """Stop timers and tasks; let transport closes finish (never cancel a close)."""
        if self._tearing_down:
            await self._closed.wait()
            return
        self._tearing_down = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._maintenance is not None:
            self._maintenance.cancel()
        self._drop_transport(1000, "closed by the client")
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=3.0)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._closed.set()

    # -- actions -------------------------------------------------------------------

    def _run(self, actions: list[MachineAction]) -> None:
        for action in actions:
            kind = type(action)
            if kind is SendFrame:
                assert isinstance(action, SendFrame)
                self._send(action.frame)
            elif kind is StartTimer:
                assert isinstance(action, StartTimer)
                self._start_timer(action.name, action.at)
            elif kind is CancelTimer:
                assert isinstance(action, CancelTimer)
                handle = self._timers.pop(action.name, None)
                if handle is not None:
                    handle.cancel()
            elif kind is StateChanged:
                assert isinstance(action, StateChanged)
                self._state_changed(action)
            elif kind is OpenTransport:
                assert isinstance(action, OpenTransport)
                self._spawn(self._open(action))
            elif kind is CloseTransport:
                assert isinstance(action, CloseTransport)
                self._drop_transport(action.code, action.reason)
            elif kind is RequestToken:
                self._spawn(self._refresh_token())
            elif kind is RecordRtt:
                assert isinstance(action, RecordRtt)
                self.log.append_heartbeat(
                    action.at,
                    math.nan if action.rtt_ms is None else action.rtt_ms,
                    action.server_lag_ms,
                )
            # TopicStatusChanged: nothing to do here. The pipeline read the same
            # frame and decided the topic's status (one owner: rtnb.core).

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_timer(self, name: Timer, at: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timers[name] = loop.call_later(delay, self._timer_fired, name)

    def _timer_fired(self, name: Timer) -> None:
        self._timers.pop(name, None)
        if self.machine.status is Status.CLOSED:
            return
        self._run(self.machine.timer_fired(time.time(), name))

    def _state_changed(self, ch: StateChanged) -> None:
        prev = self.state
        self.state = ConnectionState(
            ch.status, ch.previous, ch.reason, ch.attempt, ch.next_retry_at, ch.transport, ch.at
        )
        self.pipeline.connection(ch.transport, ch.attempt, opening=ch.status is Status.CONNECTING)
        if ch.status in _LOSSES and ch.trigger != "close":
            self.last_cause = cause_of(ch.reason)
        reason = ch.reason
        if len(self.gateways) > 1:  # which gateway this attempt uses (DESIGN.md §5)
            reason = f"{reason} [gateway {self._gateway + 1}/{len(self.gateways)} {self.url}]"
        self.log.append_state(
            ch.at, ch.status.value, ch.previous.value, reason, ch.attempt, ch.at - prev.since
        )
        if ch.status is Status.SUBSCRIBED:
            self._flush_queued(ch.at)
        for cb in tuple(self._state_callbacks):
            try:
                cb(self.state)
            except Exception as exc:
                self.callback_failed("on_state callback", exc)
        still: list[tuple[Status, asyncio.Future[ConnectionState]]] = []
        for want, fut in self._state_waiters:
            if fut.done():
                continue
            if ch.status is want:
                fut.set_result(self.state)
            elif ch.status is Status.CLOSED:
                fut.set_exception(self.closed_error(f"wait for {want.value}"))
            else:
                still.append((want, fut))
        self._state_waiters = still
        if ch.status is Status.CLOSED:
            self._cancel_mutations(ch.at, ch.reason)
            self._spawn(self._teardown())

    # -- transports ------------------------------------------------------------------

    def _make_transport(self, action: OpenTransport) -> Transport:
        holder: dict[str, Transport | None] = {"t": None}
        on_frame, on_frames, on_close = self._bind(holder)
        transport: Transport
        if self._make_custom_transport is not None:
            transport = self._make_custom_transport(action, on_frame, on_close)
        elif action.kind == "websocket":
            transport = WebSocketTransport(self.url, on_frame, on_close, self.options)
        else:
            cls = SSETransport if action.kind == "sse" else PollingTransport
            transport = cls(
                self.url,
                on_frame,
                on_close,
                self.options,
                action.subscriptions,
                self._replay_token,
                on_frames=on_frames,
            )
        holder["t"] = transport
        return transport

    def _bind(
        self, holder: dict[str, Transport | None]
    ) -> tuple[
        Callable[[Any, float], None], Callable[[list[Any], float], None], Callable[..., None]
    ]:
        """Callbacks that ignore their transport (``holder["t"]``) once it is not current:
        ``on_frame``, ``on_frames`` (a chunk's frames: ``on_frame`` for each, with what
        does not depend on the frame done once) and ``on_close``."""
        pipeline, machine = self.pipeline, self.machine

        def on_frames(frames: list[Any], now: float) -> None:
            # What on_frame does for each frame, in the same order; once per chunk:
            # the look-ups, and note_alive (every call of a chunk would set the same
            # ``now``, and no frame can open the transport: one call after the first
            # frame's feed is the same).
            taps, feed, alive = self._taps, pipeline.feed, False
            for data in frames:
                if holder["t"] is not self._transport:
                    return
                if taps:
                    for tap in taps:
                        tap(data, now, pipeline.transport, pipeline.attempt)
                control = feed(data, now)
                if not alive:
                    machine.note_alive(now)
                    alive = True
                if control:
                    fault = pipeline.take_fault()
                    if fault is not None:
                        self._fault(fault)
                        return
                    for frame in control:
                        if holder["t"] is not self._transport:
                            return
                        if type(frame) is Authenticated:
                            self._identify(frame)
                        self._run(machine.frame_received(now, frame))  # type: ignore[arg-type]
                if pipeline.resolved:
                    self._settle(pipeline.take_resolved())

        def on_frame(data: Any, now: float) -> None:
            on_frames([data], now)

        def on_close(code: int, reason: str, retry_after: float | None) -> None:
            if holder["t"] is None or holder["t"] is not self._transport:
                return
            self._next_gateway()
            self._transport = None
            self._run(
                self.machine.transport_closed(time.time(), code, reason, retry_after=retry_after)
            )

        return on_frame, on_frames, on_close

    def add_tap(self, tap: Tap) -> Callable[[], None]:
        """Observe every raw frame: ``tap(data, received_at, transport, attempt)`` is called
        on the runtime thread before the pipeline sees the frame (keep it cheap).
        Returns a callable that removes the tap (idempotent)."""
        self._taps.append(tap)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._taps.remove(tap)

        return remove

    def _identify(self, frame: Authenticated) -> None:
        self.identity = ConfirmedIdentity(frame.tenant, frame.user, frame.role, frame.expires_at)
        self._identified.set()

    async def wait_identity(self, timeout: float) -> ConfirmedIdentity | None:
        """The confirmed identity, waiting up to ``timeout`` s for it; None if not by then."""
        if self.identity is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._identified.wait(), timeout)
        return self.identity

    def _next_gateway(self) -> None:
        """Failover: the next attempt goes to the next gateway in the list."""
        if len(self.gateways) > 1:
            self._gateway = (self._gateway + 1) % len(self.gateways)
            self.url = self.gateways[self._gateway]

    def _fault(self, reason: str) -> None:
        """The stream broke a bound it cannot recover from in place: drop the
        transport and let the machine reconnect (with backoff), as for a close."""
        if self._transport is None:
            return
        self._drop_transport(1009, reason)
        self._run(self.machine.transport_closed(time.time(), 1009, reason))

    async def _open(self, action: OpenTransport) -> None:
        transport = self._make_transport(action)
        token = self._tokens.current
        self._transport = transport
        try:
            if action.auth is not None:
                token = action.auth.token
            await transport.open(token)
        except TransportError as exc:
            if self._transport is transport:
                self._next_gateway()
                self._transport = None
                self._run(
                    self.machine.transport_failed(
                        time.time(), exc.kind, exc.code, exc.retry_after, reason=str(exc)
                    )
                )
            return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await transport.close(1001, "cancelled")
            raise
        if self._transport is not transport:  # closed while opening
            with contextlib.suppress(Exception):
                await transport.close(1001, "superseded")
            return
        self._start_writer(transport)
        self._run(self.machine.transport_opened(time.time()))

    def _start_writer(self, transport: Transport) -> None:
        if self._writer is not None:
            self._writer.cancel()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._outbox = queue

        async def write() -> None:
            while True:
                frame = await queue.get()
                if self._transport is not transport:
                    return
                try:
                    await transport.send(frame)
                except Exception as exc:  # a failed send shows up as a close
                    logger.debug("rtnb: send failed: %s", type(exc).__name__)

        self._writer = asyncio.get_running_loop().create_task(write())

    def _send(self, frame: Any) -> None:
        if self._outbox is not None and self._transport is not None:
            self._outbox.put_nowait(frame)

    def _drop_transport(self, code: int, reason: str) -> None:
        transport, self._transport = self._transport, None
        self._outbox = None
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if transport is not None:
            task = asyncio.ensure_future(transport.close(code, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- tokens ------------------------------------------------------------------------

    async def _refresh_token(self) -> None:
        try:
            token = await self._tokens.fetch()
        except Exception as exc:
            if self.machine.status is not Status.CLOSED:
                reason = f"token provider failed: {type(exc).__name__}"
                self._run(self.machine.token_refresh_failed(time.time(), reason))
            return
        if self.machine.status is Status.CLOSED:
            return
        set_token = getattr(self._transport, "set_token", None)
        if set_token is not None:
            set_token(token)
        self._run(self.machine.token_refreshed(time.time(), token))

    def _replay_token(self, topic: str) -> str | None:
        ts = self.pipeline.topics.get(topic)
        return None if ts is None else ts.last_token

    # -- topics -----------------------------------------------------------------------------

    def subscribe(
        self,
        name: str,
        ordering: str,
        merge: MergeFn | None,
        gap_timeout: float,
        stale_after: float | None = None,
    ) -> TopicState:
        if self.machine.status is Status.CLOSED:
            raise self.closed_error(f"subscribe to {name!r}")
        existing = self.pipeline.topics.get(name)
        ask = existing is None or existing.status in REFUSED_STATUSES  # asked again: retry
        ts = self.pipeline.add_topic(
            name, ordering, merge=merge, gap_timeout=gap_timeout, stale_after=stale_after
        )
        if ask:
            self._run(self.machine.subscribe(time.time(), name, None))
        return ts

    def unsubscribe(self, name: str) -> None:
        if name not in self.pipeline.topics:
            return
        self.pipeline.remove_topic(name)
        if self.machine.status is not Status.CLOSED:
            self._run(self.machine.unsubscribe(time.time(), name))

    def set_apply_hook(self, hook: Callable[[TopicState, Any, Any], None] | None) -> None:
        """Have the pipeline call ``hook(topic_state, event, outcome)`` for each applied
        event (None: not at all; the connection installs it only while a handle listens)."""
        self.pipeline.set_on_apply(hook)

    # -- mutations ----------------------------------------------------------------------------

    async def mutate(
        self, topic: str, entity_id: str, patch: dict[str, Any], timeout: float
    ) -> Mutation:
        if self.machine.status is Status.CLOSED:
            raise self.closed_error(f"mutate {topic!r}")
        cmid = f"{self._mid_prefix}-{next(self._ids)}"
        degraded = self.machine.status is not Status.SUBSCRIBED
        rec = self.pipeline.mutate(
            cmid, topic, entity_id, patch, now=time.time(), timeout=timeout, degraded=degraded
        )
        handle = Mutation(rec)
        if rec.status == "refused":
            log_mutation(self.log, rec)
            return handle
        self._mutations[cmid] = handle
        if rec.status == "pending":
            self._send(mutate_frame(rec))
        return handle

    def _flush_queued(self, now: float) -> None:
        for rec in self.ledger.take_queued(now):
            self._send(mutate_frame(rec))

    def _settle(self, resolved: Iterable[MutationRecord]) -> None:
        """Log resolved mutations and wake their handles."""
        for rec in resolved:
            log_mutation(self.log, rec)
            handle = self._mutations.pop(rec.client_mutation_id, None)
            if handle is not None:
                handle._resolve()

    # -- maintenance -------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            try:
                self._tick(time.time())
            except Exception as exc:  # never let housekeeping die silently
                self.callback_failed("maintenance tick", exc)

    def _tick(self, now: float) -> None:
        self._settle(self.pipeline.expire_mutations(now))
        if self.machine.status is not Status.SUBSCRIBED:
            return
        for gap in self.pipeline.check(now):
            ts = self.pipeline.topics.get(gap.topic)
            if ts is None:
                continue
            logger.info(
                "rtnb: %s: sequences %d..%d missing (%s); re-subscribing",
                gap.topic,
                gap.first,
                gap.last,
                gap.reason,
            )
            self._run(self.machine.resubscribe(now, gap.topic, ts.last_token))

    # -- state API ------------------------------------------------------------------------------

    def on_state(self, callback: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        self._state_callbacks.append(callback)

        def remove() -> None:
            if callback in self._state_callbacks:
                self._state_callbacks.remove(callback)

        return remove

    async def wait_for(self, status: Status, timeout: float | None) -> ConnectionState:
        if self.state.status is status:
            return self.state
        if self.state.status is Status.CLOSED:
            raise self.closed_error(f"wait for {status.value}")
        fut: asyncio.Future[ConnectionState] = asyncio.get_running_loop().create_future()
        self._state_waiters.append((status, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            text = f"connection not {status.value} within {timeout} s; now {self.state}"
            cause = self.last_cause
            if cause and cause not in text:
                text += f"; last failure: {cause}"
            raise WaitTimeout(text) from None

    def callback_failed(self, what: str, exc: BaseException) -> None:
        logger.warning(
            "rtnb: %s raised %s: %s (the stream continues)", what, type(exc).__name__, exc
        )

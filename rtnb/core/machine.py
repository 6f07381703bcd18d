"""The connection state machine: lifecycle, auth, heartbeats, backoff, fallback.

Sans-I/O (see :mod:`rtnb.core.machine_table` for the theory of operation and
every legal transition). Each input method takes ``now`` — seconds since the
epoch on the driver's clock (``time.time()``: token expiries are unix times) —
and returns a list of :data:`MachineAction` for the driver to carry out *in order*.
Randomness (backoff jitter) comes from the ``rng`` given to the constructor.

Driver contract, in short:

* run every action in order; ``StartTimer`` re-arms a timer of that name,
  ``CancelTimer`` guarantees it will not fire; feed ``timer_fired`` only for
  armed timers;
* after ``CloseTransport`` (or once the machine left the connected states)
  the old transport is discarded: do not report its frames or its closing;
* feed every received frame to ``frame_received`` (events and snapshots too,
  unwrapping batches): *any* frame proves the link alive, so a busy stream
  never trips the heartbeat deadline while a heartbeat is queued behind it;
* ``RequestToken`` means: call the token provider, then ``token_refreshed``
  (or ``token_refresh_failed``);
* request-based transports (sse, polling) take ``OpenTransport.auth`` and
  ``.subscriptions`` in the opening request and map HTTP statuses to
  ``transport_failed(code=...)``: 401, 403, 429/503 (+ ``Retry-After``).

Decisions (and why):

* Liveness: the heartbeat deadline (``missed_heartbeats × interval`` plus a
  small grace, :func:`~rtnb.core.machine_table.liveness_deadline`) runs from
  the last frame of *any* kind. ``interval`` is the one the server announced
  in ``Authenticated.heartbeat_interval`` on this connection (every transport
  carries one: sse and polling send it as their first frame); until then, or
  from a server that does not announce it, ``config.heartbeat_interval``. It
  is learned per connection: each new transport starts from the config again. The timer is armed
  once and re-armed lazily when it fires early, so a stream of 250k events/s
  costs one float store per frame, not a timer action.
* Attempts and delays: one :class:`rtnb.core.backoff.BackoffSchedule` per
  machine (``backoff.schedule(rng)``) counts the retries and draws every
  delay — the same object ``bench/reconnect_storm.py`` measures. The count
  resets at a loss, and only if the connection had been SUBSCRIBED for
  ``backoff.reset_after`` seconds up to its last frame (time spent silent
  before a heartbeat timeout does not count as healthy).
* A server retry hint (4429, 429/503 + ``Retry-After``) is a *minimum*:
  ``delay = hint + uniform(0, HINT_JITTER·hint)`` with the hint clamped to
  ``backoff.max_retry_hint`` (:meth:`~rtnb.core.backoff.BackoffSchedule.next_delay`).
* Tokens: on 4401/401 (or an ``unauthenticated``/``token_expired`` error frame)
  the machine asks for one fresh token and reconnects at once with it; if that
  fresh token is refused too it closes, instead of storming the server. It
  never connects with a token the server already refused: a failing provider
  is asked again after a backoff delay. Refresh runs at
  ``expires_at - max(refresh_margin, refresh_fraction × lifetime)``, never
  sooner than ``refresh_retry`` from now (a skewed clock cannot cause a loop).
* Transports: a ``rejected`` transport falls back at once to the next in the
  order (not counted as a retry); once every transport was rejected in a row,
  back off. The machine stays on the transport that last worked.
* Topics: a topic-level ``Error`` resolves that topic only; ``forbidden`` and
  ``unknown_topic`` (or any error answering a pending Subscribe) leave it
  REFUSED — not resubscribed on reconnect until ``subscribe()`` again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

import msgspec

from ..protocol.errors import AUTH_ERRORS, ErrorCode, LocalProtocolError
from ..protocol.frames import (
    Authenticate,
    Authenticated,
    Batch,
    Error,
    Event,
    Heartbeat,
    MutationRejected,
    Ping,
    Pong,
    Snapshot,
    Subscribe,
    Subscribed,
    TopicName,
    Unsubscribe,
)
from ..protocol.retry import retry_hint_in_reason
from .backoff import BackoffSchedule
from .machine_table import (
    AUTOMATIC,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FALLBACK_ORDER,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MISSED_HEARTBEATS,
    DEFAULT_PING_INTERVAL,
    DEFAULT_REFRESH_FRACTION,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_REFRESH_RETRY,
    TIMERS,
    TRANSITIONS,
    CancelTimer,
    CloseTransport,
    FailureKind,
    Input,
    MachineAction,
    MachineConfig,
    OpenTransport,
    RecordRtt,
    RequestToken,
    Row,
    SendFrame,
    StartTimer,
    StateChanged,
    Timer,
    TopicPhase,
    TopicStatusChanged,
    TransportKind,
    liveness_deadline,
)
from .status import Status

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_FALLBACK_ORDER",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MISSED_HEARTBEATS",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_REFRESH_FRACTION",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_REFRESH_RETRY",
    "BackoffLike",
    "CancelTimer",
    "CloseTransport",
    "ConnectionMachine",
    "ControlFrame",
    "FailureKind",
    "Input",
    "MachineAction",
    "MachineConfig",
    "OpenTransport",
    "RecordRtt",
    "RequestToken",
    "SendFrame",
    "StartTimer",
    "StateChanged",
    "Timer",
    "TopicPhase",
    "TopicStatusChanged",
    "TransportKind",
]

# Close codes (WebSocket, DESIGN §3) and their HTTP twins, by meaning.
_AUTH_CODES: Final = frozenset({4401, 401})
_FORBIDDEN_CODES: Final = frozenset({4403, 403})
_FAILURE_CODES: Final[dict[str, int | None]] = {
    "unreachable": None,
    "rejected": None,
    "unauthorized": 401,
    "forbidden": 403,
}
# Error codes (no topic) that mean "this token is no good": handled like 4401.
_AUTH_ERRORS: Final = AUTH_ERRORS
# Topic-level error codes after which the topic is not resubscribed on reconnect.
_REFUSALS: Final = frozenset({ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_TOPIC})
_MAX_OUTSTANDING_PINGS: Final = 8
_MAX_PEER_TEXT: Final = 80  # server-provided close reasons are truncated in our reasons
_MAX_CAUSE: Final = 160  # a transport's or the server's account of a failure, likewise


class BackoffLike(Protocol):
    """What the machine needs of :class:`rtnb.core.backoff.Backoff`: its hint clamp and
    a fresh :class:`~rtnb.core.backoff.BackoffSchedule` (which counts and draws)."""

    @property
    def max_retry_hint(self) -> float: ...

    def schedule(self, rng: random.Random) -> BackoffSchedule: ...


_FRAME_INPUTS: Final[dict[type, Input]] = {
    Authenticated: Input.FRAME_AUTHENTICATED,
    Subscribed: Input.FRAME_SUBSCRIBED,
    Heartbeat: Input.FRAME_HEARTBEAT,
    Pong: Input.FRAME_PONG,
    Error: Input.FRAME_ERROR,
    Event: Input.FRAME_OTHER,
    Snapshot: Input.FRAME_OTHER,
    MutationRejected: Input.FRAME_OTHER,
}
ControlFrame = (
    Authenticated | Subscribed | Heartbeat | Pong | Error | Event | Snapshot | MutationRejected
)

_CONNECTED: Final = frozenset({Status.CONNECTING, Status.AUTHENTICATED, Status.SUBSCRIBED})
_LIVE: Final = frozenset({Status.AUTHENTICATED, Status.SUBSCRIBED})


@dataclass(slots=True)
class _Step:
    """Scratch state of the input being handled."""

    inp: Input
    row: Row
    now: float
    before: Status
    out: list[MachineAction] = field(default_factory=list)
    moved: bool = False


class ConnectionMachine:
    """One connection's lifecycle, as a pure function of its inputs.

    Args:
        config: settings; ``MachineConfig()`` by default.
        backoff: the delay policy (``rtnb.core.backoff.Backoff()`` in production).
        rng: source of jitter; seed it for reproducible runs.
        replay_tokens: ``topic -> last applied replay token`` (the pipeline owns
            them); asked each time a ``Subscribe`` is built. Tokens given with
            ``set_topic_token``/``subscribe``/``resubscribe`` are the fallback.
    """

    def __init__(
        self,
        config: MachineConfig | None = None,
        *,
        backoff: BackoffLike,
        rng: random.Random | None = None,
        replay_tokens: Callable[[str], str | None] | None = None,
    ) -> None:
        self._config = config if config is not None else MachineConfig()
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._replay_tokens = replay_tokens
        self._schedule = backoff.schedule(self._rng)
        self._token_delay: float | None = None  # drawn at a token loss, for a failed refresh
        self._status = Status.IDLE
        self._next_retry_at: float | None = None
        self._token: str | None = None
        self._token_fresh = False  # obtained after a rejection: if refused too, give up
        self._awaiting_token = False  # a rejection asked for a token; don't connect without it
        self._transport: TransportKind = self._config.order[0]
        self._last_working: TransportKind | None = None
        self._rejections = 0  # consecutive "rejected" transports since one worked
        self._transport_open = False
        self._requested: frozenset[str] = frozenset()  # topics carried by the opening request
        self._timers: dict[Timer, float] = {}
        self._topics: dict[str, TopicPhase] = {}
        self._replay: dict[str, str] = {}
        self._last_seen = 0.0
        self._server_interval: float | None = None  # announced on this connection
        self._refresh_for: float | None = None  # the expiry the refresh timer was armed for
        self._pings: dict[str, float] = {}
        self._ping_seq = 0
        self._loss: tuple[str, float | None] = (
            "",
            None,
        )  # cause, hint: for DEGRADED -> RECONNECTING

    def __repr__(self) -> str:
        # Never the token itself: reprs end up in logs and tracebacks.
        token = "<redacted>" if self._token is not None else None
        return (
            f"<ConnectionMachine {self._status.value} via {self._transport}, "
            f"attempt={self._schedule.attempt}, topics={len(self._topics)}, token={token}>"
        )

    # -- read-only views ---------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def config(self) -> MachineConfig:
        return self._config

    @property
    def attempt(self) -> int:
        """Retries since the count was last reset (it resets at a loss after a healthy stretch)."""
        return self._schedule.attempt

    @property
    def next_retry_at(self) -> float | None:
        return self._next_retry_at if self._status is Status.RECONNECTING else None

    @property
    def transport(self) -> TransportKind:
        """The transport in use, or to be used by the next attempt."""
        return self._transport

    @property
    def transport_open(self) -> bool:
        """Whether the driver reported the current transport open (and it has not closed)."""
        return self._transport_open

    @property
    def last_working_transport(self) -> TransportKind | None:
        """The transport that last got as far as authentication."""
        return self._last_working

    @property
    def heartbeat_interval(self) -> float:
        """The server's heartbeat interval: announced on this connection, else the config's."""
        if self._server_interval is not None:
            return self._server_interval
        return self._config.heartbeat_interval

    @property
    def heartbeat_interval_announced(self) -> bool:
        """Whether the server announced its interval on the current connection."""
        return self._server_interval is not None

    @property
    def heartbeat_deadline(self) -> float:
        """Seconds without any frame after which this connection is declared dead."""
        return liveness_deadline(self.heartbeat_interval, self._config.missed_heartbeats)

    @property
    def timers(self) -> Mapping[Timer, float]:
        return MappingProxyType(self._timers)

    @property
    def topics(self) -> Mapping[str, TopicPhase]:
        return MappingProxyType(self._topics)

    def set_topic_token(self, topic: str, token: str) -> None:
        """Record ``topic``'s last applied replay token (data, legal in any state)."""
        if topic in self._topics:
            self._replay[topic] = token

    def note_alive(self, now: float) -> None:
        """A data frame arrived (event, snapshot): liveness only, no actions.

        The hot path's cheap form of ``frame_received`` for frames the machine
        has no decision to make about; ignored when no transport is open.
        """
        if self._transport_open:
            self._last_seen = now

    # -- inputs ----------------------------------------------------------------

    def start(self, now: float, token: str) -> list[MachineAction]:
        """Begin connecting with ``token`` (IDLE only)."""
        step = self._begin(Input.START, now)
        self._token = _check_token(token)
        self._open(step, f"connecting over {self._transport}")
        return self._finish(step)

    def transport_opened(self, now: float) -> list[MachineAction]:
        step = self._begin(Input.TRANSPORT_OPENED, now)
        if self._transport_open:
            raise self._illegal(step, "the transport is already open")
        self._transport_open = True
        self._last_seen = now
        if self._transport == "websocket":
            assert self._token is not None
            step.out.append(SendFrame(Authenticate(token=self._token)))
        else:
            self._authenticated(step, f"authenticated by the {self._transport} request", None)
        return self._finish(step)

    def transport_failed(
        self,
        now: float,
        kind: FailureKind = "unreachable",
        code: int | None = None,
        retry_after: float | None = None,
        reason: str = "",
    ) -> list[MachineAction]:
        """The transport could not be opened.

        ``kind="unreachable"``: the server did not answer, or answered ``code``
        (HTTP status or close code) — retry the same transport. ``"rejected"``:
        this transport does not work here (e.g. a proxy refused the WebSocket
        upgrade) — fall back to the next one in the order. ``"unauthorized"`` and
        ``"forbidden"`` are the same as ``code=401`` / ``code=403``.
        ``retry_after``: the ``Retry-After`` header, if any (else read from ``reason``).
        """
        step = self._begin(Input.TRANSPORT_FAILED, now)
        if kind not in _FAILURE_CODES:
            raise self._illegal(step, f"kind must be one of {sorted(_FAILURE_CODES)}, got {kind!r}")
        if self._transport_open:
            raise self._illegal(step, "the transport had opened; report transport_closed")
        if kind == "rejected":
            self._fall_back(step, code)
        else:
            code = _FAILURE_CODES[kind] if code is None else code
            what = (
                f"{self._transport} unreachable"
                if code is None
                else f"{self._transport} refused ({code})"
            )
            if reason:  # the concrete cause: "connection refused at 127.0.0.1:8799", ...
                what += f": {reason[:_MAX_CAUSE]}"
            self._dropped(
                step, what, code, _retry_hint(retry_after, reason), detail=reason[:_MAX_CAUSE]
            )
        return self._finish(step)

    def transport_closed(
        self,
        now: float,
        code: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> list[MachineAction]:
        """An open transport closed (by the peer or the network).

        The reference server puts a 4429's hint in the close reason
        (``"rate limited; retry_after=2.5"``); it is used unless ``retry_after``
        is given.
        """
        step = self._begin(Input.TRANSPORT_CLOSED, now)
        if not self._transport_open:
            raise self._illegal(step, "no transport is open; report transport_failed")
        detail = "no close code" if code is None else f"code {code}"
        if reason:
            detail += f": {reason[:_MAX_PEER_TEXT]}"
        self._dropped(
            step,
            f"transport closed ({detail})",
            code,
            _retry_hint(retry_after, reason),
            detail=reason[:_MAX_PEER_TEXT],
        )
        return self._finish(step)

    def frame_received(self, now: float, frame: ControlFrame) -> list[MachineAction]:
        """Any frame from the server (unwrap batches first)."""
        inp = _FRAME_INPUTS.get(type(frame))
        if inp is None:
            hint = (
                "feed its messages one by one" if isinstance(frame, Batch) else "not a server frame"
            )
            raise LocalProtocolError(f"frame_received({type(frame).__name__}): {hint}")
        step = self._begin(inp, now)
        if not self._transport_open:
            raise self._illegal(step, "no transport is open")
        self._last_seen = now
        if isinstance(frame, Authenticated):
            if frame.heartbeat_interval is not None:
                self._server_interval = frame.heartbeat_interval
            if self._status is Status.CONNECTING:
                self._authenticated(step, f"authenticated (role {frame.role})", frame.expires_at)
            else:  # an in-band refresh answered, or sse/polling announcing themselves
                if frame.expires_at != self._refresh_for:
                    self._arm_refresh(step, frame.expires_at)
                if frame.heartbeat_interval is not None:
                    self._arm(step, Timer.HEARTBEAT, self._last_seen + self.heartbeat_deadline)
        elif isinstance(frame, Subscribed):
            if self._status in _LIVE and self._topics.get(frame.topic) is TopicPhase.PENDING:
                self._topics[frame.topic] = TopicPhase.SUBSCRIBED
                step.out.append(
                    TopicStatusChanged(frame.topic, "subscribed", f"replay {frame.replay}")
                )
        elif isinstance(frame, Heartbeat):
            step.out.append(RecordRtt(now, None, (now - frame.server_time) * 1000.0))
        elif isinstance(frame, Pong):
            sent = self._pings.pop(frame.id, None)
            if sent is not None:
                lag = (now - frame.server_time) * 1000.0
                step.out.append(RecordRtt(now, (now - sent) * 1000.0, lag))
        elif isinstance(frame, Error):
            self._error(step, frame)
        return self._finish(step)

    def timer_fired(self, now: float, name: Timer | str) -> list[MachineAction]:
        try:
            timer = Timer(name)
        except ValueError:
            raise LocalProtocolError(f"unknown timer {name!r}") from None
        step = self._begin(Input(f"timer:{timer.value}"), now)
        if timer not in self._timers:
            raise self._illegal(step, "that timer is not armed (a cancelled timer must not fire)")
        del self._timers[timer]
        cfg = self._config
        if timer is Timer.CONNECT:
            what = "no connection" if self._status is Status.CONNECTING else "not subscribed"
            self._lost(step, f"{what} within {cfg.connect_timeout:.1f} s", None, close=True)
        elif timer is Timer.HEARTBEAT:
            deadline = self._last_seen + self.heartbeat_deadline
            if now < deadline:  # a frame came since the timer was armed: lazy re-arm
                self._arm(step, Timer.HEARTBEAT, deadline)
            else:
                self._lost(
                    step,
                    f"no heartbeat for {now - self._last_seen:.1f} s (the server sends one "
                    f"every {self.heartbeat_interval:g} s)",
                    None,
                    close=True,
                )
        elif timer is Timer.PING:
            self._ping_seq += 1
            ping_id = f"p{self._ping_seq}"
            self._pings[ping_id] = now
            if len(self._pings) > _MAX_OUTSTANDING_PINGS:  # unanswered pings: forget the oldest
                del self._pings[next(iter(self._pings))]
            step.out.append(SendFrame(Ping(id=ping_id)))
            assert cfg.ping_interval is not None
            self._arm(step, Timer.PING, now + cfg.ping_interval)
        elif timer is Timer.REFRESH:
            step.out.append(RequestToken("token expires soon: scheduled refresh"))
        elif self._awaiting_token:  # RECONNECT, but the token we hold was refused
            self._next_retry_at = None
            self._go(step, Status.RECONNECTING, "asking for a fresh token again")
            step.out.append(RequestToken("the server refused the current token"))
        else:
            self._open(
                step, f"reconnecting over {self._transport} (attempt {self._schedule.attempt})"
            )
        return self._finish(step)

    def subscribe(
        self, now: float, topic: str, replay_from: str | None = None
    ) -> list[MachineAction]:
        """Want ``topic`` (idempotent). Sent now if authenticated, else on the next connection."""
        _check_topic(topic)
        step = self._begin(Input.SUBSCRIBE, now)
        if replay_from is not None:
            self._replay[topic] = replay_from
        if self._topics.get(topic) in (TopicPhase.PENDING, TopicPhase.SUBSCRIBED):
            return self._finish(step)
        self._topics[topic] = TopicPhase.PENDING
        step.out.append(TopicStatusChanged(topic, "pending", "subscribe requested"))
        if self._status in _LIVE:
            step.out.append(SendFrame(self._subscribe_frame(topic)))
        return self._finish(step)

    def unsubscribe(self, now: float, topic: str) -> list[MachineAction]:
        step = self._begin(Input.UNSUBSCRIBE, now)
        if topic not in self._topics:
            raise self._illegal(step, f"topic {topic!r} is not subscribed")
        del self._topics[topic]
        self._replay.pop(topic, None)
        if self._status in _LIVE:
            step.out.append(SendFrame(Unsubscribe(topic=topic)))
        step.out.append(TopicStatusChanged(topic, "unsubscribed", "unsubscribe requested"))
        return self._finish(step)

    def resubscribe(self, now: float, topic: str, replay_from: str | None) -> list[MachineAction]:
        """Targeted re-subscribe (gap repair); the connection state does not change.

        While not authenticated the token is only noted: the coming Subscribe carries it.
        """
        step = self._begin(Input.RESUBSCRIBE, now)
        state = self._topics.get(topic)
        if state is None or state is TopicPhase.REFUSED:
            raise self._illegal(step, f"topic {topic!r} is not subscribed")
        if replay_from is not None:
            self._replay[topic] = replay_from
        if self._status in _LIVE:
            step.out.append(SendFrame(Subscribe(topic=topic, replay_from=replay_from)))
        return self._finish(step)

    def token_refreshed(
        self, now: float, token: str, expires_at: float | None = None
    ) -> list[MachineAction]:
        """A new token from the provider (``expires_at``: unix seconds, if known)."""
        step = self._begin(Input.TOKEN_REFRESHED, now)
        self._token = _check_token(token)
        if self._status is Status.RECONNECTING and self._awaiting_token:
            self._awaiting_token = False
            self._token_delay = None
            self._token_fresh = True
            self._open(step, f"fresh token received; connecting over {self._transport}")
        elif self._status in _LIVE:
            if self._transport == "websocket":  # sse/polling send it with the next request
                step.out.append(SendFrame(Authenticate(token=token)))
            if expires_at is not None:
                self._arm_refresh(step, expires_at)
        return self._finish(step)

    def token_refresh_failed(self, now: float, reason: str) -> list[MachineAction]:
        step = self._begin(Input.TOKEN_REFRESH_FAILED, now)
        if self._status is Status.RECONNECTING and self._awaiting_token:
            # The loss's own delay first; each later failure is one more attempt.
            delay, self._token_delay = self._token_delay, None
            if delay is None:
                delay = self._schedule.next_delay()
            self._next_retry_at = now + delay
            self._go(
                step,
                Status.RECONNECTING,
                f"token refresh failed ({reason}); asking again in {delay:.1f} s",
            )
            self._arm(step, Timer.RECONNECT, now + delay)
        elif self._status in _LIVE:
            self._arm(step, Timer.REFRESH, now + self._config.refresh_retry)
        return self._finish(step)

    def close(self, now: float) -> list[MachineAction]:
        """Close for good, from any state (idempotent)."""
        step = self._begin(Input.CLOSE, now)
        if self._status is not Status.CLOSED:
            self._give_up(step, "closed by user", CLOSE_NORMAL)
        return self._finish(step)

    # -- transitions -------------------------------------------------------

    def _begin(self, inp: Input, now: float) -> _Step:
        row = TRANSITIONS.get((self._status, inp))
        step = _Step(inp, row if row is not None else Row(frozenset(), ""), now, self._status)
        if row is None:
            raise self._illegal(step, "")
        return step

    def _illegal(self, step: _Step, why: str) -> LocalProtocolError:
        legal = sorted(s.value for (s, i) in TRANSITIONS if i is step.inp)
        text = f"{step.inp.value} is not allowed while {self._status.value}"
        text += f": {why}" if why else f" (legal while: {', '.join(legal) or 'never'})"
        return LocalProtocolError(text)

    def _go(self, step: _Step, status: Status, reason: str, *, automatic: bool = False) -> None:
        previous = self._status
        allowed = AUTOMATIC[previous].targets if automatic else step.row.targets
        if status not in allowed or (not automatic and step.moved):
            raise AssertionError(
                f"machine bug: {previous} -> {status} on {step.inp} not in the table"
            )
        step.moved = step.moved or not automatic
        self._status = status
        step.out.append(
            StateChanged(
                previous,
                status,
                reason,
                self._schedule.attempt,
                self._next_retry_at if status is Status.RECONNECTING else None,
                step.now,
                self._transport,
                "automatic" if automatic else step.inp.value,
            )
        )
        allowed_timers = TIMERS[status]
        for timer in [t for t in self._timers if t not in allowed_timers]:
            del self._timers[timer]
            step.out.append(CancelTimer(timer))
        if status is Status.SUBSCRIBED:
            self._schedule.mark_healthy(step.now)

    def _finish(self, step: _Step) -> list[MachineAction]:
        while True:  # state-triggered moves (machine_table.AUTOMATIC)
            if self._status is Status.DEGRADED:
                cause, hint = self._loss
                self._schedule_retry(step, cause, hint, automatic=True)
            elif (
                self._status is Status.AUTHENTICATED
                and TopicPhase.PENDING not in self._topics.values()
            ):
                n = len(self._topics)
                reason = (
                    f"subscribed to {n} topic{'s' * (n != 1)}" if n else "authenticated; no topics"
                )
                self._go(step, Status.SUBSCRIBED, reason, automatic=True)
            else:
                break
        if not step.moved and step.before not in step.row.targets:
            raise AssertionError(f"machine bug: {step.inp} must leave {step.before}")
        return step.out

    def _open(self, step: _Step, reason: str) -> None:
        self._transport_open = False
        self._next_retry_at = None
        self._pings.clear()
        self._server_interval = None  # learned again from this connection's server
        self._refresh_for = None
        self._go(step, Status.CONNECTING, reason)
        assert self._token is not None
        if self._transport == "websocket":
            self._requested = frozenset()
            step.out.append(OpenTransport(self._transport))
        else:
            wanted = [t for t, s in self._topics.items() if s is TopicPhase.PENDING]
            self._requested = frozenset(wanted)
            subs = tuple(self._subscribe_frame(t) for t in wanted)
            step.out.append(OpenTransport(self._transport, Authenticate(token=self._token), subs))
        self._arm(step, Timer.CONNECT, step.now + self._config.connect_timeout)

    def _authenticated(self, step: _Step, reason: str, expires_at: float | None) -> None:
        self._go(step, Status.AUTHENTICATED, reason)
        self._last_working = self._transport
        self._rejections = 0
        self._token_fresh = self._awaiting_token = False
        cfg = self._config
        self._arm(step, Timer.HEARTBEAT, step.now + self.heartbeat_deadline)
        if self._transport == "websocket" and cfg.ping_interval is not None:
            self._arm(step, Timer.PING, step.now + cfg.ping_interval)
        if expires_at is not None:
            self._arm_refresh(step, expires_at)
        for topic, state in self._topics.items():
            if state is TopicPhase.PENDING and topic not in self._requested:
                step.out.append(SendFrame(self._subscribe_frame(topic)))
        self._requested = frozenset()

    def _error(self, step: _Step, err: Error) -> None:
        if err.topic is not None:  # about one topic only: the others are left alone
            state = self._topics.get(err.topic)
            if state is None:
                return
            if state is TopicPhase.PENDING or err.code in _REFUSALS:
                self._topics[err.topic] = TopicPhase.REFUSED  # answered: no longer pending
            step.out.append(TopicStatusChanged(err.topic, err.code, err.message[:_MAX_PEER_TEXT]))
        elif err.code in _AUTH_ERRORS:
            step.out.append(CloseTransport(CLOSE_GOING_AWAY, "token refused"))
            self._rejected_token(step, f"token rejected ({err.code}): {err.message[:_MAX_CAUSE]}")
        elif err.code == "forbidden":
            self._give_up(step, "forbidden (error frame)", CLOSE_NORMAL)
        # other connection-level errors: the server closes if it means it (4400 etc.)

    def _dropped(
        self,
        step: _Step,
        what: str,
        code: int | None,
        retry_after: float | None,
        *,
        detail: str = "",
    ) -> None:
        """The transport is gone (failed to open or closed): classify by code."""
        if code in _AUTH_CODES:
            self._rejected_token(
                step, f"token rejected ({code})" + (f": {detail}" if detail else "")
            )
        elif code in _FORBIDDEN_CODES:
            self._give_up(step, f"forbidden ({code})", None)
        elif retry_after is not None and retry_after >= 0:
            hint = min(retry_after, self._backoff.max_retry_hint)
            self._lost(step, f"server asked to retry in {hint:.1f} s ({code})", hint, close=False)
        else:
            self._lost(step, what, None, close=False)

    def _rejected_token(self, step: _Step, cause: str) -> None:
        if self._token_fresh:  # a fresh token was refused too: no retry storm
            self._give_up(
                step,
                f"{cause} (a fresh token was refused too: check that the token "
                "comes from this server)",
                None,
            )
            return
        self._awaiting_token = True
        self._lost(step, cause, None, close=False)

    def _lost(self, step: _Step, cause: str, hint: float | None, *, close: bool) -> None:
        if close:
            step.out.append(CloseTransport(CLOSE_GOING_AWAY, cause))
        self._transport_open = False
        self._pings.clear()
        # Reset the attempt count only after a healthy stretch (websockets resets
        # on mere open, so a server that accepts and drops at once is hammered).
        self._schedule.on_disconnect(self._last_seen)
        self._unconfirm_topics(step, "pending", cause)
        if self._status in _LIVE:
            self._loss = (cause, hint)
            self._go(step, Status.DEGRADED, cause)  # then AUTOMATIC: -> RECONNECTING
        else:
            self._schedule_retry(step, cause, hint, automatic=False)

    def _schedule_retry(
        self, step: _Step, cause: str, hint: float | None, *, automatic: bool
    ) -> None:
        if self._awaiting_token:
            # The attempt counts; its delay is used only if the provider fails.
            self._token_delay = self._schedule.next_delay()
            self._next_retry_at = None
            self._go(
                step,
                Status.RECONNECTING,
                f"{cause}; waiting for a fresh token",
                automatic=automatic,
            )
            step.out.append(RequestToken(cause))
            return
        # The hint is the minimum; waiting hint + a little jitter (not
        # max(draw, hint)) is what lets the server's hints spread a storm
        # over its admission rate (bench/reconnect_storm.py).
        delay = self._schedule.next_delay(retry_hint=hint)
        self._next_retry_at = step.now + delay
        reason = f"{cause}; retry {self._schedule.attempt} in {delay:.1f} s"
        self._go(step, Status.RECONNECTING, reason, automatic=automatic)
        self._arm(step, Timer.RECONNECT, self._next_retry_at)

    def _fall_back(self, step: _Step, code: int | None) -> None:
        order = self._config.order
        rejected = self._transport
        cause = f"{rejected} rejected" + (f" ({code})" if code is not None else "")
        self._transport = order[(order.index(rejected) + 1) % len(order)]
        self._rejections += 1
        if self._rejections >= len(order):  # every transport refused in a row: back off
            self._rejections = 0
            self._lost(
                step, f"{cause}; no transport left, next: {self._transport}", None, close=False
            )
        else:
            self._open(step, f"{cause}; falling back to {self._transport}")

    def _give_up(self, step: _Step, reason: str, close_code: int | None) -> None:
        if close_code is not None and self._status in _CONNECTED:
            step.out.append(CloseTransport(close_code, reason))
        self._transport_open = False
        self._next_retry_at = None
        self._unconfirm_topics(step, "closed", reason)
        self._go(step, Status.CLOSED, reason)

    def _unconfirm_topics(self, step: _Step, status: str, reason: str) -> None:
        # A confirmation holds for one connection only; the topic stays wanted.
        for topic, state in self._topics.items():
            if state is TopicPhase.SUBSCRIBED:
                self._topics[topic] = TopicPhase.PENDING
                step.out.append(TopicStatusChanged(topic, status, reason))

    # -- helpers -------------------------------------------------------------

    def _arm(self, step: _Step, timer: Timer, at: float) -> None:
        assert timer in TIMERS[self._status], f"{timer} while {self._status}"
        self._timers[timer] = at
        step.out.append(StartTimer(timer, at))

    def _arm_refresh(self, step: _Step, expires_at: float) -> None:
        cfg = self._config
        lifetime = expires_at - step.now
        margin = max(cfg.refresh_margin, cfg.refresh_fraction * lifetime)
        self._refresh_for = expires_at
        # Floor: with a skewed clock every token may look expired; refresh at
        # most once per refresh_retry instead of in a tight loop.
        self._arm(step, Timer.REFRESH, max(expires_at - margin, step.now + cfg.refresh_retry))

    def _subscribe_frame(self, topic: str) -> Subscribe:
        token = self._replay_tokens(topic) if self._replay_tokens is not None else None
        return Subscribe(
            topic=topic, replay_from=token if token is not None else self._replay.get(topic)
        )


def _retry_hint(retry_after: float | None, reason: str) -> float | None:
    if retry_after is not None:
        return retry_after
    return retry_hint_in_reason(reason)


def _check_token(token: str) -> str:
    if not isinstance(token, str) or not token:
        raise LocalProtocolError("a token must be a non-empty str")  # never echo the value
    return token


def _check_topic(topic: str) -> None:
    try:
        msgspec.convert(topic, TopicName)
    except msgspec.ValidationError as exc:
        raise LocalProtocolError(f"invalid topic name {topic!r}: {exc}") from None

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

Decisions (and why). The bookkeeping lives in small modules beside this one:
:mod:`~rtnb.core.liveness` (heartbeat deadline, pings), :mod:`~rtnb.core.reconnect`
(classifying a loss, backoff and server retry hints), :mod:`~rtnb.core.topics`
(topic phases, replay tokens) and :mod:`~rtnb.core.tokens` (refresh timing).
This module is the transitions: which input does what, in which state.

* Liveness: the heartbeat deadline runs from the last frame of *any* kind,
  with the interval the server announced on this connection, else
  ``config.heartbeat_interval``. The timer is armed once and re-armed lazily
  when it fires early, so a stream of 250k events/s costs one float store per
  frame, not a timer action.
* Attempts and delays: one backoff schedule per machine counts the retries and
  draws every delay; the count resets at a loss only after a healthy stretch.
  A server retry hint (4429, 429/503 + ``Retry-After``) is a *minimum*.
* Tokens: on 4401/401 (or an ``unauthenticated``/``token_expired`` error frame)
  the machine asks for one fresh token and reconnects at once with it; if that
  fresh token is refused too it closes, instead of storming the server. It
  never connects with a token the server already refused: a failing provider
  is asked again after a backoff delay. Refresh runs at
  ``expires_at - max(refresh_margin, refresh_fraction × lifetime)``, never
  sooner than ``refresh_retry`` from now (:func:`~rtnb.core.tokens.refresh_at`).
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
from typing import Final

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
    Unsubscribe,
)
from .liveness import Liveness
from .machine_table import (
    AUTOMATIC,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
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
)
from .reconnect import FAILURE_CODES, BackoffLike, RetryClock, classify_drop, retry_hint
from .status import Status
from .tokens import check_token, refresh_at
from .topics import TopicBook, check_topic

# Error codes (no topic) that mean "this token is no good": handled like 4401.
_AUTH_ERRORS: Final = AUTH_ERRORS
_MAX_PEER_TEXT: Final = 80  # server-provided close reasons are truncated in our reasons
_MAX_CAUSE: Final = 160  # a transport's or the server's account of a failure, likewise


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
        self._config = cfg = config if config is not None else MachineConfig()
        self._rng = rng if rng is not None else random.Random()
        self._retry = RetryClock(backoff, self._rng)
        self._liveness = Liveness(cfg.heartbeat_interval, cfg.missed_heartbeats)
        self._topics = TopicBook(replay_tokens)
        self._status = Status.IDLE
        self._token: str | None = None
        self._token_fresh = False  # obtained after a rejection: if refused too, give up
        self._awaiting_token = False  # a rejection asked for a token; don't connect without it
        self._transport: TransportKind = self._config.order[0]
        self._last_working: TransportKind | None = None
        self._rejections = 0  # consecutive "rejected" transports since one worked
        self._transport_open = False
        self._requested: frozenset[str] = frozenset()  # topics carried by the opening request
        self._timers: dict[Timer, float] = {}
        self._refresh_for: float | None = None  # the expiry the refresh timer was armed for
        self._loss: tuple[str, float | None] = (
            "",
            None,
        )  # cause, hint: for DEGRADED -> RECONNECTING

    def __repr__(self) -> str:
        # Never the token itself: reprs end up in logs and tracebacks.
        token = "<redacted>" if self._token is not None else None
        return (
            f"<ConnectionMachine {self._status.value} via {self._transport}, "
            f"attempt={self._retry.attempt}, topics={len(self._topics)}, token={token}>"
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
        return self._retry.attempt

    @property
    def next_retry_at(self) -> float | None:
        return self._retry.next_retry_at if self._status is Status.RECONNECTING else None

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
        return self._liveness.interval

    @property
    def heartbeat_interval_announced(self) -> bool:
        """Whether the server announced its interval on the current connection."""
        return self._liveness.announced

    @property
    def heartbeat_deadline(self) -> float:
        """Seconds without any frame after which this connection is declared dead."""
        return self._liveness.deadline

    @property
    def timers(self) -> Mapping[Timer, float]:
        return MappingProxyType(self._timers)

    @property
    def topics(self) -> Mapping[str, TopicPhase]:
        return self._topics.view

    def set_topic_token(self, topic: str, token: str) -> None:
        """Record ``topic``'s last applied replay token (data, legal in any state)."""
        if topic in self._topics:
            self._topics.note_replay(topic, token)

    def note_alive(self, now: float) -> None:
        """A data frame arrived (event, snapshot): liveness only, no actions.

        The hot path's cheap form of ``frame_received`` for frames the machine
        has no decision to make about; ignored when no transport is open.
        """
        if self._transport_open:
            self._liveness.last_seen = now

    # -- inputs ----------------------------------------------------------------

    def start(self, now: float, token: str) -> list[MachineAction]:
        """Begin connecting with ``token`` (IDLE only)."""
        step = self._begin(Input.START, now)
        self._token = check_token(token)
        self._open(step, f"connecting over {self._transport}")
        return self._finish(step)

    def transport_opened(self, now: float) -> list[MachineAction]:
        step = self._begin(Input.TRANSPORT_OPENED, now)
        if self._transport_open:
            raise self._illegal(step, "the transport is already open")
        self._transport_open = True
        self._liveness.last_seen = now
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
        if kind not in FAILURE_CODES:
            raise self._illegal(step, f"kind must be one of {sorted(FAILURE_CODES)}, got {kind!r}")
        if self._transport_open:
            raise self._illegal(step, "the transport had opened; report transport_closed")
        if kind == "rejected":
            self._fall_back(step, code)
        else:
            code = FAILURE_CODES[kind] if code is None else code
            what = (
                f"{self._transport} unreachable"
                if code is None
                else f"{self._transport} refused ({code})"
            )
            if reason:  # the concrete cause: "connection refused at 127.0.0.1:8799", ...
                what += f": {reason[:_MAX_CAUSE]}"
            self._dropped(
                step, what, code, retry_hint(retry_after, reason), detail=reason[:_MAX_CAUSE]
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
            retry_hint(retry_after, reason),
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
        live = self._liveness
        live.last_seen = now
        if isinstance(frame, Authenticated):
            if frame.heartbeat_interval is not None:
                live.announce(frame.heartbeat_interval)
            if self._status is Status.CONNECTING:
                self._authenticated(step, f"authenticated (role {frame.role})", frame.expires_at)
            else:  # an in-band refresh answered, or sse/polling announcing themselves
                if frame.expires_at != self._refresh_for:
                    self._arm_refresh(step, frame.expires_at)
                if frame.heartbeat_interval is not None:
                    self._arm(step, Timer.HEARTBEAT, live.expires_at)
        elif isinstance(frame, Subscribed):
            if self._status in _LIVE and self._topics.confirm(frame.topic):
                step.out.append(
                    TopicStatusChanged(frame.topic, "subscribed", f"replay {frame.replay}")
                )
        elif isinstance(frame, Heartbeat):
            step.out.append(RecordRtt(now, None, (now - frame.server_time) * 1000.0))
        elif isinstance(frame, Pong):
            rtt_ms = live.pong(frame.id, now)
            if rtt_ms is not None:
                step.out.append(RecordRtt(now, rtt_ms, (now - frame.server_time) * 1000.0))
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
            live = self._liveness
            deadline = live.expires_at
            if now < deadline:  # a frame came since the timer was armed: lazy re-arm
                self._arm(step, Timer.HEARTBEAT, deadline)
            else:
                self._lost(
                    step,
                    f"no heartbeat for {now - live.last_seen:.1f} s (the server sends one "
                    f"every {live.interval:g} s)",
                    None,
                    close=True,
                )
        elif timer is Timer.PING:
            step.out.append(SendFrame(Ping(id=self._liveness.ping(now))))
            assert cfg.ping_interval is not None
            self._arm(step, Timer.PING, now + cfg.ping_interval)
        elif timer is Timer.REFRESH:
            step.out.append(RequestToken("token expires soon: scheduled refresh"))
        elif self._awaiting_token:  # RECONNECT, but the token we hold was refused
            self._retry.next_retry_at = None
            self._go(step, Status.RECONNECTING, "asking for a fresh token again")
            step.out.append(RequestToken("the server refused the current token"))
        else:
            self._open(step, f"reconnecting over {self._transport} (attempt {self._retry.attempt})")
        return self._finish(step)

    def subscribe(
        self, now: float, topic: str, replay_from: str | None = None
    ) -> list[MachineAction]:
        """Want ``topic`` (idempotent). Sent now if authenticated, else on the next connection."""
        check_topic(topic)
        step = self._begin(Input.SUBSCRIBE, now)
        self._topics.note_replay(topic, replay_from)
        if not self._topics.want(topic):
            return self._finish(step)
        step.out.append(TopicStatusChanged(topic, "pending", "subscribe requested"))
        if self._status in _LIVE:
            step.out.append(SendFrame(self._topics.subscribe_frame(topic)))
        return self._finish(step)

    def unsubscribe(self, now: float, topic: str) -> list[MachineAction]:
        step = self._begin(Input.UNSUBSCRIBE, now)
        if topic not in self._topics:
            raise self._illegal(step, f"topic {topic!r} is not subscribed")
        self._topics.drop(topic)
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
        self._topics.note_replay(topic, replay_from)
        if self._status in _LIVE:
            step.out.append(SendFrame(Subscribe(topic=topic, replay_from=replay_from)))
        return self._finish(step)

    def token_refreshed(
        self, now: float, token: str, expires_at: float | None = None
    ) -> list[MachineAction]:
        """A new token from the provider (``expires_at``: unix seconds, if known)."""
        step = self._begin(Input.TOKEN_REFRESHED, now)
        self._token = check_token(token)
        if self._status is Status.RECONNECTING and self._awaiting_token:
            self._awaiting_token = False
            self._retry.token_arrived()
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
            delay = self._retry.token_failed(now)
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
                self._retry.attempt,
                self._retry.next_retry_at if status is Status.RECONNECTING else None,
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
            self._retry.mark_healthy(step.now)

    def _finish(self, step: _Step) -> list[MachineAction]:
        while True:  # state-triggered moves (machine_table.AUTOMATIC)
            if self._status is Status.DEGRADED:
                cause, hint = self._loss
                self._schedule_retry(step, cause, hint, automatic=True)
            elif self._status is Status.AUTHENTICATED and not self._topics.any_pending:
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
        self._retry.next_retry_at = None
        self._liveness.new_connection()  # the interval is learned again from this server
        self._refresh_for = None
        self._go(step, Status.CONNECTING, reason)
        assert self._token is not None
        if self._transport == "websocket":
            self._requested = frozenset()
            step.out.append(OpenTransport(self._transport))
        else:
            wanted = self._topics.pending()
            self._requested = frozenset(wanted)
            subs = self._topics.subscribe_frames(wanted)
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
        for topic in self._topics.pending():
            if topic not in self._requested:
                step.out.append(SendFrame(self._topics.subscribe_frame(topic)))
        self._requested = frozenset()

    def _error(self, step: _Step, err: Error) -> None:
        if err.topic is not None and err.code == ErrorCode.UNAVAILABLE:
            # This server cannot serve the topic now (its shared store is unreachable):
            # not a refusal. Reconnect within the backoff policy -- to the next gateway
            # if there are several -- and resume every topic from its token.
            if err.topic in self._topics:
                text = err.message[:_MAX_PEER_TEXT]
                step.out.append(TopicStatusChanged(err.topic, err.code, text))
                cause = f"topic {err.topic!r} unavailable on this server: {text[:_MAX_CAUSE]}"
                self._lost(step, cause, None, close=True)
        elif err.topic is not None:  # about one topic only: the others are left alone
            if self._topics.error(err.topic, err.code):
                step.out.append(
                    TopicStatusChanged(err.topic, err.code, err.message[:_MAX_PEER_TEXT])
                )
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
        drop = classify_drop(code, retry_after)
        if drop == "token":
            self._rejected_token(
                step, f"token rejected ({code})" + (f": {detail}" if detail else "")
            )
        elif drop == "forbidden":
            self._give_up(step, f"forbidden ({code})", None)
        elif drop == "hint":
            assert retry_after is not None
            hint = self._retry.clamp(retry_after)
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
        self._liveness.forget_pings()
        self._retry.on_disconnect(self._liveness.last_seen)  # resets after a healthy stretch
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
            self._retry.hold_for_token()
            self._go(
                step,
                Status.RECONNECTING,
                f"{cause}; waiting for a fresh token",
                automatic=automatic,
            )
            step.out.append(RequestToken(cause))
            return
        # The hint is the minimum (see rtnb.core.reconnect).
        delay = self._retry.schedule(step.now, hint)
        reason = f"{cause}; retry {self._retry.attempt} in {delay:.1f} s"
        self._go(step, Status.RECONNECTING, reason, automatic=automatic)
        self._arm(step, Timer.RECONNECT, step.now + delay)

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
        self._retry.next_retry_at = None
        self._unconfirm_topics(step, "closed", reason)
        self._go(step, Status.CLOSED, reason)

    def _unconfirm_topics(self, step: _Step, status: str, reason: str) -> None:
        # A confirmation holds for one connection only; the topic stays wanted.
        for topic in self._topics.unconfirm():
            step.out.append(TopicStatusChanged(topic, status, reason))

    # -- helpers -------------------------------------------------------------

    def _arm(self, step: _Step, timer: Timer, at: float) -> None:
        assert timer in TIMERS[self._status], f"{timer} while {self._status}"
        self._timers[timer] = at
        step.out.append(StartTimer(timer, at))

    def _arm_refresh(self, step: _Step, expires_at: float) -> None:
        self._refresh_for = expires_at
        self._arm(step, Timer.REFRESH, refresh_at(step.now, expires_at, self._config))

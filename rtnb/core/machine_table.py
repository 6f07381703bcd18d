"""The connection machine's vocabulary and transition table: every legal move, in one place.

This module holds the data: the inputs, timers, actions and settings of
:class:`rtnb.core.machine.ConnectionMachine` (which re-exports them all) and
the table. The machine holds the logic.

Theory of operation
-------------------
The connection machine (:mod:`rtnb.core.machine`) is a sans-I/O object, in
the manner of h11's ``_state.py`` and python-websockets: the driver feeds it
*inputs* (``transport_opened``, ``frame_received``, ``timer_fired``, …, each
with the current time ``now``) and carries out the *actions* it returns
(open or close a transport, send a frame, start or cancel a timer, ask for a
token, log a state change). It never reads a clock, a socket or a thread.

Its state is one :class:`~rtnb.core.status.Status` (DESIGN.md §4)::

            start               Authenticated (websocket)     every Subscribe answered
    IDLE ───────────► CONNECTING ─────────────────────► AUTHENTICATED ───────────────────► SUBSCRIBED
                      │  ▲  ↺ rejected: next transport   (sse/polling: on open)                │
                      │  │                                    │ lost, 2 missed heartbeats,      │
                      │  │ reconnect timer                    │ handshake timeout,              │
                      │  │ (or the fresh token arrives)       ▼ token refused                   │
                      │ RECONNECTING ◄───── at once ───── DEGRADED ◄────────────────────────────┘
                      │  ▲ (attempt n, next_retry_at)
                      └──┘ failed or lost before authentication

    any state ──close()──► CLOSED   (also: 4403 / forbidden, or a *fresh* token refused again)

This module is the whole story of which input is legal in which state and
where it may lead. ``TRANSITIONS[(state, input)]`` is a :class:`Row` whose
``targets`` are the states the input may move the machine to directly (the
state itself when the input may leave it unchanged). A pair that is not in
the table is illegal, and the machine raises
:class:`~rtnb.protocol.errors.LocalProtocolError` naming the state, the input
and where that input *is* legal: an illegal input is a bug in the driver, like
h11's "can't send data when our state is DONE". Which target a legal input
picks depends on data (a close code, whether topics are pending); that logic
lives in the machine, and the machine refuses to move anywhere the table does
not list, so the table cannot silently drift from the code.

Two moves happen by themselves, right after an input, like h11's
state-triggered transitions (``AUTOMATIC``):

* ``AUTHENTICATED → SUBSCRIBED`` as soon as no subscription is pending. With
  zero topics that is immediately after ``Authenticated``; otherwise only once
  the server has answered *every* ``Subscribe`` (``Subscribed``, or a
  topic-level ``Error`` such as ``forbidden``, which leaves the other topics
  alone). The machine never claims SUBSCRIBED before the server confirmed.
* ``DEGRADED → RECONNECTING``: a connection that had been authenticated and
  is lost (transport closed, heartbeat deadline, handshake timeout, token
  rejected) is reported DEGRADED with the cause, then the retry is scheduled
  (attempt *n*, ``next_retry_at``) in the same step. DEGRADED is therefore
  never a resting state: it marks *the moment data became stale*, which the
  telemetry log needs, and the driver sees both state changes. A failure
  while still CONNECTING goes straight to RECONNECTING: nothing live was
  lost.

Peer frames (``frame:*``) are legal in every state where a transport is open
and never raise, whatever the server sends: a frame out of place (e.g. a
``Subscribed`` before ``Authenticated``) counts as liveness and is otherwise
ignored, because the peer's mistakes must not crash the driver. Timers
(``timer:*``) are legal exactly in the states where they can be armed
(``TIMERS``); leaving a state cancels the timers it does not allow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from ..protocol.frames import Authenticate, Ping, Subscribe, Unsubscribe
from .liveness import liveness_deadline
from .status import Status

IDLE: Final = Status.IDLE
CONNECTING: Final = Status.CONNECTING
AUTHENTICATED: Final = Status.AUTHENTICATED
SUBSCRIBED: Final = Status.SUBSCRIBED
DEGRADED: Final = Status.DEGRADED
RECONNECTING: Final = Status.RECONNECTING
CLOSED: Final = Status.CLOSED


class Timer(enum.StrEnum):
    """Named timers the machine asks the driver to run (one of each at most)."""

    CONNECT = "connect"  # transport open + authenticated + subscribed, in time
    HEARTBEAT = "heartbeat"  # liveness deadline: missed_heartbeats x interval after any frame
    PING = "ping"  # next Ping (RTT sample), websocket only
    REFRESH = "refresh"  # ask for a fresh token before the current one expires
    RECONNECT = "reconnect"  # end of the backoff delay


class Input(enum.StrEnum):
    """Kinds of input; each is a method of the machine (frames and timers grouped)."""

    START = "start"
    TRANSPORT_OPENED = "transport_opened"
    TRANSPORT_FAILED = "transport_failed"
    TRANSPORT_CLOSED = "transport_closed"
    FRAME_AUTHENTICATED = "frame:authenticated"
    FRAME_SUBSCRIBED = "frame:subscribed"
    FRAME_HEARTBEAT = "frame:heartbeat"
    FRAME_PONG = "frame:pong"
    FRAME_ERROR = "frame:error"
    FRAME_OTHER = "frame:other"  # event, snapshot, mutation_rejected: liveness only
    TIMER_CONNECT = "timer:connect"
    TIMER_HEARTBEAT = "timer:heartbeat"
    TIMER_PING = "timer:ping"
    TIMER_REFRESH = "timer:refresh"
    TIMER_RECONNECT = "timer:reconnect"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    TOKEN_REFRESHED = "token_refreshed"
    TOKEN_REFRESH_FAILED = "token_refresh_failed"
    CLOSE = "close"


TransportKind = Literal["websocket", "sse", "polling"]
# Same names as rtnb.transports.base.TransportError.kind.
FailureKind = Literal["unreachable", "rejected", "unauthorized", "forbidden"]

#: Transports tried in this order when ``transport="auto"``.
DEFAULT_FALLBACK_ORDER: Final[tuple[TransportKind, ...]] = ("websocket", "sse", "polling")
#: The server's heartbeat interval, in seconds: 5.0 (the reference server's default).
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0
#: Heartbeat intervals without any frame before the link is declared dead: 2.
DEFAULT_MISSED_HEARTBEATS: Final = 2
#: Seconds between RTT pings on a websocket: 10.0.
DEFAULT_PING_INTERVAL: Final = 10.0
#: Seconds from OpenTransport to SUBSCRIBED before the attempt is abandoned: 10.0.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: A token is refreshed at least this many seconds before it expires: 30.0.
DEFAULT_REFRESH_MARGIN: Final = 30.0
#: ... or this fraction of its remaining lifetime, if larger: 0.1.
DEFAULT_REFRESH_FRACTION: Final = 0.1
#: Seconds before asking again after a failed refresh (also the floor between refreshes): 10.0.
DEFAULT_REFRESH_RETRY: Final = 10.0

#: RFC 6455 §7.4.1: 1000 normal closure (the user closed), 1001 going away
#: (the client abandons this connection to reconnect).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001


@dataclass(frozen=True, kw_only=True, slots=True)
class MachineConfig:
    """Connection settings (keyword-only, like ``httpx.Timeout``); defaults are the constants."""

    transport: Literal["auto", "websocket", "sse", "polling"] = "auto"
    fallback_order: tuple[TransportKind, ...] = DEFAULT_FALLBACK_ORDER
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    ping_interval: float | None = DEFAULT_PING_INTERVAL  # None: no pings
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    refresh_margin: float = DEFAULT_REFRESH_MARGIN
    refresh_fraction: float = DEFAULT_REFRESH_FRACTION
    refresh_retry: float = DEFAULT_REFRESH_RETRY

    def __post_init__(self) -> None:
        order = self.fallback_order
        if (
            not order
            or len(set(order)) != len(order)
            or not set(order) <= {"websocket", "sse", "polling"}
        ):
            raise ValueError(f"fallback_order must list distinct transports, got {order!r}")
        if self.transport not in ("auto", *DEFAULT_FALLBACK_ORDER):
            raise ValueError(f"transport must be 'auto' or one of {DEFAULT_FALLBACK_ORDER}")
        for name in ("heartbeat_interval", "connect_timeout", "refresh_retry"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.ping_interval is not None and not self.ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0 or None, got {self.ping_interval!r}")
        if self.missed_heartbeats < 1:
            raise ValueError(f"missed_heartbeats must be >= 1, got {self.missed_heartbeats}")
        if self.refresh_margin < 0 or not 0 <= self.refresh_fraction < 1:
            raise ValueError("refresh_margin must be >= 0 and refresh_fraction in [0, 1)")

    @property
    def order(self) -> tuple[TransportKind, ...]:
        """The transports to try: the pinned one, or the fallback order."""
        return self.fallback_order if self.transport == "auto" else (self.transport,)

    @property
    def heartbeat_deadline(self) -> float:
        """Seconds without any frame after which the link is dead, until the server
        announces its own interval (10.5 by default: see :func:`liveness_deadline`)."""
        return liveness_deadline(self.heartbeat_interval, self.missed_heartbeats)


# ---------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Open a transport of ``kind``. ``auth``/``subscriptions`` are for request-based
    transports (sse, polling), which authenticate and subscribe in the opening
    request; for a websocket they are None/empty and sent as frames after it opens."""

    kind: TransportKind
    auth: Authenticate | None = None
    subscriptions: tuple[Subscribe, ...] = ()


@dataclass(frozen=True, slots=True)
class CloseTransport:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SendFrame:
    frame: Authenticate | Subscribe | Unsubscribe | Ping


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm (or re-arm) timer ``name`` to fire at ``at`` (same clock as ``now``)."""

    name: Timer
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: Timer


@dataclass(frozen=True, slots=True)
class StateChanged:
    """One transition, for the log. ``trigger`` is the input (or "automatic")."""

    previous: Status
    status: Status
    reason: str
    attempt: int
    next_retry_at: float | None
    at: float
    transport: TransportKind
    trigger: str


@dataclass(frozen=True, slots=True)
class RequestToken:
    """Call the token provider, then feed ``token_refreshed`` or ``token_refresh_failed``."""

    reason: str


@dataclass(frozen=True, slots=True)
class TopicStatusChanged:
    """``status``: "pending", "subscribed", "unsubscribed" or the server's error code."""

    topic: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordRtt:
    """A liveness sample: ``rtt_ms`` from a Pong (None for a Heartbeat) and
    ``server_lag_ms = (now - server_time) * 1000`` (one-way delay plus clock offset)."""

    at: float
    rtt_ms: float | None
    server_lag_ms: float


MachineAction = (
    OpenTransport
    | CloseTransport
    | SendFrame
    | StartTimer
    | CancelTimer
    | StateChanged
    | RequestToken
    | TopicStatusChanged
    | RecordRtt
)


class TopicPhase(enum.StrEnum):
    """Per-topic subscription state."""

    PENDING = "pending"  # wanted; not (yet) confirmed on this connection
    SUBSCRIBED = "subscribed"
    REFUSED = "refused"  # answered forbidden/unknown_topic: not resubscribed until asked again


@dataclass(frozen=True, slots=True)
class Row:
    """Where one input may lead from one state, and what it does (for docs and logs)."""

    targets: frozenset[Status]
    does: str


def _row(does: str, *targets: Status) -> Row:
    return Row(frozenset(targets), does)


# Timers each state allows. Entering a state cancels the armed timers it does
# not list, so e.g. no reconnect timer can survive into SUBSCRIBED.
TIMERS: Final[dict[Status, frozenset[Timer]]] = {
    IDLE: frozenset(),
    CONNECTING: frozenset({Timer.CONNECT}),
    AUTHENTICATED: frozenset({Timer.CONNECT, Timer.HEARTBEAT, Timer.PING, Timer.REFRESH}),
    SUBSCRIBED: frozenset({Timer.HEARTBEAT, Timer.PING, Timer.REFRESH}),
    DEGRADED: frozenset(),
    RECONNECTING: frozenset({Timer.RECONNECT}),
    CLOSED: frozenset(),
}

_LIVE = "liveness noted; nothing else"
_TOPIC_ONLY = "topic bookkeeping only; the connection state is untouched"
_STORE_TOKEN = "token stored for the next authentication"

# The table. Rows are grouped by state; within a state, by input family.
TRANSITIONS: Final[dict[tuple[Status, Input], Row]] = {
    # -- IDLE: nothing is open yet; topics and tokens may be set up front.
    (IDLE, Input.START): _row("OpenTransport on the first transport of the order", CONNECTING),
    (IDLE, Input.SUBSCRIBE): _row(_TOPIC_ONLY, IDLE),
    (IDLE, Input.UNSUBSCRIBE): _row(_TOPIC_ONLY, IDLE),
    (IDLE, Input.RESUBSCRIBE): _row("replay token noted for the first Subscribe", IDLE),
    (IDLE, Input.TOKEN_REFRESHED): _row(_STORE_TOKEN, IDLE),
    (IDLE, Input.CLOSE): _row("nothing to tear down", CLOSED),
    # -- CONNECTING: a transport is opening (or open, waiting for Authenticated).
    (CONNECTING, Input.TRANSPORT_OPENED): _row(
        "websocket: send Authenticate and stay; sse/polling: the request carried "
        "token and topics, so this is authentication",
        CONNECTING,
        AUTHENTICATED,
    ),
    (CONNECTING, Input.TRANSPORT_FAILED): _row(
        "rejected: open the next transport (self-loop); unreachable: back off; "
        "401/4401: ask for a token; 403/4403 or a fresh token refused: close",
        CONNECTING,
        RECONNECTING,
        CLOSED,
    ),
    (CONNECTING, Input.TRANSPORT_CLOSED): _row(
        "back off, or ask for a token (4401), or close (4403, fresh token refused)",
        RECONNECTING,
        CLOSED,
    ),
    (CONNECTING, Input.FRAME_AUTHENTICATED): _row(
        "remember the transport, learn the heartbeat interval, arm heartbeat/ping/refresh, "
        "send Subscribe per topic",
        AUTHENTICATED,
    ),
    (CONNECTING, Input.FRAME_SUBSCRIBED): _row(
        "out of place before Authenticated: ignored", CONNECTING
    ),
    (CONNECTING, Input.FRAME_HEARTBEAT): _row("RecordRtt (server lag)", CONNECTING),
    (CONNECTING, Input.FRAME_PONG): _row("RecordRtt if the ping is ours", CONNECTING),
    (CONNECTING, Input.FRAME_ERROR): _row(
        "topic error: TopicStatusChanged (unavailable: close and back off); "
        "unauthenticated/token_expired: close and ask for a token; forbidden: close",
        CONNECTING,
        RECONNECTING,
        CLOSED,
    ),
    (CONNECTING, Input.FRAME_OTHER): _row(_LIVE, CONNECTING),
    (CONNECTING, Input.TIMER_CONNECT): _row("CloseTransport and back off", RECONNECTING),
    (CONNECTING, Input.SUBSCRIBE): _row("sent once authenticated", CONNECTING),
    (CONNECTING, Input.UNSUBSCRIBE): _row(_TOPIC_ONLY, CONNECTING),
    (CONNECTING, Input.RESUBSCRIBE): _row(
        "replay token noted for the coming Subscribe", CONNECTING
    ),
    (CONNECTING, Input.TOKEN_REFRESHED): _row(_STORE_TOKEN, CONNECTING),
    (CONNECTING, Input.TOKEN_REFRESH_FAILED): _row(
        "nothing: the server will judge the token", CONNECTING
    ),
    (CONNECTING, Input.CLOSE): _row("CloseTransport (abort the open)", CLOSED),
    # -- AUTHENTICATED: waiting for every Subscribe to be answered.
    (AUTHENTICATED, Input.TRANSPORT_CLOSED): _row(
        "lost: degrade (then back off / ask for a token), or close on 4403",
        DEGRADED,
        CLOSED,
    ),
    (AUTHENTICATED, Input.FRAME_AUTHENTICATED): _row(
        "refresh acknowledged, or sse/polling announcing itself: re-arm refresh if the "
        "expiry changed; learn the heartbeat interval",
        AUTHENTICATED,
    ),
    (AUTHENTICATED, Input.FRAME_SUBSCRIBED): _row(
        "topic confirmed (SUBSCRIBED follows when none is pending)", AUTHENTICATED
    ),
    (AUTHENTICATED, Input.FRAME_HEARTBEAT): _row("RecordRtt (server lag)", AUTHENTICATED),
    (AUTHENTICATED, Input.FRAME_PONG): _row("RecordRtt if the ping is ours", AUTHENTICATED),
    (AUTHENTICATED, Input.FRAME_ERROR): _row(
        "topic error resolves that topic only (unavailable: degrades and reconnects); "
        "auth error degrades; forbidden closes",
        AUTHENTICATED,
        DEGRADED,
        CLOSED,
    ),
    (AUTHENTICATED, Input.FRAME_OTHER): _row(_LIVE, AUTHENTICATED),
    (AUTHENTICATED, Input.TIMER_CONNECT): _row(
        "subscriptions unanswered: CloseTransport", DEGRADED
    ),
    (AUTHENTICATED, Input.TIMER_HEARTBEAT): _row(
        "re-arm if a frame came since, else CloseTransport", AUTHENTICATED, DEGRADED
    ),
    (AUTHENTICATED, Input.TIMER_PING): _row("send Ping, re-arm", AUTHENTICATED),
    (AUTHENTICATED, Input.TIMER_REFRESH): _row("RequestToken", AUTHENTICATED),
    (AUTHENTICATED, Input.SUBSCRIBE): _row("send Subscribe; one more pending", AUTHENTICATED),
    (AUTHENTICATED, Input.UNSUBSCRIBE): _row("send Unsubscribe; one fewer pending", AUTHENTICATED),
    (AUTHENTICATED, Input.RESUBSCRIBE): _row("send Subscribe(replay_from)", AUTHENTICATED),
    (AUTHENTICATED, Input.TOKEN_REFRESHED): _row("websocket: Authenticate in-band", AUTHENTICATED),
    (AUTHENTICATED, Input.TOKEN_REFRESH_FAILED): _row(
        "re-arm refresh a little later", AUTHENTICATED
    ),
    (AUTHENTICATED, Input.CLOSE): _row("CloseTransport", CLOSED),
    # -- SUBSCRIBED: live. Topic-level changes never move the connection state.
    (SUBSCRIBED, Input.TRANSPORT_CLOSED): _row(
        "lost: degrade (then back off / ask for a token), or close on 4403",
        DEGRADED,
        CLOSED,
    ),
    (SUBSCRIBED, Input.FRAME_AUTHENTICATED): _row(
        "refresh acknowledged, or sse/polling announcing itself: re-arm refresh if the "
        "expiry changed; learn the heartbeat interval",
        SUBSCRIBED,
    ),
    (SUBSCRIBED, Input.FRAME_SUBSCRIBED): _row("topic confirmed: TopicStatusChanged", SUBSCRIBED),
    (SUBSCRIBED, Input.FRAME_HEARTBEAT): _row("RecordRtt (server lag)", SUBSCRIBED),
    (SUBSCRIBED, Input.FRAME_PONG): _row("RecordRtt if the ping is ours", SUBSCRIBED),
    (SUBSCRIBED, Input.FRAME_ERROR): _row(
        "topic error: TopicStatusChanged (unavailable: degrades and reconnects); "
        "auth error degrades; forbidden closes",
        SUBSCRIBED,
        DEGRADED,
        CLOSED,
    ),
    (SUBSCRIBED, Input.FRAME_OTHER): _row(_LIVE, SUBSCRIBED),
    (SUBSCRIBED, Input.TIMER_HEARTBEAT): _row(
        "re-arm if a frame came since, else CloseTransport", SUBSCRIBED, DEGRADED
    ),
    (SUBSCRIBED, Input.TIMER_PING): _row("send Ping, re-arm", SUBSCRIBED),
    (SUBSCRIBED, Input.TIMER_REFRESH): _row("RequestToken", SUBSCRIBED),
    (SUBSCRIBED, Input.SUBSCRIBE): _row(
        "send Subscribe; topic pending, connection stays", SUBSCRIBED
    ),
    (SUBSCRIBED, Input.UNSUBSCRIBE): _row("send Unsubscribe", SUBSCRIBED),
    (SUBSCRIBED, Input.RESUBSCRIBE): _row("send Subscribe(replay_from): gap repair", SUBSCRIBED),
    (SUBSCRIBED, Input.TOKEN_REFRESHED): _row("websocket: Authenticate in-band", SUBSCRIBED),
    (SUBSCRIBED, Input.TOKEN_REFRESH_FAILED): _row("re-arm refresh a little later", SUBSCRIBED),
    (SUBSCRIBED, Input.CLOSE): _row("CloseTransport", CLOSED),
    # -- DEGRADED: transient (see AUTOMATIC); no input ever finds the machine here.
    # -- RECONNECTING: waiting for the backoff delay, or for a fresh token.
    (RECONNECTING, Input.TIMER_RECONNECT): _row(
        "OpenTransport; or, still without a usable token, RequestToken again",
        CONNECTING,
        RECONNECTING,
    ),
    (RECONNECTING, Input.SUBSCRIBE): _row(_TOPIC_ONLY, RECONNECTING),
    (RECONNECTING, Input.UNSUBSCRIBE): _row(_TOPIC_ONLY, RECONNECTING),
    (RECONNECTING, Input.RESUBSCRIBE): _row(
        "replay token noted for the coming Subscribe", RECONNECTING
    ),
    (RECONNECTING, Input.TOKEN_REFRESHED): _row(
        "after a 4401: connect now with the fresh token; else store it",
        RECONNECTING,
        CONNECTING,
    ),
    (RECONNECTING, Input.TOKEN_REFRESH_FAILED): _row(
        "after a 4401: ask again after a backoff delay", RECONNECTING
    ),
    (RECONNECTING, Input.CLOSE): _row("cancel the retry", CLOSED),
    # -- CLOSED: absorbing; close() is idempotent, anything else raises.
    (CLOSED, Input.CLOSE): _row("nothing (idempotent)", CLOSED),
}

# State-triggered moves, applied after every input until none applies.
AUTOMATIC: Final[dict[Status, Row]] = {
    AUTHENTICATED: _row("when no subscription is pending", SUBSCRIBED),
    DEGRADED: _row("always: schedule the retry (or wait for a fresh token)", RECONNECTING),
}


def describe() -> str:
    """The table as aligned text, one row per line (for docs and reports)."""
    lines = []
    for (state, inp), row in TRANSITIONS.items():
        targets = " | ".join(sorted(t.value for t in row.targets))
        lines.append(f"{state.value:<14} {inp.value:<22} -> {targets:<38} {row.does}")
    for state, row in AUTOMATIC.items():
        targets = " | ".join(sorted(t.value for t in row.targets))
        lines.append(f"{state.value:<14} {'(automatic)':<22} -> {targets:<38} {row.does}")
    return "\n".join(lines)

"""The connection machine, driven with an injected clock and no I/O.

Every row of ``TRANSITIONS`` is walked by at least one case in ``CASES`` (a
test fails if a row has none, or if a row lists a target no case reaches), every
pair *not* in the table raises, scenario tests pin the behaviours of DESIGN.md
§4, and a hypothesis rule-based walk checks the invariants on random inputs.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import event, settings, target
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rtnb.core import machine as machine_module
from rtnb.core import machine_table
from rtnb.core.backoff import DEFAULT_MAX_RETRY_HINT, HINT_JITTER, BackoffSchedule
from rtnb.core.machine import ConnectionMachine
from rtnb.core.machine_table import (
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
    Input,
    MachineAction,
    MachineConfig,
    OpenTransport,
    RecordRtt,
    RequestToken,
    SendFrame,
    StartTimer,
    StateChanged,
    Timer,
    TopicPhase,
    TopicStatusChanged,
)
from rtnb.core.status import Status
from rtnb.protocol.errors import LocalProtocolError
from rtnb.protocol.frames import (
    Authenticate,
    Authenticated,
    Batch,
    Error,
    Event,
    Heartbeat,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Unsubscribe,
)

# One letter per state keeps the case table readable, like the diagram in machine_table.
I, C, A, S, D, R, X = (  # noqa: E741
    Status.IDLE,
    Status.CONNECTING,
    Status.AUTHENTICATED,
    Status.SUBSCRIBED,
    Status.DEGRADED,
    Status.RECONNECTING,
    Status.CLOSED,
)
T0 = 1_700_000_000.0  # unix seconds, like time.time()
TOKEN = "tok-SECRET-1"
FRESH = "tok-SECRET-2"


class FakeSchedule(BackoffSchedule):
    """The shipped schedule (counting, hints, resets) with deterministic draws."""

    __slots__ = ("resets",)

    def __init__(self, policy: Any, rng: random.Random) -> None:
        self.resets = 0
        super().__init__(policy, rng)

    def _draw(self) -> float:
        seq = self.policy.sequence
        return float(seq[min(self.attempt, len(seq)) - 1])

    def reset(self) -> None:
        self.resets += 1
        super().reset()


@dataclass
class FakeBackoff:
    """Deterministic delays: the sequence, then its last value forever."""

    sequence: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    base: float = 1.0
    reset_after: float = 30.0
    max_retry_hint: float = DEFAULT_MAX_RETRY_HINT
    schedules: list[FakeSchedule] = field(default_factory=list)

    def schedule(self, rng: random.Random) -> FakeSchedule:
        self.schedules.append(FakeSchedule(self, rng))
        return self.schedules[-1]


# ---------------------------------------------------------------------------
# a tiny driver: runs the machine, keeps the clock, mirrors the timers
# ---------------------------------------------------------------------------


@dataclass
class Sim:
    config: MachineConfig | None = None
    backoff: FakeBackoff = field(default_factory=FakeBackoff)
    replay_tokens: Callable[[str], str | None] | None = None
    now: float = T0
    log: list[MachineAction] = field(default_factory=list)
    timers: dict[Timer, float] = field(default_factory=dict)
    seen: Status = Status.IDLE
    last_ping: str = "p0"

    def __post_init__(self) -> None:
        self.m = ConnectionMachine(
            self.config,
            backoff=self.backoff,
            rng=random.Random(0),
            replay_tokens=self.replay_tokens,
        )

    @property
    def status(self) -> Status:
        return self.m.status

    def do(self, name: str, *args: Any, **kwargs: Any) -> list[MachineAction]:
        out: list[MachineAction] = getattr(self.m, name)(self.now, *args, **kwargs)
        for action in out:
            if isinstance(action, StartTimer):
                self.timers[action.name] = action.at
            elif isinstance(action, CancelTimer):
                assert action.name in self.timers, "cancelled a timer that was not armed"
                del self.timers[action.name]
            elif isinstance(action, SendFrame) and isinstance(action.frame, Ping):
                self.last_ping = action.frame.id
            elif isinstance(action, StateChanged):
                assert action.previous is self.seen, (action, self.seen)
                assert action.at == self.now
                self.seen = action.status
        self.log.extend(out)
        return out

    def later(self, seconds: float) -> Sim:
        self.now += seconds
        return self

    def fire(self, timer: Timer) -> list[MachineAction]:
        self.now = max(self.now, self.timers.pop(timer))
        return self.do("timer_fired", timer)

    def frame(self, frame: Any) -> list[MachineAction]:
        return self.do("frame_received", frame)

    def since(self, mark: int) -> list[MachineAction]:
        return self.log[mark:]


def changes(actions: list[MachineAction]) -> list[StateChanged]:
    return [a for a in actions if isinstance(a, StateChanged)]


def statuses(actions: list[MachineAction]) -> list[Status]:
    return [a.status for a in changes(actions)]


def of(kind: type[Any], actions: list[MachineAction]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list[MachineAction]) -> list[Any]:
    return [a.frame for a in of(SendFrame, actions)]


def authenticated(expires_at: float = T0 + 3600, role: str = "operator") -> Authenticated:
    return Authenticated(tenant="acme", user="ana", role=role, expires_at=expires_at)


def subscribed(topic: str, replay: Any = "none") -> Subscribed:
    return Subscribed(topic=topic, replay=replay)


def an_event(topic: str = "a", seq: int = 1) -> Event:
    return Event(
        id=f"evt-{seq}",
        type="incident.updated",
        topic=topic,
        sequence=seq,
        entity_id="inc-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        replay_token=f"rt-{seq}",
    )


# -- builders: a Sim resting in each state -----------------------------------


def idle(topics: tuple[str, ...] = ("a", "b"), **kw: Any) -> Sim:
    sim = Sim(**kw)
    for topic in topics:
        sim.do("subscribe", topic)
    return sim


def connecting(opened: bool = True, **kw: Any) -> Sim:
    sim = idle(**kw)
    sim.do("start", TOKEN)
    if opened:
        sim.later(0.05).do("transport_opened")
    return sim


def authed(**kw: Any) -> Sim:
    sim = connecting(**kw)
    sim.later(0.05).frame(authenticated())
    return sim


def live(**kw: Any) -> Sim:
    sim = authed(**kw)
    for topic in list(sim.m.topics):
        sim.frame(subscribed(topic))
    assert sim.status is S
    return sim


def reconnecting(awaiting_token: bool = False, **kw: Any) -> Sim:
    sim = live(**kw)
    sim.later(1).do("transport_closed", 4401 if awaiting_token else 1006)
    assert sim.status is R
    return sim


def closed(**kw: Any) -> Sim:
    sim = idle(**kw)
    sim.do("close")
    return sim


# ---------------------------------------------------------------------------
# every row of the table
# ---------------------------------------------------------------------------

Setup = Callable[[], Sim]
Fire = Callable[[Sim], object]


@dataclass(frozen=True)
class Case:
    state: Status
    inp: Input
    target: Status  # the direct target (before automatic moves)
    label: str
    setup: Setup
    fire: Fire


def then(setup: Setup, prepare: Fire) -> Setup:
    """A setup followed by an input that leaves the state unchanged."""

    def build() -> Sim:
        sim = setup()
        prepare(sim)
        return sim

    return build


def _fresh_connecting() -> Sim:
    sim = reconnecting(awaiting_token=True)
    sim.do("token_refreshed", FRESH)
    return sim


_refresh_failed = then(
    lambda: reconnecting(awaiting_token=True), lambda s: s.do("token_refresh_failed", "down")
)
_beat = then(authed, lambda s: s.later(3).frame(Heartbeat(server_time=s.now)))
_live_beat = then(live, lambda s: s.later(3).frame(Heartbeat(server_time=s.now)))
_pinged = then(authed, lambda s: s.fire(Timer.PING))
_live_pinged = then(live, lambda s: s.fire(Timer.PING))


def _pong(sim: Sim) -> object:
    return sim.later(0.02).frame(Pong(id="p1", server_time=sim.now))


CASES: list[Case] = [
    # IDLE
    Case(I, Input.START, C, "start", idle, lambda s: s.do("start", TOKEN)),
    Case(I, Input.SUBSCRIBE, I, "subscribe", idle, lambda s: s.do("subscribe", "c")),
    Case(I, Input.UNSUBSCRIBE, I, "unsubscribe", idle, lambda s: s.do("unsubscribe", "a")),
    Case(I, Input.RESUBSCRIBE, I, "resubscribe", idle, lambda s: s.do("resubscribe", "a", "r9")),
    Case(I, Input.TOKEN_REFRESHED, I, "token", idle, lambda s: s.do("token_refreshed", FRESH)),
    Case(I, Input.CLOSE, X, "close", idle, lambda s: s.do("close")),
    # CONNECTING
    Case(
        C,
        Input.TRANSPORT_OPENED,
        C,
        "websocket opened",
        lambda: connecting(opened=False),
        lambda s: s.do("transport_opened"),
    ),
    Case(
        C,
        Input.TRANSPORT_OPENED,
        A,
        "sse opened",
        lambda: connecting(opened=False, config=MachineConfig(transport="sse")),
        lambda s: s.do("transport_opened"),
    ),
    Case(
        C,
        Input.TRANSPORT_FAILED,
        C,
        "rejected",
        lambda: connecting(opened=False),
        lambda s: s.do("transport_failed", "rejected", 403),
    ),
    Case(
        C,
        Input.TRANSPORT_FAILED,
        R,
        "unreachable",
        lambda: connecting(opened=False),
        lambda s: s.do("transport_failed", "unreachable"),
    ),
    Case(
        C,
        Input.TRANSPORT_FAILED,
        X,
        "403",
        lambda: connecting(opened=False),
        lambda s: s.do("transport_failed", "unreachable", 403),
    ),
    Case(
        C,
        Input.TRANSPORT_FAILED,
        X,
        "fresh token refused",
        _fresh_connecting,
        lambda s: s.do("transport_failed", "unreachable", 401),
    ),
    Case(
        C, Input.TRANSPORT_CLOSED, R, "1006", connecting, lambda s: s.do("transport_closed", 1006)
    ),
    Case(
        C, Input.TRANSPORT_CLOSED, X, "4403", connecting, lambda s: s.do("transport_closed", 4403)
    ),
    Case(
        C,
        Input.FRAME_AUTHENTICATED,
        A,
        "authenticated",
        connecting,
        lambda s: s.frame(authenticated()),
    ),
    Case(
        C,
        Input.FRAME_SUBSCRIBED,
        C,
        "early subscribed",
        connecting,
        lambda s: s.frame(subscribed("a")),
    ),
    Case(
        C,
        Input.FRAME_HEARTBEAT,
        C,
        "heartbeat",
        connecting,
        lambda s: s.frame(Heartbeat(server_time=s.now)),
    ),
    Case(
        C,
        Input.FRAME_PONG,
        C,
        "stray pong",
        connecting,
        lambda s: s.frame(Pong(id="x", server_time=T0)),
    ),
    Case(
        C,
        Input.FRAME_ERROR,
        C,
        "topic error",
        connecting,
        lambda s: s.frame(Error(code="forbidden", message="no", topic="a")),
    ),
    Case(
        C,
        Input.FRAME_ERROR,
        R,
        "token expired",
        connecting,
        lambda s: s.frame(Error(code="token_expired", message="expired")),
    ),
    Case(
        C,
        Input.FRAME_ERROR,
        X,
        "forbidden",
        connecting,
        lambda s: s.frame(Error(code="forbidden", message="no")),
    ),
    Case(C, Input.FRAME_OTHER, C, "event", connecting, lambda s: s.frame(an_event())),
    Case(C, Input.TIMER_CONNECT, R, "connect timeout", connecting, lambda s: s.fire(Timer.CONNECT)),
    Case(C, Input.SUBSCRIBE, C, "subscribe", connecting, lambda s: s.do("subscribe", "c")),
    Case(C, Input.UNSUBSCRIBE, C, "unsubscribe", connecting, lambda s: s.do("unsubscribe", "a")),
    Case(
        C, Input.RESUBSCRIBE, C, "resubscribe", connecting, lambda s: s.do("resubscribe", "a", "r")
    ),
    Case(
        C, Input.TOKEN_REFRESHED, C, "token", connecting, lambda s: s.do("token_refreshed", FRESH)
    ),
    Case(
        C,
        Input.TOKEN_REFRESH_FAILED,
        C,
        "refresh failed",
        connecting,
        lambda s: s.do("token_refresh_failed", "down"),
    ),
    Case(C, Input.CLOSE, X, "close", connecting, lambda s: s.do("close")),
    # AUTHENTICATED (topics a and b pending)
    Case(A, Input.TRANSPORT_CLOSED, D, "1006", authed, lambda s: s.do("transport_closed", 1006)),
    Case(A, Input.TRANSPORT_CLOSED, X, "4403", authed, lambda s: s.do("transport_closed", 4403)),
    Case(
        A, Input.FRAME_AUTHENTICATED, A, "refresh ack", authed, lambda s: s.frame(authenticated())
    ),
    Case(A, Input.FRAME_SUBSCRIBED, A, "one of two", authed, lambda s: s.frame(subscribed("a"))),
    Case(
        A,
        Input.FRAME_HEARTBEAT,
        A,
        "heartbeat",
        authed,
        lambda s: s.frame(Heartbeat(server_time=s.now)),
    ),
    Case(A, Input.FRAME_PONG, A, "pong", _pinged, _pong),
    Case(
        A,
        Input.FRAME_ERROR,
        A,
        "topic forbidden",
        authed,
        lambda s: s.frame(Error(code="forbidden", message="no", topic="a")),
    ),
    Case(
        A,
        Input.FRAME_ERROR,
        D,
        "unauthenticated",
        authed,
        lambda s: s.frame(Error(code="unauthenticated", message="who?")),
    ),
    Case(
        A,
        Input.FRAME_ERROR,
        X,
        "forbidden",
        authed,
        lambda s: s.frame(Error(code="forbidden", message="no")),
    ),
    Case(A, Input.FRAME_OTHER, A, "snapshot-ish", authed, lambda s: s.frame(an_event())),
    Case(A, Input.TIMER_CONNECT, D, "unanswered", authed, lambda s: s.fire(Timer.CONNECT)),
    Case(A, Input.TIMER_HEARTBEAT, A, "frame since", _beat, lambda s: s.fire(Timer.HEARTBEAT)),
    Case(A, Input.TIMER_HEARTBEAT, D, "silence", authed, lambda s: s.fire(Timer.HEARTBEAT)),
    Case(A, Input.TIMER_PING, A, "ping", authed, lambda s: s.fire(Timer.PING)),
    Case(A, Input.TIMER_REFRESH, A, "refresh", authed, lambda s: s.fire(Timer.REFRESH)),
    Case(A, Input.SUBSCRIBE, A, "subscribe", authed, lambda s: s.do("subscribe", "c")),
    Case(A, Input.UNSUBSCRIBE, A, "unsubscribe", authed, lambda s: s.do("unsubscribe", "a")),
    Case(A, Input.RESUBSCRIBE, A, "resubscribe", authed, lambda s: s.do("resubscribe", "a", "r")),
    Case(A, Input.TOKEN_REFRESHED, A, "token", authed, lambda s: s.do("token_refreshed", FRESH)),
    Case(
        A,
        Input.TOKEN_REFRESH_FAILED,
        A,
        "refresh failed",
        authed,
        lambda s: s.do("token_refresh_failed", "down"),
    ),
    Case(A, Input.CLOSE, X, "close", authed, lambda s: s.do("close")),
    # SUBSCRIBED
    Case(S, Input.TRANSPORT_CLOSED, D, "1006", live, lambda s: s.do("transport_closed", 1006)),
    Case(S, Input.TRANSPORT_CLOSED, X, "4403", live, lambda s: s.do("transport_closed", 4403)),
    Case(S, Input.FRAME_AUTHENTICATED, S, "refresh ack", live, lambda s: s.frame(authenticated())),
    Case(S, Input.FRAME_SUBSCRIBED, S, "again", live, lambda s: s.frame(subscribed("a"))),
    Case(
        S,
        Input.FRAME_HEARTBEAT,
        S,
        "heartbeat",
        live,
        lambda s: s.frame(Heartbeat(server_time=s.now)),
    ),
    Case(S, Input.FRAME_PONG, S, "pong", _live_pinged, _pong),
    Case(
        S,
        Input.FRAME_ERROR,
        S,
        "topic error",
        live,
        lambda s: s.frame(Error(code="forbidden", message="no", topic="a")),
    ),
    Case(
        S,
        Input.FRAME_ERROR,
        D,
        "token expired",
        live,
        lambda s: s.frame(Error(code="token_expired", message="expired")),
    ),
    Case(
        S,
        Input.FRAME_ERROR,
        X,
        "forbidden",
        live,
        lambda s: s.frame(Error(code="forbidden", message="no")),
    ),
    Case(S, Input.FRAME_OTHER, S, "event", live, lambda s: s.frame(an_event())),
    Case(S, Input.TIMER_HEARTBEAT, S, "frame since", _live_beat, lambda s: s.fire(Timer.HEARTBEAT)),
    Case(S, Input.TIMER_HEARTBEAT, D, "silence", live, lambda s: s.fire(Timer.HEARTBEAT)),
    Case(S, Input.TIMER_PING, S, "ping", live, lambda s: s.fire(Timer.PING)),
    Case(S, Input.TIMER_REFRESH, S, "refresh", live, lambda s: s.fire(Timer.REFRESH)),
    Case(S, Input.SUBSCRIBE, S, "subscribe", live, lambda s: s.do("subscribe", "c")),
    Case(S, Input.UNSUBSCRIBE, S, "unsubscribe", live, lambda s: s.do("unsubscribe", "a")),
    Case(S, Input.RESUBSCRIBE, S, "resubscribe", live, lambda s: s.do("resubscribe", "a", "r")),
    Case(S, Input.TOKEN_REFRESHED, S, "token", live, lambda s: s.do("token_refreshed", FRESH)),
    Case(
        S,
        Input.TOKEN_REFRESH_FAILED,
        S,
        "refresh failed",
        live,
        lambda s: s.do("token_refresh_failed", "down"),
    ),
    Case(S, Input.CLOSE, X, "close", live, lambda s: s.do("close")),
    # RECONNECTING
    Case(R, Input.TIMER_RECONNECT, C, "retry", reconnecting, lambda s: s.fire(Timer.RECONNECT)),
    Case(
        R,
        Input.TIMER_RECONNECT,
        R,
        "still no token",
        _refresh_failed,
        lambda s: s.fire(Timer.RECONNECT),
    ),
    Case(R, Input.SUBSCRIBE, R, "subscribe", reconnecting, lambda s: s.do("subscribe", "c")),
    Case(R, Input.UNSUBSCRIBE, R, "unsubscribe", reconnecting, lambda s: s.do("unsubscribe", "a")),
    Case(
        R,
        Input.RESUBSCRIBE,
        R,
        "resubscribe",
        reconnecting,
        lambda s: s.do("resubscribe", "a", "r"),
    ),
    Case(
        R,
        Input.TOKEN_REFRESHED,
        R,
        "stored",
        reconnecting,
        lambda s: s.do("token_refreshed", FRESH),
    ),
    Case(
        R,
        Input.TOKEN_REFRESHED,
        C,
        "after 4401",
        lambda: reconnecting(awaiting_token=True),
        lambda s: s.do("token_refreshed", FRESH),
    ),
    Case(
        R,
        Input.TOKEN_REFRESH_FAILED,
        R,
        "after 4401",
        lambda: reconnecting(awaiting_token=True),
        lambda s: s.do("token_refresh_failed", "provider down"),
    ),
    Case(R, Input.CLOSE, X, "close", reconnecting, lambda s: s.do("close")),
    # CLOSED
    Case(X, Input.CLOSE, X, "idempotent", closed, lambda s: s.do("close")),
]


def _case_id(case: Case) -> str:
    return f"{case.state.value}-{case.inp.value}-{case.label}".replace(" ", "_")


def test_every_row_of_the_table_has_a_case() -> None:
    assert {(c.state, c.inp) for c in CASES} == set(TRANSITIONS)


def test_every_target_of_every_row_is_reached_by_a_case() -> None:
    reached: dict[tuple[Status, Input], set[Status]] = {}
    for case in CASES:
        reached.setdefault((case.state, case.inp), set()).add(case.target)
    for key, row in TRANSITIONS.items():
        assert reached[key] == set(row.targets), key


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_table_row_moves_to_its_target(case: Case) -> None:
    sim = case.setup()
    assert sim.status is case.state
    mark = len(sim.log)
    case.fire(sim)
    out = sim.since(mark)
    direct = [c for c in changes(out) if c.trigger != "automatic"]
    assert len(direct) <= 1
    target = direct[0].status if direct else case.state
    assert target is case.target
    assert target in TRANSITIONS[(case.state, case.inp)].targets
    assert all(c.trigger == case.inp.value for c in direct)
    assert sim.timers == dict(sim.m.timers)
    assert set(sim.timers) <= TIMERS[sim.status]
    assert sim.status is not D


def test_automatic_moves_are_exactly_the_automatic_table() -> None:
    seen: set[tuple[Status, Status]] = set()
    for case in CASES:
        sim = case.setup()
        case.fire(sim)
        seen |= {(c.previous, c.status) for c in changes(sim.log) if c.trigger == "automatic"}
    expected = {(state, t) for state, row in AUTOMATIC.items() for t in row.targets}
    assert seen == expected


def test_timer_inputs_are_legal_exactly_where_the_timer_can_be_armed() -> None:
    for state, allowed in TIMERS.items():
        rows = {i for (s, i) in TRANSITIONS if s is state and i.value.startswith("timer:")}
        assert rows == {Input(f"timer:{t.value}") for t in allowed}, state
    assert not any(s is D for (s, _) in TRANSITIONS)  # DEGRADED is never a resting state


def test_table_description_lists_every_row() -> None:
    text = machine_table.describe()
    assert len(text.splitlines()) == len(TRANSITIONS) + len(AUTOMATIC)
    assert "subscribed     frame:error" in text


# ---------------------------------------------------------------------------
# illegal inputs
# ---------------------------------------------------------------------------

GENERIC: dict[Input, Fire] = {
    Input.START: lambda s: s.do("start", TOKEN),
    Input.TRANSPORT_OPENED: lambda s: s.do("transport_opened"),
    Input.TRANSPORT_FAILED: lambda s: s.do("transport_failed", "unreachable"),
    Input.TRANSPORT_CLOSED: lambda s: s.do("transport_closed", 1006),
    Input.FRAME_AUTHENTICATED: lambda s: s.frame(authenticated()),
    Input.FRAME_SUBSCRIBED: lambda s: s.frame(subscribed("a")),
    Input.FRAME_HEARTBEAT: lambda s: s.frame(Heartbeat(server_time=T0)),
    Input.FRAME_PONG: lambda s: s.frame(Pong(id="p1", server_time=T0)),
    Input.FRAME_ERROR: lambda s: s.frame(Error(code="oops", message="x")),
    Input.FRAME_OTHER: lambda s: s.frame(an_event()),
    Input.TIMER_CONNECT: lambda s: s.do("timer_fired", Timer.CONNECT),
    Input.TIMER_HEARTBEAT: lambda s: s.do("timer_fired", Timer.HEARTBEAT),
    Input.TIMER_PING: lambda s: s.do("timer_fired", Timer.PING),
    Input.TIMER_REFRESH: lambda s: s.do("timer_fired", Timer.REFRESH),
    Input.TIMER_RECONNECT: lambda s: s.do("timer_fired", Timer.RECONNECT),
    Input.SUBSCRIBE: lambda s: s.do("subscribe", "c"),
    Input.UNSUBSCRIBE: lambda s: s.do("unsubscribe", "a"),
    Input.RESUBSCRIBE: lambda s: s.do("resubscribe", "a", "r"),
    Input.TOKEN_REFRESHED: lambda s: s.do("token_refreshed", FRESH),
    Input.TOKEN_REFRESH_FAILED: lambda s: s.do("token_refresh_failed", "down"),
    Input.CLOSE: lambda s: s.do("close"),
}
RESTING: dict[Status, Setup] = {
    I: idle,
    C: connecting,
    A: authed,
    S: live,
    R: reconnecting,
    X: closed,
}
ILLEGAL = [(state, inp) for state in RESTING for inp in Input if (state, inp) not in TRANSITIONS]


def _snapshot(sim: Sim) -> tuple[Any, ...]:
    m = sim.m
    return (m.status, dict(m.timers), dict(m.topics), m.attempt, m.transport, repr(m))


def test_generic_inputs_cover_every_input_kind() -> None:
    assert set(GENERIC) == set(Input)


@pytest.mark.parametrize(("state", "inp"), ILLEGAL, ids=lambda v: str(v))
def test_input_outside_the_table_raises_and_changes_nothing(state: Status, inp: Input) -> None:
    sim = RESTING[state]()
    before = _snapshot(sim)
    with pytest.raises(LocalProtocolError, match=f"{inp.value} is not allowed while {state.value}"):
        GENERIC[inp](sim)
    assert _snapshot(sim) == before


@pytest.mark.parametrize(
    ("setup", "fire", "why"),
    [
        (
            lambda: connecting(opened=False),
            lambda s: s.frame(authenticated()),
            "no transport is open",
        ),
        (connecting, lambda s: s.do("transport_opened"), "already open"),
        (connecting, lambda s: s.do("transport_failed", "unreachable"), "report transport_closed"),
        (
            lambda: connecting(opened=False),
            lambda s: s.do("transport_closed", 1006),
            "transport_failed",
        ),
        (
            lambda: live(config=MachineConfig(ping_interval=None)),
            lambda s: s.do("timer_fired", Timer.PING),
            "not armed",
        ),
        (live, lambda s: s.do("unsubscribe", "zzz"), "not subscribed"),
        (live, lambda s: s.do("resubscribe", "zzz", None), "not subscribed"),
        (lambda: connecting(opened=False), lambda s: s.do("transport_failed", "gone"), "kind must"),
    ],
)
def test_sub_conditions_of_legal_rows_are_checked(setup: Setup, fire: Fire, why: str) -> None:
    sim = setup()
    before = _snapshot(sim)
    with pytest.raises(LocalProtocolError, match=why):
        fire(sim)
    assert _snapshot(sim) == before


def test_illegal_input_message_names_state_input_and_where_it_is_legal() -> None:
    sim = live()
    with pytest.raises(LocalProtocolError) as info:
        sim.do("start", TOKEN)
    assert str(info.value) == "start is not allowed while subscribed (legal while: idle)"


def test_unknown_timers_batches_and_client_frames_are_refused() -> None:
    sim = live()
    with pytest.raises(LocalProtocolError, match="unknown timer"):
        sim.do("timer_fired", "nap")
    with pytest.raises(LocalProtocolError, match="one by one"):
        sim.frame(Batch(messages=[subscribed("a")]))
    with pytest.raises(LocalProtocolError, match="not a server frame"):
        sim.frame(Ping(id="p"))
    with pytest.raises(LocalProtocolError, match="invalid topic name"):
        sim.do("subscribe", "bad topic!")


def test_closed_is_absorbing_and_close_is_idempotent() -> None:
    sim = live()
    out = sim.do("close")
    assert of(CloseTransport, out) == [CloseTransport(CLOSE_NORMAL, "closed by user")]
    assert sim.timers == {} and sim.status is X
    assert sim.do("close") == []
    for inp, fire in GENERIC.items():
        if inp is not Input.CLOSE:
            with pytest.raises(LocalProtocolError):
                fire(sim)
    assert sim.status is X


# ---------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------


def test_reports_subscribed_only_after_the_server_confirmed_every_topic() -> None:
    sim = connecting(opened=False)
    out = sim.do("transport_opened")
    assert sent(out) == [Authenticate(token=TOKEN)]
    out = sim.frame(authenticated())
    assert statuses(out) == [A]
    assert sent(out) == [Subscribe(topic="a"), Subscribe(topic="b")]
    assert statuses(sim.frame(subscribed("a"))) == []
    assert sim.status is A
    out = sim.frame(subscribed("b"))
    assert [(c.status, c.reason) for c in changes(out)] == [(S, "subscribed to 2 topics")]
    assert Timer.CONNECT not in sim.timers
    assert set(sim.timers) == {Timer.HEARTBEAT, Timer.PING, Timer.REFRESH}


def test_zero_topics_are_subscribed_right_after_authentication() -> None:
    sim = connecting(topics=())
    out = sim.frame(authenticated())
    assert statuses(out) == [A, S]
    assert changes(out)[1].reason == "authenticated; no topics"
    assert sent(out) == []


def test_subscribe_while_subscribed_sends_it_and_stays_subscribed() -> None:
    sim = live()
    out = sim.do("subscribe", "c", "rt-5")
    assert sent(out) == [Subscribe(topic="c", replay_from="rt-5")]
    assert of(TopicStatusChanged, out) == [
        TopicStatusChanged("c", "pending", "subscribe requested")
    ]
    assert sim.status is S and sim.m.topics["c"] is TopicPhase.PENDING
    out = sim.frame(subscribed("c", "complete"))
    assert of(TopicStatusChanged, out) == [TopicStatusChanged("c", "subscribed", "replay complete")]
    assert sim.do("subscribe", "c") == []  # idempotent


def test_unsubscribing_the_last_pending_topic_completes_the_subscription() -> None:
    sim = authed()
    sim.frame(subscribed("a"))
    out = sim.do("unsubscribe", "b")
    assert sent(out) == [Unsubscribe(topic="b")]
    assert statuses(out) == [S]


def test_two_missed_heartbeats_degrade_then_reconnect_after_the_backoff_delay() -> None:
    sim = live()
    start = sim.now
    assert sim.timers[Timer.HEARTBEAT] - start == pytest.approx(10.5)  # 2 × 5 s + 0.5 s grace
    out = sim.fire(Timer.HEARTBEAT)
    why = "no heartbeat for 10.5 s (the server sends one every 5 s)"
    assert [(c.status, c.reason) for c in changes(out)] == [
        (D, why),
        (R, f"{why}; retry 1 in 1.0 s"),
    ]
    assert of(CloseTransport, out) == [CloseTransport(CLOSE_GOING_AWAY, why)]
    assert {a.name for a in of(CancelTimer, out)} == {
        Timer.HEARTBEAT,
        Timer.PING,
        Timer.REFRESH,
    } - {
        Timer.HEARTBEAT  # already fired
    }
    r = changes(out)[1]
    assert (r.attempt, r.next_retry_at) == (1, sim.now + 1.0)
    assert sim.timers == {Timer.RECONNECT: sim.now + 1.0}
    out = sim.fire(Timer.RECONNECT)
    assert statuses(out) == [C]
    assert of(OpenTransport, out) == [OpenTransport("websocket")]
    assert changes(out)[0].reason == "reconnecting over websocket (attempt 1)"


def test_any_frame_postpones_the_heartbeat_deadline() -> None:
    sim = live()
    deadline = sim.timers[Timer.HEARTBEAT]
    sim.later(4).frame(an_event())  # a busy stream, heartbeats stuck behind it
    sim.later(4).frame(an_event())
    last = sim.now
    out = sim.fire(Timer.HEARTBEAT)
    assert sim.now == deadline
    assert out == [StartTimer(Timer.HEARTBEAT, last + 10.5)]  # lazily re-armed, no state change


def test_attempt_counter_is_not_reset_by_a_connection_that_drops_at_once() -> None:
    sim = live(backoff=FakeBackoff(reset_after=30.0))
    delays = []
    for _ in range(5):
        out = sim.later(1).do("transport_closed", 1006)
        delays.append(changes(out)[-1].next_retry_at - sim.now)  # type: ignore[operator]
        sim.fire(Timer.RECONNECT)
        sim.do("transport_opened")
        sim.frame(authenticated())
        for topic in ("a", "b"):
            sim.frame(subscribed(topic))
        assert sim.status is S  # it did get all the way up, and still no reset
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert sim.m.attempt == 5


def test_attempt_counter_resets_after_staying_healthy_for_reset_after() -> None:
    sim = live(backoff=FakeBackoff(reset_after=30.0))
    sim.later(1).do("transport_closed", 1006)
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    sim.frame(authenticated())
    sim.frame(subscribed("a"))
    sim.frame(subscribed("b"))
    assert sim.m.attempt == 1
    for _ in range(6):  # healthy for 30 s: heartbeats every 5 s
        sim.later(5).frame(Heartbeat(server_time=sim.now))
    out = sim.later(2).do("transport_closed", 1006)
    r = changes(out)[-1]
    assert (r.attempt, r.next_retry_at) == (1, sim.now + 1.0)  # back to the first delay
    assert sim.backoff.schedules[0].resets == 1


def test_healthy_time_counts_until_the_last_frame_not_until_the_drop_is_noticed() -> None:
    sim = live(backoff=FakeBackoff(reset_after=12.0))
    sim.later(1).do("transport_closed", 1006)
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    sim.frame(authenticated())
    sim.frame(subscribed("a"))
    sim.frame(subscribed("b"))
    sim.later(5).frame(Heartbeat(server_time=sim.now))  # then silence: 5 s healthy
    assert sim.fire(Timer.HEARTBEAT) == [StartTimer(Timer.HEARTBEAT, sim.now + 5.0)]
    out = sim.fire(Timer.HEARTBEAT)  # noticed 10 s after the last frame (15 s after SUBSCRIBED)
    assert changes(out)[-1].attempt == 2


def _within_hint(at: float | None, now: float, hint: float) -> bool:
    """The retry is at hint + up to HINT_JITTER·hint: never earlier than the hint."""
    assert at is not None
    return now + hint <= at <= now + hint * (1 + HINT_JITTER)


def test_server_retry_hint_is_the_minimum_delay() -> None:
    sim = live()
    out = sim.later(1).do("transport_closed", 4429, "slow down", retry_after=2.5)
    d, r = changes(out)
    assert d.reason == "server asked to retry in 2.5 s (4429)"
    assert _within_hint(r.next_retry_at, sim.now, 2.5)  # backoff said 1.0
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    # A hint shorter than the backoff draw (2.0) is still followed: the server
    # spreads a storm with its hints, so it knows best when to come back.
    out = sim.do("transport_closed", 4429, retry_after=0.5)
    assert _within_hint(changes(out)[-1].next_retry_at, sim.now, 0.5)


def test_retry_hint_in_a_4429_close_reason_is_honoured() -> None:
    sim = live()
    out = sim.do("transport_closed", 4429, "rate limited; retry_after=6.5")
    assert _within_hint(changes(out)[-1].next_retry_at, sim.now, 6.5)
    sim.fire(Timer.RECONNECT)
    out = sim.do("transport_failed", "unreachable", 4429, reason="server busy; retry_after=3.0")
    assert _within_hint(changes(out)[-1].next_retry_at, sim.now, 3.0)


def test_retry_hint_is_capped_and_also_honoured_on_a_failed_open() -> None:
    sim = connecting(opened=False)
    out = sim.do("transport_failed", "unreachable", 503, retry_after=86_400.0)
    r = changes(out)[-1]
    assert r.reason.startswith(f"server asked to retry in {DEFAULT_MAX_RETRY_HINT:.1f} s (503)")
    assert _within_hint(r.next_retry_at, sim.now, DEFAULT_MAX_RETRY_HINT)


def test_4400_reconnects_with_backoff() -> None:
    sim = live()
    out = sim.do("transport_closed", 4400, "protocol violation")
    assert statuses(out) == [D, R]
    assert changes(out)[0].reason == "transport closed (code 4400: protocol violation)"


@pytest.mark.parametrize(
    ("kind", "expected"), [("unauthorized", [R]), ("forbidden", [X])], ids=["401", "403"]
)
def test_transport_failure_kinds_unauthorized_and_forbidden_act_like_their_codes(
    kind: str, expected: list[Status]
) -> None:
    sim = connecting(opened=False)
    out = sim.do("transport_failed", kind)
    assert statuses(out) == expected
    assert bool(of(RequestToken, out)) is (kind == "unauthorized")


def test_4403_close_is_terminal() -> None:
    sim = live()
    out = sim.do("transport_closed", 4403)
    assert [(c.status, c.reason) for c in changes(out)] == [(X, "forbidden (4403)")]
    assert of(CloseTransport, out) == []  # the server already closed it
    assert sim.timers == {}


def test_token_rejection_requests_one_token_then_closes_if_the_fresh_one_fails() -> None:
    sim = live()
    out = sim.do("transport_closed", 4401, "expired")
    assert statuses(out) == [D, R]
    assert changes(out)[-1].reason == "token rejected (4401): expired; waiting for a fresh token"
    assert of(RequestToken, out) == [RequestToken("token rejected (4401): expired")]
    assert sim.timers == {} and sim.m.next_retry_at is None
    out = sim.do("token_refreshed", FRESH)
    assert statuses(out) == [C]
    assert sim.m.transport == "websocket"
    sim.do("transport_opened")
    assert sent(sim.log)[-1] == Authenticate(token=FRESH)
    out = sim.do("transport_closed", 4401)
    assert [(c.status, c.reason) for c in changes(out)] == [
        (
            X,
            "token rejected (4401) (a fresh token was refused too: check that the token "
            "comes from this server)",
        )
    ]
    assert len(of(RequestToken, sim.log)) == 1  # no retry storm


def test_token_rejection_reconnects_and_recovers_with_the_fresh_token() -> None:
    sim = live()
    sim.do("transport_closed", 4401)
    sim.do("token_refreshed", FRESH)
    sim.do("transport_opened")
    sim.frame(authenticated())
    sim.frame(subscribed("a"))
    sim.frame(subscribed("b"))
    assert sim.status is S
    out = sim.later(100).do("transport_closed", 4401)  # a later expiry: asks again, no close
    assert statuses(out) == [D, R] and len(of(RequestToken, sim.log)) == 2


def test_error_frame_token_expired_closes_the_transport_and_asks_for_a_token() -> None:
    sim = live()
    out = sim.frame(Error(code="token_expired", message="expired"))
    assert of(CloseTransport, out) == [CloseTransport(CLOSE_GOING_AWAY, "token refused")]
    assert of(RequestToken, out) == [RequestToken("token rejected (token_expired): expired")]
    assert statuses(out) == [D, R]


def test_failed_token_provider_is_asked_again_after_a_backoff_delay() -> None:
    sim = reconnecting(awaiting_token=True)
    out = sim.later(1).do("token_refresh_failed", "idp down")
    r = changes(out)[-1]
    assert r.reason == "token refresh failed (idp down); asking again in 1.0 s"
    assert sim.timers == {Timer.RECONNECT: sim.now + 1.0}
    out = sim.fire(Timer.RECONNECT)
    assert of(RequestToken, out) and of(OpenTransport, out) == []  # never with the refused token
    out = sim.do("token_refreshed", FRESH)
    assert statuses(out) == [C]


def test_forbidden_topic_is_isolated_and_not_resubscribed() -> None:
    sim = authed(topics=("a", "audit"))
    out = sim.frame(Error(code="forbidden", message="role viewer", topic="audit"))
    assert of(TopicStatusChanged, out) == [TopicStatusChanged("audit", "forbidden", "role viewer")]
    assert sim.status is A  # "a" still pending
    out = sim.frame(subscribed("a"))
    assert statuses(out) == [S]
    assert sim.m.topics == {"a": TopicPhase.SUBSCRIBED, "audit": TopicPhase.REFUSED}
    sim.do("transport_closed", 1006)
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    out = sim.frame(authenticated())
    assert sent(out) == [Subscribe(topic="a")]  # not "audit" again
    out = sim.do("subscribe", "audit")  # the user asks explicitly: tried again
    assert sent(out) == [Subscribe(topic="audit")]


def test_error_on_a_live_topic_is_reported_without_unsubscribing_it() -> None:
    sim = live()
    out = sim.frame(Error(code="snapshot_failed", message="try later", topic="a"))
    assert of(TopicStatusChanged, out) == [TopicStatusChanged("a", "snapshot_failed", "try later")]
    assert sim.m.topics["a"] is TopicPhase.SUBSCRIBED


def test_rejected_transport_falls_back_to_sse_then_polling() -> None:
    sim = connecting(opened=False)
    out = sim.do("transport_failed", "rejected", 403)
    assert [(c.previous, c.status, c.reason) for c in changes(out)] == [
        (C, C, "websocket rejected (403); falling back to sse")
    ]
    opened = of(OpenTransport, out)
    assert [o.kind for o in opened] == ["sse"]
    assert opened[0].auth == Authenticate(token=TOKEN)
    assert opened[0].subscriptions == (Subscribe(topic="a"), Subscribe(topic="b"))
    out = sim.do("transport_failed", "rejected")
    assert [o.kind for o in of(OpenTransport, out)] == ["polling"]
    assert sim.m.attempt == 0  # a fallback is not a retry


def test_unreachable_server_keeps_the_transport() -> None:
    sim = connecting(opened=False)
    out = sim.do("transport_failed", "unreachable", reason="connection refused at 127.0.0.1:9")
    assert (
        changes(out)[-1].reason
        == "websocket unreachable: connection refused at 127.0.0.1:9; retry 1 in 1.0 s"
    )
    sim.fire(Timer.RECONNECT)
    assert of(OpenTransport, sim.log)[-1].kind == "websocket"


def test_pinned_transport_never_falls_back() -> None:
    sim = connecting(opened=False, config=MachineConfig(transport="websocket"))
    out = sim.do("transport_failed", "rejected", 403)
    assert statuses(out) == [R]
    sim.fire(Timer.RECONNECT)
    assert [o.kind for o in of(OpenTransport, sim.log)] == ["websocket", "websocket"]


def test_every_transport_rejected_backs_off_then_starts_over() -> None:
    sim = connecting(opened=False)
    sim.do("transport_failed", "rejected")
    sim.do("transport_failed", "rejected")
    out = sim.do("transport_failed", "rejected")
    assert statuses(out) == [R]
    assert "no transport left, next: websocket" in changes(out)[0].reason
    sim.fire(Timer.RECONNECT)
    kinds = [o.kind for o in of(OpenTransport, sim.log)]
    assert kinds == ["websocket", "sse", "polling", "websocket"]


def test_reconnect_uses_the_transport_that_last_worked() -> None:
    sim = connecting(opened=False)
    sim.do("transport_failed", "rejected")  # websocket blocked by a proxy
    out = sim.do("transport_opened")  # sse: the request carried token and topics
    assert statuses(out) == [A] and sent(out) == []
    assert sim.m.last_working_transport == "sse"
    sim.frame(subscribed("a"))
    sim.frame(subscribed("b"))
    sim.do("transport_closed", None)
    sim.fire(Timer.RECONNECT)
    assert of(OpenTransport, sim.log)[-1].kind == "sse"


def test_request_transport_subscribes_topics_added_while_the_request_was_in_flight() -> None:
    sim = connecting(opened=False, config=MachineConfig(transport="polling"))
    sim.do("subscribe", "c")
    out = sim.do("transport_opened")
    assert sent(out) == [Subscribe(topic="c")]
    assert Timer.PING not in sim.timers  # no pings over http


def test_refresh_is_scheduled_before_expiry_and_sent_in_band() -> None:
    sim = connecting()
    out = sim.frame(authenticated(expires_at=sim.now + 3600))
    refresh = [a for a in of(StartTimer, out) if a.name is Timer.REFRESH]
    assert refresh == [StartTimer(Timer.REFRESH, sim.now + 3600 - 360)]  # 10 % of lifetime
    for topic in ("a", "b"):
        sim.frame(subscribed(topic))
    out = sim.fire(Timer.REFRESH)
    assert of(RequestToken, out) == [RequestToken("token expires soon: scheduled refresh")]
    out = sim.do("token_refreshed", FRESH)
    assert sent(out) == [Authenticate(token=FRESH)]
    out = sim.frame(authenticated(expires_at=sim.now + 3600))
    assert statuses(out) == []
    assert sim.timers[Timer.REFRESH] == sim.now + 3240


def test_refresh_margin_is_thirty_seconds_for_short_tokens_and_never_a_tight_loop() -> None:
    sim = connecting()
    sim.frame(authenticated(expires_at=sim.now + 120))
    assert sim.timers[Timer.REFRESH] == sim.now + 90
    sim.frame(authenticated(expires_at=sim.now - 50))  # skewed clock: looks expired
    assert sim.timers[Timer.REFRESH] == sim.now + DEFAULT_REFRESH_RETRY


def test_failed_scheduled_refresh_is_retried_later() -> None:
    sim = live()
    sim.fire(Timer.REFRESH)
    out = sim.do("token_refresh_failed", "idp down")
    assert of(StartTimer, out) == [StartTimer(Timer.REFRESH, sim.now + DEFAULT_REFRESH_RETRY)]
    assert sim.status is S


def test_refresh_over_sse_is_not_sent_in_band() -> None:
    sim = connecting(opened=False, config=MachineConfig(transport="sse"))
    sim.do("transport_opened")
    out = sim.do("token_refreshed", FRESH, expires_at=sim.now + 600)
    assert sent(out) == []
    assert of(StartTimer, out) == [StartTimer(Timer.REFRESH, sim.now + 540)]


def test_reconnect_resubscribes_from_each_topics_last_token() -> None:
    sim = live()
    sim.m.set_topic_token("a", "rt-a-41")
    sim.m.set_topic_token("ghost", "ignored")  # not a topic of ours
    sim.do("transport_closed", 1006)
    sim.m.set_topic_token("a", "rt-a-42")  # the pipeline kept applying buffered events
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    out = sim.frame(authenticated())
    assert sent(out) == [Subscribe(topic="a", replay_from="rt-a-42"), Subscribe(topic="b")]


def test_replay_tokens_callback_is_asked_when_subscribing() -> None:
    tokens = {"a": "rt-a-7"}
    sim = live(replay_tokens=tokens.get)
    sim.do("transport_closed", 1006)
    tokens["b"] = "rt-b-3"
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    out = sim.frame(authenticated())
    assert sent(out) == [
        Subscribe(topic="a", replay_from="rt-a-7"),
        Subscribe(topic="b", replay_from="rt-b-3"),
    ]


def test_resubscribe_sends_a_targeted_subscribe_without_changing_state() -> None:
    sim = live()
    out = sim.do("resubscribe", "a", "rt-a-10")
    assert out == [SendFrame(Subscribe(topic="a", replay_from="rt-a-10"))]
    sim.do("transport_closed", 1006)
    assert sim.do("resubscribe", "b", "rt-b-2") == []  # noted for the coming Subscribe
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    assert Subscribe(topic="b", replay_from="rt-b-2") in sent(sim.frame(authenticated()))


def test_ping_pong_and_heartbeat_record_rtt_and_server_lag() -> None:
    sim = live()
    assert sim.timers[Timer.PING] == pytest.approx(sim.now + DEFAULT_PING_INTERVAL)
    out = sim.fire(Timer.PING)
    assert sent(out) == [Ping(id="p1")]
    sent_at = sim.now
    out = sim.later(0.04).frame(Pong(id="p1", server_time=sent_at + 0.01))
    (rec,) = of(RecordRtt, out)
    assert rec.rtt_ms == pytest.approx(40.0) and rec.server_lag_ms == pytest.approx(30.0)
    assert of(RecordRtt, sim.frame(Pong(id="p1", server_time=sim.now))) == []  # answered already
    (beat,) = of(RecordRtt, sim.later(1).frame(Heartbeat(server_time=sim.now - 0.25)))
    assert beat.rtt_ms is None and beat.server_lag_ms == pytest.approx(250.0)


def test_connect_timeout_abandons_a_hanging_attempt() -> None:
    sim = connecting(opened=False)
    out = sim.fire(Timer.CONNECT)
    assert of(CloseTransport, out) == [
        CloseTransport(CLOSE_GOING_AWAY, f"no connection within {DEFAULT_CONNECT_TIMEOUT:.1f} s")
    ]
    assert statuses(out) == [R]


def test_frames_out_of_place_are_ignored_not_fatal() -> None:
    sim = connecting()
    assert sim.frame(subscribed("a")) == []
    assert sim.m.topics["a"] is TopicPhase.PENDING
    assert sim.frame(Error(code="whatever", message="?")) == []


def test_repr_reasons_and_actions_never_show_the_token() -> None:
    sim = live()
    sim.do("token_refreshed", FRESH)
    sim.do("transport_closed", 4401, "token tok-... rejected")
    sim.do("token_refreshed", FRESH)
    sim.do("transport_opened")
    texts = [repr(sim.m), *(repr(a) for a in sim.log)]
    assert "token=<redacted>" in repr(sim.m)
    assert not any("SECRET" in t for t in texts)
    with pytest.raises(LocalProtocolError) as info:
        sim.do("start", TOKEN)
    assert "SECRET" not in str(info.value)
    with pytest.raises(LocalProtocolError) as info:
        closed().do("token_refreshed", TOKEN)
    assert "SECRET" not in str(info.value)


def test_hours_of_flapping_reconnects_run_in_simulated_time() -> None:
    # A server that accepts, confirms and drops at once, for six simulated hours.
    sim = live(backoff=FakeBackoff(sequence=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0)))
    cycles = 0
    while sim.now < T0 + 6 * 3600:
        sim.later(0.2).do("transport_closed", 1011)
        sim.fire(Timer.RECONNECT)
        sim.later(0.01).do("transport_opened")
        sim.frame(authenticated(expires_at=sim.now + 3600))
        sim.frame(subscribed("a"))
        sim.frame(subscribed("b"))
        cycles += 1
    assert cycles > 1000
    assert sim.m.attempt == cycles  # never reset: never healthy for reset_after
    assert sim.timers == dict(sim.m.timers)


def test_real_backoff_plugs_in() -> None:
    backoff_module = pytest.importorskip("rtnb.core.backoff")
    policy = backoff_module.Backoff(policy="full", base=0.5, cap=30.0)
    m = ConnectionMachine(backoff=policy, rng=random.Random(7))
    now = T0
    m.start(now, TOKEN)
    delays = []
    for _ in range(40):
        out = m.transport_failed(now, "unreachable")
        retry = changes(out)[-1].next_retry_at
        assert retry is not None
        delays.append(retry - now)
        now = retry
        m.timer_fired(now, Timer.RECONNECT)
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert max(delays[20:]) > 15.0 and len(set(delays)) == len(delays)  # jitter at the cap
    assert m.attempt == 40
    m.transport_opened(now)
    m.frame_received(now, authenticated())
    assert m.status is S
    now += policy.reset_after
    m.frame_received(now, Heartbeat(server_time=now))
    out = m.transport_closed(now, 1006)
    assert changes(out)[-1].attempt == 1


# ---------------------------------------------------------------------------
# configuration and documented defaults
# ---------------------------------------------------------------------------


def test_documented_defaults_match_the_code() -> None:
    cfg = MachineConfig()
    assert cfg.fallback_order == DEFAULT_FALLBACK_ORDER == ("websocket", "sse", "polling")
    assert cfg.heartbeat_interval == DEFAULT_HEARTBEAT_INTERVAL == 5.0
    assert cfg.missed_heartbeats == DEFAULT_MISSED_HEARTBEATS == 2
    assert cfg.heartbeat_deadline == 10.5  # 2 × 5 s + min(0.2 × 5 s, 0.5 s) grace
    assert cfg.ping_interval == DEFAULT_PING_INTERVAL == 10.0
    assert cfg.connect_timeout == DEFAULT_CONNECT_TIMEOUT == 10.0
    assert cfg.refresh_margin == DEFAULT_REFRESH_MARGIN == 30.0
    assert cfg.refresh_fraction == DEFAULT_REFRESH_FRACTION == 0.1
    assert cfg.refresh_retry == DEFAULT_REFRESH_RETRY == 10.0
    source = inspect.getsource(machine_table)
    for name in dir(machine_table):
        if name.startswith("DEFAULT_") and name != "DEFAULT_FALLBACK_ORDER":
            value = getattr(machine_table, name)
            # the "#:" comment above each constant quotes its value
            doc = source.split(f"\n{name}:")[0].rsplit("#:", 1)[1]
            assert re.search(rf": {re.escape(str(value))}(?![0-9])", doc), name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fallback_order": ()},
        {"fallback_order": ("websocket", "websocket")},
        {"fallback_order": ("carrier-pigeon",)},
        {"transport": "smoke"},
        {"heartbeat_interval": 0},
        {"missed_heartbeats": 0},
        {"ping_interval": -1},
        {"refresh_fraction": 1.0},
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MachineConfig(**kwargs)


def test_machine_module_reexports_the_vocabulary() -> None:
    # what tests and bench import from rtnb.core.machine (defined in machine_table)
    for name in ("MachineConfig", "Timer", "StartTimer", "CloseTransport", "OpenTransport"):
        assert hasattr(machine_module, name), name


# ---------------------------------------------------------------------------
# hypothesis: random walks of legal inputs
# ---------------------------------------------------------------------------

TOPICS = ("a", "b", "c")


Move = tuple[str, Callable[[], object], float]  # label, input, weight for random walks


def legal_moves(sim: Sim) -> list[Move]:
    """Every kind of legal input for the Sim's current state, with plausible data.

    Weights favour progress (open, authenticate, confirm, fire timers) so that
    plain random walks get to SUBSCRIBED often; close ends a walk, so it is rare.
    """
    m, status = sim.m, sim.status
    moves: list[Move] = []

    def add(label: str, fn: Callable[[], object], weight: float = 1.0) -> None:
        moves.append((label, fn, weight))

    if status is X:
        return [("close", lambda: sim.do("close"), 1.0)]
    if status is I:
        add("start", lambda: sim.do("start", TOKEN))
    is_open = m.transport_open
    if status is C and not is_open:
        add("opened", lambda: sim.later(0.05).do("transport_opened"), 8)
        for kind, code, hint in [
            ("rejected", 403, None),
            ("unreachable", None, None),
            ("unreachable", 503, 4.0),
            ("unreachable", 401, None),
        ]:
            add(f"failed {kind} {code}", partial(sim.do, "transport_failed", kind, code, hint))
    if is_open:
        for code, hint in [(1006, None), (4429, 3.0), (4401, None), (4400, None), (1000, None)]:
            add(f"closed {code}", partial(sim.do, "transport_closed", code, "", hint))
        add("authenticated", lambda: sim.frame(authenticated(expires_at=sim.now + 120)), 4)
        for topic in TOPICS:
            pending = m.topics.get(topic) is TopicPhase.PENDING
            add(f"subscribed {topic}", partial(sim.frame, subscribed(topic)), 6 if pending else 1)
            refusal = Error(code="forbidden", message="", topic=topic)
            add(f"topic error {topic}", partial(sim.frame, refusal))
        add("heartbeat", lambda: sim.later(1).frame(Heartbeat(server_time=sim.now)))
        add("event", lambda: sim.later(0.1).frame(an_event()))
        add("pong", lambda: sim.frame(Pong(id=sim.last_ping, server_time=sim.now)))
        add("auth error", lambda: sim.frame(Error(code="token_expired", message="")))
    for timer in list(sim.timers):
        add(f"timer {timer}", partial(sim.fire, timer), 2)
    if status is not D:
        for topic in TOPICS:
            add(f"subscribe {topic}", partial(sim.do, "subscribe", topic))
            if topic in m.topics:
                add(f"unsubscribe {topic}", partial(sim.do, "unsubscribe", topic))
                if m.topics[topic] is not TopicPhase.REFUSED:
                    add(f"resubscribe {topic}", partial(sim.do, "resubscribe", topic, "rt"))
    if (status, Input.TOKEN_REFRESHED) in TRANSITIONS:
        add("token refreshed", lambda: sim.do("token_refreshed", FRESH))
    if (status, Input.TOKEN_REFRESH_FAILED) in TRANSITIONS:
        add("token refresh failed", lambda: sim.do("token_refresh_failed", "idp down"))
    add("close", lambda: sim.do("close"), 0.1)
    return moves


def reconnect_path(before: Status, out: list[MachineAction]) -> str | None:
    """Name the reconnect path an input took, if it led to RECONNECTING."""
    to_r = [c for c in changes(out) if c.status is R and c.previous is not R]
    if not to_r:
        return None
    reason = to_r[0].reason
    if "no heartbeat" in reason:
        return "heartbeat timeout"
    if "server asked to retry" in reason:
        return "4429 hint"
    if "waiting for a fresh token" in reason:
        return "4401 refresh"
    return f"loss while {before.value}"


def check_invariants(sim: Sim) -> None:
    m, status = sim.m, sim.status
    assert isinstance(status, Status) and status is not D  # exactly one, resting status
    assert sim.seen is status  # the StateChanged chain ends where the machine is
    assert sim.timers == dict(m.timers)  # the driver's view equals the machine's
    assert set(m.timers) <= TIMERS[status]
    if status in (C, A):
        assert Timer.CONNECT in m.timers
    if status in (A, S):
        assert Timer.HEARTBEAT in m.timers
    if status is R:  # either a retry is scheduled, or it waits for a fresh token
        assert (Timer.RECONNECT in m.timers) == (m.next_retry_at is not None)
        if m.next_retry_at is not None:
            assert m.timers[Timer.RECONNECT] == m.next_retry_at
    else:
        assert m.next_retry_at is None
    if status is A:
        assert TopicPhase.PENDING in m.topics.values()
    if status in (I, R, X, C):
        assert TopicPhase.SUBSCRIBED not in m.topics.values()


EXPECTED_PATHS = {
    "loss while connecting",
    "loss while authenticated",
    "loss while subscribed",
    "heartbeat timeout",
    "4429 hint",
    "4401 refresh",
}


def walk(rng: random.Random, steps: int, paths: set[str]) -> Sim:
    sim = Sim(backoff=FakeBackoff(sequence=(0.5, 1.0, 2.0, 4.0)))
    for topic in ("a", "b"):
        sim.do("subscribe", topic)
    was_closed = False
    for _ in range(steps):
        moves = legal_moves(sim)
        label, fn, _ = rng.choices(moves, weights=[w for *_, w in moves])[0]
        before = sim.status
        mark = len(sim.log)
        fn()
        path = reconnect_path(before, sim.since(mark))
        if path is not None:
            paths.add(path)
        check_invariants(sim)
        assert not (was_closed and sim.status is not X)  # CLOSED is absorbing
        was_closed = sim.status is X
        if was_closed and label != "close":
            break
    return sim


def test_a_long_random_walk_reaches_every_reconnect_path() -> None:
    rng = random.Random(2024)
    paths: set[str] = set()
    for _ in range(60):
        # close is one move among many; restart a fresh walk when it happens
        walk(rng, 400, paths)
    assert paths >= EXPECTED_PATHS


class MachineWalk(RuleBasedStateMachine):
    """Hypothesis drives the same legal-move generator; invariants after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = Sim(backoff=FakeBackoff(sequence=(0.5, 1.0, 2.0)))
        self.sim.do("subscribe", "a")
        self.closed = False
        self.paths: set[str] = set()

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        moves = legal_moves(self.sim)
        # Repeat moves by weight so that hypothesis, too, reaches SUBSCRIBED often.
        weighted = [move for move in moves for _ in range(max(1, round(move[2] * 2)))]
        label, fn, _ = data.draw(st.sampled_from(weighted), label="input")
        before = self.sim.status
        mark = len(self.sim.log)
        fn()
        event(f"{before.value}: {label.split()[0]}")
        path = reconnect_path(before, self.sim.since(mark))
        if path is not None:
            event(f"reconnect path: {path}")
            self.paths.add(path)

    @rule(seconds=st.floats(min_value=0.0, max_value=3600.0))
    def time_passes(self, seconds: float) -> None:
        self.sim.later(seconds)

    @rule(data=st.data())
    def illegal_input_changes_nothing(self, data: st.DataObject) -> None:
        status = self.sim.status
        illegal = [i for i in Input if (status, i) not in TRANSITIONS]
        if not illegal:
            return
        inp = data.draw(st.sampled_from(illegal), label="illegal")
        before = _snapshot(self.sim)
        with pytest.raises(LocalProtocolError):
            GENERIC[inp](self.sim)
        assert _snapshot(self.sim) == before

    def teardown(self) -> None:
        # Steer generation towards runs that take many different reconnect paths.
        target(float(len(self.paths)), label="distinct reconnect paths")

    @invariant()
    def consistent(self) -> None:
        check_invariants(self.sim)
        if self.closed:
            assert self.sim.status is X
        self.closed = self.sim.status is X


TestMachineWalk = MachineWalk.TestCase
TestMachineWalk.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestMachineWalk.pytestmark = [pytest.mark.slow]  # type: ignore[attr-defined]


@pytest.mark.parametrize("live_already", [False, True])
def test_a_topic_unavailable_on_this_server_reconnects_and_is_asked_for_again(
    live_already: bool,
) -> None:
    # The server's shared store is unreachable: not a refusal (a refused topic is never
    # asked for again); the connection backs off and resubscribes every topic.
    sim = live() if live_already else authed(topics=("a",))
    out = sim.frame(Error(code="unavailable", message="the Redis store is unreachable", topic="a"))
    assert of(TopicStatusChanged, out)[0] == TopicStatusChanged(
        "a", "unavailable", "the Redis store is unreachable"
    )
    assert of(CloseTransport, out), "the transport is closed"
    assert sim.status is R
    assert "topic 'a' unavailable on this server" in changes(out)[-1].reason
    assert sim.m.topics["a"] is TopicPhase.PENDING
    sim.fire(Timer.RECONNECT)
    sim.do("transport_opened")
    out = sim.frame(authenticated())
    assert "a" in [f.topic for f in sent(out) if isinstance(f, Subscribe)]


def test_unavailable_about_a_topic_never_asked_for_is_ignored() -> None:
    sim = live()
    assert sim.frame(Error(code="unavailable", message="?", topic="zzz")) == []
    assert sim.status is S

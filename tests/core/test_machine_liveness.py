"""Negotiated liveness: the heartbeat deadline follows the interval the server announces.

Pure machine, injected clock (``Sim`` from test_machine): hours of quiet cost
nothing, so the "no false degraded" property runs over long simulated periods.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from rtnb.core.liveness import HEARTBEAT_GRACE_MAX, liveness_deadline
from rtnb.core.machine import CloseTransport, MachineConfig, StartTimer, Timer
from rtnb.protocol.frames import Authenticated, Heartbeat
from tests.core.test_machine import (
    T0,
    D,
    S,
    Sim,
    changes,
    connecting,
    of,
    subscribed,
)

intervals = st.floats(min_value=0.05, max_value=3600.0, allow_nan=False)


def announced(interval: float | None, expires_at: float = T0 + 86_400) -> Authenticated:
    return Authenticated(
        tenant="acme",
        user="ana",
        role="operator",
        expires_at=expires_at,
        heartbeat_interval=interval,
    )


def heartbeat(now: float) -> Heartbeat:
    return Heartbeat(server_time=now, topics={}, sequences={})


def live_ws(interval: float | None) -> Sim:
    sim = connecting()
    sim.later(0.05).frame(announced(interval))
    for topic in list(sim.m.topics):
        sim.frame(subscribed(topic))
    assert sim.status is S
    return sim


def live_http(kind: str, interval: float | None) -> Sim:
    """sse/polling: the opening request authenticates; the announcement is the first frame."""
    sim = Sim(config=MachineConfig(transport=kind, fallback_order=(kind,)))  # type: ignore[arg-type]
    sim.do("subscribe", "a")
    sim.do("start", "tok")
    sim.later(0.05).do("transport_opened")
    sim.frame(announced(interval))
    sim.frame(subscribed("a"))
    assert sim.status is S
    return sim


@given(interval=intervals, missed=st.integers(1, 5))
def test_the_deadline_is_missed_intervals_plus_a_small_grace(interval: float, missed: int) -> None:
    deadline = liveness_deadline(interval, missed)
    grace = deadline - missed * interval  # float subtraction: allow its rounding
    assert 0 < grace <= HEARTBEAT_GRACE_MAX + 1e-9
    assert grace <= 0.2 * interval + 1e-9
    # The bound: a stall is shown within 2 intervals + 1 s of its start.
    assert deadline < missed * interval + 1.0


@given(interval=intervals)
def test_a_websocket_learns_the_interval_from_authenticated(interval: float) -> None:
    sim = live_ws(interval)
    assert sim.m.heartbeat_interval == interval and sim.m.heartbeat_interval_announced
    last = sim.now
    assert sim.timers[Timer.HEARTBEAT] == pytest.approx(last + liveness_deadline(interval, 2))
    out = sim.fire(Timer.HEARTBEAT)
    assert changes(out)[0].status is D
    assert f"the server sends one every {interval:g} s" in changes(out)[0].reason
    assert len(of(CloseTransport, out)) == 1


@pytest.mark.parametrize("kind", ["sse", "polling"])
@given(interval=intervals)
def test_sse_and_polling_learn_the_interval_from_their_first_frame(
    kind: str, interval: float
) -> None:
    sim = live_http(kind, interval)
    assert sim.m.heartbeat_interval == interval
    assert sim.timers[Timer.HEARTBEAT] == pytest.approx(sim.now + liveness_deadline(interval, 2))
    # Polling repeats the announcement in every response: the same expiry does
    # not re-arm the refresh timer (which would push a due refresh off forever).
    refresh = sim.timers[Timer.REFRESH]
    out = sim.later(1.0).frame(announced(interval))
    assert [a for a in of(StartTimer, out) if a.name is Timer.REFRESH] == []
    assert sim.timers[Timer.REFRESH] == refresh


def test_the_configured_interval_holds_until_a_server_announces_one() -> None:
    sim = live_ws(None)  # an older server: no heartbeatInterval
    assert not sim.m.heartbeat_interval_announced
    assert sim.m.heartbeat_interval == 5.0
    assert sim.timers[Timer.HEARTBEAT] == pytest.approx(sim.now + 10.5)


def test_the_interval_is_learned_per_connection() -> None:
    sim = live_ws(0.5)
    sim.later(0.1).do("transport_closed", 1006)
    sim.fire(Timer.RECONNECT)
    assert not sim.m.heartbeat_interval_announced  # a new connection may reach another server
    assert sim.m.heartbeat_interval == 5.0
    sim.do("transport_opened")
    sim.frame(announced(30.0))
    assert sim.m.heartbeat_interval == 30.0


@settings(max_examples=50)
@given(
    interval=st.sampled_from([0.5, 5.0, 30.0, 120.0]),
    lateness=st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40),
)
def test_no_false_degraded_over_a_long_quiet_period(interval: float, lateness: list[float]) -> None:
    """A healthy but idle server, heartbeats late by up to the grace: never degraded.

    40 heartbeats at 30 s is 20 minutes of simulated quiet (the issue asks for 3).
    """
    sim = live_ws(interval)
    grace = liveness_deadline(interval, 2) - 2 * interval
    start = sim.now
    for k, late in enumerate(lateness, start=1):
        due = start + k * interval + late * grace  # each beat late by < the grace
        while sim.timers.get(Timer.HEARTBEAT, float("inf")) <= due:
            sim.fire(Timer.HEARTBEAT)  # lazily re-armed
            assert sim.status is S, sim.log[-1]
        sim.now = due
        sim.frame(heartbeat(due))
    assert all(c.status is not D for c in changes(sim.log))


@settings(max_examples=50)
@given(interval=intervals, beats=st.integers(0, 5), stall_at=st.floats(0.0, 1.0))
def test_a_silent_stall_is_declared_within_two_intervals_and_a_second(
    interval: float, beats: int, stall_at: float
) -> None:
    sim = live_ws(interval)
    for _ in range(beats):
        sim.later(interval).frame(heartbeat(sim.now))
    stall_start = sim.now + stall_at * interval  # the stall begins before the next beat
    while sim.status is S:
        sim.fire(Timer.HEARTBEAT)
    degraded_at = next(c.at for c in changes(sim.log) if c.status is D)
    assert degraded_at - stall_start <= 2 * interval + 1.0
    assert degraded_at - sim.m.heartbeat_deadline >= stall_start - interval  # never early

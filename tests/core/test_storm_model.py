"""Structural facts of the reconnect-storm model in bench/reconnect_storm.py (never timings)."""

from __future__ import annotations

import math
import random

import pytest

from bench.reconnect_storm import (
    Ably,
    Centrifuge,
    SocketIO,
    SourceFactory,
    StormResult,
    rtnb_source,
    simulate,
    simulate_machines,
)
from rtnb.core.backoff import Backoff

CLIENTS, RATE, BURST, OUTAGE = 1_000, 100.0, 10.0, 5.0

MODELS: dict[str, tuple[SourceFactory, bool]] = {
    "socket.io-client": (SocketIO, False),
    "centrifuge-js": (Centrifuge, False),
    "Ably": (Ably, False),
    "rtnb full": (rtnb_source(Backoff(policy="full", base=1.0, cap=30.0)), False),
    "rtnb decorrelated": (rtnb_source(Backoff(policy="decorrelated")), False),
    "rtnb default": (rtnb_source(Backoff()), False),
    "rtnb default +hint": (rtnb_source(Backoff()), True),
}
SMALL = {"clients": CLIENTS, "outage": OUTAGE, "rate": RATE, "burst": BURST}


@pytest.fixture(scope="module", params=sorted(MODELS))
def storm(request: pytest.FixtureRequest) -> StormResult:
    source, hints = MODELS[request.param]
    return simulate(source, clients=CLIENTS, outage=OUTAGE, rate=RATE, burst=BURST, hints=hints)


def test_every_client_reconnects_eventually(storm: StormResult) -> None:
    assert len(storm.connected_at) == CLIENTS
    assert all(math.isfinite(t) for t in storm.connected_at)


def test_nobody_connects_while_the_server_is_down(storm: StormResult) -> None:
    assert min(storm.connected_at) >= OUTAGE


def test_admissions_never_exceed_the_rate(storm: StormResult) -> None:
    times = sorted(storm.connected_at)
    slack = 1e-6
    for i, start in enumerate(times):
        for j in range(i + int(BURST), len(times)):
            assert j - i + 1 <= RATE * (times[j] - start) + BURST + slack


def test_every_attempt_is_counted_including_those_during_the_outage(storm: StormResult) -> None:
    assert all(a >= 1 for a in storm.attempts)
    # More clients than the server can take at once: someone was refused or retried.
    assert sum(storm.attempts) > CLIENTS


def test_the_same_seed_gives_the_same_storm() -> None:
    source, _ = MODELS["rtnb default +hint"]
    first = simulate(source, clients=200, rate=RATE, burst=BURST, hints=True, seed=9)
    again = simulate(source, clients=200, rate=RATE, burst=BURST, hints=True, seed=9)
    assert first == again


def test_socket_io_model_collapses_onto_its_five_second_maximum() -> None:
    """The model keeps the flaw DESIGN.md §6 names: jitter first, then min(ms, max)."""
    fourth = []
    for seed in range(1000):
        client = SocketIO(random.Random(seed))
        fourth.append([client.next_delay() for _ in range(4)][-1])
    assert sum(d == 5.0 for d in fourth) > 800  # 8 s ± 4 s, then min(·, 5 s)


@pytest.mark.parametrize("policy", ["full", "equal", "decorrelated"])
def test_the_shipped_machine_draws_exactly_what_the_schedule_model_draws(policy: str) -> None:
    # One backoff path: 1,000 real ConnectionMachines give the delay model's storm, draw for draw.
    backoff = Backoff(policy=policy)  # type: ignore[arg-type]
    model = simulate(rtnb_source(backoff), **SMALL)  # type: ignore[arg-type]
    machines = simulate_machines(backoff, **SMALL)  # type: ignore[arg-type]
    assert machines.attempts == model.attempts
    assert machines.connected_at == model.connected_at


def test_hinted_machines_wait_at_least_the_hint_the_server_sent() -> None:
    storm = simulate_machines(Backoff(), hints=True, **SMALL)  # type: ignore[arg-type]
    assert all(math.isfinite(t) and t >= OUTAGE for t in storm.connected_at)
    assert storm.mean_attempts() >= 1.0
    # with hints the server's slots are used: no later than the unhinted storm's p99
    alone = simulate_machines(Backoff(), **SMALL)  # type: ignore[arg-type]
    assert storm.p99_after_return() <= alone.p99_after_return()

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

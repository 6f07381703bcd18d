"""Reconnect storm: 10,000 clients, a 5 s outage, a server admitting 1,000 connections/s.

The model of DESIGN.md §6, as a discrete-event simulation (``heapq``):

* every client loses its connection at t = 0 and starts its reconnect loop;
* the server is down until ``outage`` (5 s): attempts fail at once (refused);
* then it admits through :class:`rtnb.core.admission.AdmissionControl`
  (1,000/s, burst 100); an attempt beyond the bucket fails — with a 4429 and
  the policy's retry hint in the "+hint" rows, as a plain failure otherwise;
* a connection attempt takes no time; every attempt counts, including those
  during the outage.

The rtnb rows run the shipped client itself: 10,000 sans-I/O
:class:`rtnb.core.machine.ConnectionMachine` instances (``simulate_machines``)
on the simulation's clock and one seeded rng, each connected, then dropped
(1006) at t = 0; a refused attempt is ``transport_failed`` (or, with hints, an
opened WebSocket closed with 4429 and the reference server's own close reason,
``"rate limited; retry_after=2.5"``, which the machine parses); a connection
is up at the admitted ``transport_opened``. So the figures are the shipped
machine's: its draw, its hint rule, its reset rule. The SDK rows (and the
``max(d,h)`` alternative) are delay models driven by ``simulate()``.

Reported per policy: seconds after the server's return until 99% of clients
are connected (p99), mean and p99 attempts per client, and the ratio to the
floor (clients / rate = 10 s); the SDK rows' figures are printed beside the
ones quoted in DESIGN.md §6. A second table runs a 180 s outage, a third shows
how the default fares away from the benchmark's exact point (context, not
bars). The run time of the machine rows is printed (the cost of driving real
machines instead of a delay model).

``simulate()`` and ``simulate_machines()`` are importable:
``tests/core/test_storm_model.py`` runs small storms through them and checks
structural facts, never timings.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rtnb.core.admission import AdmissionControl
from rtnb.core.backoff import (
    DEFAULT_BASE,
    DEFAULT_CAP,
    DEFAULT_POLICY,
    Backoff,
    BackoffSchedule,
    Policy,
)
from rtnb.core.machine import ConnectionMachine, MachineConfig, Timer
from rtnb.core.status import Status
from rtnb.protocol.frames import Authenticated
from rtnb.server.limits import retry_reason

CLIENTS = 10_000
RATE = 1_000.0
BURST = 100.0
OUTAGE = 5.0
LONG_OUTAGE = 180.0
SEED = 20261127

# DESIGN.md §6 bars for rtnb's default.
BAR_P99 = 15.0
BAR_ATTEMPTS = 4.5
BAR_P99_HINT = 12.0
BAR_ATTEMPTS_HINT = 3.0
BAR_LONG_ATTEMPTS = 20.0


class DelaySource(Protocol):
    """One client's reconnect loop: the delay before its next attempt."""

    def next_delay(self, retry_hint: float | None = None) -> float: ...


SourceFactory = Callable[[random.Random], DelaySource]


# --- SDK default reconnect loops (delays in seconds) -------------------------------


class SocketIO:
    """socket.io-client Manager + backo2: min 1000 ms, max 5000 ms, jitter 0.5, factor 2.

    ``ms = min·2^k``; one ``rand`` gives both the deviation ``rand·0.5·ms`` and
    its sign (``floor(rand·10) & 1``); then ``min(ms, max)`` — which collapses
    most clients onto exactly 5 s once ``ms`` reaches 8 s.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.attempts = 0

    def next_delay(self, retry_hint: float | None = None) -> float:
        ms = 1000.0 * 2.0**self.attempts
        self.attempts += 1
        rand = self.rng.random()
        deviation = math.floor(rand * 0.5 * ms)
        ms = ms - deviation if math.floor(rand * 10) & 1 == 0 else ms + deviation
        return int(min(ms, 5000.0)) / 1000.0


class Centrifuge:
    """centrifuge-js ``backoff(step, 500, 20000)`` (full jitter on top of ``min``).

    ``min(max, min + randInt(0, min(max, min·2^step)))`` in ms, step from 0.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.step = 0

    def next_delay(self, retry_hint: float | None = None) -> float:
        interval = self.rng.randint(0, int(min(20000.0, 500.0 * 2.0 ** min(self.step, 31))))
        self.step += 1
        return min(20000, 500 + interval) / 1000.0


class Ably:
    """ably-js: an immediate retry, then RTB1 backoff and jitter.

    One immediate reconnect (RTN15a), then ``disconnectedRetryTimeout`` 15 s ×
    ``min((n+2)/3, 2)`` × ``(1 - 0.2·rand)`` (RTB1). After ``connectionStateTtl``
    (120 s) the base becomes ``suspendedRetryTimeout`` 30 s with the count
    continuing — a guess that only touches the 180 s table, which DESIGN does
    not quote for Ably.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.retries = -1
        self.elapsed = 0.0

    def next_delay(self, retry_hint: float | None = None) -> float:
        self.retries += 1
        if self.retries == 0:
            return 0.0
        timeout = 15.0 if self.elapsed < 120.0 else 30.0
        delay = timeout * min((self.retries + 2) / 3, 2.0) * (1.0 - 0.2 * self.rng.random())
        self.elapsed += delay
        return delay


def rtnb_source(backoff: Backoff) -> SourceFactory:
    def make(rng: random.Random) -> BackoffSchedule:
        return backoff.schedule(rng)

    return make


class _MaxOfDrawAndHint:
    """A client that waits ``max(own draw, hint)``: the other reading of "hint as minimum"."""

    def __init__(self, backoff: Backoff, rng: random.Random) -> None:
        self.delays = backoff.delays(rng)

    def next_delay(self, retry_hint: float | None = None) -> float:
        delay = next(self.delays)
        return delay if retry_hint is None else max(delay, retry_hint)


def max_rule_source(backoff: Backoff) -> SourceFactory:
    return lambda rng: _MaxOfDrawAndHint(backoff, rng)


# AWS "full jitter" (``uniform(0, min(cap, base·2^n))``) is rtnb's "full" policy; the
# blog names no defaults, so base and cap are the ones that reproduce DESIGN's figures.
AWS_BASE, AWS_CAP = 1.0, 30.0


# --- the simulation ------------------------------------------------------------------


@dataclass(frozen=True)
class StormResult:
    """Per-client outcome of one storm (times in seconds from t = 0)."""

    connected_at: list[float]  # when each client got in
    attempts: list[int]  # attempts per client, failed ones included
    outage: float
    rate: float
    burst: float

    def p99_after_return(self) -> float:
        ordered = sorted(self.connected_at)
        return ordered[math.ceil(0.99 * len(ordered)) - 1] - self.outage

    def mean_attempts(self) -> float:
        return sum(self.attempts) / len(self.attempts)

    def p99_attempts(self) -> int:
        ordered = sorted(self.attempts)
        return ordered[math.ceil(0.99 * len(ordered)) - 1]

    def floor(self) -> float:
        return len(self.connected_at) / self.rate


def simulate(
    make_source: SourceFactory,
    *,
    clients: int = CLIENTS,
    outage: float = OUTAGE,
    rate: float = RATE,
    burst: float = BURST,
    hints: bool = False,
    seed: int = SEED,
) -> StormResult:
    """Run one storm: all ``clients`` disconnect at t = 0; the server is back at ``outage``.

    With ``hints``, a client refused by admission control gets the server's retry
    hint; without, it sees a plain failure. Runs until every client is connected.
    """
    rng = random.Random(seed)
    server = AdmissionControl(rate, burst, rng=random.Random(seed + 1))
    sources = [make_source(rng) for _ in range(clients)]
    attempts = [0] * clients
    connected_at = [math.nan] * clients
    queue = [(sources[c].next_delay(), c) for c in range(clients)]
    heapq.heapify(queue)
    pop, push = heapq.heappop, heapq.heappush
    while queue:
        now, c = pop(queue)
        attempts[c] += 1
        if now < outage:  # connection refused
            push(queue, (now + sources[c].next_delay(), c))
            continue
        hint = server.try_admit(now)
        if hint is None:
            connected_at[c] = now
        else:
            push(queue, (now + sources[c].next_delay(hint if hints else None), c))
    return StormResult(connected_at, attempts, outage, rate, burst)


_WS_ONLY = MachineConfig(transport="websocket")
_WELCOME = Authenticated(tenant="t", user="u", role="viewer", expires_at=1e12)


def _machine_up_then_dropped(backoff: Backoff, rng: random.Random) -> ConnectionMachine:
    """A machine connected (no topics: SUBSCRIBED at once) and then dropped at t = 0."""
    m = ConnectionMachine(_WS_ONLY, backoff=backoff, rng=rng)
    m.start(0.0, "token")
    m.transport_opened(0.0)
    m.frame_received(0.0, _WELCOME)
    m.transport_closed(0.0, 1006)
    return m


def simulate_machines(
    backoff: Backoff,
    *,
    clients: int = CLIENTS,
    outage: float = OUTAGE,
    rate: float = RATE,
    burst: float = BURST,
    hints: bool = False,
    seed: int = SEED,
) -> StormResult:
    """``simulate()``'s storm, with the shipped ``ConnectionMachine`` as every client.

    The machines share one rng in the same order as ``simulate()``'s delay
    sources, so without hints both give the same figures draw for draw (a test
    holds them to it). With ``hints`` a refused client is told through the
    reference server's 4429 close reason (one decimal, at least 0.1 s).
    """
    rng = random.Random(seed)
    server = AdmissionControl(rate, burst, rng=random.Random(seed + 1))
    machines = [_machine_up_then_dropped(backoff, rng) for _ in range(clients)]
    attempts = [0] * clients
    connected_at = [math.nan] * clients
    queue: list[tuple[float, int]] = []
    for c, m in enumerate(machines):
        assert m.status is Status.RECONNECTING and m.next_retry_at is not None
        queue.append((m.next_retry_at, c))
    heapq.heapify(queue)
    pop, push = heapq.heappop, heapq.heappush
    while queue:
        now, c = pop(queue)
        m = machines[c]
        attempts[c] += 1
        m.timer_fired(now, Timer.RECONNECT)  # -> CONNECTING, OpenTransport
        if now < outage:
            m.transport_failed(now, "unreachable", reason="connection refused")
        else:
            hint = server.try_admit(now)
            if hint is None:
                m.transport_opened(now)
                connected_at[c] = now
                continue
            if hints:
                m.transport_opened(now)
                m.transport_closed(now, 4429, retry_reason("rate limited", hint))
            else:
                m.transport_failed(now, "unreachable", reason="connection refused")
        at = m.next_retry_at
        assert at is not None, m
        push(queue, (at, c))
    return StormResult(connected_at, attempts, outage, rate, burst)


# --- the report ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    source: SourceFactory | Backoff  # a delay model, or a policy the shipped machine runs
    hints: bool = False
    quoted: tuple[float, float] | None = None  # DESIGN.md §6: (p99 s, attempts)
    bar: tuple[float, float] | None = None  # (p99 s, mean attempts) to pass

    def run(self, **kw: float) -> StormResult:
        if isinstance(self.source, Backoff):
            return simulate_machines(self.source, hints=self.hints, **kw)  # type: ignore[arg-type]
        return simulate(self.source, hints=self.hints, **kw)  # type: ignore[arg-type]


def _pass(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def storm_rows() -> list[Row]:
    """The SDK models, then each rtnb policy at the default base and cap, alone and +hint."""
    rows = [
        Row("socket.io-client", SocketIO, quoted=(13.4, 3.7)),
        Row("centrifuge-js", Centrifuge, quoted=(17.8, 4.9)),
        Row(
            f"AWS full jitter ({AWS_BASE:g}/{AWS_CAP:g} s)",
            rtnb_source(Backoff(policy="full", base=AWS_BASE, cap=AWS_CAP)),  # a model
            quoted=(25.4, 4.4),
        ),
        Row("Ably", Ably, quoted=(51.7, 2.8)),
    ]
    policies: tuple[Policy, ...] = ("full", "equal", "decorrelated")
    for policy in policies:
        b = Backoff(policy=policy, base=DEFAULT_BASE, cap=DEFAULT_CAP)
        is_default = policy == DEFAULT_POLICY
        name = f"rtnb {policy}" + (" (default)" if is_default else "")
        bar = (BAR_P99, BAR_ATTEMPTS) if is_default else None
        bar_hint = (BAR_P99_HINT, BAR_ATTEMPTS_HINT) if is_default else None
        rows.append(Row(name, b, bar=bar))
        rows.append(Row(f"{name} +hint", b, hints=True, bar=bar_hint))
    rows.append(
        Row(
            f"rtnb {DEFAULT_POLICY} +hint, max(d,h)",
            max_rule_source(Backoff()),
            hints=True,
            bar=(BAR_P99_HINT, BAR_ATTEMPTS_HINT),
        )
    )
    return rows


def main() -> None:
    started = time.perf_counter()
    print(
        f"reconnect storm: {CLIENTS:,} clients, server down {OUTAGE:g} s, then admitting "
        f"{RATE:,.0f}/s (burst {BURST:g}); floor {CLIENTS / RATE:g} s; seed {SEED}"
    )
    print(
        f"rtnb rows run {CLIENTS:,} shipped ConnectionMachines (base={DEFAULT_BASE:g} s, "
        f"cap={DEFAULT_CAP:g} s); '+hint': refused\n"
        "clients get AdmissionControl's hint in a 4429 close reason and the machine waits\n"
        "hint + jitter; 'max(d,h)' (a delay model, not shipped): they wait max(draw, hint)\n"
    )
    header = (
        f"{'policy':<28} | {'p99 reconnect s':>15} | {'attempts mean':>13} | "
        f"{'p99 attempts':>12} | {'vs floor':>8} | bar / quoted (DESIGN §6)"
    )
    print(header)
    print("-" * len(header))
    machine_s = 0.0
    for row in storm_rows():
        t0 = time.perf_counter()
        r = row.run()
        if isinstance(row.source, Backoff):
            machine_s += time.perf_counter() - t0
        p99, mean = r.p99_after_return(), r.mean_attempts()
        if row.bar is not None:
            verdict = _pass(p99 <= row.bar[0] and mean <= row.bar[1])
            note = f"{verdict} (<= {row.bar[0]:g} s, <= {row.bar[1]:g})"
        elif row.quoted is not None:
            qp, qa = row.quoted
            note = f"quoted {qp:g} s / {qa:g}: model {p99 / qp - 1:+.0%} / {mean / qa - 1:+.0%}"
        else:
            note = "-"
        print(
            f"{row.name:<28} | {p99:>15.1f} | {mean:>13.2f} | {r.p99_attempts():>12d} | "
            f"{p99 / r.floor():>7.2f}x | {note}"
        )

    print(f"\noutage of {LONG_OUTAGE:g} s (server then admitting {RATE:,.0f}/s, no hints):")
    header = (
        f"{'policy':<28} | {'attempts mean':>13} | {'p99 attempts':>12} | "
        f"{'max attempts':>12} | {'p99 reconnect s':>15} | bar"
    )
    print(header)
    print("-" * len(header))
    for row in storm_rows():
        if row.hints:
            continue
        t0 = time.perf_counter()
        r = row.run(outage=LONG_OUTAGE)
        if isinstance(row.source, Backoff):
            machine_s += time.perf_counter() - t0
        most = max(r.attempts)
        bar = "-"
        if row.bar is not None:
            bar = f"{_pass(most <= BAR_LONG_ATTEMPTS)} (every client <= {BAR_LONG_ATTEMPTS:g})"
        print(
            f"{row.name:<28} | {r.mean_attempts():>13.2f} | {r.p99_attempts():>12d} | "
            f"{most:>12d} | {r.p99_after_return():>15.1f} | {bar}"
        )
    t0 = time.perf_counter()
    sensitivity()
    machine_s += time.perf_counter() - t0
    print(
        f"\nran in {time.perf_counter() - started:.1f} s, of which {machine_s:.1f} s driving "
        "ConnectionMachines (a delay model of the same policy runs ~15x faster, same figures)"
    )


def sensitivity() -> None:
    """How the default fares off the benchmark's exact point (context, not bars)."""
    print(
        "\nsensitivity of the default (not bars): p99 reconnect s / attempts mean, alone and +hint"
    )
    cases: list[tuple[str, Backoff, float]] = [
        (f"outage {o:g} s", Backoff(), o) for o in (3.0, OUTAGE, 8.0, 15.0)
    ]
    cases += [
        (f"base {b:g} s", Backoff(policy=DEFAULT_POLICY, base=b, cap=DEFAULT_CAP), OUTAGE)
        for b in (DEFAULT_BASE - 0.1, DEFAULT_BASE + 0.1)
    ]
    for label, backoff, outage in cases:
        alone = simulate_machines(backoff, outage=outage)
        hinted = simulate_machines(backoff, outage=outage, hints=True)
        print(
            f"  {label:<14} alone {alone.p99_after_return():5.1f} s / "
            f"{alone.mean_attempts():.2f}   +hint {hinted.p99_after_return():5.1f} s / "
            f"{hinted.mean_attempts():.2f}"
        )


if __name__ == "__main__":
    main()

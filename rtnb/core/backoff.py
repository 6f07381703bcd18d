"""Reconnect backoff: jittered exponential delays, a reset rule, server retry hints.

Theory of operation
-------------------
A :class:`Backoff` is an immutable *policy*. It hands out two kinds of state:

* ``b.delays(rng)`` — an infinite iterator of delays (seconds) before attempt
  1, 2, 3, …; the simple API for code that only needs numbers.
* ``b.schedule(rng)`` — a :class:`BackoffSchedule`, the stateful object the
  connection state machine (:class:`rtnb.core.machine.ConnectionMachine`)
  drives: the one backoff path of the shipped client. It counts attempts,
  honours a server's retry hint, and resets the count only after a connection
  has stayed healthy for ``reset_after`` seconds. ``bench/reconnect_storm.py``
  runs 10,000 ``ConnectionMachine`` instances, so the figures below are the
  shipped client's.

Policies, for attempt ``n`` (1-based) and envelope ``e(n) = min(cap, base·2^(n-1))``:

* ``"full"``: ``uniform(0, e(n))`` (AWS "full jitter").
* ``"equal"``: ``e(n)/2 + uniform(0, e(n)/2)`` — half fixed, half jitter.
* ``"decorrelated"``: ``d = uniform(base, 3·prev)`` with ``prev`` the previous delay
  (``base`` before attempt 1); a ``d`` above ``cap`` is redrawn as
  ``uniform(cap/2, cap)``.

Jitter never collapses at the cap. The cap bounds the *envelope* before the
random draw, never the drawn value: socket.io-client computes ``ms ± 50%`` and
then ``min(ms, max)``, so once ``ms`` passes twice its cap three quarters of
its clients wait exactly ``max`` and retry in lockstep. AWS's decorrelated
formula ``min(cap, uniform(base, 3·prev))`` has the same flaw (once ``prev`` is
at the cap, two thirds of the draws land exactly on ``cap``); rtnb spreads
that mass over ``[cap/2, cap]`` instead, which keeps AWS's intent (long
delays once the cap is reached) without the point mass. At the cap the
delays stay uniform over ``[0, cap]`` ("full") or ``[cap/2, cap]`` ("equal";
"decorrelated" mixes that with ``[base, cap]``).

A server retry hint (a 4429 close, HTTP 429/503 ``Retry-After``) is the
*minimum* delay: the schedule waits ``hint + uniform(0, HINT_JITTER·hint)``
instead of its own draw. The server knows its capacity and, with
:class:`rtnb.core.admission.AdmissionControl`, hands each rejected client its
own slot; waiting for ``max(draw, hint)`` instead leaves those slots empty —
with the default policy the draw is nearly always the longer one, and the
hinted storm takes 14.4 s instead of 9.9 s (bench row ``max(d,h)``). The small
proportional jitter protects against naive servers that give every client the
same hint. Hints above ``max_retry_hint`` are clamped so a
buggy or hostile server cannot park clients for hours.

Why the defaults (``bench/reconnect_storm.py``, DESIGN.md §6)
-------------------------------------------------------------
In the storm model (10,000 clients, server down 5 s, then admitting
1,000 connections/s; the floor is 10 s), ``policy="equal"``, ``base=3.0`` s,
``cap=16.0`` s reaches 99% reconnected 14.4 s after the server's return with
2.62 attempts per client (bar: ≤ 15 s, ≤ 4.5); with the reference server's
4429 hints 9.9 s with 2.95 attempts (bar: ≤ 12 s, ≤ 3); over a 180 s outage
17.2 attempts on average and at most 20 for any client (bar: ≤ 20).
socket.io-client's defaults reach 13.2 s but make 38.8 attempts in 180 s.

* *equal*, because its delays have a bounded window ``[e/2, e]``. With "full"
  and "decorrelated" a refused client can draw nearly ``cap``, so the p99
  follows the cap (about 0.9·cap), while the 180 s bar needs a mean delay of
  ~10 s at the cap; no base/cap of theirs meets both (best seen: full 3/15 s:
  15.2 s and 26 attempts; decorrelated 2/14 s: 14.3 s and 22 attempts).
* *base 3 s*: delays of [1.5, 3] s then [3, 6] s put about one attempt into a
  5 s outage. The hint bar needs that: with hints every client still spends
  about 1.95 attempts after the return (one refused and handed a slot, one in
  its slot), so ≤ 3 leaves room for one attempt while the server is down.
* *cap 16 s*: the 5 s storm ends before the cap matters (14 to 20 s give the
  same figures); over 180 s a cap of 15 s lets some clients make 21 attempts,
  16 s keeps every client at ≤ 20; recovery after a long outage is ~0.9·cap.
* *reset_after 30 s*, about two caps: a server that accepts and drops within
  30 s keeps its clients at the capped rate instead of at attempt 1.

The margin is narrow and the benchmark prints it: the p99 jumps when more
than 1% of clients need a fourth attempt, which lands 8-16 s later. Base
2.9 s gives 22.8 s alone; outages of 3 s and 8 s give 16.4 s and 23.9 s alone
(11.8 s and 12.8 s with hints). The bars hold at the benchmark's point, not
around it; the server's hints are what keep the p99 near the floor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_CAP",
    "DEFAULT_MAX_RETRY_HINT",
    "DEFAULT_POLICY",
    "DEFAULT_RESET_AFTER",
    "HINT_JITTER",
    "Backoff",
    "BackoffSchedule",
    "Policy",
]

Policy = Literal["full", "equal", "decorrelated"]
_POLICIES: Final[tuple[str, ...]] = get_args(Policy)

#: Default policy: "equal".
DEFAULT_POLICY: Final[Policy] = "equal"
#: Default base delay: 3.0 seconds.
DEFAULT_BASE: Final = 3.0
#: Default cap on the delay envelope: 16.0 seconds.
DEFAULT_CAP: Final = 16.0
#: Seconds a connection must stay healthy before the attempt count resets: 30.0.
DEFAULT_RESET_AFTER: Final = 30.0
#: Largest server retry hint honoured, in seconds: 300.0.
DEFAULT_MAX_RETRY_HINT: Final = 300.0
#: A hinted delay is ``hint + uniform(0, HINT_JITTER·hint)``: 0.1.
HINT_JITTER: Final = 0.1

# 2**n overflows a float near n = 1024; any envelope is at the cap long before.
_MAX_EXPONENT: Final = 60


def _check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """A reconnect backoff policy (immutable, keyword-only configuration).

    ``Backoff()`` is rtnb's default policy, chosen by the reconnect-storm
    benchmark: ``policy="equal"``, ``base=3.0`` s, ``cap=16.0`` s,
    ``reset_after=30.0`` s, ``max_retry_hint=300.0`` s.

    Args:
        policy: ``"full"``, ``"equal"`` or ``"decorrelated"`` (see the module
            docstring for the formulas).
        base: seconds; scale of the first delays. Must be > 0.
        cap: seconds; the largest delay drawn without a server hint. Must be
            >= ``base``.
        reset_after: seconds a connection must stay healthy before the
            attempt count goes back to zero. Must be >= 0.
        max_retry_hint: seconds; server hints above it are clamped. Must be > 0.

    Raises:
        ValueError: an argument is out of range, e.g.
            ``ValueError: base must be finite and > 0, got -1``.
        TypeError: an argument is not a number.
    """

    policy: Policy = DEFAULT_POLICY
    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    reset_after: float = DEFAULT_RESET_AFTER
    max_retry_hint: float = DEFAULT_MAX_RETRY_HINT

    def __post_init__(self) -> None:
        if self.policy not in _POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_POLICIES)}; got {self.policy!r}")
        base = _check_seconds("base", self.base)
        cap = _check_seconds("cap", self.cap)
        if cap < base:
            raise ValueError(f"cap must be >= base ({base}), got {self.cap!r}")
        # Frozen: normalise ints to floats once, here.
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "cap", cap)
        object.__setattr__(
            self, "reset_after", _check_seconds("reset_after", self.reset_after, allow_zero=True)
        )
        object.__setattr__(
            self, "max_retry_hint", _check_seconds("max_retry_hint", self.max_retry_hint)
        )

    def envelope(self, attempt: int) -> float:
        """The largest delay the policy can draw before ``attempt`` (1-based), without a hint."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        if self.policy == "decorrelated":
            return min(self.cap, self.base * 3.0 ** (exponent + 1))
        return min(self.cap, self.base * 2.0**exponent)

    def delays(self, rng: random.Random) -> Iterator[float]:
        """Yield the delay before attempt 1, 2, 3, … forever (no hints, no resets)."""
        schedule = self.schedule(rng)
        while True:
            yield schedule.next_delay()

    def schedule(self, rng: random.Random) -> BackoffSchedule:
        """A fresh :class:`BackoffSchedule` drawing its jitter from ``rng``."""
        return BackoffSchedule(self, rng)


class BackoffSchedule:
    """The attempt counter of one connection, driven by the connection machine.

    Protocol (all times are the caller's monotonic clock, in seconds)::

        s = Backoff().schedule(rng)
        delay = s.next_delay()              # connection lost: wait, then attempt s.attempt
        delay = s.next_delay(retry_hint=h)  # the server said "not before h seconds"
        s.mark_healthy(now)                 # the connection is up and usable (e.g. subscribed)
        s.on_disconnect(now)                # it dropped: resets the count if it was
                                            # healthy for >= reset_after seconds
        s.reset()                           # explicit restart (e.g. a user's connect())

    ``attempt`` is the number of the attempt the last ``next_delay()`` was
    for (0 before the first). The count resets only through
    ``on_disconnect`` after a healthy stretch, or ``reset()``: merely opening a
    socket does not reset it, so a server that accepts and drops at once keeps
    being backed off.
    """

    __slots__ = ("_healthy_since", "_prev", "_rng", "attempt", "policy")

    def __init__(self, policy: Backoff, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self.attempt = 0
        self._prev = policy.base
        self._healthy_since: float | None = None

    @property
    def healthy_since(self) -> float | None:
        """When the current connection was marked healthy, or None."""
        return self._healthy_since

    def next_delay(self, retry_hint: float | None = None) -> float:
        """Count one more attempt and return the seconds to wait before it.

        Args:
            retry_hint: the server's minimum delay in seconds (4429 close,
                ``Retry-After``), or None. The result is then
                ``hint + uniform(0, HINT_JITTER·hint)``, with the hint clamped
                to ``max_retry_hint``; the policy's own draw is skipped.

        Raises:
            ValueError: ``retry_hint`` is negative or not finite (validate
                the peer's value before passing it).
        """
        self.attempt += 1
        if retry_hint is not None:
            hint = min(
                _check_seconds("retry_hint", retry_hint, allow_zero=True),
                self.policy.max_retry_hint,
            )
            return hint + self._rng.uniform(0.0, HINT_JITTER * hint)
        return self._draw()

    def _draw(self) -> float:
        """The policy's own delay before attempt ``self.attempt`` (no hint)."""
        p = self.policy
        if p.policy == "decorrelated":
            delay = self._rng.uniform(p.base, 3.0 * self._prev)
            if delay > p.cap:
                delay = self._rng.uniform(p.cap / 2.0, p.cap)
            self._prev = delay
            return delay
        envelope = p.envelope(self.attempt)
        if p.policy == "full":
            return self._rng.uniform(0.0, envelope)
        return envelope / 2.0 + self._rng.uniform(0.0, envelope / 2.0)

    def mark_healthy(self, now: float) -> None:
        """Record that the connection is healthy since ``now`` (idempotent while up)."""
        if self._healthy_since is None:
            self._healthy_since = now

    def on_disconnect(self, now: float) -> bool:
        """Record a lost connection; return True if the attempt count was reset.

        The count resets only if ``mark_healthy`` was called and the connection
        stayed healthy for at least ``reset_after`` seconds before ``now``.
        """
        since, self._healthy_since = self._healthy_since, None
        if since is not None and now - since >= self.policy.reset_after:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        """Start again from attempt 1 (the next delay is a first delay)."""
        self.attempt = 0
        self._prev = self.policy.base
        self._healthy_since = None

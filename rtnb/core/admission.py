"""Admission control for the reference server: a token bucket plus spread retry hints.

Theory of operation
-------------------
When a server comes back after an outage every client reconnects at once. A
token bucket (``rate`` connections per second, ``burst`` at most in one
instant) decides who gets in; everybody else is closed with 4429 and a retry
hint. *What* hint matters more than the bucket:

* A constant hint ("retry after 1 s") synchronises the rejected clients: they
  all come back in the same instant, the bucket admits ``burst`` of them, and
  the rest are rejected again — a storm with a period.
* A hint of "when the next token accrues" is the same thing with a smaller
  period.
* What the clients need to hear is *their place in the queue*: the k-th client
  rejected while ``B`` others are already waiting should come back after
  ``(B + k) / rate`` seconds. Then the returning clients arrive at exactly the
  rate the server admits, and the storm drains in ``backlog / rate`` seconds —
  the floor — with one rejection per client instead of one per round.

The policy keeps no per-client state. The backlog is estimated from recent
rejections: ``horizon`` is the end of the last admission slot promised to a
rejected client. Each rejection promises the next slot of width ``1/rate``
after ``max(horizon, time the next token accrues)`` and moves ``horizon``
there; time passing drains it. ``(horizon - now) · rate`` is therefore about
the number of promises still outstanding: the backlog. The hint is the time to
the start of the client's slot plus ``uniform(0, 1/rate)`` from the injected
``rng``, so hints are distinct and the returning clients are spread evenly
inside each slot instead of all landing on its edge.

Guarantee: with ``burst >= 2``, a refused client that comes back within the
slot its hint points into finds a token, unless someone without a hint took
it (an interval of ``L`` seconds meets at most ``L·rate + 1`` slots, so the
promised clients alone never drain the bucket).

Promises are not reservations (the protocol carries no ticket), so a client
whose first attempt arrives fresh can take a token meant for a promised one;
the displaced client is then rejected again and queued at the back. That only
moves who waits, not how long the queue is, so the storm still drains at
``rate``. Clients add their own jitter on top of the hint
(``rtnb.core.backoff.HINT_JITTER``); tokens that accrue while they are late
wait in the bucket, up to ``burst``. So the bucket must hold a few slots'
worth: in the storm model a burst of 1 loses those tokens and the hinted storm
takes 17.6 s instead of 9.9 s; a burst of 10 is within 0.4 s of the floor.
Hence the default burst of ``max(10, 0.1 s · rate)``.

Hints are bounded: when the backlog reaches ``max_hint`` seconds the horizon
stops growing and further clients are told ``uniform(max_hint/2, max_hint)``,
so a queue longer than that is spread rather than piled onto one instant.

In the storm benchmark (``bench/reconnect_storm.py``: 10,000 shipped ``ConnectionMachine`` clients, server
down 5 s, then 1,000 connections/s) these hints take rtnb's default backoff
to 99% reconnected 9.9 s after the server's return — the floor — with 2.95
attempts per client (DESIGN.md §6 bar: ≤ 12 s, ≤ 3), against 14.4 s without
them. What they cannot remove: promised clients come back while first
attempts are still arriving, so every first attempt that lands on a queue
costs one refusal, and each client spends about 1.95 attempts after the
return. Deferring all promises until the first wave has passed would save
~0.35 attempts per client, but only an oracle knows when that is; online
guesses (extrapolating the arrival rate, deferring by recent rejections or by
the storm's age) saved under 0.1 in the model and sometimes cost p99, so the
queue stays plain FIFO.

Everything is pure: ``now`` (seconds, any monotonic origin) and ``rng`` are
inputs. A ``now`` earlier than a previous call is treated as that call's time.
"""

from __future__ import annotations

import math
import random
from typing import Final

#: Default burst: this many seconds' worth of ``rate``: 0.1 ...
DEFAULT_BURST_SECONDS: Final = 0.1
#: ... but at least this many connections: 10.0.
DEFAULT_MIN_BURST: Final = 10.0
#: Largest retry hint handed out, in seconds: 60.0.
DEFAULT_MAX_HINT: Final = 60.0

# A client sent to the exact instant its token accrues must not be refused
# because the refill summed to 0.9999999999 tokens.
_EPSILON: Final = 1e-9


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


class AdmissionControl:
    """Token-bucket admission with queue-position retry hints (pure, clock injected).

    Args:
        rate: connections admitted per second, on average. Must be > 0.
        burst: bucket capacity, the most admitted in one instant; None means
            ``max(DEFAULT_MIN_BURST, DEFAULT_BURST_SECONDS · rate)`` (10, or
            0.1 s of ``rate``). Must be >= 1; hints work best with >= 10, see
            the module docstring.
        max_hint: seconds; the largest hint handed out. Must be > 1/rate.
        rng: source of hint jitter; None means a private ``random.Random()``.
            Pass a seeded one for reproducible tests and simulations.

    In any window of ``t`` seconds at most ``rate·t + burst`` clients are
    admitted. The bucket starts full.
    """

    __slots__ = ("_horizon", "_last", "_rng", "_tokens", "burst", "max_hint", "rate")

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        max_hint: float = DEFAULT_MAX_HINT,
        rng: random.Random | None = None,
    ) -> None:
        self.rate = _positive("rate", rate)
        if burst is None:
            burst = max(DEFAULT_MIN_BURST, DEFAULT_BURST_SECONDS * self.rate)
        self.burst = _positive("burst", burst)
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 (one whole connection), got {burst!r}")
        self.max_hint = _positive("max_hint", max_hint)
        if self.max_hint <= 1.0 / self.rate:
            raise ValueError(f"max_hint must be > 1/rate ({1.0 / self.rate:g} s), got {max_hint!r}")
        self._rng = rng if rng is not None else random.Random()
        self._tokens = self.burst
        self._last: float | None = None
        self._horizon = -math.inf

    def __repr__(self) -> str:
        return f"AdmissionControl(rate={self.rate}, burst={self.burst}, max_hint={self.max_hint})"

    def backlog(self, now: float) -> float:
        """Promised slots not yet over at ``now``: ``max(0, horizon - now) · rate``.

        About the number of refused clients still waiting for their slot (for
        metrics); the server needs ``backlog / rate`` seconds to admit them.
        """
        return max(0.0, self._horizon - self._clock(now)) * self.rate

    def try_admit(self, now: float) -> float | None:
        """Admit one connection attempt at ``now``, or refuse it.

        Returns:
            None if admitted; otherwise the retry hint in seconds (> 0 and
            <= ``max_hint``) to send with the 4429 close.
        """
        now = self._clock(now)
        if self._last is None:
            self._last = now
        else:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return None
        slot = 1.0 / self.rate
        # The earliest free slot starts when the next token accrues, or after
        # the last slot already promised, whichever is later.
        start = max(self._horizon, now + (1.0 - self._tokens) * slot)
        if start + slot - now > self.max_hint:
            # Queue full: spread the overflow over the second half of the range.
            return self._rng.uniform(self.max_hint / 2.0, self.max_hint)
        self._horizon = start + slot
        return (start - now) + self._rng.uniform(0.0, slot)

    def _clock(self, now: float) -> float:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite time in seconds, got {now!r}")
        if self._last is not None and now < self._last:
            return self._last
        return now

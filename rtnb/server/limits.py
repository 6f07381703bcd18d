"""Protection: per-connection rate limits, bad-frame strikes, connection admission.

Admission (shedding reconnect storms) is :class:`rtnb.core.admission.AdmissionControl`,
a pure policy whose retry hints spread returning clients evenly; this module
only feeds it the clock.
"""

from __future__ import annotations

import collections
import time

from ..core.admission import AdmissionControl

#: Seconds a client refused for holding too many connections is told to wait.
IDENTITY_RETRY_AFTER = 5.0


class PerIdentity:
    """Open connections per identity, against ``max_connections_per_identity``.

    ``claim`` counts one more for ``key`` or answers False at the cap;
    ``release`` counts it back. Keys with no connection are forgotten, so the
    map holds only identities with something open.
    """

    __slots__ = ("cap", "open")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[tuple[str, str], int] = {}

    def claim(self, key: tuple[str, str]) -> bool:
        n = self.open.get(key, 0)
        if n >= self.cap:
            return False
        self.open[key] = n + 1
        return True

    def release(self, key: tuple[str, str]) -> None:
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)

    def refusal(self) -> str:
        return (
            f"this identity already holds {self.cap} connections "
            "(max_connections_per_identity); close one or retry later"
        )


def retry_reason(what: str, retry_after: float) -> str:
    """A close reason carrying the retry hint, e.g. ``"rate limited; retry_after=2.5"``.

    WebSocket close reasons are limited to 123 bytes (RFC 6455 §5.5), so keep
    ``what`` short.
    """
    return f"{what}; retry_after={max(0.1, retry_after):.1f}"


class TokenBucket:
    """``rate`` events per second on average, ``burst`` at once (clock injectable)."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float | None:
        """Take one token: None if allowed, else seconds until one accrues."""
        now = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = max(self._last, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


class Strikes:
    """Counts bad frames in a sliding window; too many means persistent abuse."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def strike(self, now: float | None = None) -> bool:
        """Record one bad frame; True when the limit is exceeded."""
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        return len(self._times) > self.limit


class Admission:
    """Admits new connections at a configured rate; None rate admits everyone."""

    def __init__(self, rate: float | None) -> None:
        self._control = None if rate is None else AdmissionControl(rate)

    def try_admit(self) -> float | None:
        """None if admitted, else the retry hint in seconds."""
        if self._control is None:
            return None
        return self._control.try_admit(time.monotonic())

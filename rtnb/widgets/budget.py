"""Message budgets: per widget (``fps``) and one shared by every rtnb widget in a kernel.

Why two limits. Jupyter Server drops IOPub messages *silently* once a kernel
sends more than ``iopub_msg_rate_limit`` (1000 messages/s, averaged over
``rate_limit_window`` = 3 s); the page only sees a one-off "IOPub message rate
exceeded" notice and then missing updates. So:

* each widget sends at most ``fps`` messages in any one-second window
  (:class:`RateWindow`, a sliding window, not an average), and
* all rtnb widgets of the kernel draw from one token bucket
  (:class:`MessageBudget`) refilled at :data:`KERNEL_MESSAGE_RATE` per second,
  a fifth of the server's limit, leaving room for the user's own output.

A widget that finds either limit exhausted sends nothing on that tick; its
changes keep accumulating in the store's change set and go out, merged, on a
later tick. Nothing is dropped, only coalesced.

Both classes are pure (``now`` is passed in) and thread-safe (a lock), since
flush ticks run on rtnb's runtime thread and snapshot requests arrive on the
kernel's main thread.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Final

#: Messages per second a widget sends at most (any one-second window): 10.
DEFAULT_FPS: Final = 10
#: Messages per second all rtnb widgets of a kernel may send together: 200.
KERNEL_MESSAGE_RATE: Final = 200.0
#: Messages the kernel-wide bucket can hold (a burst after a quiet period): 50.
KERNEL_MESSAGE_BURST: Final = 50.0
#: Jupyter Server's default IOPub limit, messages per second over 3 s: 1000.
IOPUB_MSG_RATE_LIMIT: Final = 1000.0


class RateWindow:
    """At most ``rate`` events in any window of ``window`` seconds (sliding, exact)."""

    __slots__ = ("_lock", "_times", "rate", "window")

    def __init__(self, rate: float, window: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 messages per second, got {rate!r}")
        self.rate = rate
        self.window = window
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Events allowed per window (``rate × window``, at least 1)."""
        return max(1, int(self.rate * self.window))

    def _expire(self, now: float) -> None:
        times = self._times
        while times and now - times[0] >= self.window:
            times.popleft()

    def allows(self, now: float) -> bool:
        """True if one more event at ``now`` keeps every window within the limit."""
        with self._lock:
            self._expire(now)
            return len(self._times) < self.capacity

    def take(self, now: float) -> bool:
        """Record an event at ``now`` if allowed; return whether it was."""
        with self._lock:
            self._expire(now)
            if len(self._times) >= self.capacity:
                return False
            self._times.append(now)
            return True

    def next_allowed(self, now: float) -> float:
        """The earliest time at or after ``now`` when :meth:`take` will succeed."""
        with self._lock:
            self._expire(now)
            if len(self._times) < self.capacity:
                return now
            return self._times[0] + self.window


class MessageBudget:
    """A token bucket shared by every rtnb widget of a kernel.

    ``rate`` tokens per second, at most ``burst`` stored. Over any interval of
    ``t`` seconds at most ``burst + rate × t`` messages pass, so with the
    defaults Jupyter Server's 3-second window sees at most 650 messages
    (217/s), far below its 1000/s.
    """

    def __init__(
        self, rate: float = KERNEL_MESSAGE_RATE, burst: float = KERNEL_MESSAGE_BURST
    ) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate!r} burst={burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None
        self._lock = threading.Lock()
        #: messages granted / refused since creation (for benchmarks and tests)
        self.granted = 0
        self.refused = 0

    def take(self, now: float | None = None) -> bool:
        """Take one token if there is one; return whether a message may be sent."""
        if now is None:
            now = time.monotonic()
        with self._lock:
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.granted += 1
                return True
            self.refused += 1
            return False

    def worst_case_rate(self, window: float = 3.0) -> float:
        """Messages per second over ``window`` seconds in the worst case (burst + rate)."""
        return (self.burst + self.rate * window) / window


_budget_lock = threading.Lock()
_budget: MessageBudget | None = None


def get_budget() -> MessageBudget:
    """The kernel-wide budget every rtnb widget draws from (created on first use)."""
    global _budget
    with _budget_lock:
        if _budget is None:
            _budget = MessageBudget()
        return _budget

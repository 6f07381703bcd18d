"""When to reconnect: how a lost transport is classified, and the retry clock.

Sans-I/O bookkeeping for :class:`rtnb.core.machine.ConnectionMachine`, which
decides the transitions; this module keeps the numbers.

* A transport that failed to open or closed is classified by its code
  (:func:`classify_drop`): 4401/401 means the token was refused, 4403/403
  that access is forbidden; a server retry hint (4429, 429/503 +
  ``Retry-After``, or ``retry_after=`` in a close reason: :func:`retry_hint`)
  asks for a later retry; anything else is a plain loss.
* Attempts and delays: one :class:`rtnb.core.backoff.BackoffSchedule` per
  machine (``backoff.schedule(rng)``) counts the retries and draws every
  delay — the same object ``bench/reconnect_storm.py`` measures. The count
  resets at a loss, and only if the connection had been SUBSCRIBED for
  ``backoff.reset_after`` seconds up to its last frame (time spent silent
  before a heartbeat timeout does not count as healthy).
* A server retry hint is a *minimum*: ``delay = hint + uniform(0,
  HINT_JITTER·hint)`` with the hint clamped to ``backoff.max_retry_hint``
  (:meth:`~rtnb.core.backoff.BackoffSchedule.next_delay`). Waiting hint + a
  little jitter (not ``max(draw, hint)``) is what lets the server's hints
  spread a storm over its admission rate.
* After a refused token the attempt counts at once, but its delay is held
  back and used only if the token provider fails.
"""

from __future__ import annotations

import random
from typing import Final, Literal, Protocol

from ..protocol.retry import retry_hint_in_reason
from .backoff import BackoffSchedule

# Close codes (WebSocket, DESIGN §3) and their HTTP twins, by meaning.
AUTH_CODES: Final = frozenset({4401, 401})
FORBIDDEN_CODES: Final = frozenset({4403, 403})
#: ``transport_failed(kind=...)`` -> the code it stands for.
FAILURE_CODES: Final[dict[str, int | None]] = {
    "unreachable": None,
    "rejected": None,
    "unauthorized": 401,
    "forbidden": 403,
}

#: What a dropped transport means: the token was refused, access is forbidden,
#: the server asked to retry later (a hint), or the link was just lost.
Drop = Literal["token", "forbidden", "hint", "lost"]


class BackoffLike(Protocol):
    """What the machine needs of :class:`rtnb.core.backoff.Backoff`: its hint clamp and
    a fresh :class:`~rtnb.core.backoff.BackoffSchedule` (which counts and draws)."""

    @property
    def max_retry_hint(self) -> float: ...

    def schedule(self, rng: random.Random) -> BackoffSchedule: ...


def retry_hint(retry_after: float | None, reason: str) -> float | None:
    """The ``Retry-After`` value if given, else a hint read from the close ``reason``."""
    if retry_after is not None:
        return retry_after
    return retry_hint_in_reason(reason)


def classify_drop(code: int | None, hint: float | None) -> Drop:
    """Classify a transport that failed to open or closed, by ``code`` and retry ``hint``."""
    if code in AUTH_CODES:
        return "token"
    if code in FORBIDDEN_CODES:
        return "forbidden"
    if hint is not None and hint >= 0:
        return "hint"
    return "lost"


class RetryClock:
    """The retry count, the delays, and when the next attempt is due."""

    __slots__ = ("_backoff", "_schedule", "_token_delay", "next_retry_at")

    def __init__(self, backoff: BackoffLike, rng: random.Random) -> None:
        self._backoff = backoff
        self._schedule = backoff.schedule(rng)
        self._token_delay: float | None = None  # drawn at a token loss, for a failed refresh
        #: When the scheduled retry is due (None: no retry timer armed).
        self.next_retry_at: float | None = None

    @property
    def attempt(self) -> int:
        """Retries since the count was last reset."""
        return self._schedule.attempt

    def clamp(self, hint: float) -> float:
        """A server's hint, capped at the policy's ``max_retry_hint``."""
        return min(hint, self._backoff.max_retry_hint)

    def mark_healthy(self, now: float) -> None:
        self._schedule.mark_healthy(now)

    def on_disconnect(self, last_seen: float) -> None:
        # Reset the attempt count only after a healthy stretch (websockets resets
        # on mere open, so a server that accepts and drops at once is hammered).
        self._schedule.on_disconnect(last_seen)

    def schedule(self, now: float, hint: float | None) -> float:
        """Count an attempt and draw its delay (at least ``hint``); returns the delay."""
        delay = self._schedule.next_delay(retry_hint=hint)
        self.next_retry_at = now + delay
        return delay

    def hold_for_token(self) -> None:
        """Count an attempt whose delay is used only if the token provider fails."""
        self._token_delay = self._schedule.next_delay()
        self.next_retry_at = None

    def token_arrived(self) -> None:
        self._token_delay = None

    def token_failed(self, now: float) -> float:
        """The provider failed: the loss's held delay first, then one more attempt each."""
        delay, self._token_delay = self._token_delay, None
        if delay is None:
            delay = self._schedule.next_delay()
        self.next_retry_at = now + delay
        return delay

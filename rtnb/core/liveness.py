"""Liveness of one connection: the heartbeat deadline and the RTT pings.

Sans-I/O bookkeeping for :class:`rtnb.core.machine.ConnectionMachine`, which
arms the timers and builds the actions; this module only keeps the numbers.

* The heartbeat deadline (``missed × interval`` plus a small grace,
  :func:`liveness_deadline`) runs from the last frame of *any* kind, so a
  busy stream never trips it while a heartbeat is queued behind the data.
* ``interval`` is the one the server announced on this connection
  (``Authenticated.heartbeat_interval``), else the configured default. It is
  learned per connection: :meth:`Liveness.new_connection` forgets it.
* Pings are matched to their Pong by id; at most ``MAX_OUTSTANDING_PINGS``
  unanswered pings are remembered (the oldest is forgotten first).
"""

from __future__ import annotations

from typing import Final

#: Slack added to the heartbeat deadline for network and scheduling jitter:
#: this fraction of the interval, capped at ``HEARTBEAT_GRACE_MAX`` seconds.
HEARTBEAT_GRACE_FRACTION: Final = 0.2
HEARTBEAT_GRACE_MAX: Final = 0.5
#: Unanswered pings remembered for RTT matching; older ones are forgotten.
MAX_OUTSTANDING_PINGS: Final = 8


def liveness_deadline(interval: float, missed: int) -> float:
    """``missed × interval`` plus a grace for jitter (``min(0.2 × interval, 0.5 s)``).

    The grace keeps a heartbeat that arrives a few milliseconds late from
    tripping the deadline, and stays small enough that a silent stall is
    still noticed within ``missed × interval + 0.5 s`` of the last frame.
    """
    return missed * interval + min(HEARTBEAT_GRACE_FRACTION * interval, HEARTBEAT_GRACE_MAX)


class Liveness:
    """When the last frame came, the announced interval, and the pings in flight.

    ``last_seen`` is a plain attribute: the hot path (one store per data frame)
    writes it directly.
    """

    __slots__ = ("_announced", "_default_interval", "_missed", "_ping_seq", "_pings", "last_seen")

    def __init__(self, default_interval: float, missed: int) -> None:
        self._default_interval = default_interval
        self._missed = missed
        self.last_seen = 0.0
        self._announced: float | None = None  # by the server, on this connection
        self._pings: dict[str, float] = {}  # ping id -> when it was sent
        self._ping_seq = 0

    @property
    def interval(self) -> float:
        """The server's heartbeat interval: announced on this connection, else the default."""
        return self._announced if self._announced is not None else self._default_interval

    @property
    def announced(self) -> bool:
        return self._announced is not None

    @property
    def deadline(self) -> float:
        """Seconds without any frame after which the connection is dead."""
        return liveness_deadline(self.interval, self._missed)

    @property
    def expires_at(self) -> float:
        """When the connection is dead unless another frame arrives."""
        return self.last_seen + self.deadline

    def announce(self, interval: float) -> None:
        self._announced = interval

    def new_connection(self) -> None:
        """A new transport: its server announces its interval again; old pings are void."""
        self._announced = None
        self._pings.clear()

    def forget_pings(self) -> None:
        self._pings.clear()

    def ping(self, now: float) -> str:
        """A new ping id, remembered as sent at ``now``."""
        self._ping_seq += 1
        ping_id = f"p{self._ping_seq}"
        self._pings[ping_id] = now
        if len(self._pings) > MAX_OUTSTANDING_PINGS:  # unanswered pings: forget the oldest
            del self._pings[next(iter(self._pings))]
        return ping_id

    def pong(self, ping_id: str, now: float) -> float | None:
        """The round trip in ms if ``ping_id`` is one of ours (once), else None."""
        sent = self._pings.pop(ping_id, None)
        return None if sent is None else (now - sent) * 1000.0

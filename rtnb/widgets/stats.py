"""Live figures read from the telemetry log: recent lag, event rate, degraded time.

All cheap enough for a widget tick: they read the log's outcome and state
tallies (no rows copied) or, for lag, the two time columns of the envelope
ring once every :data:`LAG_INTERVAL` seconds. Run on the runtime thread.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Final

from ..telemetry.incidents import degraded_time

if TYPE_CHECKING:
    from ..client.source import ConnectionState
    from ..telemetry import EnvelopeLog

#: Newest envelopes the live lag median is computed over: 2,000.
LAG_WINDOW: Final = 2000
#: Seconds between recomputations of the live lag median: 2.
LAG_INTERVAL: Final = 2.0


def recent_lag_p50(log: EnvelopeLog, window: int = LAG_WINDOW) -> float | None:
    """Median receive lag (ms) of the newest ``window`` envelopes, or None if none."""
    snap = log.snapshot("envelopes", ("received_at", "occurred_at"))
    held = snap.held
    if not held:
        return None
    received, occurred = snap.columns["received_at"], snap.columns["occurred_at"]
    newest = (snap.start or held) - 1  # storage index of the newest row
    lags: list[float] = []
    for k in range(min(window, held)):
        i = (newest - k) % held
        lag = received[i] - occurred[i]
        if math.isfinite(lag):
            lags.append(lag * 1000.0)
    return statistics.median(lags) if lags else None


def degraded_seconds(log: EnvelopeLog, state: ConnectionState, wall: float) -> float:
    """Degraded seconds, ever, up to ``wall``: :func:`rtnb.telemetry.incidents.degraded_time`,
    the definition ``log.summary()``, ``log.incidents()`` and the charts use (recovery
    steps included), with an open incident running to the wall clock."""
    return degraded_time(log, until=wall)[0]


def degraded_now(log: EnvelopeLog) -> bool:
    """An incident is open (degraded, reconnecting, or recovering from either)."""
    return degraded_time(log, until=-math.inf)[1]


class RateMeter:
    """Events applied per second, from the log's outcome counts between two reads."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.rate = 0.0

    def update(self, counts: dict[str, Any], now: float) -> float:
        applied = int(counts.get("applied", 0)) + int(counts.get("replayed", 0))
        if self._last is not None:
            then, before = self._last
            if now > then:
                self.rate = max(0.0, (applied - before) / (now - then))
        self._last = (now, applied)
        return self.rate

"""What the LiveChart tests share: envelope rows at known times (the ``fresh_budget``
fixture is in this package's conftest)."""

from __future__ import annotations

from rtnb.telemetry import EnvelopeLog

T0 = 1_790_000_000.0


def append_rows(log: EnvelopeLog, start: int, n: int) -> None:
    """Envelopes ``start .. start+n-1`` of topic fleet, 10 ms apart from ``T0``."""
    for i in range(start, start + n):
        t = T0 + i * 0.01
        log.append_envelope(
            t, t - 0.004, "fleet", "vehicle.updated", f"e{i}", i, "v1", 0, "websocket", 0, 300
        )

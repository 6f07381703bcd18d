"""``ConnectionState``: the immutable snapshot of a connection's state (``conn.state``).

Made by the session from the machine's ``StateChanged`` and by a replay from the
recorded state rows; read by everything that shows a connection.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Final

from ..core.status import Status

# The machine's "…; retry 3 in 8.5 s" (the delay as drawn): shown once, counting down.
_RETRY_SUFFIX: Final = re.compile(r"; retry \d+ in [\d.]+ s$")


def cause_of(reason: str) -> str:
    """A state reason without its retry figure (the cause alone)."""
    return _RETRY_SUFFIX.sub("", reason)


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """An immutable snapshot of the connection's state (``conn.state``)."""

    status: Status
    previous: Status | None
    reason: str
    attempt: int
    next_retry_at: float | None
    transport: str
    since: float

    def __str__(self) -> str:
        if self.next_retry_at is not None and self.status is Status.RECONNECTING:
            # One retry figure: the time left now (the reason holds the delay as drawn).
            wait = max(0.0, self.next_retry_at - time.time())
            return (
                f"{self.status.value} via {self.transport} ({cause_of(self.reason)}); "
                f"retry {self.attempt} in {wait:.1f} s"
            )
        return f"{self.status.value} via {self.transport} ({self.reason})"

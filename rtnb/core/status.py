"""Names shared by every layer: connection statuses and per-envelope outcomes.

Both are ``str`` enums so that pandas shows readable labels and comparisons with
plain strings work (``Status.SUBSCRIBED == "subscribed"``).
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """Connection states of DESIGN.md §4."""

    IDLE = "idle"
    CONNECTING = "connecting"
    AUTHENTICATED = "authenticated"
    SUBSCRIBED = "subscribed"
    DEGRADED = "degraded"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    """What happened to one envelope (DESIGN.md §4), logged per envelope."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    BUFFERED = "buffered"
    REPLAYED = "replayed"
    INVALID = "invalid"
    UNEXPECTED_TOPIC = "unexpected_topic"
    GAP_UNRECOVERABLE = "gap_unrecoverable"


#: Stable small-integer codes for outcomes, used by the columnar log.
OUTCOME_CODES: dict[Outcome, int] = {o: i for i, o in enumerate(Outcome)}
OUTCOMES_BY_CODE: tuple[Outcome, ...] = tuple(Outcome)

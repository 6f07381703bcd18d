"""rtnb's error classes.

As in h11, errors caused by the caller (``LocalProtocolError``) and errors
caused by the peer (``RemoteProtocolError``, e.g. ``InvalidFrame``) are
different classes, so a driver can tell "fix your code" from "the other side
sent garbage".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RtnbError(Exception):
    """Base class of every error rtnb raises on purpose."""


class LocalProtocolError(RtnbError):
    """The caller asked for something the protocol or a state machine forbids."""


class ConnectionClosed(RtnbError, ConnectionError):
    """The connection was closed (by ``close()``, or for good by the server): it cannot
    subscribe, mutate or wait any more. ``rtnb.connect(...)`` opens a new one."""


class WaitTimeout(RtnbError, TimeoutError):
    """A wait (``wait_for``, ``connect(timeout=...)``) ran out of time; the message names
    the state the connection was in instead and its last cause. Also a builtin
    ``TimeoutError``, so ``except TimeoutError`` keeps working."""


class RemoteProtocolError(RtnbError):
    """The peer sent something the protocol forbids."""


class InvalidFrame(RemoteProtocolError):
    """A frame failed to decode or validate.

    ``path`` is the JSON path of the offending value (``$`` for the whole
    frame) and ``reason`` a one-line explanation; ``str(err)`` is
    ``"$.sequence: expected int, got str"``. The frame's bytes are never kept
    in the message: they may carry tokens.
    """

    def __init__(self, path: str, reason: str, *, context: str = "") -> None:
        self.path = path
        self.reason = reason
        self.context = context
        text = f"{path}: {reason}"
        if context:
            text = f"{text} ({context})"
        super().__init__(text)


class FrameTooLarge(InvalidFrame):
    """A frame exceeded the size limit; it was refused before parsing."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            "$",
            f"frame of {size:,} bytes exceeds the {limit:,}-byte limit; "
            "split the payload or raise max_frame_size",
        )


class ErrorCode(StrEnum):
    """Every ``code`` an rtnb server puts in an ``error`` or ``mutation_rejected`` frame.

    One enum for the server that sends them and the client that reads them
    (members equal their strings: ``ErrorCode.FORBIDDEN == "forbidden"``).
    """

    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"
    READ_ONLY = "read_only"
    UNKNOWN_TOPIC = "unknown_topic"
    NOT_FOUND = "not_found"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    INVALID_TRANSITION = "invalid_transition"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INVALID_PATCH = "invalid_patch"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    #: the store did not confirm a write it may have made: retry with the same key
    OUTCOME_UNKNOWN = "outcome_unknown"
    BAD_FRAME = "bad_frame"
    BAD_REQUEST = "bad_request"
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"


#: codes that mean "this token is not (or no longer) good": get a fresh one
AUTH_ERRORS: Final = frozenset(
    {ErrorCode.UNAUTHENTICATED, ErrorCode.TOKEN_EXPIRED, ErrorCode.INVALID_TOKEN}
)
#: topic-level codes after which a topic is not requested again until asked
TOPIC_REFUSALS: Final = frozenset(
    {ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_TOPIC, ErrorCode.TOO_MANY_SUBSCRIPTIONS}
)

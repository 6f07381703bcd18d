"""rtnb's error classes, and the tree of every error rtnb raises on purpose.

As in h11, errors caused by the caller (``LocalProtocolError``) and errors
caused by the peer (``RemoteProtocolError``, e.g. ``InvalidFrame``) are
different classes, so a driver can tell "fix your code" from "the other side
sent garbage".

Every exception class rtnb defines derives from ``rtnb.RtnbError``
(``tests/test_error_tree.py`` walks every module to hold that, and that each
class is in this tree). Where callers may already catch a builtin, the class
is that builtin too (multiple inheritance): ``except TimeoutError`` still
catches a ``WaitTimeout``. A wrong argument (a programming error, not a
condition to handle) raises the builtin ``TypeError`` / ``ValueError``, as
the standard library and httpx do.

* RtnbError
    * LocalProtocolError -- the caller asked for what the protocol forbids
    * RemoteProtocolError -- the peer sent what the protocol forbids
        * InvalidFrame -- a frame failed to decode or validate (``path``, ``reason``)
            * FrameTooLarge -- refused before parsing
        * SSELineTooLong, SSEEventTooLarge (``rtnb.protocol.sse``)
    * ConnectionClosed (also ``ConnectionError``) -- the connection cannot be used any more
    * WaitTimeout (also ``TimeoutError``) -- a wait ran out of time (also: JupyterLab
      did not start, ``rtnb.widgets.lab``)
    * ServerStopped (also ``RuntimeError``) -- a server (or its store) was used after
      ``stop()``: ``srv.publish``, ``srv.chaos.…``, a write to a closed SQLite store
    * ServerStartError (also ``RuntimeError``) -- ``rtnb.serve`` could not start: the app
      failed, or the Redis store (``store=``) cannot be reached or subscribed to
    * PortInUse (also ``OSError``, ``errno`` EADDRINUSE) -- ``rtnb.serve(port=…)``: the
      port is taken; choose another, or port 0
    * RecordingExists (also ``FileExistsError``; ``conn.record(path)``) -- the path is a
      file, or a directory holding a recording and ``overwrite`` is not set
    * SetupError (also ``RuntimeError``) -- something rtnb needs around it is missing:
      vl-convert (``rtnb.charts``), anywidget's front end (``rtnb.panel``), the demo's
      chaos relay, a JupyterLab that exited (``rtnb.widgets.lab``)
        * DemoFilesMissing (also ``FileNotFoundError``) -- the demo notebooks are not
          installed (``rtnb.widgets.demo``)
    * TransportError (``rtnb.transports.base``) -- one connection attempt failed; ``kind``
      says whose fault (the session retries or gives up by it, users rarely see it)
    * MutationError (``rtnb.client.mutation``) -- ``Mutation.wait(raise_on_failure=True)``
    * TelemetryFileError (also ``ValueError``; ``rtnb.telemetry.schema``) -- a telemetry
      file could not be read
    * server side (``rtnb.server``; raised in the server process, mapped to wire errors):
        * AuthError (``rtnb.server.auth``) -- a token was refused (``code``)
        * TopicError (``rtnb.server.hub``) -- a topic cannot be used by this identity
        * StorageFailed (also ``RuntimeError``; ``rtnb.server.hub``) -- the store could not commit
            * OutcomeUnknown -- the store did not answer a write it may have made
        * DataDirLocked (also ``RuntimeError``; ``rtnb.server.datadir``) -- another server
          holds the data directory
        * IdempotencyConflict (also ``ValueError``; ``rtnb.server.idempotency``) -- a key
          reused for a different request (HTTP 409)
        * TooLarge (also ``ValueError``; ``rtnb.server.topiclog``) -- an event no client
          could receive under the frame limit
        * Rejected (``rtnb.server.mutations``) -- a mutation refused (``code``)
        * Refused (``rtnb.server.http``) -- an HTTP request refused with its response
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


class ServerStopped(RtnbError, RuntimeError):
    """The server (or its store) was used after ``stop()``; start a new one with
    ``rtnb.serve(...)``. Also a ``RuntimeError``, as before."""


class ServerStartError(RtnbError, RuntimeError):
    """``rtnb.serve`` could not start the server; the message says why (the app's error,
    or the Redis store it cannot reach). Also a ``RuntimeError``, as before."""


class PortInUse(RtnbError, OSError):
    """The port asked of ``rtnb.serve`` is taken (``errno`` is ``EADDRINUSE``); choose
    another, or port 0 for any free one. Also an ``OSError``, as before."""


class RecordingExists(RtnbError, FileExistsError):
    """``conn.record(path)``: the path is a file, or already holds a recording (pass
    ``overwrite=True`` to replace it). Also a ``FileExistsError``, as before."""


class SetupError(RtnbError, RuntimeError):
    """Something rtnb needs around it is missing or broken (a package, a file, a
    setting); the message says what to install or set. Also a ``RuntimeError``."""


class DemoFilesMissing(SetupError, FileNotFoundError):
    """The demo notebooks are not installed; reinstall ``rtnb[demo]``. Also a
    ``FileNotFoundError``, as before."""


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
    SLOW_CONSUMER = "slow_consumer"
    TOO_MANY_CONNECTIONS = "too_many_connections"


#: codes that mean "this token is not (or no longer) good": get a fresh one
AUTH_ERRORS: Final = frozenset(
    {ErrorCode.UNAUTHENTICATED, ErrorCode.TOKEN_EXPIRED, ErrorCode.INVALID_TOKEN}
)
#: topic-level codes after which a topic is not requested again until asked
TOPIC_REFUSALS: Final = frozenset(
    {ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_TOPIC, ErrorCode.TOO_MANY_SUBSCRIPTIONS}
)

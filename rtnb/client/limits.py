"""``Limits``: every client buffer's cap in one place (``rtnb.connect(limits=…)``).

A server can be wrong, slow or hostile; none of that may grow the client
without bound. Each buffer the client keeps has a cap here (defaults are the
named constants next to the code that enforces them) and a defined behaviour
at the cap — never silent growth. The full table, with what happens at each
cap, is in ``docs/decisions.md`` ("Client buffers and their caps").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.dedupe import DEFAULT_DEDUPE_MAX_ENTRIES
from ..core.ledger import MAX_OPEN_MUTATIONS
from ..core.orderer import DEFAULT_MAX_BUFFER, DEFAULT_MAX_BUFFER_BYTES
from ..core.pipeline import DEFAULT_MAX_SNAPSHOT_BYTES, DEFAULT_MAX_SNAPSHOT_ENTITIES
from ..core.store import DEFAULT_MAX_TOPIC_BYTES
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..transports.base import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_POLL_MESSAGES,
    DEFAULT_MAX_POLL_RESPONSE_SIZE,
    DEFAULT_MAX_SSE_EVENT_SIZE,
)
from .flight import FLIGHT_BYTES, FLIGHT_SECONDS


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Caps on what one connection keeps in memory (keyword-only; all positive, except
    that ``flight_*`` may be 0 to turn the flight recorder off)."""

    #: protocol frame size, bytes: a larger frame is logged ``invalid`` and skipped
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: WebSocket message size at the socket, bytes: past it websockets closes (1009)
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: SSE line / event data, characters: past it the stream is reset (1009)
    max_sse_event_size: int = DEFAULT_MAX_SSE_EVENT_SIZE
    #: long-poll response body, bytes: past it the response is dropped (1009)
    max_poll_response_size: int = DEFAULT_MAX_POLL_RESPONSE_SIZE
    #: messages in one long-poll response: past it the rest is dropped unread (1009)
    max_poll_messages: int = DEFAULT_MAX_POLL_MESSAGES
    #: entities of a snapshot sent in parts: past it parts are dropped, ``invalid``, reset
    max_snapshot_entities: int = DEFAULT_MAX_SNAPSHOT_ENTITIES
    #: bytes of a snapshot sent in parts, as received (repeated ids collapse): past it as above
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    #: bytes of one topic's state (JSON size): past it the topic is frozen, ``stale``, with why
    max_topic_bytes: int = DEFAULT_MAX_TOPIC_BYTES
    #: out-of-order events held per ``sequence`` topic: past it, re-subscribe at once
    max_gap_buffer: int = DEFAULT_MAX_BUFFER
    #: bytes of those events (as JSON): past it, likewise
    max_gap_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    #: event ids remembered for dedupe: the oldest sixteenth is forgotten past it
    max_dedupe_entries: int = DEFAULT_DEDUPE_MAX_ENTRIES
    #: mutations waiting for an answer (pending or queued): past it ``refused``
    max_open_mutations: int = MAX_OPEN_MUTATIONS
    #: flight recorder (recent raw frames, for ``conn.log.to_parquet``), bytes; 0: off
    flight_bytes: int = FLIGHT_BYTES
    #: flight recorder, seconds of frames kept at most; 0: off
    flight_seconds: int = FLIGHT_SECONDS

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            least = 0 if name.startswith("flight_") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                what = "an int >= 0 (0 turns it off)" if least == 0 else "a positive int"
                raise ValueError(f"Limits.{name} must be {what}, got {value!r}")

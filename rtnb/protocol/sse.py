"""A sans-I/O parser for Server-Sent Events (``text/event-stream``).

Theory of operation
-------------------
Bytes go in (:meth:`SSEParser.feed`), finished events come out; the parser
never touches a socket, so a transport (httpx, a test, a replay) only moves
bytes. It follows WHATWG HTML §9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html) step by step;
comments quoting "spec:" point at the rule they implement.

Speed comes from working on whole decoded chunks with ``str`` methods (C
loops) and only looping in Python once per *line*. ``str.splitlines`` is not
usable: it also splits on U+2028, U+0085, VT, FF, … which are ordinary
characters in an event stream. Instead CRLF and lone CR are normalised to LF
with ``str.replace`` and the chunk is split on LF.

A CR is taken as a line end as soon as it is seen (no waiting for the next
chunk, so a CR-only server gets its events without delay); if the next chunk
then starts with LF, that LF is the second half of a CRLF split across chunks
and is dropped. This yields exactly the spec's lines for any chunking.

One decision the spec leaves to the user agent: the spec initialises the
last event ID buffer to "" for every new stream, yet browsers (and
web-platform-tests ``format-field-id-2``) keep the id across a reconnection,
so an event without ``id:`` after reconnecting still reports the old id. The
``last_event_id`` constructor argument seeds both the buffer and the
committed value, which gives the browser behaviour.
"""

from __future__ import annotations

import codecs
import contextlib
from dataclasses import dataclass
from typing import Any

from rtnb.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_DATA_LENGTH",
    "DEFAULT_MAX_LINE_LENGTH",
    "SSEEvent",
    "SSEEventTooLarge",
    "SSELineTooLong",
    "SSEParser",
]

#: Longest line, in characters after decoding and excluding its line end, that
#: :class:`SSEParser` accepts by default (1 MiB). The spec has no limit; without
#: one a peer that never sends a newline grows the pending buffer forever.
DEFAULT_MAX_LINE_LENGTH = 1 << 20
#: Most characters one event's data buffer may hold by default (2 MiB): the
#: data lines of an event not yet ended by a blank line, each counted with its
#: LF. Without it a peer sending ``data:`` lines and never a blank line grows
#: the buffer forever, whatever the line limit.
DEFAULT_MAX_DATA_LENGTH = 2 << 20

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event, as a browser's ``MessageEvent`` would carry it."""

    type: str
    data: str
    last_event_id: str


class SSELineTooLong(RemoteProtocolError):
    """The peer sent a line longer than ``max_line_length``.

    The stream cannot be resynchronised after this: close the connection and
    reconnect with ``SSEParser(last_event_id=parser.last_event_id)``. Nothing
    from the chunk that overflowed was processed, so ``last_event_id`` matches
    the events already returned.
    """

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(
            f"SSE line of at least {length:,} characters exceeds max_line_length={limit:,}; "
            "reconnect with SSEParser(last_event_id=parser.last_event_id), or raise "
            "max_line_length if the server legitimately sends such lines"
        )


class SSEEventTooLarge(RemoteProtocolError):
    """An event's data buffer passed ``max_data_length`` before its blank line.

    Like :class:`SSELineTooLong` the stream cannot be resynchronised: close
    and reconnect. ``events`` holds the events the same chunk completed before
    the overflow (deliver them first; :class:`SSEEvent` from ``feed``, tuples from
    ``feed_tuples``); ``last_event_id`` matches them.
    """

    def __init__(self, length: int, limit: int, events: list[Any]) -> None:
        self.length = length
        self.limit = limit
        self.events = events
        super().__init__(
            f"SSE event data of at least {length:,} characters exceeds max_data_length={limit:,} "
            "(data lines without a blank line to end the event); reconnect with "
            "SSEParser(last_event_id=parser.last_event_id), or raise max_data_length if the "
            "server legitimately sends such events"
        )


class SSEParser:
    """Incremental ``text/event-stream`` parser for one connection.

    Create a new parser for every connection (the BOM rule applies to the start
    of each stream), seeded with the previous parser's ``last_event_id``.
    """

    def __init__(
        self,
        last_event_id: str = "",
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_data_length: int = DEFAULT_MAX_DATA_LENGTH,
    ) -> None:
        if max_line_length < 1:
            raise ValueError(f"max_line_length must be >= 1, got {max_line_length}")
        if max_data_length < 1:
            raise ValueError(f"max_data_length must be >= 1, got {max_data_length}")
        self._max_line_length = max_line_length
        self._max_data_length = max_data_length
        # spec: "Streams must be decoded using the UTF-8 decode algorithm"; the
        # incremental decoder keeps a multi-byte character split across chunks
        # whole, and errors="replace" turns invalid bytes into U+FFFD.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # no character decoded yet: a BOM may still come
        self._skip_lf = False  # the previous chunk ended in CR
        self._pending: list[str] = []  # pieces of the unterminated last line
        self._pending_len = 0
        # spec: "a data buffer, an event type buffer, and a last event ID
        # buffer". The data buffer is kept as a list of data-line values:
        # "".join(v + "\n" for v in values) is the spec's buffer, so it is the
        # empty string exactly when the list is empty.
        self._data: list[str] = []
        self._data_len = 0  # characters in the data buffer, each value counted with its LF
        self._type = ""
        self._id_buffer = last_event_id
        # The event source's "last event ID string": committed only on dispatch.
        self._last_event_id = last_event_id
        self._retry: int | None = None
        self._closed = False

    @property
    def last_event_id(self) -> str:
        """The id to send as ``Last-Event-ID`` when reconnecting.

        Updated at each blank line (even one that dispatches nothing), never
        by the ``id:`` of an event that has not been terminated yet.
        """
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The last valid ``retry:`` value in milliseconds, or None if none was seen."""
        return self._retry

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[SSEEvent]:
        """Parse the next bytes of the stream; return the events they complete."""
        try:
            return [SSEEvent(*ev) for ev in self.feed_tuples(chunk)]
        except SSEEventTooLarge as exc:
            exc.events = [SSEEvent(*ev) for ev in exc.events]
            raise

    def feed_tuples(self, chunk: bytes | bytearray | memoryview) -> list[tuple[str, str, str]]:
        """:meth:`feed` with each event as a ``(type, data, last_event_id)`` tuple (no
        :class:`SSEEvent` built: a transport's hot path). Same events, same errors;
        :class:`SSEEventTooLarge`'s ``events`` are tuples too."""
        if self._closed:
            raise LocalProtocolError(
                "SSEParser.feed() called after feed_eof() or after an error; create a new "
                "SSEParser(last_event_id=old.last_event_id) for the next connection"
            )
        text = self._decoder.decode(chunk)
        if not text:
            return []  # only part of a multi-byte character so far
        if self._at_start:
            self._at_start = False
            # spec: "One leading U+FEFF BYTE ORDER MARK character must be
            # ignored if any are present." Only one: a second BOM becomes part
            # of the first field name, so that line is ignored.
            if text[0] == _BOM:
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            # spec: a line ends with "a U+000D CARRIAGE RETURN U+000A LINE FEED
            # (CRLF) character pair": the CR already ended the line, so an LF
            # right after it (in this new chunk) must not end another one.
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            # spec: lines end with CRLF, "a single U+000A LINE FEED (LF)
            # character not preceded by a U+000D CARRIAGE RETURN (CR)
            # character, and a single U+000D CARRIAGE RETURN (CR) character not
            # followed by a U+000A LINE FEED (LF) character". Normalise to LF.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif "\n" not in text:
            return self._buffer_partial(text)
        lines = text.split("\n")
        # No line can be longer than the pending piece plus this chunk, so the
        # common case skips measuring lines altogether.
        bound = self._pending_len + len(text)
        if self._pending:
            lines[0] = "".join(self._pending) + lines[0]
            self._pending.clear()
            self._pending_len = 0
        if bound > self._max_line_length:
            # Check every line before processing any, so that an error never
            # swallows events (and their ids) that this chunk completed.
            longest = max(map(len, lines))
            if longest > self._max_line_length:
                self._closed = True
                raise SSELineTooLong(longest, self._max_line_length)
        tail = lines.pop()  # after the last line end: unterminated, keep for later
        if tail:
            self._pending.append(tail)
            self._pending_len = len(tail)
        return self._process(lines)

    def feed_eof(self) -> list[SSEEvent]:
        """Signal the end of the stream; return the events it completes.

        spec: "Once the end of the file is reached, any pending data must be
        discarded. (If the file ends in the middle of an event, before the
        final empty line, the incomplete event is not dispatched.)" That
        includes a last line without a line end and the ``id:`` of the
        incomplete event, so ``last_event_id`` is not changed. Because a CR
        ends a line when seen, nothing can complete here and the list is
        always empty; it is returned so drivers treat ``feed`` and
        ``feed_eof`` alike. Calling it again is harmless.
        """
        if not self._closed:
            self._closed = True
            # Flush the decoder (a truncated character becomes U+FFFD); it could
            # only extend the unterminated line, which is discarded anyway.
            self._decoder.decode(b"", final=True)
        self._pending.clear()
        self._pending_len = 0
        self._data = []
        self._data_len = 0
        self._type = ""
        self._id_buffer = self._last_event_id
        return []

    def _buffer_partial(self, text: str) -> list[tuple[str, str, str]]:
        """Keep a piece of a line that has no line end yet, within the limit."""
        self._pending_len += len(text)
        if self._pending_len > self._max_line_length:
            self._closed = True
            raise SSELineTooLong(self._pending_len, self._max_line_length)
        self._pending.append(text)
        return []

    def _process(self, lines: list[str]) -> list[tuple[str, str, str]]:
        """Apply the spec's per-line rules to complete lines, in order."""
        events: list[tuple[str, str, str]] = []
        data = self._data
        data_len = self._data_len
        limit = self._max_data_length
        event_type = self._type
        id_buffer = self._id_buffer
        for line in lines:
            if not line:
                # spec: "If the line is empty (a blank line): Dispatch the event".
                # Dispatch step 1: set the last event ID string to the buffer;
                # "the buffer does not get reset". Happens even if nothing fires.
                self._last_event_id = id_buffer
                # Step 2: "If the data buffer is an empty string, set the data
                # buffer and the event type buffer to the empty string and return."
                if data:
                    # Step 3: the buffer's trailing LF is removed; joining the
                    # values with LF gives exactly that. Steps 5 and 6: type
                    # "message" unless the event type buffer is non-empty, and
                    # lastEventId is the last event ID string.
                    events.append((event_type or "message", "\n".join(data), id_buffer))
                    data = []
                    data_len = 0
                # Step 7 (and step 2): reset the data and event type buffers.
                event_type = ""
                continue
            # The lines servers send most, first: "data:" and "id:" (the general rule
            # below gives the same name and value; checked by the tests' random streams).
            if line.startswith("data:"):
                value = line[6:] if line.startswith(" ", 5) else line[5:]
                data.append(value)
                data_len += len(value) + 1
                if data_len > limit:
                    self._closed = True
                    self._data = []
                    self._data_len = 0
                    raise SSEEventTooLarge(data_len, limit, events)
                continue
            if line.startswith("id:"):
                value = line[4:] if line.startswith(" ", 3) else line[3:]
                if "\0" not in value:
                    id_buffer = value
                continue
            colon = line.find(":")
            if colon == 0:
                # spec: "If the line starts with a U+003A COLON character (:)
                # Ignore the line." (a comment)
                continue
            if colon > 0:
                # spec: field name is the text before the first colon; the
                # value is the text after it, with one leading U+0020 SPACE
                # removed if present.
                name = line[:colon]
                skip = 2 if line.startswith(" ", colon + 1) else 1
                value = line[colon + skip :]
            else:
                # spec: a line without a colon is a field named by the whole
                # line with the empty string as its value.
                name = line
                value = ""
            # spec, "process the field": names are compared case-sensitively.
            if name == "data":
                # Append the value and an LF to the data buffer (see __init__).
                data.append(value)
                data_len += len(value) + 1
                if data_len > limit:
                    self._closed = True
                    self._data = []
                    self._data_len = 0
                    raise SSEEventTooLarge(data_len, limit, events)
            elif name == "event":
                event_type = value
            elif name == "id":
                # "If the field value does not contain U+0000 NULL, then set the
                # last event ID buffer to the field value. Otherwise, ignore the
                # field." An empty value therefore resets the id to "".
                if "\0" not in value:
                    id_buffer = value
            elif name == "retry" and value.isascii() and value.isdigit():
                # "If the field value consists of only ASCII digits" (isdigit
                # alone would accept "²" or "٣"; "" is not digits) set the
                # reconnection time now, not at dispatch; otherwise ignore the
                # field. A value too long for int() (over 4300 digits) is
                # ignored too, as browsers ignore values that overflow.
                with contextlib.suppress(ValueError):
                    self._retry = int(value)
            # spec: "Otherwise: The field is ignored."
        self._data = data
        self._data_len = data_len
        self._type = event_type
        self._id_buffer = id_buffer
        return events

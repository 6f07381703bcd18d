"""Encode and decode frames; decoding is validation.

Two decoders, one per direction. Both refuse a frame larger than
``max_size`` *before* parsing it, and turn msgspec's errors into
:class:`~rtnb.protocol.errors.InvalidFrame` with the JSON path and a one-line
reason::

    >>> decode_client_frame(b'{"op":"pong","id":"p1","serverTime":"x"}')
    Traceback (most recent call last):
    ...
    rtnb.protocol.errors.InvalidFrame: $.serverTime: expected float, got str
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any, Final

import msgspec

from .errors import FrameTooLarge, InvalidFrame
from .frames import (
    Authenticated,
    Batch,
    ClientBound,
    Error,
    Event,
    Heartbeat,
    MutationRejected,
    Pong,
    ServerBound,
    Snapshot,
    Subscribed,
    TopicName,
)

#: The one frame-size contract, in UTF-8 bytes: 1,048,576 (1 MiB). Clients refuse
#: larger frames before parsing; the server refuses any publish or patch whose
#: event frame or resulting entity state (in a snapshot) would be larger.
DEFAULT_MAX_FRAME_SIZE: Final = 1024 * 1024


def frame_bytes(data: bytes | str, limit: int = DEFAULT_MAX_FRAME_SIZE) -> int:
    """The size of a frame in UTF-8 bytes, exact whenever it could matter against ``limit``.

    A ``str`` is encoded only when its length alone cannot decide: a character
    is 1 to 4 bytes, so ``len(text) * 4 <= limit`` fits and ``len(text) > limit``
    does not; in the first case the character count is returned (it is <= limit).
    """
    n = len(data)
    if type(data) is bytes or n * 4 <= limit or n > limit:
        return n
    return len(data.encode()) if isinstance(data, str) else n


_encoder = msgspec.json.Encoder()
_AT_PATH = re.compile(r"^(?P<msg>.*?) - at `(?P<path>\$[^`]*)`$", re.DOTALL)


def encode(frame: msgspec.Struct | dict[str, Any]) -> bytes:
    """Encode a frame (or a plain dict) to compact JSON bytes."""
    return _encoder.encode(frame)


def encode_str(frame: msgspec.Struct | dict[str, Any]) -> str:
    """Encode a frame to a JSON ``str`` (for WebSocket text frames and SSE)."""
    return _encoder.encode(frame).decode()


def _lower_first(msg: str) -> str:
    """``"Expected `int`"`` → ``"expected int"``; acronyms (``"JSON is …"``) keep their case."""
    msg = msg.replace("`", "")
    if len(msg) > 1 and msg[1].isupper():
        return msg
    return msg[:1].lower() + msg[1:]


def invalid_frame_from(exc: msgspec.MsgspecError, *, context: str = "") -> InvalidFrame:
    """Translate a msgspec error into an :class:`InvalidFrame` with a JSON path."""
    text = str(exc)
    m = _AT_PATH.match(text)
    if m:
        return InvalidFrame(m["path"], _lower_first(m["msg"]), context=context)
    if isinstance(exc, msgspec.ValidationError):
        return InvalidFrame("$", _lower_first(text), context=context)
    return InvalidFrame("$", f"malformed JSON: {_lower_first(text)}", context=context)


class _Decoder:
    __slots__ = ("_decoder", "max_size")

    def __init__(self, kind: Any, max_size: int) -> None:
        if max_size <= 0:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self.max_size = max_size
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)

    @property
    def decode_unchecked(self) -> Callable[[bytes | str], Any]:
        """msgspec's decode for this frame type, without the size cap or error mapping.

        For a hot path that checks the size itself and maps ``msgspec`` errors with
        :func:`invalid_frame_from` (the client pipeline): one C call per frame.
        """
        return self._decoder.decode

    def _decode(self, data: bytes | str) -> Any:
        size = frame_bytes(data, self.max_size)
        if size > self.max_size:  # in UTF-8 bytes, for str frames too
            raise FrameTooLarge(size, self.max_size)
        try:
            return self._decoder.decode(data)
        except msgspec.MsgspecError as exc:
            raise invalid_frame_from(exc) from None
        except RecursionError:
            # msgspec recurses per nesting level: a hostile frame nested 100k deep
            # must be an invalid frame, never a dead read loop.
            raise InvalidFrame("$", "malformed JSON: nested too deeply") from None


class _StrictEvent(Event, frozen=True, tag="event"):
    """:class:`Event` with its ``topic`` checked by msgspec (the reference decode)."""

    topic: TopicName


class _StrictBatch(Batch, frozen=True, tag="batch"):
    messages: list[  # type: ignore[assignment]
        _StrictEvent
        | Authenticated
        | Subscribed
        | Snapshot
        | Heartbeat
        | Pong
        | MutationRejected
        | Error
    ]


#: ``ClientBound`` as the wire defines it: every topic checked against ``TopicName``
#: by msgspec. The client decodes with :class:`Event` (``topic: str``), then checks
#: the frame's distinct event topics against those already proven valid; a frame with
#: a new topic, or one msgspec refuses, is decoded again with this type, which gives
#: the error (or proves the topics valid). Same frames accepted, same errors.
_STRICT_CLIENT_BOUND: Final[Any] = (
    _StrictEvent
    | _StrictBatch
    | Authenticated
    | Subscribed
    | Snapshot
    | Heartbeat
    | Pong
    | MutationRejected
    | Error
)
_TOPIC: Final = attrgetter("topic")
#: distinct topics a decoder remembers as valid (forgotten all at once past it)
_MAX_VALID_TOPICS: Final = 4096


class ClientDecoder(_Decoder):
    """Decodes frames a client receives (server → client)."""

    __slots__ = ("_decode_checked", "_strict", "_valid")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(ClientBound, max_size)
        self._strict: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_STRICT_CLIENT_BOUND)
        #: event topics proven valid by the strict decode
        self._valid: set[str] = set()
        self._decode_checked = self._make_decode()

    def _make_decode(self) -> Callable[[bytes | str], Any]:
        lax, valid = self._decoder.decode, self._valid
        event, batch = Event, Batch

        def decode(data: bytes | str) -> Any:
            try:
                frame = lax(data)
            except msgspec.MsgspecError:
                return self._strictly(data, None)
            kind = type(frame)
            if kind is event:
                if frame.topic in valid:
                    return frame
            elif kind is batch:
                msgs = frame.messages
                try:  # (control frames' topics are checked by msgspec: extra here)
                    if set(map(_TOPIC, msgs)) <= valid:
                        return frame
                except AttributeError:  # frames without a topic among the events
                    pass
                if {m.topic for m in msgs if type(m) is event} <= valid:
                    return frame
            else:
                return frame
            return self._strictly(data, frame)

        return decode

    def _strictly(self, data: bytes | str, frame: Any) -> Any:
        """Decode ``data`` with the wire's own type: raises its error; else the topics of
        ``frame`` (decoded without the topic check) are valid: remember them."""
        self._strict.decode(data)
        if frame is None:  # refused without the topic check, accepted with it: never
            raise msgspec.ValidationError("frame refused by the client decoder")
        valid = self._valid
        if len(valid) >= _MAX_VALID_TOPICS:
            valid.clear()
        if type(frame) is Event:
            valid.add(frame.topic)
        else:
            valid.update(m.topic for m in frame.messages if type(m) is Event)
        return frame

    @property
    def decode_unchecked(self) -> Callable[[bytes | str], Any]:
        """Decode without the size cap or error mapping (msgspec's errors raised as they
        are): one msgspec call per frame, plus a set look-up of its event topics."""
        return self._decode_checked

    def _decode(self, data: bytes | str) -> Any:
        size = frame_bytes(data, self.max_size)
        if size > self.max_size:  # in UTF-8 bytes, for str frames too
            raise FrameTooLarge(size, self.max_size)
        try:
            return self._decode_checked(data)
        except msgspec.MsgspecError as exc:
            raise invalid_frame_from(exc) from None
        except RecursionError:
            raise InvalidFrame("$", "malformed JSON: nested too deeply") from None

    def decode(self, data: bytes | str) -> ClientBound:
        result: ClientBound = self._decode(data)
        return result


class ServerDecoder(_Decoder):
    """Decodes frames a server receives (client → server)."""

    __slots__ = ()

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(ServerBound, max_size)

    def decode(self, data: bytes | str) -> ServerBound:
        result: ServerBound = self._decode(data)
        return result


_client = ClientDecoder()
_server = ServerDecoder()


def decode_client_frame(data: bytes | str) -> ClientBound:
    """Decode one server → client frame with the default size limit."""
    return _client.decode(data)


def decode_server_frame(data: bytes | str) -> ServerBound:
    """Decode one client → server frame with the default size limit."""
    return _server.decode(data)

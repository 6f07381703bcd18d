"""The client decoder checks event topics once per distinct topic, not by a regex per
event: the same frames are accepted and the same errors given as by msgspec decoding
the wire's own types (``Event.topic`` a ``TopicName``), which this file spells out
literally as the reference."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtnb.protocol import codec
from rtnb.protocol.codec import ClientDecoder
from rtnb.protocol.errors import InvalidFrame
from rtnb.protocol.frames import (
    AUTH_TOKEN_MAX,
    Authenticated,
    Error,
    Event,
    Heartbeat,
    MutationRejected,
    Pong,
    Snapshot,
    Subscribed,
)

_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


# The reference: Event's fields with the wire's constraints, written out here.
_F = {f.name: f.type for f in msgspec.structs.fields(Event)}
RefEvent = msgspec.defstruct(  # type: ignore[misc]
    "RefEvent",
    [
        ("id", _F["id"]),
        ("type", _F["type"]),
        ("topic", Annotated[str, msgspec.Meta(pattern=_PATTERN)]),
        ("sequence", _F["sequence"]),
        ("entity_id", _F["entity_id"]),
        ("occurred_at", _F["occurred_at"]),
        ("replay_token", _F["replay_token"]),
        ("payload", dict[str, Any], {}),
        ("version", int, 1),
    ],
    frozen=True,
    gc=False,
    tag_field="op",
    rename="camel",
    tag="event",
)
_Msg = (
    RefEvent | Authenticated | Subscribed | Snapshot | Heartbeat | Pong | MutationRejected | Error
)
RefBatch = msgspec.defstruct(
    "RefBatch",
    [("messages", list[_Msg])],  # type: ignore[valid-type]
    frozen=True,
    gc=False,
    tag_field="op",
    rename="camel",
    tag="batch",
)
REFERENCE = msgspec.json.Decoder(
    RefEvent | RefBatch | Authenticated | Subscribed | Snapshot | Heartbeat | Pong  # type: ignore[valid-type]
    | MutationRejected | Error
)  # fmt: skip


def test_event_fields_are_the_references_but_for_the_topic_check() -> None:
    ours = {f.name: f for f in msgspec.structs.fields(Event)}
    ref = {f.name: f for f in msgspec.structs.fields(RefEvent)}
    assert ours.keys() == ref.keys()
    for name in ours:
        if name != "topic":
            assert ours[name].type == ref[name].type, name
    strict = {f.name: f.type for f in msgspec.structs.fields(codec._StrictEvent)}
    assert strict == {f.name: f.type for f in msgspec.structs.fields(RefEvent)}
    assert AUTH_TOKEN_MAX > 0


def _plain(frame: Any) -> Any:
    """A decoded frame as builtins (the reference's classes differ from ours)."""
    return msgspec.to_builtins(frame)


TOPICS = st.one_of(
    st.sampled_from(["a", "prices", "t.1:x-y_z", "", "-a", "a b", "é", "a" * 128, "a" * 129]),
    st.text(alphabet="aZ09_.:- é\n", max_size=6),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "op": "event",
        "id": draw(st.sampled_from(["e1", "e2", ""])),
        "type": "t.set",
        "topic": draw(TOPICS),
        "sequence": draw(st.sampled_from([1, 2, -1])),
        "entityId": "x",
        "occurredAt": draw(st.sampled_from(["2026-12-06T05:49:18.686778Z", "2026-12-06T05:49:18"])),
        "replayToken": "tok",
        "payload": {"v": 1},
    }
    drop = draw(st.sampled_from([None, None, None, "topic", "id", "payload"]))
    if drop is not None:
        del ev[drop]
    return ev


OTHERS = st.sampled_from(
    [
        {"op": "heartbeat", "serverTime": 1.0},
        {"op": "subscribed", "topic": "a", "sequence": 0, "replay": "none"},
        {"op": "subscribed", "topic": "-bad", "sequence": 0, "replay": "none"},
        {"op": "error", "code": "x", "message": "m", "topic": "a"},
        {"op": "nope"},
        "not a frame",
    ]
)


@st.composite
def frames(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        frame: Any = draw(st.one_of(events(), OTHERS))
    else:
        msgs = draw(st.lists(st.one_of(events(), events(), OTHERS), max_size=6))
        frame = {"op": "batch", "messages": msgs}
    text = json.dumps(frame)
    if draw(st.integers(0, 20)) == 0:
        text = text[: len(text) // 2]  # malformed JSON
    return text


def _outcome(decode: Any, data: str) -> tuple[str, Any]:
    try:
        return "ok", _plain(decode(data))
    except msgspec.MsgspecError as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(frames(), min_size=1, max_size=8))
def test_the_client_decoder_accepts_and_refuses_what_the_wire_types_do(
    stream: list[str],
) -> None:
    decoder = ClientDecoder()  # one decoder over the stream: remembered topics matter
    decode = decoder.decode_unchecked
    for data in stream:
        assert _outcome(decode, data) == _outcome(REFERENCE.decode, data), data
        ours = None
        try:
            ours = decoder.decode(data)
        except InvalidFrame as exc:
            want = _outcome(REFERENCE.decode, data)
            assert want[0] != "ok"
            assert str(exc) == str(codec.invalid_frame_from(_error(data)))
        else:
            assert _outcome(REFERENCE.decode, data) == ("ok", _plain(ours))


def _error(data: str) -> msgspec.MsgspecError:
    try:
        REFERENCE.decode(data)
    except msgspec.MsgspecError as exc:
        return exc
    raise AssertionError("the reference accepted it")


def test_a_topic_valid_once_is_not_checked_again_and_a_bad_one_always_is() -> None:
    decoder = ClientDecoder()
    decode = decoder.decode_unchecked
    good = json.dumps({"op": "batch", "messages": [
        {"op": "event", "id": f"e{i}", "type": "t", "topic": "ok", "sequence": i,
         "entityId": "x", "occurredAt": "2026-12-06T05:49:18Z", "replayToken": "k"}
        for i in range(1, 4)
    ]})  # fmt: skip
    assert type(decode(good)).__name__ == "Batch"
    assert decoder._valid == {"ok"}
    bad = good.replace('"topic": "ok"', '"topic": "o k"', 1)
    for _ in range(2):
        with pytest.raises(msgspec.ValidationError, match=r"messages\[0\]\.topic"):
            decode(bad)
    assert decoder._valid == {"ok"}


def test_an_error_without_a_topic_in_a_batch_does_not_send_it_to_the_strict_decode_again() -> None:
    decoder = ClientDecoder()
    strict = decoder._strict
    calls: list[Any] = []

    class Counting:
        def decode(self, data: Any) -> Any:
            calls.append(data)
            return strict.decode(data)

    decoder._strict = Counting()  # type: ignore[assignment]
    frame = json.dumps({"op": "batch", "messages": [
        {"op": "event", "id": "e1", "type": "t", "topic": "ok", "sequence": 1,
         "entityId": "x", "occurredAt": "2026-12-06T05:49:18Z", "replayToken": "k"},
        {"op": "error", "code": "c", "message": "m"},  # topic None
    ]})  # fmt: skip
    for _ in range(3):
        decoder.decode_unchecked(frame)
    assert len(calls) == 1  # the first time only: "ok" is then known valid

"""Wire frames: decoding is validation, errors carry a JSON path, secrets never print."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    Authenticate,
    Authenticated,
    Batch,
    ClientDecoder,
    Event,
    FrameTooLarge,
    Heartbeat,
    InvalidFrame,
    Mutate,
    Ping,
    Pong,
    RemoteProtocolError,
    ServerDecoder,
    Subscribe,
    Subscribed,
    decode_client_frame,
    decode_server_frame,
    encode,
)
from tests.helpers import event, snapshot

EVENT_JSON: dict[str, Any] = {
    "op": "event",
    "id": "evt-1",
    "type": "incident.updated",
    "topic": "incidents",
    "version": 1,
    "sequence": 1234,
    "entityId": "inc-42",
    "occurredAt": "2026-11-27T22:51:46.123456Z",
    "replayToken": "opaque-token",
    "payload": {"status": "open", "clientMutationId": "m-1"},
}


def test_design_example_event_decodes_with_camel_case_fields() -> None:
    ev = decode_client_frame(json.dumps(EVENT_JSON))
    assert isinstance(ev, Event)
    assert ev.entity_id == "inc-42"
    assert ev.sequence == 1234
    assert ev.occurred_at.isoformat() == "2026-11-27T22:51:46.123456+00:00"
    assert ev.payload["clientMutationId"] == "m-1"


def test_event_round_trips_through_the_wire() -> None:
    ev = event(7)
    assert decode_client_frame(encode(ev)) == ev
    wire = json.loads(encode(ev))
    assert {"entityId", "occurredAt", "replayToken"} <= wire.keys()
    assert wire["op"] == "event"


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda d: d.update(sequence="12"), "$.sequence", "expected int, got str"),
        (lambda d: d.update(sequence=-1), "$.sequence", "expected int >= 0"),
        (lambda d: d.pop("id"), "$", "object missing required field id"),
        (lambda d: d.update(op="teleport"), "$.op", "invalid value 'teleport'"),
        (lambda d: d.update(occurredAt="yesterday"), "$.occurredAt", "invalid RFC3339"),
        (lambda d: d.update(occurredAt="2026-11-27T22:51:46"), "$.occurredAt", "timezone"),
        (lambda d: d.update(payload=[1]), "$.payload", "expected object, got array"),
        (lambda d: d.update(topic="../etc"), "$.topic", "expected str matching regex"),
        (lambda d: d.update(entityId=""), "$.entityId", "expected str of length >= 1"),
    ],
)
def test_bad_event_fields_raise_invalid_frame_with_json_path(
    mutate: Any, path: str, reason: str
) -> None:
    data = dict(EVENT_JSON)
    mutate(data)
    with pytest.raises(InvalidFrame) as info:
        decode_client_frame(json.dumps(data))
    assert info.value.path == path
    assert reason.lower() in info.value.reason.lower()
    assert str(info.value).startswith(f"{path}: ")


def test_invalid_frame_is_a_remote_protocol_error() -> None:
    assert issubclass(InvalidFrame, RemoteProtocolError)


@pytest.mark.parametrize("data", [b"{", b"", b"not json", b"\xff\xfe", b'{"op": "event",}'])
def test_malformed_json_is_an_invalid_frame_at_the_root(data: bytes) -> None:
    with pytest.raises(InvalidFrame) as info:
        decode_client_frame(data)
    assert info.value.path == "$"


def test_non_object_frames_are_refused() -> None:
    with pytest.raises(InvalidFrame, match=r"^\$: expected object, got array"):
        decode_client_frame(b"[1, 2]")


def test_error_inside_a_batch_names_the_message_index() -> None:
    data = {"op": "batch", "messages": [EVENT_JSON, {**EVENT_JSON, "sequence": "x"}]}
    with pytest.raises(InvalidFrame) as info:
        decode_client_frame(json.dumps(data))
    assert info.value.path == "$.messages[1].sequence"


def test_batch_decodes_mixed_frames_in_order() -> None:
    b = Batch(messages=[event(1), Pong(id="p", server_time=1.0), event(2)])
    out = decode_client_frame(encode(b))
    assert isinstance(out, Batch)
    assert [type(m) for m in out.messages] == [Event, Pong, Event]


def test_batches_do_not_nest() -> None:
    data = {"op": "batch", "messages": [{"op": "batch", "messages": []}]}
    with pytest.raises(InvalidFrame, match=r"\$\.messages\[0\]\.op"):
        decode_client_frame(json.dumps(data))


def test_oversized_frame_is_refused_before_parsing() -> None:
    # Malformed JSON beyond the limit: only a size check can explain the error.
    data = b"{" + b" " * DEFAULT_MAX_FRAME_SIZE
    with pytest.raises(FrameTooLarge) as info:
        decode_client_frame(data)
    assert info.value.size == len(data)
    assert "exceeds the 1,048,576-byte limit" in str(info.value)


def test_size_limit_is_configurable_and_inclusive() -> None:
    frame = encode(Ping(id="p1"))
    assert isinstance(ServerDecoder(max_size=len(frame)).decode(frame), Ping)
    with pytest.raises(FrameTooLarge):
        ServerDecoder(max_size=len(frame) - 1).decode(frame)
    with pytest.raises(ValueError, match="max_size must be positive"):
        ClientDecoder(max_size=0)


def test_server_bound_frames_use_their_own_decoder() -> None:
    m = Mutate(
        topic="incidents", entity_id="inc-1", patch={"status": "ack"}, client_mutation_id="m1"
    )
    assert decode_server_frame(encode(m)) == m
    # A client-bound op is not a valid server-bound frame, and vice versa.
    with pytest.raises(InvalidFrame, match=r"\$\.op"):
        decode_server_frame(encode(event(1)))
    with pytest.raises(InvalidFrame, match=r"\$\.op"):
        decode_client_frame(encode(m))


def test_snapshot_op_means_request_to_the_server_and_state_to_the_client() -> None:
    snap = snapshot("incidents", 5, {"a": {"x": 1}})
    assert decode_client_frame(encode(snap)) == snap
    req = decode_server_frame(b'{"op":"snapshot","topic":"incidents"}')
    assert type(req).__name__ == "SnapshotRequest"


def test_frames_are_frozen() -> None:
    ev = event(1)
    with pytest.raises(AttributeError):
        ev.sequence = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "frame",
    [
        Authenticate(token="s3cret-token"),
        Subscribe(topic="incidents", replay_from="s3cret-token"),
        Subscribed(topic="incidents", replay="complete", latest_token="s3cret-token"),
        Heartbeat(server_time=1.0, topics={"incidents": "s3cret-token"}),
        snapshot("incidents", 1, {}),
        Event(**{**msgspec.structs.asdict(event(1)), "replay_token": "s3cret-token"}),
    ],
)
def test_tokens_and_cursors_never_appear_in_reprs(frame: msgspec.Struct) -> None:
    assert "s3cret" not in repr(frame)
    assert "s3cret" not in str(frame)
    assert "tok-" not in repr(frame)


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=10,
)


@given(
    seq=st.integers(0, 2**62),
    entity=_text,
    payload=st.dictionaries(_text, _json, max_size=5),
)
def test_any_valid_event_round_trips(seq: int, entity: str, payload: dict[str, Any]) -> None:
    ev = event(seq, entity=entity, payload=payload)
    assert decode_client_frame(encode(ev)) == ev


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_decode_or_raise_invalid_frame(data: bytes) -> None:
    try:
        decode_client_frame(data)
    except InvalidFrame as exc:
        assert exc.path.startswith("$")
        assert exc.reason


@given(st.dictionaries(st.sampled_from(sorted(EVENT_JSON)), _json, max_size=12))
def test_arbitrary_objects_either_decode_or_raise_invalid_frame(obj: dict[str, Any]) -> None:
    try:
        decode_client_frame(json.dumps({**EVENT_JSON, **obj}))
    except InvalidFrame as exc:
        assert exc.path.startswith("$")


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_an_invalid_frame_not_a_recursion_error(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    server_bound = (
        b'{"op":"mutate","topic":"t","entityId":"e","clientMutationId":"c","patch":{"a":'
        + nested
        + b"}}"
    )
    client_bound = (
        b'{"op":"event","id":"e1","type":"t","topic":"t","sequence":1,"entityId":"e",'
        b'"occurredAt":"2026-01-01T00:00:00Z","replayToken":"r","payload":{"a":' + nested + b"}}"
    )
    for decode, data in ((decode_server_frame, server_bound), (decode_client_frame, client_bound)):
        with pytest.raises(InvalidFrame, match="nested too deeply"):
            decode(data)


def test_authenticated_announces_the_heartbeat_interval_optionally() -> None:
    base = b'{"op":"authenticated","tenant":"a","user":"u","role":"viewer","expiresAt":1.0'
    old = decode_client_frame(base + b"}")
    new = decode_client_frame(base + b',"heartbeatInterval":0.5}')
    assert isinstance(old, Authenticated) and isinstance(new, Authenticated)
    assert old.heartbeat_interval is None
    assert new.heartbeat_interval == 0.5
    with pytest.raises(InvalidFrame, match="heartbeatInterval"):
        decode_client_frame(base + b',"heartbeatInterval":0}')

"""Tokens never survive sanitising a frame, and nothing else changes."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.pipeline import Pipeline
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.sanitize import filler, sanitize

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
tokens = st.text(alphabet=B64, min_size=24, max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4)


def event(seq: int, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": "event",
        "id": f"evt-{seq}",
        "type": "incident.updated",
        "topic": "incidents",
        "version": 1,
        "sequence": seq,
        "entityId": f"inc-{seq % 3}",
        "occurredAt": "2026-11-27T22:51:46.123456Z",
        "replayToken": token,
        "payload": payload,
    }


@st.composite
def frames(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    used: set[str] = set()

    def tok() -> str:
        value = draw(tokens)
        used.add(value)
        return value

    def message() -> dict[str, Any]:
        kind = draw(st.sampled_from(["event", "snapshot", "subscribed", "heartbeat"]))
        if kind == "event":
            return event(draw(st.integers(1, 10**6)), tok(), draw(payloads))
        if kind == "snapshot":
            ents = [
                {"entityId": f"e{i}", "state": draw(payloads), "sequence": i}
                for i in range(draw(st.integers(0, 3)))
            ]
            return {
                "op": "snapshot",
                "topic": "fleet",
                "entities": ents,
                "token": tok(),
                "sequence": 3,
            }
        if kind == "subscribed":
            return {"op": "subscribed", "topic": "fleet", "replay": "none", "latestToken": tok()}
        return {"op": "heartbeat", "serverTime": 1.5, "topics": {"a": tok(), "b": tok()}}

    if draw(st.booleans()):
        return {
            "op": "batch",
            "messages": [message() for _ in range(draw(st.integers(1, 4)))],
        }, used
    return message(), used


def _redacted(node: Any, used: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _redacted(v, used) for k, v in node.items()}
    if isinstance(node, list):
        return [_redacted(v, used) for v in node]
    if isinstance(node, str) and node in used:
        return filler(len(node)).decode()
    return node


@pytest.mark.slow
@settings(max_examples=300)
@given(frames(), st.booleans())
def test_every_token_is_replaced_by_one_of_the_same_length_and_nothing_else_changes(
    drawn: tuple[dict[str, Any], set[str]], as_text: bool
) -> None:
    frame, used = drawn
    raw = msgspec.json.encode(frame)
    clean = sanitize(raw.decode() if as_text else raw)
    assert not any(t.encode() in clean for t in used)
    assert len(clean) == len(raw)
    assert json.loads(clean) == _redacted(frame, used)


@pytest.mark.slow
@settings(max_examples=100)
@given(frames())
def test_without_payloads_no_token_and_no_user_data_is_kept(
    drawn: tuple[dict[str, Any], set[str]],
) -> None:
    frame, used = drawn
    clean = sanitize(msgspec.json.encode(frame), payloads=False)
    assert not any(t.encode() in clean for t in used)
    messages = json.loads(clean).get("messages", [json.loads(clean)])
    for msg in messages:
        assert msg.get("payload", {}) == {}
        assert all(e["state"] == {} for e in msg.get("entities", []))


def test_a_sanitised_frame_makes_the_pipeline_decide_exactly_as_the_original() -> None:
    raw = [msgspec.json.encode(event(s, f"secret-token-{s:04d}", {"n": s})) for s in (1, 3, 2, 2)]
    logs = []
    for frames_ in (raw, [sanitize(f) for f in raw]):
        log = EnvelopeLog()
        pipeline = Pipeline(log)
        pipeline.add_topic("incidents")
        for i, f in enumerate(frames_):
            pipeline.feed(f, 100.0 + i)
        logs.append(log)
    assert logs[0].envelopes.equals(logs[1].envelopes)


def test_a_token_spelled_with_json_escapes_is_still_removed() -> None:
    token = "AbCdEfGhIjKlMnOpQrStUvWx"
    escaped = "".join(f"\\u{ord(c):04x}" for c in token)
    raw = (
        '{"op":"subscribed","topic":"t","replay":"none","latestToken":"' + escaped + '"}'
    ).encode()
    clean = sanitize(raw)
    assert token.encode() not in clean
    assert escaped.encode() not in clean
    assert json.loads(clean)["latestToken"] == filler(len(token)).decode()


def test_text_that_is_not_json_has_token_fields_redacted_even_if_cut_short() -> None:
    raw = b'{"op":"event","replayToken":"s3cr3t-t0ken-value","payload":{"a":1'
    clean = sanitize(raw)
    assert b"s3cr3t" not in clean
    assert len(clean) == len(raw)
    cut = b'garbage {"token": "half-a-secret-tok'
    assert b"half-a-secret" not in sanitize(cut)


def test_user_data_named_token_is_left_alone() -> None:
    frame = event(1, "real-secret-token-0001", {"token": "not-a-secret", "n": 1})
    clean = json.loads(sanitize(msgspec.json.encode(frame)))
    assert clean["payload"] == {"token": "not-a-secret", "n": 1}
    assert clean["replayToken"] != "real-secret-token-0001"

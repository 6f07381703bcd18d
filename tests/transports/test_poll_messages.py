"""``poll_messages``: a long-poll response read one message at a time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.transports.polling import poll_messages

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.lists(_json, max_size=20),
    st.dictionaries(st.sampled_from(["cursor", "x", "more"]), _json, max_size=3),
    st.sampled_from(["", " ", "\n  "]),
)
def test_every_message_is_read_with_its_own_text(
    messages: list[Any], extra: dict[str, Any], space: str
) -> None:
    body = json.dumps({**extra, "messages": messages}, indent=1 if space else None)
    got = list(poll_messages(space + body + space))
    assert [m for m, _ in got] == messages
    assert [json.loads(text) for _, text in got] == messages


def test_messages_are_yielded_before_the_rest_is_read() -> None:
    body = '{"messages": [{"op": "a"}, {"op": "b"}, ' + "{}," * 1_000_000 + "{}]}"
    it = poll_messages(body)
    assert next(it) == ({"op": "a"}, '{"op": "a"}')
    assert next(it)[0] == {"op": "b"}


@pytest.mark.parametrize(
    "body", ["", "[]", '{"cursor": ""}', '{"messages": [1 2]}', '{"messages": [1,', "{"]
)
def test_a_malformed_response_raises_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        list(poll_messages(body))

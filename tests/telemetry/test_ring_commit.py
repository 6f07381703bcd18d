"""The ring's commit: dictionary codes of ``cat`` columns (issue 22)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.status import OUTCOMES_BY_CODE
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.ring import BATCH, _Codes


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


def fresh(text: str) -> str:
    """An equal string that is a distinct object (as every decoded frame's are)."""
    return "".join(list(text)) if len(text) > 1 else text


cat_values = st.one_of(
    st.none(),
    st.sampled_from(["red", "blue", "incidents", "fleet", ""]).map(fresh),
    st.sampled_from(list(Color)),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cat_values, min_size=1, max_size=40), min_size=1, max_size=6))
def test_codes_decode_back_to_the_values_and_one_value_keeps_one_code(
    batches: list[list[Any]],
) -> None:
    codes = _Codes()
    seen: dict[str, int] = {}
    for batch in batches:
        encoded = codes.encode(batch)
        assert [None if c == -1 else codes.values[c] for c in encoded] == batch
        for value, code in zip(batch, encoded, strict=True):
            if value is None:
                assert code == -1
            else:
                assert seen.setdefault(value, code) == code  # a value keeps its code
    # plain str everywhere (enum members stored by value), and None is not a key
    assert all(type(v) is str for v in codes.values)
    assert all(type(k) is str for k in codes.index)
    assert codes.index == {v: i for i, v in enumerate(codes.values)}
    assert codes.add(None) == -1


@pytest.mark.parametrize("bad", [3, 1.5, b"red", ("red",)])
def test_codes_refuse_a_value_that_is_not_a_str_or_none(bad: Any) -> None:
    codes = _Codes(["red"])
    with pytest.raises(TypeError, match="expected str or None"):
        codes.encode(["red", None, bad])


def envelope(i: int) -> tuple[Any, ...]:
    return (
        1e9 + i * 0.001, 1e9 + i * 0.001 - 0.004, ("a", "b", "c")[i % 3], f"t{i % 5}",
        f"evt-{i}", i, f"ent-{i % 7}", i % len(OUTCOMES_BY_CODE), "websocket", 1, 300, None, 1,
    )  # fmt: skip


def test_rows_appended_as_columns_and_as_rows_keep_their_order() -> None:
    log = EnvelopeLog(envelope_capacity=10 * BATCH)
    rows = [envelope(i) for i in range(5 * BATCH)]
    for i, row in enumerate(rows):
        if i == 2 * BATCH:
            # bulk rows commit what is pending first, then themselves
            in_spec_order = [(*r[:11], r[12], r[11]) for r in rows[i : i + BATCH]]
            columns = [list(c) for c in zip(*in_spec_order, strict=True)]
            ring = log._envelopes
            ring.append_columns(columns, BATCH)
        if 2 * BATCH <= i < 3 * BATCH:
            continue
        log.append_envelope(*row)
    assert log.envelopes["id"].tolist() == [f"evt-{i}" for i in range(5 * BATCH)]

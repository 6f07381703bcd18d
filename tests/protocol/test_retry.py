"""The one retry-hint parser: Retry-After (seconds or HTTP-date, RFC 9110) and close reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.protocol.retry import parse_retry_after, retry_hint_in_reason

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=UTC).timestamp()
seconds = st.integers(min_value=0, max_value=999_999_999)


@given(seconds)
def test_delay_seconds_are_read_as_seconds(n: int) -> None:
    assert parse_retry_after(str(n), NOW) == n
    assert parse_retry_after(f"  {n}\t", NOW) == n


@given(st.integers(min_value=-86_400, max_value=10 * 365 * 86_400))
def test_an_imf_fixdate_is_the_seconds_until_then_and_never_negative(offset: int) -> None:
    when = datetime.fromtimestamp(NOW + offset, UTC)
    header = format_datetime(when, usegmt=True)  # "Wed, 02 Dec 2026 07:00:00 GMT"
    assert parse_retry_after(header, NOW) == max(0.0, float(offset))


@pytest.mark.parametrize(
    "header",
    [
        "Wed, 02 Dec 2026 07:00:30 GMT",  # IMF-fixdate
        "Wednesday, 02-Dec-26 07:00:30 GMT",  # obsolete RFC 850
        "Wed Dec  2 07:00:30 2026",  # obsolete asctime (GMT by definition)
    ],
)
def test_every_http_date_form_rfc_9110_asks_recipients_to_accept(header: str) -> None:
    assert parse_retry_after(header, NOW) == 30.0


@given(st.text(max_size=40))
def test_any_text_is_a_finite_non_negative_hint_or_none(text: str) -> None:
    hint = parse_retry_after(text, NOW)
    assert hint is None or (math.isfinite(hint) and hint >= 0)
    hint = retry_hint_in_reason(text)
    assert hint is None or (math.isfinite(hint) and hint >= 0)


@pytest.mark.parametrize(
    "header", ["", None, "-1", "1e3", "inf", "nan", "0x10", "1234567890", "soon", "Wed, 99 Dec"]
)
def test_garbage_is_no_hint(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


@given(
    st.decimals(min_value=0, max_value=999_999, places=3), st.sampled_from(["", "rate limited; "])
)
def test_a_close_reason_carries_its_hint(value: object, prefix: str) -> None:
    text = f"{value:f}"
    assert retry_hint_in_reason(f"{prefix}retry_after={text}") == float(text)


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("rate limited; retry_after=2.5", 2.5),
        ("server busy; retry_after=3.0 (shed)", 3.0),
        ("retry_after=7", 7.0),
        ("connection refused at 127.0.0.1:8799", None),
        ("30", None),  # a bare number in a reason is not a hint
        ("xretry_after=5", None),
        ("retry_after=-1", None),
        ("retry_after=5s", None),
    ],
)
def test_close_reasons(reason: str, hint: float | None) -> None:
    assert retry_hint_in_reason(reason) == hint


def test_the_transports_use_this_parser() -> None:
    from rtnb.transports import base

    assert base.parse_retry_after is parse_retry_after
    assert base.retry_hint_in_reason is retry_hint_in_reason
    soon = format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90), usegmt=True)
    assert base.parse_retry_after(soon, NOW) == 90.0


def test_one_error_code_enum_serves_server_machine_and_transports() -> None:
    from rtnb.core import machine, topics
    from rtnb.protocol.errors import AUTH_ERRORS, TOPIC_REFUSALS, ErrorCode
    from rtnb.server import http as server_http
    from rtnb.transports import http as transport_http

    assert set(server_http._STATUS_BY_CODE) <= set(ErrorCode)
    assert machine._AUTH_ERRORS is AUTH_ERRORS and topics.REFUSALS <= TOPIC_REFUSALS
    assert transport_http._REFUSALS is TOPIC_REFUSALS
    assert ErrorCode.FORBIDDEN == "forbidden" and "token_expired" in AUTH_ERRORS

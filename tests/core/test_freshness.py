"""One freshness function: its rules, as properties over every state."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rtnb.core.freshness import activity_text, connection_status, freshness
from rtnb.core.status import Status

TOPIC_STATUSES = ["pending", "live", "replaying", "forbidden", "unknown", "refused"]
NOW = 1_000.0

statuses = st.sampled_from(list(Status))
topic_statuses = st.sampled_from(TOPIC_STATUSES)
attempts = st.integers(min_value=0, max_value=50)
retries = st.none() | st.floats(min_value=NOW - 100, max_value=NOW + 100)
lasts = st.none() | st.floats(min_value=0.0, max_value=NOW + 5)


@given(statuses, attempts, retries, topic_statuses, lasts)
def test_the_rules(
    conn: Status, attempt: int, retry: float | None, topic: str, last: float | None
) -> None:
    f = freshness(conn, attempt, retry, topic, last, NOW)
    if topic in ("forbidden", "unknown", "refused"):
        assert f.status == topic  # the server's refusal wins over any connection state
    elif conn is Status.CLOSED:
        assert f.status == "closed"
    elif conn is not Status.SUBSCRIBED:
        assert f.status in ("stale", "pending")
        assert (f.status == "pending") == (topic == "pending" and last is None)
    else:
        assert f.status == topic
    assert f.status != "live" or conn is Status.SUBSCRIBED  # never live unless subscribed
    assert f.age_s is None if last is None else f.age_s >= 0.0
    assert f.attempt == attempt


@given(attempts, st.floats(min_value=-100, max_value=100))
def test_a_retry_whose_time_has_come_reads_as_connecting(attempt: int, delta: float) -> None:
    """The storm case: "reconnecting now" and "connecting" never coexist."""
    reconnecting = freshness(Status.RECONNECTING, attempt, NOW + delta, "live", 1.0, NOW)
    connecting = freshness(Status.CONNECTING, attempt, None, "live", 1.0, NOW)
    if NOW + delta <= NOW:
        assert reconnecting == connecting
        assert reconnecting.detail == connecting.detail
    else:
        assert reconnecting.activity == "reconnecting"
        assert reconnecting.detail.startswith("reconnecting in ")
    assert "now" not in reconnecting.detail


@given(st.sampled_from(["reconnecting", "connecting", "degraded", "closed", "idle", "live"]),
       attempts, st.none() | st.floats(min_value=-5, max_value=50))  # fmt: skip
def test_attempt_text_is_one_figure(act: str, attempt: int, retry_in: float | None) -> None:
    text = activity_text(act, attempt, retry_in)
    assert text.count("attempt") <= 1
    if "attempt" in text:
        assert text.endswith(f"(attempt {attempt})")


@given(statuses, st.lists(topic_statuses, max_size=5), st.booleans())
def test_a_connection_is_live_only_if_subscribed_and_nothing_replays(
    conn: Status, topics: list[str], has_data: bool
) -> None:
    status = connection_status(conn, topics, has_data)
    if status == "live":
        assert conn is Status.SUBSCRIBED and "replaying" not in topics
    if conn is Status.CLOSED:
        assert status == "closed"


@given(statuses, topic_statuses, lasts, st.none() | st.floats(min_value=0.01, max_value=100))
def test_quiet_only_when_subscribed_live_and_silent_for_stale_after(
    conn: Status, topic: str, last: float | None, stale_after: float | None
) -> None:
    f = freshness(conn, 0, None, topic, last, NOW, stale_after)
    plain = freshness(conn, 0, None, topic, last, NOW)
    silent = last is not None and stale_after is not None and NOW - last >= stale_after
    if conn is Status.SUBSCRIBED and topic == "live" and silent:
        assert f.status == "quiet"
    else:
        assert f.status == plain.status  # stale_after changes nothing else
    assert f.status != "live" or not silent


def test_a_connection_of_refused_topics_says_which_refusal() -> None:
    assert connection_status(Status.SUBSCRIBED, ["refused", "refused"], False) == "refused"
    assert connection_status(Status.SUBSCRIBED, ["forbidden"], False) == "forbidden"
    assert connection_status(Status.SUBSCRIBED, ["forbidden", "unknown"], False) == "refused"
    assert connection_status(Status.SUBSCRIBED, ["live", "quiet"], True) == "quiet"

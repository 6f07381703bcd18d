"""Topic status has one owner (the core): refusals and quiet topics, against the real server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import rtnb
from rtnb.server import ServerHandle, serve
from tests.client.conftest import HEARTBEAT, TRANSPORTS, connect, publish
from tests.conftest import wait_until


@pytest.fixture
def two_subs() -> Iterator[ServerHandle]:
    with serve(port=0, heartbeat_interval=HEARTBEAT, max_subscriptions=2) as handle:
        for topic in ("incidents", "fleet", "prices"):
            handle.declare(topic)
        yield handle


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_a_third_subscription_over_the_cap_is_shown_refused_with_the_servers_reason(
    two_subs: ServerHandle, transport: str
) -> None:
    conn = connect(two_subs, transport)
    try:
        a, b = conn.subscribe("incidents"), conn.subscribe("fleet")
        wait_until(lambda: a.freshness.status == "live" and b.freshness.status == "live")
        started = time.monotonic()
        third = conn.subscribe("prices")
        wait_until(lambda: third.freshness.status == "refused", timeout=3.0)
        assert time.monotonic() - started < 3.0
        fresh = third.freshness
        assert fresh.reason is not None
        assert "at most 2 subscriptions" in fresh.reason
        assert "too_many_subscriptions" in fresh.reason
        text = str(fresh)
        assert text.startswith("Refused — ") and "at most 2 subscriptions" in text
        assert "Connecting" not in text and "Live" not in text
        # the others are untouched and the connection stays up
        assert a.freshness.status == "live" and conn.state.status is rtnb.Status.SUBSCRIBED
        # the refusal holds (never shown as pending/connecting again) ...
        assert third.freshness.status == "refused"
        # ... until the user frees a slot and asks again
        b.unsubscribe()
        again = conn.subscribe("prices")
        wait_until(lambda: again.freshness.status == "live", timeout=5.0)
        assert again.freshness.reason is None
    finally:
        conn.close()


def test_polling_shows_a_refusal_too(two_subs: ServerHandle) -> None:
    conn = connect(two_subs, "polling")
    try:
        a, b = conn.subscribe("incidents"), conn.subscribe("fleet")
        wait_until(lambda: a.freshness.status == "live" and b.freshness.status == "live")
        third = conn.subscribe("prices")
        wait_until(lambda: third.freshness.status != "pending", timeout=5.0)
        assert third.freshness.status == "refused", str(third.freshness)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "transport",
    # ~1 s each (stale_after): the HTTP transports run with the slow tests
    [t if t == "websocket" else pytest.param(t, marks=pytest.mark.slow) for t in TRANSPORTS],
)
def test_a_silent_topic_turns_quiet_after_stale_after_and_live_on_the_next_event(
    srv: ServerHandle, transport: str
) -> None:
    stale_after = 1.0
    conn = connect(srv, transport)
    try:
        topic = conn.subscribe("incidents", stale_after=stale_after)
        publish(srv, 1)
        wait_until(lambda: len(topic) == 1 and topic.freshness.status == "live")
        last = topic.freshness.last_event_at
        assert last is not None
        wait_until(lambda: topic.freshness.status == "quiet", timeout=stale_after + 1.0 + 1.0)
        quiet_at = time.time()
        assert quiet_at - last.timestamp() < stale_after + 1.0
        text = str(topic.freshness)
        assert text.startswith("Quiet — no events for ")
        assert text.endswith("(expected within 1.0 s)")
        assert conn.state.status is rtnb.Status.SUBSCRIBED  # the connection itself is fine
        publish(srv, 1, start=1)
        wait_until(lambda: topic.freshness.status == "live", timeout=3.0)
    finally:
        conn.close()


def test_stale_after_must_be_positive_seconds(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        for bad in (0, -1, float("nan"), "5", True):
            with pytest.raises(ValueError, match="stale_after must be a number of seconds > 0"):
                conn.subscribe("incidents", stale_after=bad)  # type: ignore[arg-type]
    finally:
        conn.close()

"""The client against the real reference server, on every transport."""

from __future__ import annotations

import threading
import time

import pytest

import rtnb
from rtnb.client.runtime import get_runtime
from rtnb.server import ServerHandle
from tests.client.conftest import TRANSPORTS, connect, publish
from tests.conftest import wait_until


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_gets_the_snapshot_then_live_events(srv: ServerHandle, transport: str) -> None:
    publish(srv, 10)
    conn = connect(srv, transport)
    try:
        topic = conn.subscribe("incidents")
        truth = srv.truth("incidents", tenant="acme")
        wait_until(lambda: topic.entities == truth)
        publish(srv, 5, start=10)
        wait_until(lambda: topic.entities == srv.truth("incidents", tenant="acme"))
        assert topic.freshness.status == "live"
        assert conn.state.transport == transport
        env = conn.log.envelopes
        assert set(env["outcome"].astype(str)) == {"applied"}
        assert list(env["sequence"]) == list(range(11, 16))
        assert (env["transport"].astype(str) == transport).all()
        df = topic.df
        assert df.index.name == "entity_id" and len(df) == 7
        assert not df["_pending"].any()
    finally:
        conn.close()


def test_every_transition_is_logged_with_its_reason(srv: ServerHandle) -> None:
    conn = connect(srv)
    conn.close()
    states = conn.log.states
    assert list(states["status"].astype(str)) == [
        "connecting",
        "authenticated",
        "subscribed",
        "closed",
    ]
    assert states["reason"].str.len().gt(0).all()
    assert conn.state.status is rtnb.Status.CLOSED


def test_tokens_never_appear_in_reprs_logs_or_state(srv: ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    conn = rtnb.connect(srv.url, token=token, shared=False)
    try:
        conn.wait_for("subscribed", 10)
        topic = conn.subscribe("incidents")
        publish(srv, 3)
        wait_until(lambda: len(topic) == 3)
        replay_token = topic._state.last_token
        assert replay_token
        texts = [
            repr(conn),
            str(conn.state),
            repr(topic),
            str(topic.freshness),
            repr(conn._session.machine),
            conn.log.envelopes.to_csv(),
            conn.log.states.to_csv(),
        ]
        for text in texts:
            assert token not in text
            assert replay_token not in text
    finally:
        conn.close()


def test_the_same_url_and_identity_share_one_connection(srv: ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    a = rtnb.connect(srv.url, token=token)
    b = rtnb.connect(srv.ws_url, token=token)
    try:
        assert a is b
        other = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="bo"))
        assert other is not a
        other.close()
    finally:
        a.close()


def test_subscriptions_are_reference_counted_and_late_handles_fill_from_the_store(
    srv: ServerHandle,
) -> None:
    publish(srv, 7)
    conn = connect(srv)
    try:
        first = conn.subscribe("incidents")
        wait_until(lambda: len(first) == 7)
        second = conn.subscribe("incidents")
        assert second.entities == first.entities  # no round trip needed
        assert first._state is second._state
        first.unsubscribe()
        publish(srv, 3, start=7)
        wait_until(lambda: second.entities == srv.truth("incidents", tenant="acme"))
        second.unsubscribe()
        assert "incidents" not in conn._session.pipeline.topics
    finally:
        conn.close()


def test_subscribing_again_with_another_ordering_is_refused(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        conn.subscribe("incidents", "sequence")
        with pytest.raises(rtnb.LocalProtocolError, match="already subscribed with ordering"):
            conn.subscribe("incidents", "entity")
        with pytest.raises(ValueError, match="ordering must be"):
            conn.subscribe("fleet", "fifo")
    finally:
        conn.close()


@pytest.mark.slow
def test_streaming_continues_while_the_calling_thread_is_busy(srv: ServerHandle) -> None:
    publish(srv, 1)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        stop = threading.Event()

        def producer() -> None:
            i = 0
            while not stop.is_set():
                publish(srv, 1, start=i)
                i += 1

        t = threading.Thread(target=producer)
        t.start()
        before = topic._state.applied
        time.sleep(1.0)  # a notebook cell busy with time.sleep (not waiting for a condition)
        during = topic._state.applied
        stop.set()
        t.join()
        assert during > before
    finally:
        conn.close()


def test_a_sync_call_from_the_runtime_thread_raises_instead_of_deadlocking(
    srv: ServerHandle,
) -> None:
    publish(srv, 1)
    conn = connect(srv)
    errors: list[BaseException] = []
    try:
        topic = conn.subscribe("incidents")

        def callback(event: object, outcome: str) -> None:
            try:
                conn.wait_for("subscribed", 1)
            except rtnb.LocalProtocolError as exc:
                errors.append(exc)

        topic.on_event(callback)
        wait_until(lambda: topic.freshness.status == "live")
        publish(srv, 1)
        wait_until(lambda: errors)
        assert "runtime thread" in str(errors[0]) and "awaitable" in str(errors[0])
        assert get_runtime().thread.is_alive()
    finally:
        conn.close()


def test_a_failing_callback_is_isolated(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        seen: list[int] = []
        topic.on_event(lambda e, o: 1 / 0)
        remove = topic.on_event(lambda e, o: seen.append(e.sequence))
        wait_until(lambda: topic.freshness.status == "live")
        publish(srv, 3)
        wait_until(lambda: len(seen) == 3)
        assert len(topic) == 3
        remove()
        publish(srv, 1, start=3)
        wait_until(lambda: topic._state.applied == 4)
        assert len(seen) == 3
    finally:
        conn.close()


def test_an_unknown_topic_is_reported_on_the_topic(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        topic = conn.subscribe("nowhere")
        wait_until(lambda: topic.freshness.status == "unknown")
        assert str(topic.freshness) == "Unknown topic — the server has no topic “nowhere”"
        assert conn.state.status is rtnb.Status.SUBSCRIBED
    finally:
        conn.close()


def test_wait_for_times_out_with_the_current_state(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        with pytest.raises(TimeoutError, match=r"not closed within 0\.2 s; now subscribed"):
            conn.wait_for("closed", 0.2)
    finally:
        conn.close()


def test_close_leaves_no_transport_and_is_idempotent(srv: ServerHandle) -> None:
    conn = connect(srv)
    conn.close()
    conn.close()
    assert conn._session._transport is None
    assert conn.state.status is rtnb.Status.CLOSED


@pytest.mark.slow
def test_heartbeats_are_logged_with_server_lag(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        wait_until(lambda: len(conn.log.heartbeats) >= 2, timeout=10)
        hb = conn.log.heartbeats
        assert hb["server_lag_ms"].notna().all()
        assert (hb["server_lag_ms"].abs() < 5_000).all()
    finally:
        conn.close()


@pytest.mark.slow
def test_interpreter_exit_with_an_open_connection_is_clean(srv: ServerHandle) -> None:
    import subprocess
    import sys

    token = srv.issue_token(tenant="acme", user="ana", role="viewer")
    code = (
        "import rtnb\n"
        f"c = rtnb.connect({srv.url!r}, token={token!r})\n"
        "c.wait_for('subscribed', 10)\n"
        "c.subscribe('incidents')\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "Traceback" not in out.stderr and "Task was destroyed" not in out.stderr


def test_a_closed_connection_is_not_kept_alive_by_the_runtime(srv: ServerHandle) -> None:
    conn = connect(srv)
    runtime = get_runtime()
    assert conn._session.close in runtime._closers
    conn.close()
    assert conn._session.close not in runtime._closers

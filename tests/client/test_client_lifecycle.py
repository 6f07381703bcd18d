"""Honest lifecycle: a closed connection says so, nothing waits forever, shared means shared."""

from __future__ import annotations

import pytest

import rtnb
from rtnb.client.mutation import MutationError
from rtnb.server import ServerHandle
from tests.client.conftest import connect, publish
from tests.conftest import wait_until


def test_a_closed_connection_refuses_subscribe_mutate_and_wait_for(srv: ServerHandle) -> None:
    publish(srv, 2)
    conn = connect(srv)
    topic = conn.subscribe("incidents")
    wait_until(lambda: topic.status == "live")
    conn.close()
    for attempt in (
        lambda: conn.subscribe("fleet"),
        lambda: topic.mutate("inc-1", {"status": "closed"}),
        lambda: conn.wait_for("subscribed", 1),
    ):
        with pytest.raises(rtnb.ConnectionClosed) as info:
            attempt()
        assert isinstance(info.value, rtnb.RtnbError)
        text = str(info.value)
        assert "is closed (closed by user)" in text and "rtnb.connect(" in text
        assert srv.url in text
        assert info.value.__cause__ is None
    assert conn.topics == {"incidents": topic}  # nothing pending was quietly added


def test_mutations_pending_at_close_resolve_cancelled(srv: ServerHandle) -> None:
    publish(srv, 2)
    conn = connect(srv)
    topic = conn.subscribe("incidents")
    wait_until(lambda: topic.status == "live")
    srv.chaos.stall(3.0)  # the server hears nothing: the mutation stays pending
    mutation = topic.mutate("inc-1", {"status": "closed"}, timeout=60)
    assert mutation.status == "pending"
    assert topic.get("inc-1")["status"] == "closed"  # the optimistic overlay
    conn.close()
    mutation.wait(timeout=5)  # resolved by close: no hang
    assert mutation.status == "cancelled"
    assert "connection closed (closed by user) before the server answered" in (mutation.error or "")
    with pytest.raises(MutationError, match="cancelled"):
        mutation.wait(0, raise_on_failure=True)
    rows = conn.log.mutations
    assert list(rows["outcome"]) == ["cancelled"]
    assert topic.get("inc-1")["status"] == "open"  # rolled back


def test_a_shared_connect_with_different_options_raises_and_names_the_option(
    srv: ServerHandle,
) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    conn = rtnb.connect(srv.url, token=token)
    try:
        assert rtnb.connect(srv.url, token=token) is conn  # same options: shared
        assert rtnb.connect(srv.url, token=token, transport="auto") is conn
        with pytest.raises(ValueError) as info:
            rtnb.connect(srv.url, token=token, transport="polling")
        text = str(info.value)
        assert "transport='auto'" in text and "transport='polling'" in text
        assert "shared=False" in text
        with pytest.raises(ValueError, match=r"on_degraded='queue'.*shared=False"):
            rtnb.connect(srv.url, token=token, on_degraded="reject")
        separate = rtnb.connect(srv.url, token=token, transport="polling", shared=False)
        try:
            assert separate is not conn
            separate.wait_for("subscribed", 10)
            assert separate.transport == "polling"
        finally:
            separate.close()
    finally:
        for _ in range(3):  # three connect calls returned it: three holders
            conn.close()
    # Once closed, the shared slot is free for other options.
    again = rtnb.connect(srv.url, token=token, transport="sse")
    try:
        assert again is not conn
    finally:
        again.close()

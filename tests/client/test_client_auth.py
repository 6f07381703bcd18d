"""Auth refresh, refusals and roles, as the client sees them."""

from __future__ import annotations

import pytest

import rtnb
from rtnb.server import ServerHandle
from tests.client.conftest import HEARTBEAT, TRANSPORTS, connect, publish
from tests.conftest import wait_until


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_an_expired_token_is_replaced_from_the_provider_once(
    srv: ServerHandle, transport: str
) -> None:
    calls: list[str] = []

    def provider() -> str:
        calls.append("token")
        return srv.issue_token(tenant="acme", user="ana", role="operator")

    conn = rtnb.connect(
        srv.url, token=provider, transport=transport, heartbeat_interval=HEARTBEAT, shared=False
    )
    try:
        conn.wait_for("subscribed", 10)
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        srv.chaos.expire_tokens()
        wait_until(lambda: len(calls) == 2, timeout=15)
        conn.wait_for("subscribed", 15)
        publish(srv, 3)
        wait_until(lambda: len(topic) == 3)
        assert len(calls) == 2
    finally:
        conn.close()


def test_an_async_token_provider_is_awaited(srv: ServerHandle) -> None:
    async def provider() -> str:
        return srv.issue_token(tenant="acme", user="ana", role="viewer")

    conn = rtnb.connect(srv.url, token=provider, shared=False)
    try:
        assert conn.wait_for("subscribed", 10).status is rtnb.Status.SUBSCRIBED
    finally:
        conn.close()


def test_a_token_that_a_fresh_one_cannot_fix_closes_without_a_retry_storm(
    srv: ServerHandle,
) -> None:
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return "not-a-jwt"

    conn = rtnb.connect(srv.url, token=provider, shared=False)
    try:
        with pytest.raises(ConnectionError, match="fresh token"):
            conn.wait_for("subscribed", 15)
        assert conn.state.status is rtnb.Status.CLOSED
        assert len(calls) == 2  # the first token and one fresh try, no more
        assert "not-a-jwt" not in repr(conn) + str(conn.state)
    finally:
        conn.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_forbidden_topic_is_marked_and_the_others_keep_streaming(
    srv: ServerHandle, transport: str
) -> None:
    srv.declare("audit", "admin")
    publish(srv, 2)
    conn = connect(srv, transport, role="operator")
    try:
        audit = conn.subscribe("audit")
        incidents = conn.subscribe("incidents")
        wait_until(lambda: audit.freshness.status == "forbidden", timeout=10)
        wait_until(lambda: len(incidents) == 2, timeout=10)
        assert "Forbidden" in str(audit.freshness)
        assert conn.state.status is rtnb.Status.SUBSCRIBED
    finally:
        conn.close()


def test_a_client_reads_only_its_own_tenant(srv: ServerHandle) -> None:
    publish(srv, 4)  # tenant acme
    srv.publish("incidents", "incident.updated", {"n": 1}, tenant="globex", entity_id="g-1")
    conn = connect(srv, tenant="globex")
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        assert topic.entities == {"g-1": {"n": 1}}
    finally:
        conn.close()

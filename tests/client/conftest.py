"""Fixtures for client tests: the real reference server on a free port, real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rtnb
from rtnb.server import ServerHandle, serve
from tests.helpers import stopper

#: Fast heartbeats so liveness tests finish quickly (client and server agree).
HEARTBEAT = 0.5
TRANSPORTS = ("websocket", "sse", "polling")


@pytest.fixture
def srv() -> Iterator[ServerHandle]:
    """A server of the test's own; its stop (uvicorn's 0.2 s of ticks) overlaps the next test."""
    handle = serve(port=0, heartbeat_interval=HEARTBEAT, topics={"audit": "admin"})
    try:
        for topic in ("incidents", "fleet", "prices"):
            handle.declare(topic)
        yield handle
    finally:
        stopper.stop_soon(handle)


def connect(
    srv: ServerHandle,
    transport: str = "websocket",
    *,
    role: str = "operator",
    tenant: str = "acme",
    **kw: object,
) -> rtnb.Connection:
    token = srv.issue_token(tenant=tenant, user="ana", role=role)
    conn = rtnb.connect(
        srv.url, token=token, transport=transport, heartbeat_interval=HEARTBEAT, shared=False, **kw
    )
    conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=10)
    return conn


def publish(srv: ServerHandle, n: int, topic: str = "incidents", start: int = 0) -> None:
    for i in range(start, start + n):
        srv.publish(
            topic,
            "incident.updated",
            {"status": "open", "n": i},
            tenant="acme",
            entity_id=f"inc-{i % 7}",
        )

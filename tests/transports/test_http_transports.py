"""The HTTP transports (SSE, long-polling) on their own, against the real reference server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rtnb.server import ServerHandle, serve
from rtnb.transports.base import TransportError, TransportOptions
from rtnb.transports.polling import PollingTransport
from rtnb.transports.sse import SSETransport


@pytest.fixture
def srv() -> Iterator[ServerHandle]:
    with serve(port=0) as handle:
        yield handle


@pytest.mark.parametrize("kind", ["sse", "polling"])
def test_an_http_transport_that_fails_to_open_closes_its_client(
    srv: ServerHandle, kind: str
) -> None:
    """The session drops a transport whose open failed without closing it: the transport
    must not leave its HTTP client (and a kept-alive socket) behind."""
    cls = SSETransport if kind == "sse" else PollingTransport

    async def attempt() -> tuple[Any, TransportError]:
        transport = cls(
            srv.url, lambda *_: None, lambda *_: None, TransportOptions(), (), lambda _: None
        )
        try:
            await transport.open("not-a-jwt")
        except TransportError as exc:
            return transport, exc
        raise AssertionError("a refused token opened the transport")

    transport, exc = asyncio.run(attempt())
    assert exc.kind == "unauthorized" and "malformed" in str(exc)
    assert transport._client is None

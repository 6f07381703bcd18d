"""Errors that say what happened and what to do: the concrete cause, one retry figure,
no traceback wall — against real sockets and the real server."""

from __future__ import annotations

import contextlib
import re
import socket
import time
import traceback

import pytest

import rtnb
from rtnb.server import ServerHandle, serve
from tests.conftest import wait_until


def _closed_port() -> int:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _short(exc: BaseException) -> None:
    """No traceback wall: a few frames of the caller's, no chained exceptions."""
    assert exc.__cause__ is None and exc.__suppress_context__
    assert len(traceback.extract_tb(exc.__traceback__)) <= 3, traceback.format_exception(exc)


@pytest.mark.slow
def test_a_wrong_port_says_connection_refused_with_the_address() -> None:
    port = _closed_port()
    token = "header.claims.signature"
    with pytest.raises(TimeoutError) as info:
        rtnb.connect(f"http://127.0.0.1:{port}", token=token, timeout=2, shared=False)
    text = str(info.value)
    assert f"connection refused at 127.0.0.1:{port}" in text, text
    assert len(re.findall(r"(?:retry|attempt) \d+ in [\d.]+ s", text)) <= 1, text
    assert token not in text
    _short(info.value)


@pytest.mark.parametrize("transport", ["sse", "polling"])
def test_a_wrong_port_on_http_transports_shows_the_cause_in_the_state(transport: str) -> None:
    # No topic subscribed: the transport's probe request is the first contact, so the
    # connection never says "subscribed" without having reached a server.
    port = _closed_port()
    conn = rtnb.connect(
        f"http://127.0.0.1:{port}", token="a.b.c", transport=transport, shared=False
    )
    try:
        wait_until(lambda: conn.status is rtnb.Status.RECONNECTING, 10)
        assert not conn.log.states["status"].eq("subscribed").any()
        text = str(conn.state)
        assert f"connection refused at 127.0.0.1:{port}" in text, text
        assert len(re.findall(r"(?:retry|attempt) \d+ in [\d.]+ s", text)) == 1, text
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_https_against_a_plain_server_asks_whether_the_server_is_https(
    srv: ServerHandle, transport: str
) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    url = srv.url.replace("http://", "https://")
    if transport == "websocket":
        with pytest.raises(TimeoutError) as info:
            rtnb.connect(url, token=token, transport=transport, timeout=2, shared=False)
        text = str(info.value)
        _short(info.value)
    else:
        conn = rtnb.connect(url, token=token, transport=transport, shared=False)
        try:
            conn.subscribe("incidents")
            wait_until(lambda: conn.status is rtnb.Status.RECONNECTING, 10)
            text = str(conn.state)
        finally:
            conn.close()
    assert "TLS handshake failed" in text and "is the server https?" in text, text


def _closed_reason(srv: ServerHandle, token: str, transport: str) -> str:
    conn = rtnb.connect(srv.url, token=token, transport=transport, shared=False)
    try:
        with contextlib.suppress(rtnb.ConnectionClosed):  # the websocket may be refused first
            conn.subscribe("incidents")  # may be refused already by the probe
        wait_until(lambda: conn.status is rtnb.Status.CLOSED, 15)
        with pytest.raises(rtnb.ConnectionClosed) as info:
            conn.wait_for("subscribed", 1)
        _short(info.value)
        assert conn.state.reason in str(info.value)
        return conn.state.reason
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_refused_tokens_say_why_garbage_wrong_secret_or_expired(
    srv: ServerHandle, transport: str
) -> None:
    reason = _closed_reason(srv, "not-a-jwt", transport)
    assert "token rejected" in reason and "malformed" in reason, reason

    with serve(port=0) as other:  # same claims, signed with another server's secret
        foreign = other.issue_token(tenant="acme", user="ana", role="operator")
    reason = _closed_reason(srv, foreign, transport)
    assert "token rejected" in reason
    assert "signature does not match this server" in reason, reason

    issued = time.time()
    expiring = srv.issue_token(tenant="acme", user="ana", role="operator", ttl=1.0)
    wait_until(lambda: time.time() > issued + 1.5, 5)
    reason = _closed_reason(srv, expiring, transport)
    assert "token rejected" in reason and "expired at " in reason and " UTC" in reason, reason
    for token in ("not-a-jwt", foreign, expiring):
        assert token not in reason


@pytest.mark.parametrize("transport", ["sse", "polling"])
def test_http_transports_judge_the_token_before_any_subscription(
    srv: ServerHandle, transport: str
) -> None:
    conn = rtnb.connect(srv.url, token="not-a-jwt", transport=transport, shared=False)
    try:
        wait_until(lambda: conn.status is rtnb.Status.CLOSED, 10)
        assert "token rejected" in conn.state.reason and "malformed" in conn.state.reason
        assert not conn.log.states["status"].eq("subscribed").any()
    finally:
        conn.close()
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    with rtnb.connect(srv.url, token=token, transport=transport, shared=False) as good:
        good.wait_for(rtnb.Status.SUBSCRIBED, timeout=10)
        # the probe's answer confirmed who we are, with no topic subscribed yet
        wait_until(lambda: good.identity is not None, 5)
        assert good.identity is not None
        assert (good.identity.tenant, good.identity.user) == ("acme", "ana")
        assert good.identity.role == "operator"

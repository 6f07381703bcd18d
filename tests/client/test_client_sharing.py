"""One viewer, one connection: ``close()`` is reference-counted, and sharing is per host session.

Real reference server, real sockets. The host sessions of ``marimo run`` and ``panel serve``
are stood in for by the same objects those hosts expose (a thread's marimo runtime context,
Panel's ``state.curdoc.session_context``); the browser test with two real ``marimo run``
sessions is in ``tests/widgets/test_hosts_browser.py``.
"""

from __future__ import annotations

import gc
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

import rtnb
from rtnb.client import hosts
from rtnb.client.connection import _registry
from rtnb.server import ServerHandle
from tests.client.conftest import HEARTBEAT, publish
from tests.conftest import wait_until


def _connect(srv: ServerHandle, token: str) -> rtnb.Connection:
    return rtnb.connect(srv.url, token=token, heartbeat_interval=HEARTBEAT, timeout=10)


def test_two_connects_share_one_connection_that_ends_only_when_both_closed_it(
    srv: ServerHandle,
) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    first = _connect(srv, token)  # cell 1
    second = _connect(srv, token)  # cell 2, same arguments
    assert second is first
    topic = second.subscribe("incidents")
    publish(srv, 1)
    wait_until(lambda: len(topic) == 1)
    first.close()  # cell 1 is done with it: cell 2 still streams
    assert second.status is rtnb.Status.SUBSCRIBED
    publish(srv, 3, start=1)
    wait_until(lambda: len(topic) == 4)
    assert "holders=1" in repr(second)
    second.close()  # the last holder
    assert second.status is rtnb.Status.CLOSED
    assert all(c is not first for c in _registry.values())
    with pytest.raises(rtnb.ConnectionClosed):
        second.subscribe("fleet")
    # the slot is free: a new connect opens a new connection
    third = _connect(srv, token)
    try:
        assert third is not first and third.status is rtnb.Status.SUBSCRIBED
    finally:
        third.close()


def test_with_blocks_release_one_hold_each(srv: ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    outer = _connect(srv, token)
    with _connect(srv, token) as inner:
        assert inner is outer
    assert outer.status is rtnb.Status.SUBSCRIBED
    with outer:
        pass
    assert outer.status is rtnb.Status.CLOSED


# -- host sessions ---------------------------------------------------------------------


class _Ctx:
    """Stands for marimo's RuntimeContext (a weak-referenceable object per session)."""

    parent: _Ctx | None = None


@pytest.fixture
def fake_marimo(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.local]:
    """marimo's run mode: each session's app runs in a thread with its own context."""
    local = threading.local()
    types_mod = types.ModuleType("marimo._runtime.context.types")
    types_mod.safe_get_context = lambda: getattr(local, "ctx", None)  # type: ignore[attr-defined]
    for name in ("marimo", "marimo._runtime", "marimo._runtime.context"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "marimo._runtime.context.types", types_mod)
    yield local


def _in_session(local: threading.local, ctx: _Ctx, fn: Any) -> Any:
    """Run ``fn`` in a thread whose marimo context is ``ctx`` (as marimo run does)."""
    out: list[Any] = []

    def run() -> None:
        local.ctx = ctx
        out.append(fn())

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    return out[0]


def test_two_marimo_sessions_get_two_connections_and_one_closing_leaves_the_other_live(
    srv: ServerHandle, fake_marimo: threading.local
) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    alice, bob = _Ctx(), _Ctx()
    a1 = _in_session(fake_marimo, alice, lambda: _connect(srv, token))
    a2 = _in_session(fake_marimo, alice, lambda: _connect(srv, token))
    b = _in_session(fake_marimo, bob, lambda: _connect(srv, token))
    try:
        assert a1 is a2  # one session: shared as in a notebook
        assert b is not a1  # two sessions: never shared
        topic = b.subscribe("incidents")
        a1.close()
        a1.close()
        assert a1.status is rtnb.Status.CLOSED
        publish(srv, 2)
        wait_until(lambda: len(topic) == 2)
        assert b.status is rtnb.Status.SUBSCRIBED
    finally:
        b.close()


def test_an_embedded_marimo_app_shares_its_host_sessions_connection(
    srv: ServerHandle, fake_marimo: threading.local
) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    host = _Ctx()
    child = _Ctx()
    child.parent = host
    a = _in_session(fake_marimo, host, lambda: _connect(srv, token))
    b = _in_session(fake_marimo, child, lambda: _connect(srv, token))
    assert a is b
    a.close()
    b.close()
    assert a.status is rtnb.Status.CLOSED


def test_a_marimo_session_that_ends_closes_its_connection(
    srv: ServerHandle, fake_marimo: threading.local
) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    ctx: _Ctx | None = _Ctx()
    conn = _in_session(fake_marimo, ctx, lambda: _connect(srv, token))
    conn2 = _in_session(fake_marimo, ctx, lambda: _connect(srv, token))
    assert conn is conn2
    del ctx  # the session's context is gone (marimo tore the session down)
    gc.collect()
    wait_until(lambda: conn.status is rtnb.Status.CLOSED)


class _Doc:
    """Stands for a Bokeh Document served by ``panel serve`` (one per browser session)."""

    def __init__(self, ident: str | None) -> None:
        self.session_context = None if ident is None else types.SimpleNamespace(id=ident)
        self.destroyed: list[Any] = []

    def on_session_destroyed(self, cb: Any) -> None:
        self.destroyed.append(cb)


@pytest.fixture
def fake_panel(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    state = types.SimpleNamespace(curdoc=None)
    state_mod = types.ModuleType("panel.io.state")
    state_mod.state = state  # type: ignore[attr-defined]
    for name in ("panel", "panel.io"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "panel.io.state", state_mod)
    return state


def test_two_panel_sessions_get_two_connections_and_a_destroyed_session_closes_its_own(
    srv: ServerHandle, fake_panel: types.SimpleNamespace
) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    one, two = _Doc("s-1"), _Doc("s-2")
    fake_panel.curdoc = one
    a = _connect(srv, token)
    assert _connect(srv, token) is a
    fake_panel.curdoc = two
    b = _connect(srv, token)
    try:
        assert b is not a
        assert len(one.destroyed) == 1  # one hook per session, however many connects
        for cb in one.destroyed:
            cb(None)  # panel: the first visitor left
        wait_until(lambda: a.status is rtnb.Status.CLOSED)
        assert b.status is rtnb.Status.SUBSCRIBED
    finally:
        b.close()


def test_panel_in_a_notebook_kernel_is_one_session(
    srv: ServerHandle, fake_panel: types.SimpleNamespace
) -> None:
    fake_panel.curdoc = _Doc(None)  # pn.extension() in Jupyter: no server session
    assert hosts.session_key() == ""
    token = srv.issue_token(tenant="acme", user="ana")
    a = _connect(srv, token)
    b = _connect(srv, token)
    assert a is b
    a.close()
    b.close()


def test_without_a_multi_session_host_the_process_is_the_session() -> None:
    assert hosts.session_key() == ""

"""The awaitable half of the API, against the real reference server over real sockets.

Every documented ``*_async`` is called here from a caller's own event loop
(``asyncio.run``, as a notebook's loop would be), alongside ``connect_async``,
``async with`` / ``with`` on ``Connection``, ``Replay`` and ``ServerHandle``, and
the errors a caller can catch as :class:`rtnb.RtnbError`.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

import rtnb
from rtnb.client.connection import _registry
from rtnb.server import ServerHandle, serve
from tests.client.conftest import HEARTBEAT
from tests.conftest import wait_until

SHIPPED = Path(__file__).parents[2] / "notebooks" / "data" / "chaos_run.parquet"


def _open(srv: ServerHandle, entity: str = "inc-1") -> None:
    srv.publish("incidents", "incident.opened", {"status": "open"}, tenant="acme", entity_id=entity)


def test_connect_async_has_the_signature_and_the_documented_parameters_of_connect() -> None:
    params = inspect.signature(rtnb.connect).parameters
    assert inspect.signature(rtnb.connect_async).parameters == params
    assert inspect.iscoroutinefunction(rtnb.connect_async)
    assert rtnb.connect_async.__qualname__ == "connect_async"
    doc = inspect.getdoc(rtnb.connect_async) or ""
    assert doc.startswith("The awaitable form of :func:`connect`")
    for name in params:
        assert f"    {name}: " in doc, name
    assert "Raises:" in doc and "shared=False" in doc


def test_connect_async_subscribe_mutate_wait_unsubscribe_and_close_async(
    srv: ServerHandle,
) -> None:
    _open(srv)
    token = srv.issue_token(tenant="acme", user="ana", role="operator")

    async def main() -> tuple[rtnb.Connection, str, dict[str, object]]:
        conn = await rtnb.connect_async(
            srv.url, token=token, heartbeat_interval=HEARTBEAT, shared=True, timeout=10
        )
        assert conn.status is rtnb.Status.SUBSCRIBED
        assert await conn.wait_for_async("subscribed", timeout=1) == conn.state
        topic = await conn.subscribe_async("incidents")
        await asyncio.to_thread(wait_until, lambda: len(topic) == 1)
        mutation = await topic.mutate_async("inc-1", {"status": "ack"})
        assert await mutation.wait_async(10, raise_on_failure=True) is mutation
        truth = await srv.truth_async("incidents", tenant="acme")
        await topic.unsubscribe_async()
        assert "incidents" not in conn.topics
        await conn.close_async()
        return conn, mutation.status, truth["inc-1"]

    conn, status, truth = asyncio.run(main())
    assert status == "confirmed" and truth["status"] == "ack"
    assert conn.status is rtnb.Status.CLOSED
    # close_async does all close does: the shared registry forgets the connection
    assert all(c is not conn for c in _registry.values())


def test_async_with_closes_the_connection_and_publish_async_reaches_it(srv: ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")

    async def main() -> rtnb.Connection:
        async with await rtnb.connect_async(
            srv.url, token=token, heartbeat_interval=HEARTBEAT, shared=False, timeout=10
        ) as conn:
            topic = await conn.subscribe_async("incidents")
            event = await srv.publish_async(
                "incidents", "incident.opened", {"status": "open"}, tenant="acme", entity_id="a"
            )
            await asyncio.to_thread(wait_until, lambda: topic.get("a") is not None)
            assert event.entity_id == "a"
        return conn

    conn = asyncio.run(main())
    assert conn.status is rtnb.Status.CLOSED


def test_with_closes_the_connection(srv: ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    with rtnb.connect(srv.url, token=token, shared=False, timeout=10) as conn:
        assert conn.status is rtnb.Status.SUBSCRIBED
    assert conn.status is rtnb.Status.CLOSED


@pytest.mark.slow
def test_wait_for_timeouts_are_rtnb_errors_and_still_timeout_errors() -> None:
    with serve(port=0, heartbeat_interval=HEARTBEAT) as srv:
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        conn = rtnb.connect(srv.url, token=token, shared=False, timeout=10)
        try:
            with pytest.raises(rtnb.WaitTimeout, match=r"not closed within 0\.2 s") as sync_err:
                conn.wait_for("closed", timeout=0.2)
            assert isinstance(sync_err.value, rtnb.RtnbError)
            assert isinstance(sync_err.value, TimeoutError)

            async def waits() -> None:
                await conn.wait_for_async("closed", timeout=0.2)

            with pytest.raises(rtnb.WaitTimeout, match=r"not closed within 0\.2 s"):
                asyncio.run(waits())
        finally:
            conn.close()
        with pytest.raises(rtnb.ConnectionClosed) as closed:
            conn.wait_for("subscribed", timeout=1)
        assert isinstance(closed.value, rtnb.RtnbError)


def test_a_rejected_mutation_raises_mutation_error_sync_and_async(srv: ServerHandle) -> None:
    _open(srv)
    token = srv.issue_token(tenant="acme", user="vi", role="viewer")

    async def main() -> None:
        async with await rtnb.connect_async(
            srv.url, token=token, heartbeat_interval=HEARTBEAT, shared=False, timeout=10
        ) as conn:
            topic = await conn.subscribe_async("incidents")
            await asyncio.to_thread(wait_until, lambda: len(topic) == 1)
            mutation = await topic.mutate_async("inc-1", {"status": "ack"})
            with pytest.raises(rtnb.MutationError, match="rejected"):
                await mutation.wait_async(10, raise_on_failure=True)
            assert mutation.status == "rejected"
            with pytest.raises(rtnb.MutationError, match="rejected"):
                mutation.wait(1, raise_on_failure=True)

    asyncio.run(main())
    assert issubclass(rtnb.MutationError, rtnb.RtnbError)


def test_server_handle_async_with_stops_the_server() -> None:
    async def main() -> ServerHandle:
        async with serve(port=0) as srv:
            await srv.publish_async("items", "item.added", {"n": 1}, tenant="t", entity_id="x")
            assert (await srv.truth_async("items", tenant="t"))["x"]["n"] == 1
        return srv

    srv = asyncio.run(main())
    assert not srv.running
    with pytest.raises(rtnb.ServerStopped, match="stopped") as caught:  # an RtnbError
        srv.publish("items", "item.added", {"n": 2}, tenant="t", entity_id="y")
    assert isinstance(caught.value, RuntimeError)  # as before issue 21


def test_server_handle_with_stops_the_server() -> None:
    with serve(port=0) as srv:
        assert srv.running
    assert not srv.running


def test_replay_subscribe_async_seek_async_and_async_with() -> None:
    log = rtnb.EnvelopeLog.read_parquet(SHIPPED)
    received = log.envelopes["received_at"]
    mid = received.iloc[len(received) // 2]

    async def main() -> tuple[rtnb.Replay, dict[str, object], dict[str, object]]:
        async with rtnb.replay(log, speed=None, paused=True) as rep:
            fleet = await rep.subscribe_async("fleet")
            await rep.seek_async(mid)
            assert rep.position_s == pytest.approx(mid.timestamp(), abs=1e-6)
            at_mid = dict(fleet.server_entities)
            await rep.seek_async(rep.end)
            at_end = dict(fleet.server_entities)
            await rep.seek_async(mid.isoformat())
            assert fleet.server_entities == at_mid
        return rep, at_mid, at_end

    rep, at_mid, at_end = asyncio.run(main())
    assert at_mid != at_end
    with rtnb.replay(log, speed=None, paused=True) as again:
        again.subscribe("fleet")
        again.seek(again.end)
        assert again.topics["fleet"].server_entities == at_end
    assert rep is not again

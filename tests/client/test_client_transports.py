"""Transport fallback and a misbehaving server: the connection survives, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

import rtnb
from rtnb.server import ServerHandle
from tests.client.conftest import HEARTBEAT, publish
from tests.conftest import wait_until


class _LoopThread:
    """An asyncio loop in a thread for tiny test servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def stop(self, server: object) -> None:
        async def close() -> None:
            server.close()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)  # type: ignore[attr-defined]

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def websocket_blocking_proxy(target_port: int) -> Iterator[str]:
    """A TCP proxy that refuses WebSocket upgrades with 403, like some corporate proxies."""
    lt = _LoopThread()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"upgrade: websocket" in head.lower():
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        up_writer.write(head)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0)

    server = lt.run(start())
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        lt.stop(server)


def test_auto_falls_back_to_sse_when_websocket_is_refused(srv: ServerHandle) -> None:
    publish(srv, 4)
    with websocket_blocking_proxy(srv.port) as url:
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        conn = rtnb.connect(url, token=token, heartbeat_interval=HEARTBEAT, shared=False)
        try:
            conn.wait_for("subscribed", 15)
            assert conn.transport == "sse"
            topic = conn.subscribe("incidents")
            wait_until(lambda: topic.entities == srv.truth("incidents", tenant="acme"))
            reasons = " ".join(conn.log.states["reason"])
            assert "websocket rejected (403)" in reasons
        finally:
            conn.close()


# -- a misbehaving server -----------------------------------------------------------------

GOOD = {
    "op": "event",
    "type": "thing.updated",
    "topic": "things",
    "entityId": "t-1",
    "occurredAt": "2026-11-27T22:00:00Z",
    "payload": {"v": 1},
}
BAD_FRAMES: list[str | bytes] = [
    "{not json",
    json.dumps({**GOOD, "id": "bad-1", "sequence": "two", "replayToken": "r"}),
    json.dumps({"op": "teleport", "where": "mars"}),
    json.dumps([1, 2, 3]),
    "x" * (1024 * 1024 + 10),
    b"\x00\x01binary",
    json.dumps({**GOOD, "id": "bad-2", "sequence": 2, "replayToken": "r", "occurredAt": "noon"}),
]


def _good(seq: int) -> str:
    return json.dumps({**GOOD, "id": f"good-{seq}", "sequence": seq, "replayToken": f"r{seq}"})


@pytest.fixture
def bad_server() -> Iterator[str]:
    lt = _LoopThread()

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["op"] == "authenticate":
                await ws.send(
                    json.dumps(
                        {"op": "authenticated", "tenant": "t", "user": "u", "role": "viewer",
                         "expiresAt": 4102444800.0}
                    )
                )  # fmt: skip
            elif frame["op"] == "subscribe":
                await ws.send(json.dumps({"op": "subscribed", "topic": "things", "replay": "none"}))
                await ws.send(
                    json.dumps({"op": "snapshot", "topic": "things", "entities": [], "sequence": 0})
                )
                await ws.send(_good(1))
                for bad in BAD_FRAMES:
                    await ws.send(bad)
                await ws.send(_good(2))
                await ws.send(json.dumps({"op": "heartbeat", "serverTime": 0.0}))

    async def start() -> object:
        return await ws_serve(handler, "127.0.0.1", 0, max_size=None)

    server = lt.run(start())
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        lt.stop(server)


def test_every_bad_frame_is_logged_invalid_and_the_connection_survives(bad_server: str) -> None:
    conn = rtnb.connect(bad_server, token="t", transport="websocket", shared=False)
    try:
        conn.wait_for("subscribed", 10)
        topic = conn.subscribe("things")
        wait_until(lambda: topic._state.applied == 2)
        counts = conn.log.counts
        assert counts["invalid"] == len(BAD_FRAMES)
        assert counts["applied"] == 2
        assert topic.get("t-1") == {"v": 1}
        errors = list(conn.log.envelopes.query("outcome == 'invalid'")["error"])
        assert any("$.sequence" in e for e in errors)
        assert any("exceeds the 1,048,576-byte limit" in e for e in errors)
        assert any("$.op" in e for e in errors)
        assert conn.state.status is rtnb.Status.SUBSCRIBED
    finally:
        conn.close()

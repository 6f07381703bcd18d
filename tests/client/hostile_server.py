"""A hostile rtnb peer: speaks the protocol wrongly on purpose (run as a subprocess).

``python tests/client/hostile_server.py BEHAVIOUR`` serves on a free port of
127.0.0.1 and prints ``PORT <n>`` once listening. It runs in its own process
so the client's memory can be measured (tracemalloc) without the attacker's
own buffers. Behaviours, all on topic ``things``:

``endless-parts``
    (WS) a snapshot in parts marked ``more: true``, forever: the same 1,000 entities.
``endless-parts-new``
    (WS) as ``endless-parts``, each part 1,000 new entities.
``many-entities``
    (WS) a snapshot, then events of ~1 KB, each for a new entity, forever.
``wide-entity``
    (WS) a snapshot, then events on one entity, each adding 500 new fields, forever.
``poll-many``
    (polling) every poll is answered ``subscribed`` and then 2,000,000 tiny messages
    (``{}``, 6 MB: far under the 64 MiB byte cap).
``huge-sequence`` / ``sequence-2-62``
    (WS) snapshot at 5, event 6, then a snapshot claiming sequence
    10,000,000 (or 2**62): a gap nobody can fill.
``deep-json``
    (WS) a frame nested 100,000 deep, then a good event.
``endless-gap`` / ``endless-gap-big``
    (WS) event 1, then 3, 5, 7, …: a gap before every event, forever (also
    after each re-subscription); ``-big``: each event carries 100 KB.
``oversized``
    (WS) frames of 2 MiB (over the 1 MiB protocol limit) then a good event,
    then one frame of 20 MiB (over the socket limit).
``sse-no-blank``
    (SSE) ``data:`` lines and never a blank line.
``sse-no-newline``
    (SSE) one line that never ends.
``sse-deep-json``
    (SSE) a message nested 100,000 deep, then a good event; the stream stays open.
``poll-endless``
    (polling) a response body that never ends.
``probe-endless``
    (SSE or polling) even the probe (a poll naming no topic, sent when the client
    opens with nothing subscribed) gets a body that never ends. Other behaviours
    answer the probe as the reference server does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

TOPIC = "things"
BEHAVIOUR = sys.argv[1] if len(sys.argv) > 1 else "endless-parts"
CHUNK = 64 * 1024


def event(seq: int, entity: str = "t-1") -> str:
    return json.dumps(
        {
            "op": "event",
            "id": f"evt-{seq}",
            "type": "thing.updated",
            "topic": TOPIC,
            "entityId": entity,
            "sequence": seq,
            "occurredAt": "2026-11-27T22:00:00Z",
            "replayToken": f"tok-{seq}",
            "payload": {"v": seq},
        }
    )


def snapshot(seq: int, entities: list[tuple[str, int]], *, more: bool = False) -> str:
    return json.dumps(
        {
            "op": "snapshot",
            "topic": TOPIC,
            "entities": [{"entityId": e, "state": {"v": s}, "sequence": s} for e, s in entities],
            "sequence": seq,
            "token": f"tok-{seq}",
            "more": more,
        }
    )


def subscribed(replay: str = "none", latest: int | None = None) -> str:
    frame: dict[str, Any] = {"op": "subscribed", "topic": TOPIC, "replay": replay}
    if latest is not None:
        frame["latestSequence"] = latest
    return json.dumps(frame)


POLL_MANY = (
    b'{"messages": [' + subscribed().encode() + b",{}" * 2_000_000 + b'], "cursor": ""}'
    if BEHAVIOUR == "poll-many"
    else b""
)
DEEP = '{"op":"event","payload":{"a":' + "[" * 100_000 + "]" * 100_000 + "}}"
AUTHENTICATED = json.dumps(
    {"op": "authenticated", "tenant": "t", "user": "u", "role": "viewer", "expiresAt": 4102444800.0}
)


async def ws_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    state = {"next": 1}
    try:
        while True:
            frame = json.loads(await ws.receive_text())
            if frame["op"] == "authenticate":
                await ws.send_text(AUTHENTICATED)
            elif frame["op"] == "subscribe":
                await attack(ws, frame, state)
    except Exception:  # the client went away (or reset us): the attack is over
        return


async def attack(ws: WebSocket, frame: dict[str, Any], state: dict[str, int]) -> None:
    if BEHAVIOUR == "endless-parts":
        await ws.send_text(subscribed())
        part = snapshot(1, [(f"e-{i}", 1) for i in range(1000)], more=True)
        while True:
            await ws.send_text(part)
    elif BEHAVIOUR == "endless-parts-new":
        await ws.send_text(subscribed())
        for k in itertools.count():
            await ws.send_text(snapshot(1, [(f"e-{k}-{i}", 1) for i in range(1000)], more=True))
    elif BEHAVIOUR in ("many-entities", "wide-entity"):
        await ws.send_text(subscribed())
        await ws.send_text(snapshot(0, []))
        pad = "x" * 1000
        for seq in itertools.count(1):
            if BEHAVIOUR == "many-entities":
                payload: dict[str, Any] = {"pad": pad}
                entity = f"e-{seq}"
            else:
                payload = {f"f{seq}-{i}": i for i in range(500)}
                entity = "wide"
            frame = json.loads(event(seq, entity))
            frame["payload"] = payload
            await ws.send_text(json.dumps(frame))
            if seq % 50 == 0:
                await asyncio.sleep(0)
    elif BEHAVIOUR in ("huge-sequence", "sequence-2-62"):
        await ws.send_text(subscribed())
        await ws.send_text(snapshot(5, [("a", 5)]))
        await ws.send_text(event(6))
        claim = 10_000_000 if BEHAVIOUR == "huge-sequence" else 2**62
        await ws.send_text(snapshot(claim, [("a", claim), ("b", claim)]))
        await ws.send_text(event(claim + 1, "b"))
    elif BEHAVIOUR == "deep-json":
        await ws.send_text(subscribed())
        await ws.send_text(snapshot(0, []))
        await ws.send_text(DEEP)
        await ws.send_text(event(1))
    elif BEHAVIOUR in ("endless-gap", "endless-gap-big"):
        if frame.get("replayFrom") is None:
            await ws.send_text(subscribed())
            await ws.send_text(snapshot(0, []))
            await ws.send_text(event(1))
        else:  # a re-subscription: claim the replay is complete, keep skipping
            await ws.send_text(subscribed("complete", latest=state["next"] + 1))
        pad = "x" * 100_000 if BEHAVIOUR == "endless-gap-big" else ""
        while True:
            state["next"] += 2
            frame = event(state["next"])
            if pad:  # in the payload, which the client keeps while the event waits
                frame = frame.replace('"payload": {', f'"payload": {{"pad": "{pad}", ', 1)
            await ws.send_text(frame)
            if state["next"] % 200 == 1 or pad:
                await asyncio.sleep(0)  # let the re-subscription in
    elif BEHAVIOUR == "oversized":
        await ws.send_text(subscribed())
        await ws.send_text(snapshot(0, []))
        for _ in range(5):
            await ws.send_text('{"op":"event","pad":"' + "x" * (2 << 20) + '"}')
        await ws.send_text(event(1))
        await ws.send_text('{"op":"event","pad":"' + "x" * (20 << 20) + '"}')


async def endless(request: Request, piece: Any) -> AsyncIterator[Any]:
    """``piece`` forever, until the client goes away (checked between pieces, so
    one dead stream never starves the loop and new connections are served)."""
    while not await request.is_disconnected():
        yield piece
        await asyncio.sleep(0)


async def sse_endpoint(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        yield f"event: subscribed\ndata: {subscribed()}\n\n"
        if BEHAVIOUR == "sse-deep-json":
            yield f"event: snapshot\ndata: {snapshot(0, [])}\n\n"
            yield f"data: {DEEP}\n\n"
            yield f"data: {event(1)}\n\n"
            while not await request.is_disconnected():
                yield ": still here\n\n"
                await asyncio.sleep(0.2)
            return
        if BEHAVIOUR == "sse-no-blank":
            piece = ("data: " + "x" * 1000 + "\n") * 64
        else:
            yield "data: "
            piece = "x" * CHUNK
        async for chunk in endless(request, piece):
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream")


async def poll_endpoint(request: Request) -> Response:
    if not request.query_params.getlist("topic") and BEHAVIOUR != "probe-endless":
        # the client's probe (a poll naming no topic): answered as a server would
        return Response(
            '{"messages":[{"op":"authenticated","tenant":"t","user":"u","role":"viewer",'
            '"expiresAt":4102444800}],"cursor":""}',
            media_type="application/json",
        )

    if BEHAVIOUR == "poll-many":
        return Response(POLL_MANY, media_type="application/json")

    async def body() -> AsyncIterator[bytes]:
        yield b'{"messages": [' + subscribed().encode()
        async for chunk in endless(request, (b", " + snapshot(0, [("a", 0)]).encode()) * 64):
            yield chunk

    return StreamingResponse(body(), media_type="application/json")


app = Starlette(
    routes=[
        WebSocketRoute("/ws", ws_endpoint),
        Route("/sse", sse_endpoint),
        Route("/poll", poll_endpoint),
    ]
)


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="error", ws_max_size=64 << 20, lifespan="off")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # announce the port only once it accepts connections
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print(f"PORT {port}", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()

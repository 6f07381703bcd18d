"""The client's CPU per event on recorded frames, without the network or a server running.

``python -m bench._recorded capture`` records, from a server process of its own
(``bench/_table_server.py``), the WebSocket frames of 60,000 events published in
``publish_many`` batches of 500 (end_to_end's max-rate load) and the raw chunks of an
``/sse`` stream of 30,000 such events, into ``RECORDED``. ``python -m bench._recorded``
then prints, as thread CPU per event (best of several rounds):

* the WebSocket batch frames through ``Pipeline.feed`` with a real ``EnvelopeLog``;
* the SSE chunks through ``SSEParser``, ``SSETransport._dispatch`` and a ``ClientSession``
  (a scripted transport answers the handshake; the flight recorder installed as a
  ``Connection`` installs it): what the client's runtime thread does per SSE chunk.

Live runs on a shared 2-core box swing more than most changes (the server and other
processes compete for the cores), so compare trees with these: record once, then run
``PYTHONPATH=<tree> python -m bench._recorded`` alternately (the script runs against older
trees too).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import sys
import threading
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect

from bench.end_to_end import Bench, Load
from rtnb.client.flight import FLIGHT_BYTES, FLIGHT_SECONDS, FlightRecorder
from rtnb.client.session import ClientSession
from rtnb.core.backoff import Backoff
from rtnb.core.dedupe import Deduper
from rtnb.core.machine import MachineConfig
from rtnb.core.pipeline import Pipeline
from rtnb.core.status import Status
from rtnb.protocol.frames import Authenticate, Authenticated, Snapshot, Subscribe, Subscribed
from rtnb.protocol.sse import SSEParser
from rtnb.protocol.urls import ws_url
from rtnb.telemetry import EnvelopeLog
from rtnb.transports.base import TransportOptions
from rtnb.transports.sse import SSETransport

RECORDED = "/tmp/rtnb-recorded.pkl"


def capture() -> None:
    bench = Bench()
    frames: list[Any] = []
    chunks: list[bytes] = []
    try:
        topic, token = bench.topic("ws"), bench.token("rec")
        ready = threading.Event()

        async def ws() -> None:
            async with ws_connect(ws_url(bench.url), max_size=None, compression=None) as conn:
                await conn.send(json.dumps({"op": "authenticate", "token": token}))
                await conn.recv()
                await conn.send(json.dumps({"op": "subscribe", "topic": topic}))
                ready.set()
                got = 0
                async for msg in conn:
                    frames.append(msg)
                    got += msg.count('"op":"event"')
                    if got >= 60_000:
                        break

        th = threading.Thread(target=lambda: asyncio.run(ws()))
        th.start()
        ready.wait(10)
        time.sleep(0.3)
        bench.publish(topic, Load(n=60_000))
        th.join()
        bench.published()
        sse_topic = bench.topic("sse")
        ready.clear()

        def sse() -> None:
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            with httpx.stream(
                "GET", bench.url + "/sse", params={"topic": sse_topic}, headers=headers, timeout=60
            ) as r:
                ready.set()
                got = 0
                for chunk in r.iter_raw():
                    chunks.append(chunk)
                    got += chunk.count(b'"op":"event"')
                    if got >= 30_000:
                        break

        th = threading.Thread(target=sse)
        th.start()
        ready.wait(10)
        time.sleep(0.3)
        bench.publish(sse_topic, Load(n=30_000))
        th.join()
        bench.published()
    finally:
        bench.stop()
    batch = [f for f in frames if '"op":"batch"' in f[:30]]
    with open(RECORDED, "wb") as out:
        pickle.dump({"ws": batch, "sse_topic": sse_topic, "sse": chunks[1:]}, out)
    print(f"recorded {len(batch)} batch frames and {len(chunks) - 1} SSE chunks in {RECORDED}")


def pipeline_us(frames: list[str], rounds: int = 7) -> float:
    n = sum(f.count('"op":"event"') for f in frames)
    match = re.search(r'"topic":"([^"]+)"', frames[0])
    assert match is not None
    topic = match.group(1)
    best = float("inf")
    for _ in range(rounds):
        p = Pipeline(EnvelopeLog())
        ts = p.add_topic(topic)
        ts.orderer.next_seq = 1  # type: ignore[attr-defined]
        t0 = time.thread_time()
        for f in frames:
            p.feed(f, time.time())
        best = min(best, time.thread_time() - t0)
        assert ts.applied == n, (ts.applied, n)
    return best / n * 1e6


class _Transport:
    """Answers authenticate and subscribe (an empty snapshot at sequence 0)."""

    kind = "websocket"

    def __init__(self, on_frame: Any) -> None:
        self.on_frame = on_frame

    async def open(self, token: str) -> None:
        pass

    async def send(self, frame: Any) -> None:
        replies: list[Any] = []
        if isinstance(frame, Authenticate):
            replies = [Authenticated(tenant="t", user="u", role="viewer", expires_at=time.time() + 3600)]  # fmt: skip
        elif isinstance(frame, Subscribe):
            replies = [
                Subscribed(topic=frame.topic, replay="none"),
                Snapshot(topic=frame.topic, entities=[], token="tok-0", sequence=0),
            ]
        from rtnb.protocol.codec import encode

        for reply in replies:
            asyncio.get_running_loop().call_soon(self.on_frame, encode(reply), time.time())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class _Source:
    def __init__(self, session: ClientSession) -> None:
        self.topic_states = session.pipeline.topics
        self.add_tap = session.add_tap

    def call(self, fn: Any, *, what: str) -> Any:
        return fn()


async def _sse_once(topic: str, chunks: list[bytes]) -> float:
    n = sum(c.count(b'"op":"event"') for c in chunks)
    session = ClientSession(
        "http://recorded.invalid:1",
        "token",
        transport="websocket",
        log=EnvelopeLog(),
        backoff=Backoff(),
        machine_config=MachineConfig(transport="websocket"),
        options=TransportOptions(),
        on_degraded="queue",
        dedupe=Deduper(),
        make_transport=lambda action, on_frame, on_close: _Transport(on_frame),
    )
    await session.start()
    ts = session.subscribe(topic, "sequence", None, 600.0)
    await session.wait_for(Status.SUBSCRIBED, 5)
    deadline = time.monotonic() + 5
    while ts.orderer.position() is None:
        assert time.monotonic() < deadline, "no snapshot"
        await asyncio.sleep(0.005)
    FlightRecorder(_Source(session), FLIGHT_BYTES, FLIGHT_SECONDS).install()  # type: ignore[arg-type]
    binds: tuple[Any, ...] = session._bind({"t": session._transport})
    kw: dict[str, Any] = {"on_frames": binds[1]} if len(binds) == 3 else {}
    transport = SSETransport(
        "http://recorded.invalid:1", binds[0], lambda *a: None, TransportOptions(), (),
        lambda t: None, **kw,
    )  # fmt: skip
    parser = SSEParser()
    parse = getattr(parser, "feed_tuples", parser.feed)  # (older trees: feed)
    t0 = time.thread_time()
    for chunk in chunks:
        transport._dispatch(parse(chunk))
    elapsed = time.thread_time() - t0
    assert ts.applied == n, (ts.applied, n)
    await session.close()
    return elapsed / n * 1e6


def main() -> None:
    if sys.argv[1:] == ["capture"]:
        capture()
        return
    with open(RECORDED, "rb") as f:
        rec = pickle.load(f)
    ws = pipeline_us(rec["ws"])
    sse = min(asyncio.run(_sse_once(rec["sse_topic"], rec["sse"])) for _ in range(5))
    print(
        f"batch frames → Pipeline.feed: {ws:.2f} µs/event; SSE chunks → session: {sse:.2f} µs/event"
    )


if __name__ == "__main__":
    main()

"""``ClientSession`` without a network: a scripted fake transport plays the server.

The fake implements :class:`rtnb.transports.base.Transport` (``open`` /
``send`` / ``close`` plus the ``on_frame`` / ``on_close`` callbacks) and is
handed to the session through ``make_transport``. Everything else is the
shipped runtime: machine, pipeline, backoff timers, token handling, log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rtnb.client.session import ClientSession
from rtnb.core.backoff import Backoff
from rtnb.core.dedupe import Deduper
from rtnb.core.machine import MachineConfig, OpenTransport
from rtnb.core.status import Status
from rtnb.protocol.frames import Authenticate, Authenticated, Subscribe, Subscribed
from rtnb.telemetry import EnvelopeLog
from rtnb.transports.base import TransportError, TransportOptions
from tests.helpers import event, snapshot, wire

TOKEN = "tok-fake-SECRET"


class FakeTransport:
    """One connection attempt to the scripted server."""

    kind = "websocket"

    def __init__(
        self, server: FakeServer, on_frame: Callable[..., None], on_close: Callable[..., None]
    ):
        self.server = server
        self.on_frame = on_frame
        self.on_close = on_close
        self.sent: list[Any] = []
        self.closed = False

    async def open(self, token: str) -> None:
        self.server.opened.append(token)
        if self.server.refuse_opens > 0:
            self.server.refuse_opens -= 1
            raise TransportError("unreachable", "connection refused (fake)")

    async def send(self, frame: Any) -> None:
        self.sent.append(frame)
        self.server.received.append(frame)
        loop = asyncio.get_running_loop()
        for reply in self.server.answer(frame):
            loop.call_soon(self.push, reply)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True

    def push(self, frame: Any) -> None:
        if not self.closed:
            self.on_frame(wire(frame), time.time())

    def drop(self, code: int, reason: str) -> None:
        """The server closes this connection."""
        self.closed = True
        self.on_close(code, reason, None)


class FakeServer:
    """Answers authenticate and subscribe; keeps a topic log the test appends to."""

    def __init__(self, refuse_opens: int = 0) -> None:
        self.refuse_opens = refuse_opens
        self.opened: list[str] = []
        self.received: list[Any] = []
        self.transports: list[FakeTransport] = []
        self.log = [event(n, entity=f"e{n % 3}") for n in range(1, 6)]

    def make(
        self, action: OpenTransport, on_frame: Callable[..., None], on_close: Callable[..., None]
    ):
        assert action.kind == "websocket"
        transport = FakeTransport(self, on_frame, on_close)
        self.transports.append(transport)
        return transport

    def answer(self, frame: Any) -> list[Any]:
        if isinstance(frame, Authenticate):
            return [
                Authenticated(
                    tenant="acme", user="ana", role="viewer", expires_at=time.time() + 3600,
                    heartbeat_interval=60.0,
                )
            ]  # fmt: skip
        if isinstance(frame, Subscribe):
            if frame.replay_from is None:  # a first subscription: a snapshot of the log
                state = {e.entity_id: e.payload for e in self.log}
                seq = self.log[-1].sequence
                return [
                    Subscribed(topic=frame.topic, replay="none"),
                    snapshot(frame.topic, seq, state),
                ]
            after = int(frame.replay_from.rsplit("-", 1)[1])
            missed = [e for e in self.log if e.sequence > after]
            return [Subscribed(topic=frame.topic, replay="complete"), *missed]
        return []


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def run(server: FakeServer, script: Callable[[ClientSession], Awaitable[None]]) -> ClientSession:
    async def main() -> ClientSession:
        session = ClientSession(
            "http://fake.invalid:1",
            TOKEN,
            transport="websocket",
            log=EnvelopeLog(),
            backoff=Backoff(base=0.02, cap=0.05),
            machine_config=MachineConfig(transport="websocket"),
            options=TransportOptions(),
            on_degraded="queue",
            dedupe=Deduper(),
            make_transport=server.make,
        )
        await session.start()
        try:
            await script(session)
        finally:
            await session.close()
        return session

    return asyncio.run(main())


def test_a_session_authenticates_subscribes_and_applies_the_snapshot_and_events() -> None:
    server = FakeServer()

    async def script(session: ClientSession) -> None:
        topic = session.subscribe("incidents", "sequence", None, 5.0)
        await session.wait_for(Status.SUBSCRIBED, 5)
        await until(lambda: topic.store.views() == {e.entity_id: e.payload for e in server.log})
        new = event(6, entity="e9", payload={"n": 6})
        server.log.append(new)
        server.transports[-1].push(new)
        await until(lambda: topic.store.view("e9") == {"n": 6})
        assert topic.last_token == new.replay_token

    session = run(server, script)
    assert server.opened == [TOKEN]
    assert [type(f).__name__ for f in server.received] == ["Authenticate", "Subscribe"]
    assert session.machine.status is Status.CLOSED
    assert session.log.counts["applied"] == 1


def test_after_refused_opens_and_a_4429_drop_it_resubscribes_from_its_last_token() -> None:
    server = FakeServer(refuse_opens=2)

    async def script(session: ClientSession) -> None:
        topic = session.subscribe("incidents", "sequence", None, 5.0)
        await session.wait_for(Status.SUBSCRIBED, 5)
        assert session.machine.attempt == 2  # two refused opens, counted by the schedule
        await until(lambda: topic.last_token == server.log[-1].replay_token)
        first = server.transports[-1]
        server.log += [
            event(6, entity="e1", payload={"n": 6}),
            event(7, entity="e2", payload={"n": 7}),
        ]
        first.drop(4429, "rate limited; retry_after=0.05")
        state = session.state
        assert state.status is Status.RECONNECTING and "retry_after" not in state.reason
        assert state.reason.startswith("server asked to retry in 0.1 s (4429)"), state.reason
        assert state.next_retry_at is not None
        assert state.next_retry_at - state.since >= 0.05  # the hint is a minimum
        await until(
            lambda: len(server.transports) == 4 and session.state.status is Status.SUBSCRIBED
        )
        await until(lambda: topic.store.view("e2") == {"n": 7})
        resubscribe = [f for f in server.transports[-1].sent if isinstance(f, Subscribe)]
        assert [s.replay_from for s in resubscribe] == ["tok-incidents-5"]
        assert topic.store.views() == {e.entity_id: e.payload for e in server.log}

    session = run(server, script)
    assert server.opened == [TOKEN] * 4
    counts = session.log.counts
    assert counts["applied"] == 2, counts  # 6 and 7, once each: no gap, no duplicate
    assert counts["duplicate"] == 0 and session.log.summary()["reconnects"] >= 1, counts
    assert TOKEN not in repr(session.state) and TOKEN not in session.log.states.to_string()

"""A chunk's frames handed to the session at once (``on_frames``, what the SSE
transport does per received chunk) end exactly as each frame handed alone
(``on_frame``): log rows, topic state, liveness, what taps saw (and when) and the
flight recorder's contents, seeds included. The sessions run over the scripted fake
transport of ``test_session_fake_transport``; the frames are random (events in and
out of order, duplicates, gaps, batches, heartbeats, errors, unknown topics, invalid
JSON) and so is the chunking."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtnb.client.flight import FlightRecorder
from rtnb.client.session import ClientSession
from rtnb.core.backoff import Backoff
from rtnb.core.dedupe import Deduper
from rtnb.core.machine import MachineConfig
from rtnb.core.status import Status
from rtnb.protocol.frames import Batch, Error, Heartbeat
from rtnb.telemetry import EnvelopeLog
from rtnb.transports.base import TransportOptions
from tests.client.test_session_fake_transport import TOKEN, FakeServer, until
from tests.helpers import event, wire

TOPIC = "incidents"


class Source:
    """What the flight recorder asks of a connection, over a bare session."""

    def __init__(self, session: ClientSession) -> None:
        self.topic_states = session.pipeline.topics
        self.add_tap = session.add_tap

    def call(self, fn: Any, *, what: str) -> Any:
        return fn()


def _event(draw: st.DrawFn) -> Any:
    seq = draw(st.integers(1, 14))
    topic = draw(st.sampled_from([TOPIC, TOPIC, TOPIC, "unknown"]))
    return event(seq, topic=topic, entity=f"e{draw(st.integers(0, 3))}", payload={"n": seq})


@st.composite
def frames(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.sampled_from(["event", "event", "event", "batch", "hb", "error", "bad"]))
    if kind == "event":
        return wire(_event(draw))
    if kind == "batch":
        return wire(Batch(messages=[_event(draw) for _ in range(draw(st.integers(1, 5)))]))
    if kind == "hb":
        return wire(Heartbeat(server_time=time.time()))
    if kind == "error":
        return wire(Error(code="bad_request", message="nope", topic="elsewhere"))
    return '{"op": "event", "id": '


def _state(
    session: ClientSession, taps: list[Any], flight: FlightRecorder, start: float
) -> dict[str, Any]:
    ts = session.pipeline.topics[TOPIC]
    at = ts.last_event_at
    items, seeded, skipped, total = flight._copy()
    held = [tuple(bytes(x) if type(x).__name__ == "Seed" else x for x in item) for item in items]
    rows = repr(session.log.envelopes.to_dict("records"))  # (NaN == NaN in a repr)
    return {
        "entities": ts.store.entities,
        "sequences": ts.store.sequences,
        "nbytes": ts.store.nbytes,
        "counters": (ts.applied, ts.unrecoverable, ts.status, ts.last_token),
        # (the snapshot before the frames set it at the wall-clock time)
        "last_event_at": at if at is not None and at >= start else "before",
        "position": ts.orderer.position(),
        "last_seen": session.machine._liveness.last_seen,
        "rows": rows,
        "counts": dict(session.log.counts),
        "taps": taps,
        "flight": (held, seeded, skipped, total, flight.frames_evicted, flight.frames_dropped),
    }


def feed(
    chunks: list[list[bytes | str]], at_once: bool, start: float, flight_bytes: int = 3_000
) -> dict[str, Any]:
    server = FakeServer()

    async def main() -> dict[str, Any]:
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
            ts = session.subscribe(TOPIC, "sequence", None, 600.0)
            await session.wait_for(Status.SUBSCRIBED, 5)
            await until(lambda: ts.orderer.position() == 5)
            # a small flight recorder: segments roll (and seed) inside chunks
            flight = FlightRecorder(Source(session), flight_bytes, 900)  # type: ignore[arg-type]
            flight.install()
            taps: list[Any] = []
            session.add_tap(lambda d, now, tr, att: taps.append((d, now, tr, att, ts.applied)))
            on_frame, on_frames, _ = session._bind({"t": session._transport})
            now = start
            for chunk in chunks:
                now += 0.001
                if at_once:
                    on_frames(chunk, now)
                else:
                    for data in chunk:
                        on_frame(data, now)
            return _state(session, taps, flight, start)
        finally:
            await session.close()

    return asyncio.run(main())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(frames(), min_size=1, max_size=12), min_size=1, max_size=6))
def test_a_chunk_at_once_ends_as_its_frames_one_by_one(chunks: list[list[Any]]) -> None:
    start = time.time() + 100  # after any wall-clock time set while subscribing
    assert feed(chunks, True, start) == feed(chunks, False, start)


def test_a_chunk_at_once_rolls_the_flight_recorder_between_its_frames() -> None:
    """The flight recorder's segments roll mid-chunk, seeded with the state as of the
    frame that rolls them (so a tap batched ahead of the pipeline would differ)."""
    chunk = [
        wire(event(seq, entity=f"e{seq % 4}", payload={"n": "x" * 20})) for seq in range(6, 40)
    ]
    start = time.time() + 100  # after any wall-clock time set while subscribing
    one = feed([chunk], True, start, 12_000)
    seeds = [item for item in one["flight"][0] if item[0] == "seed"]
    assert len(seeds) >= 2  # (older segments evicted: one roll at least mid-chunk)
    assert one == feed([chunk], False, start, 12_000)

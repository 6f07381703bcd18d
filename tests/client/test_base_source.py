"""One base for Connection and Replay, and events routed only to handles that listen.

Issue 21 item 3: ``Topic`` talks to its connection or replay through the public
methods of :class:`rtnb.client.base.BaseSource` (no friend protocol of private
names). Throughput lever client-3 (docs/throughput.md): the pipeline calls back per
applied event only while some handle has an ``on_event`` callback, and a callback
added from any thread sees every event applied after ``on_event`` returns.
"""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rtnb
from rtnb.client.base import BaseSource, Listener
from rtnb.client.connection import Connection
from rtnb.client.replay import Replay
from rtnb.client.topic import Topic
from rtnb.core.pipeline import Pipeline
from rtnb.server import ServerHandle
from tests.client.conftest import connect, publish
from tests.conftest import wait_until

TOPIC_PY = Path(rtnb.__file__).parent / "client" / "topic.py"


def _apply_hook(conn: rtnb.Connection) -> object:
    return conn.call(lambda: conn._session.pipeline.on_apply, what="test read")


def test_connection_and_replay_share_one_base() -> None:
    assert issubclass(Connection, BaseSource) and issubclass(Replay, BaseSource)
    for name in ("call", "on_state", "release", "listen", "mutate", "__enter__", "__aexit__"):
        assert getattr(Connection, name) is getattr(BaseSource, name), name
        assert getattr(Replay, name) is getattr(BaseSource, name), name


def test_a_topic_uses_only_public_methods_of_the_base() -> None:
    """Every ``self._conn.X`` in topic.py is a public member of ``BaseSource``."""
    used = {
        node.attr
        for node in ast.walk(ast.parse(TOPIC_PY.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_conn"
    }
    assert used, "the scan found no use of the connection"
    assert {u for u in used if u.startswith("_")} == set()
    assert used <= set(dir(BaseSource)), used - set(dir(BaseSource))


class _Loop:
    """Stands in for the runtime loop: what is scheduled runs when the test says."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], None]] = []

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        self.queued.append(fn)

    def run(self) -> None:
        queued, self.queued = self.queued, []
        for fn in queued:
            fn()


class _Owner:
    """A BaseSource seen from another thread: ``call`` hops (runs at once), ``loop``
    holds what is scheduled; ``listen`` is recorded."""

    def __init__(self) -> None:
        self.loop = _Loop()
        self.routed: dict[Topic, Listener] = {}
        self.hops = 0

    def in_runtime_thread(self) -> bool:
        return False

    def call(self, fn: Callable[[], Any], *, what: str) -> Any:
        self.hops += 1
        return fn()

    def listen(self, handle: Topic, listener: Listener | None) -> None:
        if listener is None:
            self.routed.pop(handle, None)
        else:
            self.routed[handle] = listener


def _handle() -> tuple[Topic, _Owner]:
    owner = _Owner()
    return Topic(owner, Pipeline().add_topic("t")), owner  # type: ignore[arg-type]


def test_a_handle_is_routed_events_only_while_it_has_callbacks() -> None:
    topic, owner = _handle()
    assert owner.routed == {}
    remove_a = topic.on_event(lambda e, o: None)
    assert topic in owner.routed and owner.hops == 1
    remove_b = topic.on_event(lambda e, o: None)
    assert owner.hops == 1  # already routed: no hop
    remove_a()
    owner.loop.run()
    assert topic in owner.routed  # one callback left
    remove_b()
    assert topic in owner.routed  # stopping waits for the loop (no hop to remove)
    owner.loop.run()
    assert owner.routed == {}


def test_a_callback_added_while_a_removal_is_queued_keeps_the_routing() -> None:
    """Thread A removes the last callback (the stop is queued); thread B adds one before
    the loop runs it: B sees the handle routed and does not hop, and the queued stop,
    deciding on the runtime thread from the callbacks present then, keeps routing."""
    topic, owner = _handle()
    topic.on_event(lambda e, o: None)()
    topic.on_event(lambda e, o: None)
    owner.loop.run()
    assert topic in owner.routed


def test_a_callback_added_after_the_routing_stopped_restarts_it_before_returning() -> None:
    topic, owner = _handle()
    topic.on_event(lambda e, o: None)()
    owner.loop.run()
    assert owner.routed == {}
    topic.on_event(lambda e, o: None)
    assert topic in owner.routed  # before on_event returned: the next event reaches it


def test_topics_without_callbacks_cost_no_call_per_applied_event(srv: ServerHandle) -> None:
    with connect(srv) as conn:
        incidents = conn.subscribe("incidents")
        conn.subscribe("fleet")
        publish(srv, 5)
        wait_until(lambda: len(incidents) > 0)
        assert _apply_hook(conn) is None  # subscribed, nobody listening: no hook
        seen: list[int] = []
        remove = incidents.on_event(lambda e, o: seen.append(e.sequence))
        assert _apply_hook(conn) is not None
        publish(srv, 3, start=5)
        wait_until(lambda: len(seen) == 3)
        remove()
        wait_until(lambda: _apply_hook(conn) is None)


def test_a_callback_added_from_another_thread_sees_the_next_event(srv: ServerHandle) -> None:
    """Add a callback, publish, see the event, remove it; again and again from a worker
    thread, so a removal's queued stop races each next ``on_event``."""
    with connect(srv) as conn:
        incidents = conn.subscribe("incidents")
        missed: list[int] = []

        def cycle() -> None:
            for i in range(25):
                got = threading.Event()

                def on_event(event: Any, outcome: str, i: int = i, got: threading.Event = got):
                    if event.payload["n"] == i:
                        got.set()

                remove = incidents.on_event(on_event)
                publish(srv, 1, start=i)
                if not got.wait(10):
                    missed.append(i)
                remove()

        worker = threading.Thread(target=cycle)
        worker.start()
        worker.join(60)
        assert not worker.is_alive() and missed == []


def test_release_stops_the_routing_of_a_listening_handle(srv: ServerHandle) -> None:
    with connect(srv) as conn:
        topic = conn.subscribe("incidents")
        topic.on_event(lambda e, o: None)
        assert _apply_hook(conn) is not None
        topic.unsubscribe()
        assert _apply_hook(conn) is None and conn.topics == {}


def test_connection_and_replay_are_context_managers_from_the_base(srv: ServerHandle) -> None:
    conn = connect(srv)
    with conn as entered:
        assert entered is conn
    assert conn.status is rtnb.Status.CLOSED

    async def use() -> None:
        other = connect(srv)
        async with other as entered:
            assert entered is other
        assert other.status is rtnb.Status.CLOSED

    asyncio.run(use())

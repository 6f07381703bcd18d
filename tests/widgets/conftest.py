"""Fixtures for widget tests: a recording comm, a real reference server, a connection.

``recorder`` replaces the comm every ipywidget opens with one that records
each message it would publish (time, type, data, buffers) instead of sending
it to a front end. Messages from the "browser" are delivered with
``tests.helpers.send_from_browser(widget, content)``, through the widget's comm
as a kernel delivers them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import comm
import msgspec
import pytest
from comm import DummyComm

import rtnb
from rtnb.server import ServerHandle
from rtnb.widgets import budget as budget_module
from rtnb.widgets.budget import MessageBudget

_ids = itertools.count(1)


@dataclass
class Sent:
    at: float
    comm_id: str
    content: dict[str, Any]
    buffers: list[bytes]

    @property
    def kind(self) -> str:
        return str(self.content.get("t"))

    @property
    def data(self) -> dict[str, Any]:
        """The decoded row buffer ({"u": [...], "d": [...]}) or {}."""
        if not self.buffers:
            return {}
        decoded: dict[str, Any] = msgspec.json.decode(bytes(self.buffers[0]))
        return decoded

    @property
    def upserted(self) -> set[str]:
        return {row[0] for row in self.data.get("u", [])}

    @property
    def deleted(self) -> set[str]:
        return set(self.data.get("d", []))


class Recorder:
    """Every custom message sent by any widget, in order (thread-safe)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.lock = threading.Lock()

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent.append(item)

    def of(self, widget: Any, kind: str | None = None) -> list[Sent]:
        cid = widget.comm.comm_id
        with self.lock:
            return [s for s in self.sent if s.comm_id == cid and (kind is None or s.kind == kind)]

    def wait(
        self, widget: Any, predicate: Callable[[list[Sent]], Any], timeout: float = 10.0
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.of(widget))
            if value:
                return value
            if time.monotonic() > deadline:
                msgs = [(s.kind, s.content.get("seq")) for s in self.of(widget)][-10:]
                raise AssertionError(f"condition not met within {timeout} s; last messages {msgs}")
            time.sleep(0.01)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()

    class RecordingComm(DummyComm):
        def publish_msg(
            self,
            msg_type: str,
            data: Any = None,
            metadata: Any = None,
            buffers: Any = None,
            **keys: Any,
        ) -> None:
            if msg_type == "comm_msg" and isinstance(data, dict) and data.get("method") == "custom":
                rec.add(
                    Sent(
                        time.monotonic(),
                        self.comm_id,
                        data["content"],
                        [bytes(b) for b in buffers or []],
                    )
                )

    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return rec


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    # Declared: tests subscribe before their (per-tenant) first publish.
    with rtnb.serve(port=0, heartbeat_interval=0.5, topics={"items": "viewer"}) as handle:
        yield handle


@pytest.fixture
def tenant() -> str:
    """A tenant no other test uses: topics are per tenant, so tests cannot interfere."""
    return f"w{next(_ids)}"


@pytest.fixture
def conn(srv: ServerHandle, tenant: str) -> Iterator[rtnb.Connection]:
    token = srv.issue_token(tenant=tenant, user="ana", role="operator")
    c = rtnb.connect(srv.url, token=token, timeout=10)
    yield c
    c.close()


@pytest.fixture
def fresh_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[MessageBudget]:
    """A kernel-wide message budget of this test's own (LiveChart tests)."""
    shared = MessageBudget()
    monkeypatch.setattr(budget_module, "_budget", shared)
    yield shared

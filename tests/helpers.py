"""Builders for protocol frames used across the test suite, and ``send_from_browser``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rtnb.protocol import Event, Snapshot, SnapshotEntity, encode

T0 = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def event(
    seq: int,
    *,
    topic: str = "incidents",
    entity: str | None = None,
    type: str = "incident.updated",
    payload: dict[str, Any] | None = None,
    id: str | None = None,
) -> Event:
    return Event(
        id=id or f"evt-{topic}-{seq}",
        type=type,
        topic=topic,
        sequence=seq,
        entity_id=entity or f"e{seq % 7}",
        occurred_at=T0 + timedelta(milliseconds=seq % 10**9),
        replay_token=f"tok-{topic}-{seq}",
        payload={"n": seq} if payload is None else payload,
    )


def snapshot(topic: str, seq: int, entities: dict[str, dict[str, Any]]) -> Snapshot:
    return Snapshot(
        topic=topic,
        entities=[SnapshotEntity(entity_id=k, state=v, sequence=seq) for k, v in entities.items()],
        token=f"tok-{topic}-{seq}",
        sequence=seq,
    )


def wire(frame: Any) -> bytes:
    return encode(frame)


class RecordingSink:
    """An envelope sink that keeps every row as a dict (for assertions)."""

    FIELDS = (
        "received_at", "occurred_at", "topic", "type", "id", "sequence", "entity_id",
        "outcome", "transport", "attempt", "nbytes", "error", "count",
    )  # fmt: skip

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append_envelope(self, *args: Any) -> None:
        from rtnb.core.status import OUTCOMES_BY_CODE

        row = dict(zip(self.FIELDS, args, strict=False))
        row.setdefault("error", None)
        row.setdefault("count", 1)
        row["outcome"] = OUTCOMES_BY_CODE[row["outcome"]].value
        self.rows.append(row)

    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.rows]

    def ids(self, *outcomes: str) -> list[str]:
        return [r["id"] for r in self.rows if r["outcome"] in outcomes]


class _Failures(logging.Handler):
    """Keeps the exceptions ipywidgets logs (and swallows) from a message handler."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.raised: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.raised.append(record.exc_info[1])


def send_from_browser(widget: Any, msg: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
    """Deliver ``msg`` to ``widget`` as a custom message from its front end (``model.send``).

    The message takes the route a kernel gives it: the widget's comm gets the
    ``comm_msg`` (``comm.handle_msg``), ipywidgets unwraps it and calls the
    widget's custom-message callbacks. ipywidgets logs and swallows an exception
    raised there; here it is raised again, so a failing handler fails the test.
    """
    failures = _Failures()
    widget.log.addHandler(failures)
    try:
        widget.comm.handle_msg(
            {
                "content": {
                    "comm_id": widget.comm.comm_id,
                    "data": {"method": "custom", "content": msg},
                },
                "buffers": list(buffers),
            }
        )
    finally:
        widget.log.removeHandler(failures)
    if failures.raised:
        raise failures.raised[0]


class Stopper:
    """Stops reference servers off the test's critical path.

    ``ServerHandle.stop()`` is about 0.2 s of uvicorn's polling sleeps (its main loop's
    and its shutdown's 0.1 s ticks), not work. A fixture that owns a per-test server
    hands it here at teardown: the stop runs in a thread while the next test runs
    (every server listens on its own port, so tests cannot meet). ``finish()`` joins
    every stop at the end of the session and fails if one raised or did not end.
    """

    def __init__(self) -> None:
        self._threads: list[tuple[threading.Thread, list[BaseException]]] = []

    def stop_soon(self, handle: Any) -> None:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                handle.stop()
            except BaseException as exc:  # re-raised by finish()
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"stop {handle.url}", daemon=True)
        thread.start()
        self._threads.append((thread, errors))

    def finish(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        threads, self._threads = self._threads, []
        for thread, errors in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise AssertionError(f"{thread.name}: the server did not stop in {timeout} s")
            if errors:
                raise AssertionError(f"{thread.name} failed") from errors[0]


#: the session's one :class:`Stopper` (joined by ``tests/conftest.py`` at the end)
stopper = Stopper()

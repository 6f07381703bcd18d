"""Acknowledged means durable; a position is never reused (``docs/durability.md``).

A real ``rtnb serve --data DIR`` subprocess is killed with SIGKILL mid-stream,
at random points, while HTTP publishers, an HTTP mutator, a plain WebSocket
observer and an ``rtnb.connect`` client are all busy, then restarted on the same
port and directory. After each restart, checked against everything seen so far:

* every acknowledged publish/mutation is served (replayed) with the same
  sequence, id, token and content;
* every event any client was sent before the crash is still there (clients are
  only sent committed events);
* no sequence, id or token is ever bound to two different events;
* a pre-crash replay token replays exactly the right events, or answers
  ``unavailable``;
* the ``rtnb.connect`` client that rode through every crash ends equal to the
  server's state, and live.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

import rtnb
from rtnb.server.auth import TokenAuthority
from rtnb.server.runner import SECRET_FILE
from tests.subproc import ServeProcess, free_port

TOPIC = "orders"
ITERATIONS = 6
Frame = dict[str, Any]


class Server(ServeProcess):
    """``python -m rtnb serve --data DIR --port P`` in a subprocess."""

    def __init__(self, data: Path, port: int, *extra: str) -> None:
        super().__init__(("--data", str(data)), port, data.parent / "server.err", *extra)
        self.data = data

    def token(self, role: str = "admin", user: str = "ops") -> str:
        key = bytes.fromhex((self.data / SECRET_FILE).read_text().strip())
        return TokenAuthority(key).issue(tenant="acme", user=user, role=role, ttl=600)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/snapshot",
            params={"topic": TOPIC},
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=10,
        )
        response.raise_for_status()
        return {e["entityId"]: e["state"] for e in response.json()["entities"]}


class Ledger:
    """Every event seen, by position, id and token: one event each, forever."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_seq: dict[int, Frame] = {}
        self.by_id: dict[str, Frame] = {}
        self.by_token: dict[str, Frame] = {}
        self.acked: dict[int, Frame] = {}

    def see(self, event: Frame, *, acked: bool = False) -> None:
        content = {k: v for k, v in event.items() if k != "op"}
        with self.lock:
            for table, key in (
                (self.by_seq, event["sequence"]),
                (self.by_id, event["id"]),
                (self.by_token, event["replayToken"]),
            ):
                prior = table.setdefault(key, content)
                assert prior == content, (
                    f"position {key!r} bound to two events: {prior} / {content}"
                )
            if acked:
                self.acked[event["sequence"]] = content


def _publisher(srv: Server, ledger: Ledger, up: threading.Event, stop: threading.Event, w: int):
    headers = {"Authorization": f"Bearer {srv.token()}"}
    n = 0
    while not stop.is_set():
        up.wait()
        n += 1
        body = {
            "topic": TOPIC,
            "type": "order.updated",
            "entityId": f"o{(w * 7 + n) % 23}",
            "payload": {"writer": w, "n": n, "nonce": uuid.uuid4().hex},
        }
        try:
            with httpx.Client(timeout=5) as http:
                response = http.post(f"{srv.url}/publish", json=body, headers=headers)
        except httpx.HTTPError:
            continue  # unacknowledged: it may or may not have been committed
        assert response.status_code == 200, response.text
        ledger.see(response.json(), acked=True)


def _mutator(srv: Server, ledger: Ledger, up: threading.Event, stop: threading.Event):
    headers = {"Authorization": f"Bearer {srv.token('operator', 'mo')}"}
    n = 0
    while not stop.is_set():
        up.wait()
        n += 1
        body = {
            "op": "mutate",
            "topic": TOPIC,
            "entityId": f"o{n % 23}",
            "patch": {"note": uuid.uuid4().hex},
            "clientMutationId": uuid.uuid4().hex,
        }
        try:
            with httpx.Client(timeout=5) as http:
                response = http.post(f"{srv.url}/mutate", json=body, headers=headers)
        except httpx.HTTPError:
            continue
        if response.status_code == 404:  # the entity was not published yet
            continue
        assert response.status_code == 200, response.text
        ledger.see(response.json(), acked=True)


def _observe(client: Any, ledger: Ledger, seen: list[Frame]) -> None:
    """Record every event a plain client is sent, until the connection dies."""
    try:
        while True:
            frame = client.recv(timeout=60)
            if frame["op"] == "event":
                ledger.see(frame)
                seen.append(frame)
    except (ConnectionClosed, TimeoutError, OSError):
        return


def _replay(connect: Any, srv: Server, token: str, position: int) -> tuple[str, list[Frame], int]:
    """Subscribe with ``replayFrom``: the status, the replayed events, the latest sequence."""
    client = connect(srv, srv.token("viewer", "replayer"))
    try:
        subscribed, _ = client.subscribe(TOPIC, token)
        latest: int = subscribed["latestSequence"]
        if subscribed["replay"] != "complete":
            return subscribed["replay"], [], latest
        return "complete", client.events(TOPIC, latest - position, timeout=10), latest
    finally:
        client.close()


@pytest.mark.slow
def test_sigkill_mid_stream_never_loses_an_acknowledged_event_nor_reuses_a_position(
    tmp_path, connect, wait_until
):
    rng = random.Random(os.environ.get("RTNB_KILL_SEED", "rtnb-kill-9"))
    srv = Server(tmp_path / "data", free_port())
    srv.start()
    ledger = Ledger()
    up, stop = threading.Event(), threading.Event()
    up.set()
    # The token at position 1: a complete replay from it is the rest of the log.
    httpx.post(
        f"{srv.url}/publish",
        json={"topic": TOPIC, "type": "order.created", "entityId": "o0", "payload": {"n": 0}},
        headers={"Authorization": f"Bearer {srv.token()}"},
        timeout=10,
    ).raise_for_status()
    origin = connect(srv, srv.token("viewer", "origin"))
    subscribed, snapshot = origin.subscribe(TOPIC)
    origin.close()
    assert subscribed["latestSequence"] == 1 and snapshot is not None
    token_at_1 = subscribed["latestToken"]

    live = rtnb.connect(
        srv.url, token=srv.token("viewer", "rider"), transport="websocket", shared=False
    )
    topic = live.subscribe(TOPIC)
    workers = [
        threading.Thread(target=_publisher, args=(srv, ledger, up, stop, w), daemon=True)
        for w in range(3)
    ] + [threading.Thread(target=_mutator, args=(srv, ledger, up, stop), daemon=True)]
    for worker in workers:
        worker.start()
    pre_crash_tokens: list[tuple[str, int]] = []
    try:
        for iteration in range(ITERATIONS):
            observer = connect(srv, srv.token("viewer", f"observer{iteration}"))
            observer.subscribe(TOPIC)
            seen: list[Frame] = []
            reader = threading.Thread(target=_observe, args=(observer, ledger, seen), daemon=True)
            reader.start()
            target = len(ledger.acked) + rng.randrange(5, 60)
            wait_until(lambda t=target: len(ledger.acked) >= t, timeout=20, what="acks")
            with ledger.lock:
                seq = rng.choice(sorted(ledger.acked))
                pre_crash_tokens.append((ledger.acked[seq]["replayToken"], seq))
            up.clear()  # new requests wait for the restart; those in flight die with it
            srv.kill()
            reader.join(10)
            srv.start()
            status, events, latest = _replay(connect, srv, token_at_1, 1)
            assert status == "complete", "a durable server keeps its epoch across SIGKILL"
            served = {e["sequence"]: {k: v for k, v in e.items() if k != "op"} for e in events}
            assert sorted(served) == list(range(2, latest + 1))
            for event in events:
                ledger.see(event)  # same position, id and token as anything seen before
            with ledger.lock:
                lost = {s: e for s, e in ledger.acked.items() if served.get(s) != e}
            assert not lost, f"acknowledged events lost or changed after SIGKILL: {lost}"
            unseen = [e["sequence"] for e in seen if e["sequence"] not in served]
            assert not unseen, f"events sent to a client before the crash are gone: {unseen}"
            token, position = rng.choice(pre_crash_tokens)
            status, events, _ = _replay(connect, srv, token, position)
            if status == "complete":
                assert [e["sequence"] for e in events] == list(range(position + 1, latest + 1))
                for event in events:
                    ledger.see(event)
            else:
                assert status == "unavailable"
            up.set()
        stop.set()
        up.set()
        for worker in workers:
            worker.join(15)
        truth = srv.snapshot()
        assert len(truth) > 1

        def rider_is_right() -> bool:
            return topic.status == "live" and topic.server_entities == truth

        try:
            wait_until(rider_is_right, timeout=20, what="the rider to converge")
        except pytest.fail.Exception:
            assert topic.status != "live", "the client reports live with wrong entities"
            raise
    finally:
        stop.set()
        up.set()
        live.close()
        srv.stop()


def _publish(srv: Server, n: int) -> list[Frame]:
    headers = {"Authorization": f"Bearer {srv.token()}"}
    out = []
    with httpx.Client(timeout=10) as http:
        for i in range(n):
            body = {"topic": TOPIC, "type": "order.updated", "entityId": f"o{i % 5}"}
            response = http.post(
                f"{srv.url}/publish", json={**body, "payload": {"i": i}}, headers=headers
            )
            response.raise_for_status()
            out.append(response.json())
    return out


def test_write_behind_starts_a_new_epoch_after_sigkill_and_keeps_it_after_a_clean_stop(
    tmp_path, connect
):
    srv = Server(tmp_path / "data", free_port(), "--fsync", "never")
    srv.start()
    try:
        before = _publish(srv, 30)
        srv.stop()  # clean: everything flushed, the log provably continuous
        srv.start()
        status, events, _ = _replay(connect, srv, before[9]["replayToken"], 10)
        assert status == "complete"
        assert [e["id"] for e in events] == [e["id"] for e in before[10:]]
        after_clean = _publish(srv, 5)
        srv.kill()  # unclean: the last 0.2 s may be gone, so no old position is trusted
        srv.start()
        for event in (before[-1], after_clean[-1]):
            status, _, _ = _replay(connect, srv, event["replayToken"], event["sequence"])
            assert status == "unavailable"
        fresh = _publish(srv, 40)
        old = {e["id"] for e in before + after_clean}
        old_tokens = {e["replayToken"] for e in before + after_clean}
        assert not {e["id"] for e in fresh} & old, "event ids are unique across restarts"
        assert not {e["replayToken"] for e in fresh} & old_tokens
        # The state survived (what was flushed): a client re-snapshots and sees it.
        assert set(srv.snapshot()) == {f"o{i}" for i in range(5)}
    finally:
        srv.stop()


def test_data_files_are_private(tmp_path):
    from rtnb.server import serve

    data = tmp_path / "new" / "data"
    with serve(data=data) as srv:
        srv.publish("t", "x.set", {"v": 1}, tenant="acme", entity_id="e")
        files = sorted(p.name for p in data.iterdir())
        assert "rtnb.sqlite3" in files and "rtnb.sqlite3-wal" in files
        for path in data.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path.name
        assert data.stat().st_mode & 0o777 == 0o700


def test_a_store_that_lost_its_last_events_starts_a_new_epoch_and_keeps_its_state(tmp_path):
    import sqlite3

    from rtnb.server.storage import SQLiteStorage
    from rtnb.server.tokens import ReplayTokens
    from rtnb.server.topiclog import TopicLog

    tokens = ReplayTokens(b"k" * 32)
    store = SQLiteStorage(tmp_path)
    log = TopicLog("acme", TOPIC, store, tokens, retention=100)
    for i in range(6):
        log.append("x.set", {"i": i}, f"e{i % 2}")
    token = log.token()
    store.close()
    with sqlite3.connect(tmp_path / SQLiteStorage.FILENAME) as db:  # the disk "loses" seq 6
        db.execute("DELETE FROM events WHERE seq = 6")
    again = SQLiteStorage(tmp_path)
    assert again.rebased == [("acme", TOPIC)]
    log = TopicLog("acme", TOPIC, again, tokens, retention=100)
    assert log.replay(token)[0] == "unavailable"
    assert log.latest == 0 and log.entities == {"e0": {"i": 4}, "e1": {"i": 5}}
    _, event = log.append("x.set", {"i": 6}, "e0")
    assert event.sequence == 1 and event.replay_token != token
    again.close()
    # A clean reopen of a continuous store keeps the (new) epoch.
    third = SQLiteStorage(tmp_path)
    assert third.rebased == [] and third.epoch(("acme", TOPIC)) == log.epoch
    third.close()

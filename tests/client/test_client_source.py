"""``rtnb.Source``: the public seam widgets, charts and the recorder read, on a live
connection and on a replay; the server-confirmed identity; ``add_tap``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import rtnb
from rtnb.client.source import ConfirmedIdentity
from rtnb.core.ledger import ResolutionCursor
from rtnb.widgets.dashboard import connection_role
from tests.client.conftest import HEARTBEAT, TRANSPORTS, connect, publish
from tests.conftest import wait_until


def _read_through_the_seam(source: rtnb.Source, topic: str) -> tuple[int, int, str]:
    """What a widget reads, using only the Source protocol."""

    def read() -> tuple[int, int, str]:
        assert source.loop is asyncio.get_running_loop()  # call runs on the runtime loop
        view = source.topic_view(topic)
        assert view is not None and source.topic_views()[topic] == view
        with source.open_rows(topic) as rows:
            reset, _ = rows.take()
            assert reset  # a new cursor starts with every row
            assert len(rows.rows()) == len(rows) == view.entities
        return view.entities, view.applied, source.state.status.value

    result: tuple[int, int, str] = source.call(read, what="test read")
    return result


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_identity_is_what_the_server_confirmed_even_for_a_token_provider(
    srv: rtnb.ServerHandle, transport: str
) -> None:
    token = srv.issue_token(tenant="acme", user="vi", role="viewer")
    # a provider: the client never sees a token it could decode up front
    conn = rtnb.connect(
        srv.url,
        token=lambda: token,
        transport=transport,
        heartbeat_interval=HEARTBEAT,
        shared=False,
        timeout=10,
    )
    try:
        # sse/polling: the server answers the first stream request, i.e. once a topic
        # is subscribed (the connection reads SUBSCRIBED with no topics before that)
        conn.subscribe("incidents")
        identity = conn.wait_identity(10)
        assert isinstance(identity, ConfirmedIdentity)
        assert (identity.tenant, identity.user, identity.role) == ("acme", "vi", "viewer")
        assert identity.expires_at > 0
        assert connection_role(conn) == "viewer"
        assert conn.live
    finally:
        conn.close()


def test_a_connection_is_a_source_with_a_live_store_and_no_resolutions_yet(
    srv: rtnb.ServerHandle,
) -> None:
    publish(srv, 7)
    conn = connect(srv)
    try:
        assert isinstance(conn, rtnb.Source)
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 7)
        assert _read_through_the_seam(conn, "incidents") == (
            7,
            topic.topic_state.applied,
            "subscribed",
        )
        cursor = conn.call(conn.open_resolutions, what="test")
        assert isinstance(cursor, ResolutionCursor) and conn.call(cursor.take, what="t") == []
        mutation = topic.mutate("inc-1", {"status": "ack"})
        mutation.wait(10)
        resolved = conn.call(cursor.take, what="test")
        assert [r.client_mutation_id for r in resolved] == [mutation.client_mutation_id]
        assert conn.now() == pytest.approx(conn.now(), abs=5)
    finally:
        conn.close()


def test_a_tap_sees_every_raw_frame_until_removed(srv: rtnb.ServerHandle) -> None:
    conn = connect(srv)
    try:
        frames: list[tuple[object, str, int]] = []
        remove = conn.add_tap(
            lambda data, at, transport, attempt: frames.append((data, transport, attempt))
        )
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.status == "live")
        publish(srv, 5)
        wait_until(lambda: topic.topic_state.applied == 5)
        assert frames and all(t == "websocket" for _, t, _ in frames)
        assert (
            sum(
                b'"op":"event"' in bytes(d if isinstance(d, bytes) else d.encode())
                for d, _, _ in frames
            )
            >= 1
        )
        remove()
        remove()  # idempotent
        seen = len(frames)
        publish(srv, 5, start=5)
        wait_until(lambda: topic.topic_state.applied == 10)
        assert len(frames) == seen
    finally:
        conn.close()


def test_a_replay_is_a_source_read_the_same_way(srv: rtnb.ServerHandle, tmp_path: Path) -> None:
    conn = connect(srv)
    try:
        rec = conn.record(tmp_path / "rec")
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.status == "live")  # events after this are applied one by one
        publish(srv, 7)
        wait_until(lambda: topic.topic_state.applied == 7)
        live = _read_through_the_seam(conn, "incidents")
        live_entities = topic.server_entities
        rec.stop()
    finally:
        conn.close()
    rep = rtnb.replay(rtnb.EnvelopeLog.read_parquet(tmp_path / "rec"), speed=None, paused=True)
    try:
        assert isinstance(rep, rtnb.Source)
        assert rep.identity is None and rep.url == "replay"
        assert rep.wait_identity(30) is None and not rep.live  # at once: no one to ask
        rep.subscribe("incidents")
        before = rep.topic_view("incidents")  # subscribed before playing: a table opens on it
        assert before is not None and before.entities == 0
        rep.call(lambda: rep.open_rows("incidents").close(), what="test")
        rep.resume()
        assert rep.wait(30)
        entities, applied, _ = _read_through_the_seam(rep, "incidents")
        assert (entities, applied) == live[:2]
        assert rep.topics["incidents"].server_entities == live_entities
        assert rep.call(rep.open_resolutions().take, what="test") == []
        assert rep.now() == rep.position_s
    finally:
        rep.close()


def test_a_topic_view_is_read_from_any_thread_and_stays_as_it_was(
    srv: rtnb.ServerHandle,
) -> None:
    publish(srv, 3)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.status == "live" and len(topic) == 3)
        view = conn.topic_view("incidents")  # from this thread: it hops to the runtime's
        assert view is not None and (view.name, view.status, view.entities) == (
            "incidents",
            "live",
            3,
        )
        assert view.missing is None and view.refusal is None and view.over_limit is None
        publish(srv, 2, start=3)
        wait_until(lambda: len(topic) == 5)
        assert view.entities == 3 and conn.topic_views()["incidents"].entities == 5
        assert conn.topic_view("nope") is None
        with pytest.raises(rtnb.LocalProtocolError, match=r"'nope' is not subscribed.*incidents"):
            conn.call(lambda: conn.open_rows("nope"), what="test")
    finally:
        conn.close()


def test_a_refused_topic_reads_refused_through_the_seam_with_the_servers_words(
    srv: rtnb.ServerHandle,
) -> None:
    conn = connect(srv)
    try:
        conn.subscribe("audit")  # admin only: a viewer's subscription is refused
        wait_until(lambda: (v := conn.topic_view("audit")) is not None and v.status != "pending")
        view = conn.topic_view("audit")
        assert view is not None and view.status == "forbidden"
        assert view.refusal is not None and view.error is not None
        assert view.refusal.startswith(view.error) and view.refusal.endswith(")")
    finally:
        conn.close()

"""Replay tokens, the subscribe seam, retention, epochs and restarts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rtnb.core.merge import apply_to
from rtnb.server import serve


def _publish_n(srv, topic, n, tenant="acme", start=0):
    return [
        srv.publish(
            topic, "x.set", {"i": start + i}, tenant=tenant, entity_id=f"e{(start + i) % 7}"
        )
        for i in range(n)
    ]


def test_replay_from_a_token_sends_exactly_the_missed_events_then_goes_live(srv, connect, topic):
    events = _publish_n(srv, topic, 5)
    token = events[2].replay_token  # the client applied 1..3
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = client.subscribe(topic, replay_from=token)
    assert subscribed["replay"] == "complete" and snapshot is None
    assert subscribed["latestSequence"] == 5
    assert [e["sequence"] for e in client.events(topic, 2)] == [4, 5]
    srv.publish(topic, "x.set", {"i": 99}, tenant="acme", entity_id="e1")
    assert [e["sequence"] for e in client.events(topic, 1)] == [6]


def test_replay_from_the_latest_token_replays_nothing_and_goes_live(srv, connect, topic):
    last = _publish_n(srv, topic, 3)[-1]
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, _ = client.subscribe(topic, replay_from=last.replay_token)
    assert subscribed["replay"] == "complete"
    srv.publish(topic, "x.set", {"i": 1}, tenant="acme", entity_id="e1")
    (event,) = client.events(topic, 1)
    assert event["sequence"] == 4


@pytest.mark.slow
def test_a_replay_backlog_arrives_in_batch_frames(srv, connect, topic):
    first = _publish_n(srv, topic, 1)[0]
    _publish_n(srv, topic, 2000, start=1)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.subscribe(topic, replay_from=first.replay_token)
    got = client.events(topic, 2000)
    assert [e["sequence"] for e in got] == list(range(2, 2002))
    assert 0 < client.batches < 2000 / 10


def test_a_tampered_token_answers_unavailable_with_a_snapshot(srv, connect, topic):
    token = _publish_n(srv, topic, 3)[0].replay_token
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = client.subscribe(topic, replay_from=tampered)
    assert subscribed["replay"] == "unavailable"
    assert snapshot["sequence"] == 3
    client.send({"op": "subscribe", "topic": topic, "replayFrom": "not-even-base64!"})
    assert client.expect("subscribed")["replay"] == "unavailable"
    assert client.expect("snapshot")["sequence"] == 3


def test_a_token_from_another_topic_or_tenant_is_refused_like_a_forged_one(srv, connect, topic):
    other_topic = _publish_n(srv, topic + "-x", 3)[0].replay_token
    other_tenant = _publish_n(srv, topic, 3, tenant="globex")[0].replay_token
    _publish_n(srv, topic, 3)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    assert client.subscribe(topic, replay_from=other_topic)[0]["replay"] == "unavailable"
    assert client.subscribe(topic, replay_from=other_tenant)[0]["replay"] == "unavailable"


def test_a_token_older_than_retention_answers_unavailable(make_server, connect):
    srv = make_server(retention=5)
    events = _publish_n(srv, "r", 20)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = client.subscribe("r", replay_from=events[5].replay_token)
    assert subscribed["replay"] == "unavailable", "events 7..15 were trimmed"
    assert snapshot["sequence"] == 20
    # the oldest token still inside retention replays completely
    subscribed, _ = client.subscribe("r", replay_from=events[14].replay_token)
    assert subscribed["replay"] == "complete"
    assert [e["sequence"] for e in client.events("r", 5)] == [16, 17, 18, 19, 20]


def test_a_token_from_before_a_reset_answers_unavailable_never_a_silent_restart(
    make_server, connect
):
    srv = make_server()
    token = _publish_n(srv, "r", 5)[-1].replay_token
    srv.chaos.restart(keep_data=False)
    _publish_n(srv, "r", 2)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = client.subscribe("r", replay_from=token)
    assert subscribed["replay"] == "unavailable"
    assert snapshot["sequence"] == 2 and subscribed["latestToken"] != token


def test_restart_keeping_data_keeps_replay_working(make_server, connect):
    srv = make_server()
    events = _publish_n(srv, "r", 5)
    before = srv.truth("r", tenant="acme")
    srv.chaos.restart(keep_data=True)
    _publish_n(srv, "r", 2, start=5)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, _ = client.subscribe("r", replay_from=events[1].replay_token)
    assert subscribed["replay"] == "complete"
    assert [e["sequence"] for e in client.events("r", 5)] == [3, 4, 5, 6, 7]
    assert set(before) <= set(srv.truth("r", tenant="acme"))


@pytest.mark.slow
def test_a_new_server_on_the_same_data_directory_keeps_epochs_replay_and_tokens(tmp_path, connect):
    with serve(port=0, data=tmp_path) as first:
        events = _publish_n(first, "r", 30)
        truth = first.truth("r", tenant="acme")
        access = first.issue_token(tenant="acme", user="ana", ttl=600)
        first.chaos.restart(keep_data=True)  # reloads from disk
        assert first.truth("r", tenant="acme") == truth
    with serve(port=0, data=tmp_path) as second:
        assert second.truth("r", tenant="acme") == truth
        client = connect(second, access)  # the secret persisted with the data
        subscribed, _ = client.subscribe("r", replay_from=events[24].replay_token)
        assert subscribed["replay"] == "complete"
        got = client.events("r", 5)
        assert [e["sequence"] for e in got] == [26, 27, 28, 29, 30]
        assert [e["id"] for e in got] == [e.id for e in events[25:]]
        assert second.publish("r", "x.set", {}, tenant="acme", entity_id="e").sequence == 31


@pytest.mark.slow
def test_restart_without_keeping_data_on_a_data_directory_starts_a_new_epoch(tmp_path, connect):
    with serve(port=0, data=tmp_path) as srv:
        token = _publish_n(srv, "r", 3)[-1].replay_token
        srv.chaos.restart(keep_data=False)
        assert srv.truth("r", tenant="acme") == {}
        client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
        assert client.subscribe("r", replay_from=token)[0]["replay"] == "unavailable"
    with serve(port=0, data=tmp_path) as again:
        assert again.publish("r", "x.set", {}, tenant="acme", entity_id="e").sequence == 1


def _apply(state: dict[str, dict[str, Any]], frame: dict[str, Any]) -> None:
    apply_to(state, frame["entityId"], frame["type"], frame["payload"])


@pytest.mark.slow
def test_the_subscribe_seam_has_no_gap_or_duplicate_under_concurrent_publishing(srv, connect):
    topic = "seam"
    srv.declare(topic)
    stop = threading.Event()
    count = [0]

    def publisher() -> None:
        while not stop.is_set():
            i = count[0]
            srv.publish(
                topic,
                "x.set" if i % 11 else "x.deleted",
                {"i": i},
                tenant="acme",
                entity_id=f"e{i % 13}",
            )
            count[0] += 1

    thread = threading.Thread(target=publisher)
    thread.start()
    token = srv.issue_token(tenant="acme", user="ana")
    resume_from: str | None = None
    resume_seq = 0
    try:
        for round_ in range(12):
            client = connect(srv, token)
            if round_ % 2 and resume_from is not None:
                subscribed, snapshot = client.subscribe(topic, replay_from=resume_from)
                assert subscribed["replay"] == "complete"
                state = None
                expected = resume_seq + 1
            else:
                subscribed, snapshot = client.subscribe(topic)
                assert snapshot is not None
                state = {e["entityId"]: e["state"] for e in snapshot["entities"]}
                expected = snapshot["sequence"] + 1
            for event in client.events(topic, 40):
                assert event["sequence"] == expected, "gap or overlap at the seam"
                expected += 1
                if state is not None:
                    _apply(state, event)
                resume_from, resume_seq = event["replayToken"], event["sequence"]
            client.close()
        stop.set()
        thread.join()
        # a final fresh subscription plus replay converges on the server's truth
        client = connect(srv, token)
        subscribed, snapshot = client.subscribe(topic)
        state = {e["entityId"]: e["state"] for e in snapshot["entities"]}
        assert state == srv.truth(topic, tenant="acme")
    finally:
        stop.set()
        thread.join()


def test_a_fresh_subscription_plus_live_events_converges_on_the_truth(srv, connect):
    topic = "converge"
    srv.declare(topic)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    _, snapshot = client.subscribe(topic)
    state = {e["entityId"]: e["state"] for e in snapshot["entities"]}
    published = _publish_n(srv, topic, 300)
    for event in client.events(topic, 300):
        _apply(state, event)
    assert state == srv.truth(topic, tenant="acme")
    assert published[-1].sequence == 300


def test_a_minted_token_is_the_documented_hmac_of_its_position_and_verifies():
    """Tokens are ``base64url(0x01 | tag | epoch | position | mac)``, the mac being
    HMAC-SHA256 over "rtnb-token", tenant, topic and the fields before it, truncated to
    96 bits: a token minted by one server version verifies on the next (same secret)."""
    import base64
    import hashlib
    import hmac

    from rtnb.server.tokens import ReplayTokens

    key, epoch = b"s" * 32, bytes(range(8))
    tokens = ReplayTokens(key)
    minter = tokens.minter("acme", "prices", epoch)
    head = b"\x01" + hashlib.sha256(b"prices").digest()[:4] + epoch
    for position in (0, 1, 2, 255, 2**32 + 7, 2**63 - 1):
        body = head + position.to_bytes(8, "big")
        mac = hmac.digest(key, b"rtnb-token\x00acme\x00prices\x00" + body, "sha256")[:12]
        expected = base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
        assert minter.mint(position) == expected  # the same again: no state carried over
        assert minter.mint(position) == expected
        assert tokens.parse("acme", "prices", expected) == (epoch, position)
    assert tokens.parse("other", "prices", minter.mint(5)) is None

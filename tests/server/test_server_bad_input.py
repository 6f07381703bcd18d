"""Bad input never crashes the server or touches other connections."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed


@pytest.fixture
def bystander(srv, connect, topic):
    """A healthy subscriber that must keep receiving while others misbehave."""
    srv.declare(topic)
    client = connect(srv, srv.issue_token(tenant="acme", user="bystander"))
    client.subscribe(topic)
    return client


def _still_fine(srv, bystander, topic) -> None:
    event = srv.publish(topic, "x.set", {"ok": True}, tenant="acme", entity_id="e")
    assert bystander.events(topic, 1)[0]["sequence"] == event.sequence


@pytest.mark.parametrize(
    ("frame", "path"),
    [
        ("{not json", "$"),
        ('{"op": "subscribe", "topic": 42}', "$.topic"),
        ('{"op": "subscribe"}', "$"),
        ('{"op": "launch-missiles"}', "$.op"),
        ('{"topic": "x"}', "$.op"),
        ("[1, 2, 3]", "$"),
        (
            '{"op": "mutate", "topic": "t", "entityId": "e", "patch": [], "clientMutationId": "m"}',
            "$.patch",
        ),
        ('{"op": "subscribe", "topic": "no spaces allowed"}', "$.topic"),
    ],
    ids=[
        "malformed-json",
        "wrong-type",
        "missing-field",
        "unknown-op",
        "no-op",
        "not-object",
        "patch-not-object",
        "bad-topic-name",
    ],
)
def test_a_bad_frame_after_authentication_gets_an_error_naming_the_path_and_the_connection_stays(
    srv, connect, bystander, topic, frame, path
):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send(frame)
    error = client.expect("error")
    assert error["code"] == "bad_frame"
    assert error["message"].startswith(path)
    client.send({"op": "ping", "id": "after"})
    assert client.expect("pong")["id"] == "after"
    _still_fine(srv, bystander, topic)


def test_an_unknown_op_is_not_echoed_back(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send({"op": "eyJhbGciOiJIUzI1NiJ9.secret-looking"})
    error = client.expect("error")
    assert "secret-looking" not in error["message"]
    assert "subscribe" in error["message"], "the error lists the valid ops"


def test_a_binary_frame_is_answered_with_bad_frame_and_the_connection_stays(
    srv, connect, bystander, topic
):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send(json.dumps({"op": "ping", "id": "bin"}).encode())
    error = client.expect("error")
    assert error["code"] == "bad_frame" and "binary" in error["message"]
    client.send({"op": "ping", "id": "text"})
    assert client.expect("pong")["id"] == "text"
    _still_fine(srv, bystander, topic)


def test_a_frame_over_one_mebibyte_is_refused_with_frame_too_large(srv, connect, bystander, topic):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    huge = json.dumps({"op": "ping", "id": "x" * (1024 * 1024 + 10)})
    client.send(huge)
    error = client.expect("error")
    assert error["code"] == "frame_too_large" and "limit" in error["message"]
    client.send({"op": "ping", "id": "small"})
    assert client.expect("pong")["id"] == "small"
    _still_fine(srv, bystander, topic)


def test_a_frame_far_over_the_limit_is_closed_1009_by_the_websocket_layer(
    srv, connect, bystander, topic
):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send("x" * (3 * 1024 * 1024))
    assert client.closed()[0] == 1009
    _still_fine(srv, bystander, topic)


def test_garbage_before_authentication_closes_4400(srv, connect, bystander, topic):
    client = connect(srv)
    client.send("{garbage")
    assert client.expect("error")["code"] == "bad_frame"
    assert client.closed()[0] == 4400
    _still_fine(srv, bystander, topic)


def test_persistent_bad_frames_close_4400(srv, connect, bystander, topic):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    for _ in range(12):
        client.send("{nope")
    code, reason = client.closed()
    assert code == 4400 and "invalid frames" in reason
    _still_fine(srv, bystander, topic)


def test_flooding_frames_closes_4429_with_a_retry_hint(make_server, connect):
    srv = make_server(rate_limit=(20.0, 20.0))
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    for i in range(60):
        try:
            client.send({"op": "ping", "id": str(i)})
        except ConnectionClosed:  # the server may close before the flood is over
            break
    code, reason = client.closed()
    assert code == 4429
    assert "retry_after=" in reason
    assert float(reason.split("retry_after=")[1]) > 0
    assert srv.stats()["rate_limited"] == 1


def test_too_many_subscriptions_are_refused_per_topic(make_server, connect):
    srv = make_server(max_subscriptions=2)
    for name in ("a", "b", "c"):
        srv.declare(name)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.subscribe("a")
    client.subscribe("b")
    client.send({"op": "subscribe", "topic": "c"})
    error = client.expect("error")
    assert error["code"] == "too_many_subscriptions" and error["topic"] == "c"
    assert client.subscribe("a")[0]["replay"] == "none", "re-subscribing is not a new one"


def test_a_mutation_with_a_malformed_patch_is_a_bad_frame_not_a_crash(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    client.send(
        {"op": "mutate", "topic": "t", "entityId": "", "patch": {}, "clientMutationId": "m"}
    )
    assert client.expect("error")["message"].startswith("$.entityId")

"""SSE, polling, snapshot, mutate, publish and healthz over real HTTP."""

from __future__ import annotations

import json
import threading

import httpx

from rtnb.protocol.sse import SSEParser


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _parked_long_poll(srv, http, topic, headers, cursor, wait_until):
    """A ``/poll?wait=8`` from ``cursor`` in a thread, parked on the server (it holds one more
    session) when this returns: the thread, and the dict its answer goes into."""
    waiting = srv.stats()["open_sessions"]
    result: dict = {}

    def long_poll() -> None:
        result.update(
            http.get(
                "/poll",
                params={"topic": topic, "wait": 8},
                headers={**headers, "Last-Event-ID": cursor},
            ).json()
        )

    thread = threading.Thread(target=long_poll)
    thread.start()
    wait_until(lambda: srv.stats()["open_sessions"] > waiting, what="parked long poll")
    return thread, result


# -- SSE ---------------------------------------------------------------------------------


def test_sse_sends_subscribed_and_snapshot_events_named_by_op_then_events_with_cursor_ids(
    srv, sse_connect, topic
):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    token = srv.issue_token(tenant="acme", user="ana")
    stream = sse_connect(srv, token, [topic])
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    first = stream.next()  # the request authenticated: announced like on the WebSocket
    assert first.type == "authenticated"
    assert json.loads(first.data)["heartbeatInterval"] == srv.config.heartbeat_interval
    event, frame = stream.next_frame()
    assert event.type == "subscribed" and frame["replay"] == "none"
    event, frame = stream.next_frame()
    assert event.type == "snapshot" and frame["sequence"] == 1
    assert event.last_event_id, "a snapshot moves the cursor"
    srv.publish(topic, "x.set", {"v": 2}, tenant="acme", entity_id="e")
    ((event, frame),) = stream.events(1)
    assert event.type == "message" and frame["sequence"] == 2
    assert frame["replayToken"] in event.last_event_id.split(".")


def test_sse_carries_heartbeats_as_named_events(srv, sse_connect, topic):
    srv.declare(topic)
    stream = sse_connect(srv, srv.issue_token(tenant="acme", user="ana"), [topic])
    event, frame = stream.next_frame(skip=("authenticated", "subscribed", "snapshot"))
    assert event.type == "heartbeat" and topic in frame["sequences"]


def test_sse_resumes_from_last_event_id_with_exactly_the_missed_events(srv, sse_connect, topic):
    other = topic + "-b"
    srv.declare(topic)
    srv.declare(other)
    token = srv.issue_token(tenant="acme", user="ana")
    stream = sse_connect(srv, token, [topic, other])
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    srv.publish(other, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    stream.events(2)
    cursor = stream.parser.last_event_id
    stream.close()
    for i in range(3):
        srv.publish(topic, "x.set", {"v": i}, tenant="acme", entity_id="e")
    srv.publish(other, "x.set", {"v": 9}, tenant="acme", entity_id="e")
    resumed = sse_connect(srv, token, [topic, other], last_event_id=cursor)
    frames = []
    while sum(f["op"] == "event" for f in frames) < 4:
        frames.append(resumed.next_frame()[1])
    assert [f["replay"] for f in frames if f["op"] == "subscribed"] == ["complete", "complete"]
    assert not [f for f in frames if f["op"] == "snapshot"]
    got = [(f["topic"], f["sequence"]) for f in frames if f["op"] == "event"]
    assert sorted(got) == sorted([(other, 2), (topic, 2), (topic, 3), (topic, 4)])


def test_sse_with_an_unreadable_cursor_answers_unavailable_with_snapshots(srv, sse_connect, topic):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    stream = sse_connect(
        srv, srv.issue_token(tenant="acme", user="ana"), [topic], last_event_id="garbage-cursor"
    )
    assert stream.next_frame()[1]["replay"] == "unavailable"
    assert stream.next_frame()[1]["op"] == "snapshot"


def test_sse_refuses_bad_tokens_unknown_topics_and_tokens_in_the_url(srv, topic):
    srv.declare(topic)
    good = srv.issue_token(tenant="acme", user="ana")
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        r = http.get("/sse", params={"topic": topic})
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
        r = http.get("/sse", params={"topic": topic}, headers=_auth(good + "x"))
        assert r.status_code == 401 and r.json()["code"] == "invalid_token"
        assert "WWW-Authenticate" in r.headers
        # A refused topic is a per-topic error in the stream (as on WebSocket):
        # the other topics of the same request keep streaming.
        with http.stream("GET", "/sse", params={"topic": "nope"}, headers=_auth(good)) as r:
            assert r.status_code == 200
            parser = SSEParser()
            events = []
            for chunk in r.iter_raw():
                events += parser.feed(chunk)
                if any(e.type == "error" for e in events):
                    break
        error = next(json.loads(e.data) for e in events if e.type == "error")
        assert error["code"] == "unknown_topic" and error["topic"] == "nope"
        r = http.get("/sse", params={"topic": topic, "token": good})
        assert r.status_code == 400 and good not in r.text


# -- polling --------------------------------------------------------------------------------


def test_polling_starts_with_snapshots_then_returns_events_after_the_cursor(srv, topic):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    headers = _auth(srv.issue_token(tenant="acme", user="ana"))
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        first = http.get("/poll", params={"topic": topic}, headers=headers).json()
        ops = [m["op"] for m in first["messages"]]
        assert ops == ["authenticated", "subscribed", "snapshot", "heartbeat"]
        assert first["messages"][0]["heartbeatInterval"] == srv.config.heartbeat_interval
        srv.publish(topic, "x.set", {"v": 2}, tenant="acme", entity_id="e")
        srv.publish(topic, "x.set", {"v": 3}, tenant="acme", entity_id="e")
        second = http.get(
            "/poll", params={"topic": topic}, headers={**headers, "Last-Event-ID": first["cursor"]}
        ).json()
        events = [m for m in second["messages"] if m["op"] == "event"]
        assert [e["sequence"] for e in events] == [2, 3]
        assert second["messages"][-1]["op"] == "heartbeat"
        third = http.get(
            "/poll", params={"topic": topic}, headers={**headers, "Last-Event-ID": second["cursor"]}
        ).json()
        assert [m["op"] for m in third["messages"]] == ["authenticated", "heartbeat"]


def test_a_long_poll_returns_as_soon_as_an_event_arrives(srv, topic, wait_until):
    srv.declare(topic)
    headers = _auth(srv.issue_token(tenant="acme", user="ana"))
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        cursor = http.get("/poll", params={"topic": topic}, headers=headers).json()["cursor"]
        thread, result = _parked_long_poll(srv, http, topic, headers, cursor, wait_until)
        srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
        thread.join(5)
        assert not thread.is_alive()
        assert [m["sequence"] for m in result["messages"] if m["op"] == "event"] == [1]


def test_polling_refuses_a_wait_out_of_range(srv, topic):
    srv.declare(topic)
    headers = _auth(srv.issue_token(tenant="acme", user="ana"))
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        assert (
            http.get("/poll", params={"topic": topic, "wait": 999}, headers=headers).status_code
            == 400
        )
        assert (
            http.get("/poll", params={"topic": topic, "wait": "soon"}, headers=headers).status_code
            == 400
        )


# -- snapshot, mutate, publish, healthz --------------------------------------------------------


def test_get_snapshot_returns_the_snapshot_frame(srv, topic):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        r = http.get(
            "/snapshot",
            params={"topic": topic},
            headers=_auth(srv.issue_token(tenant="acme", user="ana")),
        )
    assert r.status_code == 200
    body = r.json()
    assert body["op"] == "snapshot" and body["entities"][0]["state"] == {"v": 1}


def test_post_mutate_applies_and_returns_the_confirming_event(srv, topic):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    body = {"topic": topic, "entityId": "e", "patch": {"v": 2}, "clientMutationId": "h-1"}
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        r = http.post("/mutate", json=body, headers=_auth(token))
        assert r.status_code == 200
        assert r.json()["payload"] == {"v": 2, "clientMutationId": "h-1"}
        again = http.post("/mutate", json=body, headers=_auth(token))
        assert again.json()["id"] == r.json()["id"], "idempotent"
        viewer = srv.issue_token(tenant="acme", user="vic", role="viewer")
        refused = http.post(
            "/mutate", json={**body, "clientMutationId": "h-2"}, headers=_auth(viewer)
        )
        assert refused.status_code == 403 and refused.json()["op"] == "mutation_rejected"
        bad = http.post("/mutate", content=b"{nope", headers=_auth(token))
        assert bad.status_code == 400 and bad.json()["code"] == "bad_frame"
    assert srv.truth(topic, tenant="acme") == {"e": {"v": 2}}


def test_post_mutate_refuses_a_body_over_the_frame_limit(srv, topic):
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        r = http.post(
            "/mutate",
            content=b"x" * (1024 * 1024 + 1),
            headers=_auth(srv.issue_token(tenant="acme", user="ana", role="operator")),
        )
    assert r.status_code == 413


def test_post_publish_needs_an_admin(srv, topic):
    body = {"topic": topic, "type": "x.set", "entityId": "e", "payload": {"v": 1}}
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        op = srv.issue_token(tenant="acme", user="ana", role="operator")
        assert http.post("/publish", json=body, headers=_auth(op)).status_code == 403
        admin = srv.issue_token(tenant="acme", user="root", role="admin")
        r = http.post("/publish", json=body, headers=_auth(admin))
        assert r.status_code == 200 and r.json()["sequence"] == 1
    assert srv.truth(topic, tenant="acme") == {"e": {"v": 1}}


def test_healthz_answers_without_authentication(srv):
    r = httpx.get(f"{srv.url}/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_http_requests_over_the_rate_limit_get_429_with_retry_after(make_server, topic):
    srv = make_server(http_rate_limit=(1.0, 3.0))
    srv.declare(topic)
    headers = _auth(srv.issue_token(tenant="acme", user="ana"))
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        codes = [http.get("/snapshot", params={"topic": topic}, headers=headers) for _ in range(5)]
    assert [r.status_code for r in codes][:3] == [200, 200, 200]
    limited = codes[-1]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_snapshot_refuses_cross_role_topics(make_server):
    srv = make_server(topics={"audit": "admin"})
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        r = http.get(
            "/snapshot",
            params={"topic": "audit"},
            headers=_auth(srv.issue_token(tenant="acme", user="ana", role="operator")),
        )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_polling_refuses_a_cross_role_topic_and_serves_the_others(make_server):
    srv = make_server(topics={"audit": "admin"})
    srv.publish("incidents", "x.set", {"v": 1}, tenant="acme", entity_id="e")
    with httpx.Client(base_url=srv.url, timeout=5) as http:
        r = http.get(
            "/poll",
            params=[("topic", "audit"), ("topic", "incidents")],
            headers=_auth(srv.issue_token(tenant="acme", user="ana", role="operator")),
        )
    assert r.status_code == 200
    messages = r.json()["messages"]
    error = next(m for m in messages if m["op"] == "error")
    assert error["code"] == "forbidden" and error["topic"] == "audit"
    snapshot = next(m for m in messages if m["op"] == "snapshot")
    assert snapshot["topic"] == "incidents" and len(snapshot["entities"]) == 1


def test_a_long_poll_over_its_queue_carries_what_fits_and_the_next_polls_the_rest(
    srv, topic, wait_until
):
    # A burst larger than a long poll's queue (POLL_MAX_EVENTS frames) arrives while it
    # waits: the events that fit are answered, the topic falls behind at the first that
    # does not, and the cursor says where the next poll goes on — every event once, in
    # order (before issue 22's fall-behind, the parked poll was cut and answered none).
    srv.declare(topic)
    headers = _auth(srv.issue_token(tenant="acme", user="ana"))
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        cursor = http.get("/poll", params={"topic": topic}, headers=headers).json()["cursor"]
        thread, result = _parked_long_poll(srv, http, topic, headers, cursor, wait_until)
        srv.publish_many(
            topic, [("x.set", f"e{i % 9}", {"i": i}) for i in range(3000)], tenant="acme"
        )
        thread.join(5)
        assert not thread.is_alive()
        got = [m["sequence"] for m in result["messages"] if m["op"] == "event"]
        assert got, "the parked poll answered no event"
        cursor = result["cursor"]
        while len(got) < 3000:
            answer = http.get(
                "/poll", params={"topic": topic}, headers={**headers, "Last-Event-ID": cursor}
            ).json()
            events = [m["sequence"] for m in answer["messages"] if m["op"] == "event"]
            assert events, f"stuck at {got[-1]}"
            got += events
            cursor = answer["cursor"]
        assert got == list(range(1, 3001))

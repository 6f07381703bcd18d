"""Mutations over the WebSocket: validation, domain rules, idempotency."""

from __future__ import annotations

import itertools

import pytest

_ids = itertools.count()


def _mutate(client, topic, entity, patch, cmid=None):
    cmid = cmid or f"m-{next(_ids)}"
    client.send(
        {
            "op": "mutate",
            "topic": topic,
            "entityId": entity,
            "patch": patch,
            "clientMutationId": cmid,
        }
    )
    return cmid


@pytest.fixture
def incident(srv):
    """A fresh incident in tenant acme's ``incidents`` topic; returns its id."""
    entity = f"inc-t{next(_ids)}"
    srv.publish(
        "incidents",
        "incident.opened",
        {"status": "open", "severity": "high", "title": "x"},
        tenant="acme",
        entity_id=entity,
    )
    return entity


def test_a_mutation_appends_one_event_carrying_the_client_mutation_id(srv, connect, incident):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    client.subscribe("incidents")
    cmid = _mutate(client, "incidents", incident, {"status": "ack", "assignee": "ana"})
    event = client.until(lambda f: f["op"] == "event" and f["entityId"] == incident)[-1]
    assert event["payload"] == {"status": "ack", "assignee": "ana", "clientMutationId": cmid}
    assert event["type"] == "incident.updated"
    assert srv.truth("incidents", tenant="acme")[incident]["status"] == "ack"


def test_the_same_client_mutation_id_twice_produces_one_event(srv, connect, incident):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    client.subscribe("incidents")
    before = srv.latest_sequence("incidents", tenant="acme")
    cmid = _mutate(client, "incidents", incident, {"note": "looking"})
    _mutate(client, "incidents", incident, {"note": "looking"}, cmid=cmid)
    # A fence: events are delivered in order once committed (not in step with pongs),
    # so a later mutation's event comes after any event the duplicate could have made.
    fence = _mutate(client, "incidents", incident, {"note": "fence"})
    frames = client.until(
        lambda f: f["op"] == "event" and f["payload"].get("clientMutationId") == fence
    )
    events = [f for f in frames if f["op"] == "event" and f["entityId"] == incident]
    assert [e["payload"]["clientMutationId"] for e in events] == [cmid, fence]
    assert srv.latest_sequence("incidents", tenant="acme") == before + 2


def test_reusing_a_client_mutation_id_for_another_patch_is_rejected(srv, connect, incident):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    cmid = _mutate(client, "incidents", incident, {"note": "one"})
    _mutate(client, "incidents", incident, {"note": "two"}, cmid=cmid)
    rejected = client.expect("mutation_rejected")
    assert rejected["code"] == "idempotency_conflict" and rejected["clientMutationId"] == cmid


def test_client_mutation_ids_are_scoped_by_tenant(srv, connect, incident):
    srv.publish(
        "incidents", "incident.opened", {"status": "open"}, tenant="globex", entity_id=incident
    )
    acme = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    globex = connect(srv, srv.issue_token(tenant="globex", user="gus", role="operator"))
    _mutate(acme, "incidents", incident, {"note": "a"}, cmid="shared-id")
    globex.subscribe("incidents")
    _mutate(globex, "incidents", incident, {"note": "g"}, cmid="shared-id")
    event = globex.until(lambda f: f["op"] == "event")[-1]
    assert event["payload"]["note"] == "g"


@pytest.mark.parametrize(
    ("role", "patch", "code"),
    [
        ("viewer", {"status": "ack"}, "forbidden"),
        ("operator", {}, "invalid_patch"),
        ("operator", {"status": "exploded"}, "invalid_patch"),
        ("operator", {"severity": "apocalyptic"}, "invalid_patch"),
        ("operator", {"color": "red"}, "invalid_patch"),
        ("operator", {"clientMutationId": "sneaky"}, "invalid_patch"),
    ],
)
def test_invalid_mutations_are_rejected_with_a_code_and_message(
    srv, connect, incident, role, patch, code
):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role=role))
    cmid = _mutate(client, "incidents", incident, patch)
    rejected = client.expect("mutation_rejected")
    assert (rejected["code"], rejected["clientMutationId"]) == (code, cmid)
    assert rejected["message"]


def test_a_mutation_of_a_missing_entity_is_rejected_not_found(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    srv.declare("incidents")
    _mutate(client, "incidents", "inc-does-not-exist", {"status": "ack"})
    assert client.expect("mutation_rejected")["code"] == "not_found"


def test_only_an_admin_reopens_a_resolved_incident(srv, connect, incident):
    srv.publish(
        "incidents", "incident.resolved", {"status": "resolved"}, tenant="acme", entity_id=incident
    )
    operator = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    _mutate(operator, "incidents", incident, {"status": "open"})
    assert operator.expect("mutation_rejected")["code"] == "invalid_transition"
    admin = connect(srv, srv.issue_token(tenant="acme", user="root", role="admin"))
    admin.subscribe("incidents")
    _mutate(admin, "incidents", incident, {"status": "open"})
    admin.until(lambda f: f["op"] == "event" and f["entityId"] == incident)
    assert srv.truth("incidents", tenant="acme")[incident]["status"] == "open"


def test_prices_are_read_only(srv, connect):
    srv.publish("prices", "price.tick", {"price": 1.0}, tenant="acme", entity_id="AAPL")
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="admin"))
    _mutate(client, "prices", "AAPL", {"price": 0.01})
    assert client.expect("mutation_rejected")["code"] == "read_only"


def test_mutating_another_tenants_entity_is_impossible(srv, connect):
    # acme's own topic exists whatever ran before on this module's server: the
    # answer is "no such entity", never a hint about what other tenants hold
    srv.publish("incidents", "incident.opened", {"status": "open"}, tenant="acme", entity_id="i1")
    srv.publish(
        "incidents",
        "incident.opened",
        {"status": "open"},
        tenant="globex",
        entity_id="inc-globex-only",
    )
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    _mutate(client, "incidents", "inc-globex-only", {"status": "ack"})
    assert client.expect("mutation_rejected")["code"] == "not_found"
    assert srv.truth("incidents", tenant="globex")["inc-globex-only"]["status"] == "open"

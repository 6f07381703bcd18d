"""Tokens, tenants and roles: every refusal is explicit, and never echoes the token."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from rtnb.server.auth import AuthError, TokenAuthority, role_rank

SECRET = b"k" * 32


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(tenant="acme", user="eve", role="admin") -> str:
    header = _b64({"alg": "none", "typ": "JWT"})
    body = _b64({"tenant": tenant, "user": user, "role": role, "exp": time.time() + 600})
    return f"{header}.{body}."


# -- TokenAuthority, no network ------------------------------------------------------


def test_an_issued_token_verifies_to_its_identity():
    auth = TokenAuthority(SECRET)
    who = auth.verify(auth.issue(tenant="acme", user="ana", role="operator", ttl=60))
    assert (who.tenant, who.user, who.role) == ("acme", "ana", "operator")
    assert who.at_least("viewer") and who.at_least("operator") and not who.at_least("admin")


def test_roles_rank_viewer_below_operator_below_admin():
    assert role_rank("viewer") < role_rank("operator") < role_rank("admin")
    with pytest.raises(KeyError):
        role_rank("root")


@pytest.mark.parametrize(
    ("token_of", "code"),
    [
        (lambda: _alg_none(), "invalid_token"),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "eve", "role": "admin", "exp": time.time() + 60},
                b"x" * 32,
                algorithm="HS256",
            ),
            "invalid_token",
        ),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "eve", "role": "admin", "exp": time.time() + 60},
                SECRET * 2,
                algorithm="HS512",
            ),
            "invalid_token",
        ),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "ana", "role": "viewer", "exp": int(time.time()) - 1},
                SECRET,
                algorithm="HS256",
            ),
            "token_expired",
        ),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "ana", "exp": time.time() + 60},
                SECRET,
                algorithm="HS256",
            ),
            "invalid_token",
        ),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "ana", "role": "root", "exp": time.time() + 60},
                SECRET,
                algorithm="HS256",
            ),
            "invalid_token",
        ),
        (
            lambda: jwt.encode(
                {"tenant": "acme", "user": "ana", "role": "viewer"}, SECRET, algorithm="HS256"
            ),
            "invalid_token",
        ),
        (lambda: "not.a.jwt", "invalid_token"),
    ],
    ids=[
        "alg-none",
        "forged-signature",
        "wrong-algorithm",
        "expired",
        "no-role",
        "unknown-role",
        "no-expiry",
        "garbage",
    ],
)
def test_bad_tokens_are_refused_with_a_code_and_a_message_without_the_token(token_of, code):
    auth = TokenAuthority(SECRET)
    token = token_of()
    with pytest.raises(AuthError) as info:
        auth.verify(token)
    assert info.value.code == code
    assert token not in str(info.value)


def test_expire_all_refuses_every_token_minted_before_it():
    auth = TokenAuthority(SECRET)
    old = auth.issue(tenant="acme", user="ana", role="viewer", ttl=60)
    auth.expire_all()
    with pytest.raises(AuthError, match="revoked"):
        auth.verify(old)
    auth.verify(auth.issue(tenant="acme", user="ana", role="viewer", ttl=60))


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        TokenAuthority(b"short")


# -- over the wire -----------------------------------------------------------------------


def _forged(srv) -> str:
    return jwt.encode(
        {"tenant": "acme", "user": "eve", "role": "admin", "exp": time.time() + 60},
        b"x" * 32,
        algorithm="HS256",
    )


@pytest.mark.parametrize("kind", ["alg-none", "forged", "expired"])
def test_a_refused_token_gets_an_error_frame_then_close_4401(srv, connect, kind):
    token = {
        "alg-none": lambda: _alg_none(),
        "forged": lambda: _forged(srv),
        "expired": lambda: srv._auth.issue(
            tenant="acme", user="ana", role="viewer", ttl=1, now=time.time() - 10
        ),
    }[kind]()
    client = connect(srv)
    client.send({"op": "authenticate", "token": token})
    error = client.expect("error")
    assert error["code"] in ("invalid_token", "token_expired")
    assert token not in error["message"]
    assert client.closed()[0] == 4401


def test_subscribe_before_authenticate_is_refused_with_4401(srv, connect, topic):
    srv.declare(topic)
    client = connect(srv)
    client.send({"op": "subscribe", "topic": topic})
    assert client.expect("error")["code"] == "unauthenticated"
    assert client.closed()[0] == 4401


@pytest.mark.slow
def test_no_authenticate_within_the_deadline_closes_4400(srv, connect):
    client = connect(srv)  # the module server allows 1 s
    assert client.expect("error", timeout=3)["code"] == "auth_timeout"
    assert client.closed()[0] == 4400


def test_a_tenant_only_ever_sees_its_own_events(srv, connect, topic):
    acme = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    globex = connect(srv, srv.issue_token(tenant="globex", user="gus"))
    srv.publish(topic, "x.set", {"secret": "acme-only"}, tenant="acme", entity_id="e")
    globex.send({"op": "subscribe", "topic": topic})
    error = globex.expect("error")
    assert error["code"] == "unknown_topic", "a topic's name must not leak to another tenant"
    srv.publish(topic, "x.set", {"v": 0}, tenant="globex", entity_id="g")
    _, snapshot = globex.subscribe(topic)
    assert [e["entityId"] for e in snapshot["entities"]] == ["g"] and snapshot["sequence"] == 1
    acme.subscribe(topic)
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    srv.publish(topic, "x.set", {"v": 2}, tenant="globex", entity_id="g")
    assert acme.events(topic, 1)[0]["entityId"] == "e"
    (event,) = globex.events(topic, 1)
    assert event["entityId"] == "g" and event["sequence"] == 2


def test_a_topic_with_a_minimum_role_refuses_lower_roles(make_server, connect):
    srv = make_server(topics={"audit": "admin"})
    viewer = connect(srv, srv.issue_token(tenant="acme", user="ana", role="operator"))
    viewer.send({"op": "subscribe", "topic": "audit"})
    error = viewer.expect("error")
    assert error["code"] == "forbidden" and error["topic"] == "audit"
    viewer.send({"op": "ping", "id": "p"})
    assert viewer.expect("pong")["id"] == "p", "a refused topic does not close the connection"
    admin = connect(srv, srv.issue_token(tenant="acme", user="root", role="admin"))
    assert admin.subscribe("audit")[0]["replay"] == "none"


def test_reauthenticating_in_band_refreshes_the_token(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", ttl=60))
    fresh = client.authenticate(srv.issue_token(tenant="acme", user="ana", ttl=7200))
    assert fresh["expiresAt"] > time.time() + 3600


def test_reauthenticating_as_another_tenant_is_forbidden_with_4403(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send({"op": "authenticate", "token": srv.issue_token(tenant="globex", user="ana")})
    assert client.expect("error")["code"] == "forbidden"
    assert client.closed()[0] == 4403


@pytest.mark.slow
def test_a_token_that_expires_while_connected_gets_an_error_and_close_4401(srv, connect):
    token = srv._auth.issue(
        tenant="acme", user="ana", role="viewer", ttl=1.0, now=time.time() - 0.5
    )
    client = connect(srv, token)
    assert client.expect("error", timeout=3)["code"] == "token_expired"
    assert client.closed()[0] == 4401


def test_downgrading_the_role_in_band_drops_subscriptions_it_no_longer_allows(make_server, connect):
    srv = make_server(topics={"audit": "admin"})
    client = connect(srv, srv.issue_token(tenant="acme", user="ana", role="admin"))
    client.subscribe("audit")
    client.send(
        {"op": "authenticate", "token": srv.issue_token(tenant="acme", user="ana", role="viewer")}
    )
    client.expect("authenticated")
    assert client.expect("error")["code"] == "forbidden"
    srv.publish("audit", "a.logged", {}, tenant="acme", entity_id="x")
    client.send({"op": "ping", "id": "fence"})
    frames = client.until(lambda f: f["op"] == "pong")
    assert not [f for f in frames if f["op"] == "event"]

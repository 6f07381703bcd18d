"""Demo producers, the ``rtnb`` command line, defaults, and secrets in logs."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shlex
import signal
import subprocess
import sys

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from rtnb.__main__ import main
from rtnb.core.merge import apply_to
from rtnb.server import ServerConfig, serve
from rtnb.server import config as defaults
from rtnb.server.auth import TokenAuthority


def test_documented_defaults_are_the_ones_in_effect():
    assert defaults.DEFAULT_HEARTBEAT_INTERVAL == 5.0
    assert defaults.DEFAULT_RETENTION == 10_000
    assert defaults.DEFAULT_AUTH_TIMEOUT == 5.0
    assert defaults.DEFAULT_MAX_FRAME_SIZE == 1024 * 1024
    config = ServerConfig()
    assert config.heartbeat_interval == defaults.DEFAULT_HEARTBEAT_INTERVAL
    assert config.retention == defaults.DEFAULT_RETENTION
    assert config.send_queue_limit > config.retention, "a full replay must fit the queue"
    assert inspect.signature(serve).parameters["port"].default == 0


@pytest.mark.slow
def test_demo_producers_fill_every_topic_for_every_tenant(connect, wait_until):
    rates = {"incidents": 200.0, "fleet": 200.0, "prices": 2000.0}
    with serve(port=0, demo={"rates": rates, "seed": 1}) as srv:
        for tenant in ("acme", "globex"):
            for topic in rates:
                wait_until(
                    lambda t=tenant, p=topic: srv.truth(p, tenant=t),
                    timeout=10,
                    what=f"{tenant}/{topic}",
                )
        wait_until(lambda: srv.latest_sequence("prices", tenant="acme") > 500, timeout=10)
        incidents = srv.truth("incidents", tenant="acme")
        assert {s["status"] for s in incidents.values()} <= {"open", "ack", "resolved"}
        fleet = srv.truth("fleet", tenant="acme")
        assert all({"lat", "lon", "speed", "status"} <= set(v) for v in fleet.values())
        assert set(srv.truth("prices", tenant="acme")) <= {
            "AAPL",
            "MSFT",
            "NVDA",
            "AMZN",
            "GOOG",
            "TSLA",
            "BTC-USD",
            "ETH-USD",
        }
        # a client applying snapshot + events agrees with a later snapshot, event for event
        client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
        _, snapshot = client.subscribe("incidents")
        state = {e["entityId"]: e["state"] for e in snapshot["entities"]}
        client.events("incidents", 20)
        for frame in client.received:
            if frame["op"] == "event":
                apply_to(state, frame["entityId"], frame["type"], frame["payload"])
        client.send({"op": "snapshot", "topic": "incidents"})
        for frame in client.until(lambda f: f["op"] == "snapshot"):
            if frame["op"] == "event":
                apply_to(state, frame["entityId"], frame["type"], frame["payload"])
        later = client.received[-1]
        assert state == {e["entityId"]: e["state"] for e in later["entities"]}


def test_tokens_cursors_and_secrets_never_reach_the_logs(
    make_server, connect, sse_connect, caplog, topic
):
    caplog.set_level(logging.DEBUG)
    srv = make_server(log_level="debug")
    event = srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    token = srv.issue_token(tenant="acme", user="ana", role="operator")
    client = connect(srv, token)
    client.subscribe(topic, replay_from=event.replay_token[:-3] + "AAA")  # logged: unavailable
    client.send({"op": "authenticate", "token": token + "forged"})  # logged: refused
    client.closed()
    stream = sse_connect(srv, token, [topic], last_event_id=event.replay_token)
    stream.next_frame()
    srv.publish(topic, "x.set", {"v": 2}, tenant="acme", entity_id="e")
    stream.events(1)
    cursor = stream.parser.last_event_id
    stream.close()
    refused = httpx.get(f"{srv.url}/poll", params={"topic": topic, "token": token}, timeout=5)
    assert refused.status_code == 400
    # a client that wrongly puts its token in the WebSocket URL
    with ws_connect(f"{srv.ws_url}?token={token}", open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:  # refused: close 4400 token_in_url
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    # the clients (httpx, websockets) log their own URLs; the server's loggers must not
    server = [r for r in caplog.records if r.name.split(".")[0] in ("rtnb", "uvicorn", "starlette")]
    assert any("/ws?<redacted>" in r.getMessage() for r in server)
    text = "\n".join(r.getMessage() for r in server)
    for secret in (token, event.replay_token, cursor):
        assert secret not in text


def test_rtnb_token_mints_a_token_for_a_server_with_the_same_secret(monkeypatch, capsys):
    secret = "s" * 40
    monkeypatch.setenv("RTNB_SECRET", secret)
    assert main(["token", "--tenant", "acme", "--user", "ana", "--role", "operator"]) == 0
    token = capsys.readouterr().out.strip()
    who = TokenAuthority(secret.encode()).verify(token)
    assert (who.tenant, who.user, who.role) == ("acme", "ana", "operator")


def test_rtnb_token_without_a_secret_explains_how_to_get_one(monkeypatch, capsys):
    monkeypatch.delenv("RTNB_SECRET", raising=False)
    assert main(["token", "--tenant", "acme", "--user", "ana"]) == 2
    assert "RTNB_SECRET" in capsys.readouterr().err


def test_rtnb_demo_hands_its_options_to_the_widgets_demo(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "JupyterLab" in out and "--lab-port" in out
    assert out.startswith("usage: rtnb demo")


def test_rtnb_version_and_help_for_every_serve_and_token_option(capsys):
    import rtnb
    from rtnb.__main__ import _parser

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"rtnb {rtnb.__version__}"
    parser = _parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("serve", "token"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        for action in subparsers.choices[name]._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)
            assert action.help, (name, action.option_strings)  # every option explained
        for needed in ("RTNB_SECRET", "--secret-file", "secret.key", "rtnb token"):
            assert needed in text, (name, needed)


def test_rtnb_token_reads_a_secret_file(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RTNB_SECRET", raising=False)
    path = tmp_path / "secret.key"
    path.write_text("ab" * 32)
    assert main(["token", "--secret-file", str(path), "--tenant", "acme", "--user", "ana"]) == 0
    who = TokenAuthority(bytes.fromhex("ab" * 32)).verify(capsys.readouterr().out.strip())
    assert (who.tenant, who.user, who.role) == ("acme", "ana", "viewer")
    assert (
        main(["token", "--secret-file", str(tmp_path / "nope"), "--tenant", "a", "--user", "b"])
        == 2
    )
    assert "cannot read the secret" in capsys.readouterr().err


def test_help_of_connect_documents_every_parameter_the_shared_rule_and_the_errors():
    import rtnb

    doc = inspect.getdoc(rtnb.connect) or ""
    for name in inspect.signature(rtnb.connect).parameters:
        assert f"{name}:" in doc, name
    for needed in ("shared=False", "Raises:", "ValueError", "TimeoutError", "ConnectionClosed"):
        assert needed in doc, needed


@pytest.mark.slow
def test_rtnb_serve_prints_the_url_and_a_working_token_and_stops_on_ctrl_c(connect):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RTNB_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtnb", "serve", "--port", "0", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.split(" on ")[1].split()[0]
        proc.stdout.readline()
        token = proc.stdout.readline().strip()
        assert proc.stdout.readline().startswith("more tokens")
        command = shlex.split(proc.stdout.readline())
        assert command[:2] == ["rtnb", "token"] and "YOU" in command

        class _Srv:
            ws_url = url.replace("http", "ws") + "/ws"

        client = connect(_Srv, token)
        subscribed, snapshot = client.subscribe("incidents")
        assert subscribed["replay"] == "none" and snapshot["op"] == "snapshot"
        client.close()
        # The printed command mints tokens that this running server accepts.
        argv = [sys.executable, "-m", "rtnb", *command[1:]]
        argv[argv.index("YOU")] = "ana"
        env_no_secret = {k: v for k, v in env.items() if k != "RTNB_SECRET"}
        minted = subprocess.run(
            argv, capture_output=True, text=True, env=env_no_secret, timeout=30, check=True
        ).stdout.strip()
        client = connect(_Srv, minted)
        subscribed, _ = client.subscribe("fleet")
        assert subscribed["replay"] == "none"
        client.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert token not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

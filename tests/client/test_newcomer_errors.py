"""Mistakes a newcomer makes get an error that says what was wrong and what to do."""

from __future__ import annotations

import pathlib
import socket

import pytest

import rtnb
from rtnb.telemetry.schema import TelemetryFileError
from tests.client.conftest import connect

SHIPPED = pathlib.Path(__file__).parents[2] / "notebooks" / "data" / "chaos_run.parquet"


def test_record_on_a_closed_connection_raises_connection_closed(srv, tmp_path) -> None:
    conn = connect(srv)
    conn.close()
    with pytest.raises(rtnb.ConnectionClosed, match=r"cannot record to '.*rec'.*is closed"):
        conn.record(tmp_path / "rec")
    assert not (tmp_path / "rec").exists()


def test_after_a_failover_the_connection_names_the_live_gateway(srv) -> None:
    with socket.socket() as dead:  # bound, never listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        conn = rtnb.connect([dead_url, srv.url], token=token, shared=False)
        try:
            conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=30)
            assert conn.url == srv.url
            assert srv.url in repr(conn) and dead_url not in repr(conn)
        finally:
            conn.close()


@pytest.mark.parametrize("as_path", [str, pathlib.Path])
def test_replay_takes_the_path_of_a_recording(as_path) -> None:
    with rtnb.replay(as_path(SHIPPED), speed=None) as rep:
        rep.subscribe("fleet")
        assert rep.wait(60)
        assert len(rep.topics["fleet"]) > 0


def test_replay_of_a_file_that_is_not_parquet_names_the_file(tmp_path) -> None:
    bad = tmp_path / "notes.parquet"
    bad.write_text("not a recording")
    with pytest.raises(TelemetryFileError, match=r"notes\.parquet.* is not an rtnb telemetry file"):
        rtnb.replay(bad)
    with pytest.raises(TypeError, match="EnvelopeLog or the path of a recording, got int"):
        rtnb.replay(42)  # type: ignore[arg-type]


def test_seek_on_a_playing_replay_stays_at_that_instant_until_resumed() -> None:
    log = rtnb.EnvelopeLog.read_parquet(SHIPPED)
    received = log.envelopes["received_at"]
    mid = received.iloc[len(received) // 2]
    with rtnb.replay(log, speed=1) as rep:  # playing, in real time
        fleet = rep.subscribe("fleet")
        assert not rep.paused
        rep.seek(mid)
        assert rep.paused and rep.position_s == pytest.approx(mid.timestamp(), abs=1e-6)
        at_mid = fleet.server_entities
        rep.call(lambda: None, what="a round trip on the runtime thread")
        assert rep.position_s == pytest.approx(mid.timestamp(), abs=1e-6)
        assert fleet.server_entities == at_mid
        rep.resume()
        assert not rep.paused

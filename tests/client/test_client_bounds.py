"""Client buffers the hostile-server tests do not reach: the recorder queue, open mutations."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtnb
from rtnb.core.ledger import MutationLedger
from tests.client.conftest import connect, publish
from tests.conftest import wait_until


def test_the_recorder_queue_holds_at_most_max_pending_bytes(
    srv: rtnb.ServerHandle, tmp_path: Path
) -> None:
    conn = connect(srv)
    try:
        rec = conn.record(tmp_path / "rec", roll_interval=3600, max_pending_bytes=4_000)
        tapped: list[int] = []
        waiting: list[int] = []

        def count(data: object, *args: object) -> None:  # runs after the recorder's tap
            tapped.append(1)
            waiting.append(rec._bytes_in[0] - rec._bytes_out)

        conn.add_tap(count)
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.status == "live")  # events after this are applied one by one
        publish(srv, 20)
        # one frame larger than the whole queue: it can never wait, so it is dropped
        srv.publish(
            "incidents", "incident.updated", {"note": "x" * 5_000}, tenant="acme", entity_id="big"
        )
        publish(srv, 20, start=20)
        wait_until(lambda: topic._state.applied == 41, timeout=10)
        assert max(waiting) <= 4_000
        rec.stop()
        assert rec.frames_dropped >= 1
        assert rec.frames_recorded + rec.frames_dropped == len(tapped)
        log = rtnb.EnvelopeLog.read_parquet(tmp_path / "rec")
        assert log.recording is not None
        assert log.recording.info["frames_dropped"] == rec.frames_dropped
    finally:
        conn.close()


def test_open_mutations_past_the_cap_are_refused_with_a_reason() -> None:
    ledger = MutationLedger(max_open=3)
    recs = [ledger.create(f"m{i}", "t", "e", {"v": i}, now=0.0) for i in range(5)]
    assert [r.status for r in recs] == ["pending"] * 3 + ["refused"] * 2
    assert recs[3].error_code == "too_many_pending"
    assert "max_open_mutations=3" in (recs[3].error or "")
    assert len(ledger) == 3
    with pytest.raises(ValueError, match="max_open"):
        MutationLedger(max_open=0)


def test_limits_must_be_positive_ints() -> None:
    with pytest.raises(ValueError, match=r"Limits.max_gap_buffer must be a positive int"):
        rtnb.Limits(max_gap_buffer=0)
    assert rtnb.Limits().max_snapshot_entities == 1_000_000


def test_a_shared_connection_with_other_limits_is_refused(srv: rtnb.ServerHandle) -> None:
    token = srv.issue_token(tenant="acme", user="ana")
    conn = rtnb.connect(srv.url, token=token, limits=rtnb.Limits(max_gap_buffer=100))
    try:
        assert rtnb.connect(srv.url, token=token, limits=rtnb.Limits(max_gap_buffer=100)) is conn
        with pytest.raises(ValueError, match=r"limits=.*shared=False"):
            rtnb.connect(srv.url, token=token, limits=rtnb.Limits(max_gap_buffer=200))
    finally:
        conn.close()
        conn.close()  # two connect calls returned it: two holders


def test_every_limit_is_in_the_table_of_client_buffers() -> None:
    import dataclasses
    import pathlib

    doc = (pathlib.Path(__file__).parents[2] / "docs" / "decisions.md").read_text()
    table = doc[doc.index("## Client buffers and their caps") :].split("\n## ", 1)[0]
    missing = [f.name for f in dataclasses.fields(rtnb.Limits) if f.name not in table]
    assert not missing, f"Limits fields not in decisions.md's table: {missing}"
    assert rtnb.Limits().max_topic_bytes == 128 * 2**20
    assert rtnb.Limits().max_snapshot_bytes == 64 * 2**20
    assert rtnb.Limits().max_gap_buffer_bytes == 16 * 2**20
    assert rtnb.Limits().max_poll_messages == 100_000

"""conn.record(path): rolling parquet files that read back as one log, with no secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pandas.testing import assert_frame_equal

import rtnb
from rtnb.client.replay import replay
from rtnb.telemetry import EnvelopeLog, TelemetryFileError
from rtnb.telemetry.ring import Ring
from rtnb.telemetry.rolling import list_parts
from rtnb.telemetry.schema import ENVELOPES
from tests.chaos_run import ChaosRun
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_recording_reads_back_as_the_live_log(chaos_run: ChaosRun) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    assert log.counts == chaos_run.live_counts
    assert_frame_equal(log.envelopes, chaos_run.live_envelopes, check_exact=True)
    assert log.summary() == chaos_run.live_summary
    assert len(list_parts(chaos_run.path)) > 1, "a run of several seconds rolls several files"
    assert log.recording is not None and log.recording.payloads
    assert log.recording.info["frames_dropped"] == 0


def test_no_token_that_crossed_the_wire_is_in_any_recorded_byte(chaos_run: ChaosRun) -> None:
    assert len(chaos_run.tokens) > 100
    for path in chaos_run.path.iterdir():
        data = path.read_bytes()
        leaked = [t for t in chaos_run.tokens if t.encode() in data]
        assert not leaked, f"{path.name} holds {len(leaked)} real tokens"
    # Parquet pages are compressed: look at the decoded values too.
    table = pq.read_table(chaos_run.path)
    text = b"\n".join(
        (v if isinstance(v, bytes) else str(v).encode())
        for column in table.columns
        for v in column.to_pylist()
        if v is not None
    )
    assert not [t for t in chaos_run.tokens if t.encode() in text]


def test_no_token_appears_in_dataframes_or_reprs(chaos_run: ChaosRun) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    text = "\n".join(
        [repr(log), str(log.summary()), log.summary()._repr_html_()]
        + [getattr(log, t).to_csv() for t in ("envelopes", "states", "mutations", "heartbeats")]
    )
    assert not [t for t in chaos_run.tokens if t in text]


def test_a_single_part_file_is_itself_a_readable_log(chaos_run: ChaosRun) -> None:
    first = EnvelopeLog.read_parquet(list_parts(chaos_run.path)[0])
    assert len(first) <= sum(chaos_run.live_counts.values())


def test_a_recording_saved_as_one_file_keeps_its_frames(
    chaos_run: ChaosRun, tmp_path: Path
) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    log.to_parquet(tmp_path / "one.parquet")
    back = EnvelopeLog.read_parquet(tmp_path / "one.parquet")
    assert back.recording is not None and log.recording is not None
    assert back.recording.frames.equals(log.recording.frames)
    assert_frame_equal(back.envelopes, log.envelopes)
    assert "frames" in set(pd.read_parquet(tmp_path / "one.parquet")["log_table"].astype(str))


def test_recording_into_a_directory_that_holds_one_is_refused_unless_overwriting(
    chaos_run: ChaosRun, tmp_path: Path
) -> None:
    with rtnb.serve(port=0) as srv:
        srv.declare("incidents")
        conn = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="a"), shared=False)
        try:
            first = conn.record(tmp_path / "rec")
            first.stop()
            with pytest.raises(rtnb.RecordingExists, match="already holds a recording"):
                conn.record(tmp_path / "rec")
            again = conn.record(tmp_path / "rec", overwrite=True)
            again.stop()
            assert [p.name for p in list_parts(tmp_path / "rec")] == ["part-000001.parquet"]
            (tmp_path / "file").write_text("x")
            with pytest.raises(rtnb.RecordingExists, match="is a file") as caught:
                conn.record(tmp_path / "file")
            assert isinstance(caught.value, FileExistsError)  # as before issue 21
        finally:
            conn.close()


def test_without_payloads_the_recording_keeps_outcomes_but_no_entity_state(tmp_path: Path) -> None:
    with rtnb.serve(port=0) as srv:
        srv.declare("incidents")
        conn = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="a"), shared=False)
        recorder = conn.record(tmp_path / "rec", payloads=False)
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        for i in range(20):
            srv.publish(
                "incidents",
                "incident.updated",
                {"title": f"secret title {i}"},
                tenant="acme",
                entity_id=f"i{i % 4}",
            )
        wait_until(lambda: len(topic.entities) == 4 and conn.log.counts["applied"] == 20)
        conn.close()
        recorder.stop()
    for path in (tmp_path / "rec").iterdir():
        assert b"secret title" not in path.read_bytes()
    log = EnvelopeLog.read_parquet(tmp_path / "rec")
    assert log.recording is not None and not log.recording.payloads
    assert log.counts["applied"] == 20


def test_a_recording_started_late_replays_from_a_seed_of_the_current_state(tmp_path: Path) -> None:
    with rtnb.serve(port=0) as srv:
        srv.declare("incidents")
        conn = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="a"), shared=False)
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        for i in range(6):
            srv.publish(
                "incidents", "incident.updated", {"n": i}, tenant="acme", entity_id=f"i{i % 3}"
            )
        wait_until(lambda: conn.log.counts["applied"] == 6)
        recorder = conn.record(tmp_path / "late")
        for i in range(6, 9):
            srv.publish(
                "incidents", "incident.updated", {"n": i}, tenant="acme", entity_id=f"i{i % 4}"
            )
        wait_until(lambda: conn.log.counts["applied"] == 9)
        live = topic.server_entities
        conn.close()
        recorder.stop()
    rep = replay(EnvelopeLog.read_parquet(tmp_path / "late"), speed=None)
    assert rep.wait(10)
    assert rep.subscribe("incidents").server_entities == live


def test_the_ring_tail_holds_exactly_the_rows_appended_since(tmp_path: Path) -> None:
    ring = Ring(ENVELOPES, capacity=10)
    row = (1.0, 0.5, "t", "x", None, 1, None, 0, "websocket", 0, 1, 1, None)  # spec order
    for i in range(7):
        ring.append((float(i), *row[1:]))
    assert ring.tail(4).held == 3
    for i in range(7, 23):  # wraps around twice
        ring.append((float(i), *row[1:]))
    tail = ring.tail(18)
    assert tail.held == 5 and tail.total == 23
    assert list(tail.columns["received_at"]) == [18.0, 19.0, 20.0, 21.0, 22.0]
    assert ring.tail(0).held == 10, "rows already overwritten are gone"
    assert ring.tail(23).held == 0


RECORD_FOREVER = """
import sys, time, rtnb
srv = rtnb.serve(port=0, demo={"tenants": ["acme"], "rates": {"fleet": 200.0, "prices": 0, "incidents": 0}})
conn = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="a"), shared=False)
conn.record(sys.argv[1], roll_interval=0.1)
conn.subscribe("fleet")
print("recording", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.slow
def test_a_recording_killed_mid_write_is_readable_up_to_its_last_file(tmp_path: Path) -> None:
    script = tmp_path / "record_forever.py"
    script.write_text(textwrap.dedent(RECORD_FOREVER))
    target = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
        wait_until(lambda: target.exists() and len(list_parts(target)) >= 5, timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # A file cut short by the crash is never under a part name; fake a torn one anyway.
    parts = list_parts(target)
    (target / "part-999999.parquet").write_bytes(parts[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipping unreadable recording file"):
        log = EnvelopeLog.read_parquet(target)
    assert len(log) > 0
    assert log.recording is not None and len(log.recording) > 0
    assert log.recording.info["skipped"] == ["part-999999.parquet"]
    assert log.envelopes["received_at"].is_monotonic_increasing


def test_reading_a_directory_without_parts_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match=r"no recording files \(part-NNNNNN.parquet\)"):
        EnvelopeLog.read_parquet(tmp_path)


EXIT_WITHOUT_STOPPING = """
import sys, time, rtnb
srv = rtnb.serve(port=0)
srv.declare("incidents")
conn = rtnb.connect(srv.url, token=srv.issue_token(tenant="acme", user="a"), shared=False)
conn.record(sys.argv[1], roll_interval=3600)  # no file would be rolled before exit
topic = conn.subscribe("incidents")
deadline = time.monotonic() + 20
while topic.freshness.status != "live" and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(25):
    srv.publish("incidents", "incident.updated", {"n": i}, tenant="acme", entity_id=f"i{i % 5}")
while conn.log.counts["applied"] < 25 and time.monotonic() < deadline:
    time.sleep(0.01)
print(conn.log.counts["applied"], flush=True)
"""


@pytest.mark.slow
def test_a_recording_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(EXIT_WITHOUT_STOPPING))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rec")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "25"
    log = EnvelopeLog.read_parquet(tmp_path / "rec")
    assert log.counts["applied"] == 25
    assert log.recording is not None and len(log.recording) > 0

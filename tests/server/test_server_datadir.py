"""One ``--data`` directory has one writer (DESIGN.md §3; ``rtnb/server/datadir.py``).

Two real ``rtnb serve --data DIR`` processes on one directory: the second refuses
to start, naming the directory and the PID of the first. The first killed with
SIGKILL (no shutdown code runs), a successor starts at once on the same
directory: the kernel released the lock with the process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import rtnb
from rtnb.server.auth import TokenAuthority
from rtnb.server.datadir import LOCK_FILE, DataDirLocked
from rtnb.server.runner import SECRET_FILE
from tests.subproc import ServeProcess, free_port


def _second(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtnb", "serve", "--data", str(data), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _publish(url: str, data: Path, entity: str) -> int:
    key = bytes.fromhex((data / SECRET_FILE).read_text().strip())
    token = TokenAuthority(key).issue(tenant="acme", user="ops", role="admin", ttl=600)
    response = httpx.post(
        f"{url}/publish",
        json={"topic": "orders", "type": "order.created", "entityId": entity, "payload": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    sequence: int = response.json()["sequence"]
    return sequence


@pytest.mark.slow
def test_a_second_server_on_one_data_dir_refuses_and_a_killed_one_never_blocks_its_successor(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = ServeProcess(("--data", str(data)), free_port(), tmp_path / "first.err")
    first.start()
    try:
        assert first.proc is not None
        assert _publish(first.url, data, "o-1") == 1
        second = _second(data)
        assert second.returncode == 2, second.stdout + second.stderr
        assert str(data) in second.stderr
        assert f"PID {first.proc.pid}" in second.stderr
        assert "in use by another rtnb server" in second.stderr
        # The first server is untouched by the attempt.
        assert _publish(first.url, data, "o-2") == 2
        first.kill()  # SIGKILL: no shutdown code, the kernel drops the lock
        successor = ServeProcess(("--data", str(data)), free_port(), tmp_path / "next.err")
        successor.start()
        try:
            assert _publish(successor.url, data, "o-3") == 3  # the same log, continued
            assert successor.proc is not None
            assert (data / LOCK_FILE).read_text().strip() == str(successor.proc.pid)
        finally:
            successor.stop()
    finally:
        first.stop()


def test_serve_in_process_refuses_a_directory_held_and_takes_it_once_stopped(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with rtnb.serve(data=data) as srv:
        with pytest.raises(DataDirLocked) as refused:
            rtnb.serve(data=data)
        assert refused.value.directory == str(data)
        assert "PID" in str(refused.value) and str(data) in str(refused.value)
        srv.publish("orders", "order.created", {}, tenant="acme", entity_id="o-1")
    with rtnb.serve(data=data) as again:  # stopped: released
        assert again.truth("orders", tenant="acme") == {"o-1": {}}

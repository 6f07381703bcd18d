"""A real ``redis-server`` per test, on a free port in a temp dir (no global service).

Without ``redis-server`` on PATH these tests FAIL (never skip) with the command
that installs it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.subproc import ServeProcess, free_port

INSTALL = "apt-get install -y redis-server"


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """:func:`tests.conftest.wait_until` with this package's default deadline."""
    return wait_until(predicate, timeout, 0.02, what)


class RedisServer:
    """``redis-server --port P --dir D --save '' --appendonly yes|no`` in a subprocess."""

    def __init__(self, directory: Path, *, appendonly: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(f"redis-server is not installed; install it with: {INSTALL}")
        self.binary = binary
        self.dir = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--dir", str(self.dir), "--save", ""),
            *("--appendonly", "yes" if self.appendonly else "no"),
            *("--appendfsync", "always"),
        ]
        with open(self.dir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._answers, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError((self.dir / "redis.log").read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: what is not in the AOF is gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def redis_aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_volatile(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    yield server
    server.stop()


class Gateway(ServeProcess):
    """``python -m rtnb serve --store redis://… --port P --secret-file F`` in a subprocess."""

    def __init__(self, store: str, secret_file: Path, log_dir: Path, *extra: str) -> None:
        port = free_port()
        args = ("--store", store, "--secret-file", str(secret_file))
        super().__init__(args, port, log_dir / f"gateway-{port}.err", *extra)
        self.store, self.secret_file, self.log_dir = store, secret_file, log_dir
        self.err_tail = 3000

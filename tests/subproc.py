"""Real servers in subprocesses, for crash tests: a free port, and ``rtnb serve``
started, SIGKILLed and stopped (used by ``tests/server`` and ``tests/redis``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """``python -m rtnb serve ARGS --port P --log-level warning EXTRA`` in a subprocess.

    ``start`` returns once the server printed its listening line (naming the
    port), else fails with the tail of ``err_path``, where its stderr goes.
    """

    def __init__(self, args: tuple[str, ...], port: int, err_path: Path, *extra: str) -> None:
        self.args, self.port, self.err_path, self.extra = args, port, err_path, extra
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self.err_tail = 2000  # characters of stderr shown when start fails

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.err_path, "a") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "rtnb", "serve", *self.args),
                    *("--port", str(self.port), "--log-level", "warning", *self.extra),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once listening
        assert f":{self.port}" in line, self.err_path.read_text()[-self.err_tail :]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> None:
        """SIGINT (a clean shutdown), then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

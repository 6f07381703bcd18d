"""A busy port is named, with what to do instead: no traceback, no bare errno."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

import pytest

import rtnb
from rtnb.server import serve


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_busy_port_names_the_port_and_suggests_port_0(busy_port) -> None:
    with pytest.raises(
        rtnb.PortInUse, match=rf"port {busy_port} on 127\.0\.0\.1 is already in use.*port 0"
    ) as caught:
        serve(port=busy_port)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.EADDRINUSE


def test_rtnb_serve_on_a_busy_port_says_so_in_one_line(busy_port) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtnb", "serve", "--port", str(busy_port)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"rtnb serve: port {busy_port} on 127.0.0.1 is already in use (another server?); "
        "choose another port, or port 0 (CLI: --port 0) for any free one"
    )

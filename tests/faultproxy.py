"""A TCP proxy that cuts a link at a chosen command (for tests against real servers).

Every accepted connection is piped to ``upstream``. Once :meth:`FaultProxy.arm` is called,
the first chunk sent *to* the upstream that contains every given marker is the cut point:

* ``mode="before"``: the chunk is not forwarded, both sockets close — the server never
  sees the command;
* ``mode="after"``: the chunk is forwarded, the server's reply is read and thrown away,
  then both sockets close — the command ran but its client never hears so.

Then the proxy disarms itself and pipes everything again (new connections work).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["before", "after"]


class FaultProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._markers: tuple[bytes, ...] | None = None
        self._mode: Mode = "before"
        self.cut = threading.Event()  # set once the armed cut happened
        self._closed = False
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def arm(self, *markers: bytes, mode: Mode) -> None:
        with self._lock:
            self._markers, self._mode = markers, mode
            self.cut.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in tuple(self._sockets):
                with contextlib.suppress(OSError):
                    sock.close()

    # -- plumbing ---------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            replied = threading.Event()  # upstream answered the cut command (mode "after")
            args = (client, server, replied)
            threading.Thread(target=self._up, args=args, daemon=True).start()
            threading.Thread(target=self._down, args=args, daemon=True).start()

    def _shut(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def _trigger(self, chunk: bytes) -> Mode | None:
        with self._lock:
            markers = self._markers
            if markers is None or not all(m in chunk for m in markers):
                return None
            self._markers = None
            return self._mode

    def _up(self, client: socket.socket, server: socket.socket, replied: threading.Event) -> None:
        """Client -> upstream, watching for the armed command."""
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                mode = self._trigger(chunk)
                if mode == "before":
                    self.cut.set()
                    break
                if mode == "after":
                    # Stop the reply from reaching the client: close the client side
                    # first, then let the server run it. The other pump is the one
                    # reader of the server's side: it says when the reply came (reading
                    # it here too raced it, and the cut was then reported 5 s late).
                    self._shut(client)
                    server.sendall(chunk)
                    replied.wait(5)
                    self.cut.set()
                    break
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            self._shut(client, server)

    def _down(self, client: socket.socket, server: socket.socket, replied: threading.Event) -> None:
        try:
            while True:
                chunk = server.recv(65536)
                if not chunk:
                    break
                client.sendall(chunk)  # fails once a cut "after" shut the client: reply dropped
        except OSError:
            pass
        finally:
            replied.set()  # the reply was dropped, or upstream closed: nothing more comes

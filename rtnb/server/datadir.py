"""One ``data=DIR`` has one writer: an OS lock on ``DIR/rtnb.lock``.

Two servers writing one SQLite log would both acknowledge the same sequences
for different events, and after a restart acknowledged events would be missing
(DESIGN.md §3: "a position is never reused"). So a server holds an exclusive
``flock`` on a lock file in its data directory for as long as it runs, and a
second server on the same directory refuses to start, naming the directory and
the PID that holds it.

``flock`` (not a PID file checked by hand) because the kernel releases it when
the holder's process ends, however it ends: a server killed with SIGKILL, or a
machine that lost power, never blocks its successor, and no stale PID can be
mistaken for a live one. The lock belongs to the open file description, so a
second ``serve(data=DIR)`` in the *same* process is refused too; the
descriptor is not inherited by child processes (``O_CLOEXEC``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Final

from ..protocol.errors import RtnbError

#: The lock file under ``data=DIR``; it holds the PID of the server using DIR.
LOCK_FILE: Final = "rtnb.lock"


class DataDirLocked(RtnbError, RuntimeError):
    """Another rtnb server holds this data directory."""

    def __init__(self, directory: str, pid: int | None) -> None:
        self.directory = directory
        self.pid = pid
        holder = f"PID {pid}" if pid is not None else "a process whose PID it has not written yet"
        super().__init__(
            f"the data directory {directory} is in use by another rtnb server ({holder}); "
            "one directory has one writer: stop that server first, or use another --data "
            "directory"
        )


class DataDirLock:
    """An exclusive lock on a data directory, held until :meth:`release`."""

    def __init__(self, directory: str, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str]) -> DataDirLock:
        """Lock ``directory`` (created 0700 if missing) or raise :class:`DataDirLocked`."""
        path = os.path.abspath(os.fspath(directory))
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock (idempotent). The file stays: removing it could let two servers
        lock two different files of the same name."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def __del__(self) -> None:  # a server that failed to start: its lock goes with it
        with contextlib.suppress(Exception):
            self.release()

    def __repr__(self) -> str:
        return f"<DataDirLock {self.directory} {'held' if self.held else 'released'}>"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

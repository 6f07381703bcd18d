"""Start JupyterLab on a notebook, self-contained: ``make demo``, browser tests, benchmarks.

Everything JupyterLab and IPython would write to the home directory (config,
data, runtime files, user settings, workspaces, the IPython profile) goes
under one ``state`` directory the caller chooses (``rtnb-demo/.lab`` for
``make demo``, a temporary directory for tests), and the server is
token-protected on loopback. The notebook's kernel inherits ``env``, which
is how the reference server's URL and a demo token reach it
(``RTNB_URL`` / ``RTNB_TOKEN``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import IO, Any, Final

from ..protocol.errors import SetupError, WaitTimeout

#: Seconds to wait for JupyterLab to answer on its port: 60.
LAB_START_TIMEOUT: Final = 60.0

# Quiet, deterministic JupyterLab: no news or update pop-ups over the widgets.
_SETTINGS: Final[dict[str, dict[str, Any]]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",  # every cell stays in the DOM (tests read outputs)
    },
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class Lab:
    """A JupyterLab server process serving ``root`` (stop it with :meth:`stop`)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        state: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        token: str | None = None,
        expose_app: bool = False,
        log: IO[str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.root = pathlib.Path(root).resolve()
        self.state = pathlib.Path(state).resolve()
        self.port = port or free_port()
        self.token = token or secrets.token_urlsafe(24)
        self.log_path = self.state / "jupyterlab.log"
        dirs = {
            name: self.state / name
            for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, values in _SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(json.dumps(values, indent=2))
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env.update(
            {
                "JUPYTER_CONFIG_DIR": str(dirs["config"]),
                "JUPYTER_DATA_DIR": str(dirs["data"]),
                "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
                "IPYTHONDIR": str(dirs["ipython"]),
                "JUPYTER_PLATFORM_DIRS": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        args = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            *(["--LabApp.expose_app_in_browser=True"] if expose_app else []),
            *extra_args,
        ]
        self._log = log if log is not None else self.log_path.open("w")
        self.proc = subprocess.Popen(
            args,
            env=child_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, path: str) -> str:
        """The URL that opens ``path`` (relative to ``root``) in JupyterLab, token included.

        This is JupyterLab's own login token (the URL ``jupyter lab`` itself
        prints for the user to open), never an rtnb access token or cursor.
        """
        return f"{self.url}/lab/tree/{path}" + "?" + urllib.parse.urlencode({"token": self.token})

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        probe = urllib.request.Request(
            f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"}
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(
                    f"JupyterLab exited with {self.proc.returncode}; see {self.log_path}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(probe, timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise WaitTimeout(f"JupyterLab did not start within {LAB_START_TIMEOUT} s")

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(Exception):
            self._log.flush()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

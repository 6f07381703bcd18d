"""Real JupyterLab + headless Debian Chromium via Playwright, for browser tests and benchmarks.

Nothing here skips: if Chromium, Playwright or npm are missing, the caller
gets an error naming the exact command that fixes it (CI installs Chromium
with apt in ``.ci/run``; Playwright's own browser download is never used).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tests.conftest import wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
#: The screenshots the README and docs show; browser tests replace them only when
#: :data:`UPDATE_SCREENSHOTS` is set to 1 (otherwise a test run leaves the tree clean).
DOCS_IMG = ROOT / "docs" / "img"
UPDATE_SCREENSHOTS = "RTNB_UPDATE_SCREENSHOTS"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
AXE_VERSION = "4"


class BrowserUnavailable(RuntimeError):
    """Chromium, Playwright or npm is missing; the message says how to install it."""


def require_chromium() -> str:
    """The Chromium binary; as root on a machine with apt, install it first if missing."""
    if not os.path.exists(CHROMIUM) and _can_apt():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)
    if not os.path.exists(CHROMIUM):
        raise BrowserUnavailable(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            f"Install it (as root): {INSTALL_CHROMIUM}"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise BrowserUnavailable(
            "Playwright (python) is missing: .venv/bin/python -m pip install -e '.[test]'"
        ) from exc
    return CHROMIUM


def _can_apt() -> bool:
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return is_root and shutil.which("apt-get") is not None and not os.environ.get("RTNB_NO_APT")


def axe_source() -> str:
    """axe-core's browser build, installed from the npm registry into test-artifacts/."""
    prefix = ARTIFACTS / "node"
    script = prefix / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        command = f"npm install --no-save --prefix {prefix} axe-core@{AXE_VERSION}"
        if npm is None:
            raise BrowserUnavailable(f"npm is missing (apt-get install -y npm), then: {command}")
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix),
             f"axe-core@{AXE_VERSION}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0 or not script.exists():
            raise BrowserUnavailable(f"installing axe-core failed; run: {command}\n{done.stderr}")
    return script.read_text()


def screenshot_path(name: str) -> pathlib.Path:
    """Where a browser test writes screenshot ``name`` (``test-artifacts/``, git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def publish_screenshot(shot: pathlib.Path, name: str) -> bool:
    """Copy ``shot`` over ``docs/img/<name>`` when ``RTNB_UPDATE_SCREENSHOTS=1``; True if so."""
    if os.environ.get(UPDATE_SCREENSHOTS) != "1":
        return False
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_IMG / name)
    return True


def write_notebook(path: pathlib.Path, cells: Sequence[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


@contextmanager
def chromium_page(
    profile: pathlib.Path, *, width: int = 1400, height: int = 1000
) -> Iterator[tuple[Any, Any]]:
    """A fresh headless Chromium profile and one page: yields ``(context, page)``."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield context, page
        finally:
            context.close()


class LabPage:
    """Helpers over a JupyterLab page opened with ``expose_app_in_browser``."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )

    def open(self, url: str, timeout: float = 90.0) -> None:
        self.page.goto(url)
        self.wait_js(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            "?.status === 'idle'",
            timeout,
            "the notebook's kernel to start",
        )

    def run_all(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def kernel_idle(self, timeout: float = 60.0) -> None:
        self.wait_js(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'idle'",
            timeout,
            "the kernel to be idle",
        )

    def execute(self, code: str) -> None:
        """Run ``code`` in the notebook's kernel without waiting (like a cell, no output)."""
        self.page.evaluate(
            "code => { window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            ".requestExecute({code}); }",
            code,
        )

    def kernel_status(self) -> str:
        status: str = self.page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        )
        return status

    def wait_js(
        self, expr: str, timeout: float, what: str, arg: Any = None, debug: str | None = None
    ) -> Any:
        """Wait until ``expr`` (a JS function) returns something truthy; fail after ``timeout``.

        ``debug``: a JS function whose result is added to the failure message.
        """
        from playwright.sync_api import TimeoutError as PwTimeout

        try:
            handle = self.page.wait_for_function(expr, arg=arg, timeout=timeout * 1000, polling=50)
        except PwTimeout:
            extra = ""
            if debug is not None:
                try:
                    extra = f"; state: {self.page.evaluate(debug, arg)!r}"
                except Exception as exc:
                    extra = f"; state unavailable: {exc}"
            if self.errors or self.console_errors:
                extra += f"; page errors: {self.errors[-3:]}; console: {self.console_errors[-3:]}"
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}") from None
        return handle.json_value()

    def theme(self, name: str) -> None:
        self.page.evaluate(
            "name => window.jupyterapp.commands.execute('apputils:change-theme', {theme: name})",
            name,
        )
        light = "true" if "Light" in name else "false"
        self.wait_js(  # the theme is applied and JupyterLab's loading splash is gone
            f"() => document.body.dataset.jpThemeLight === '{light}'"
            " && !document.querySelector('#jupyterlab-splash')",
            20,
            f"the {name} theme",
        )


def new_workdir(prefix: str = "rtnb-lab-") -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix))


def wait_py(predicate: Any, timeout: float, what: str) -> Any:
    """:func:`tests.conftest.wait_until`, naming what is waited for."""
    return wait_until(predicate, timeout, 0.02, what)


def dumps(value: Any) -> str:
    return json.dumps(value)

"""The widgets' front-end code: plain ES modules in ``static/``, no bundler.

Each widget's ``_esm`` is its module preceded by the sibling modules it
imports (``common.js``, and for the table ``table_store.js`` and
``table_order.js``). The files are real ES modules (``import { … } from
"./common.js"``, ``export function …``), so editors and ``tsc --checkJs``
understand them; :func:`compose` joins them into the one module anywidget
loads: dependencies first, each once, with their ``import`` lines and
``export`` keywords dropped (and a dependency's one-line ``export default
name;``). That is the whole build step.

``_esm`` is a *string* outside development mode. A file path would make
anywidget wrap it in ``FileContents`` and connect a callback that holds every
widget instance forever (anywidget#929: widgets are never garbage-collected).
With ``ANYWIDGET_HMR=1`` (and the sources outside ``site-packages``) the
module is instead a ``VirtualFileContents`` recomposed whenever a source file
changes, so anywidget hot-reloads every live widget — the leak is the price
of hot reloading, paid only in development.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
from typing import Any, Final

STATIC: Final = pathlib.Path(__file__).with_name("static")
_IMPORT = re.compile(r'^import\s*\{[^}]*\}\s*from\s*"\./([\w-]+\.js)";?[ \t]*$', re.MULTILINE)
_EXPORT = re.compile(r"^export\s+(?=(?:async\s+)?(?:function|const|let|class)\b)", re.MULTILINE)
# a widget module ends ``export default fooWidget;`` (one line), so another module can import
# ``fooWidget`` and draw it as a part (the Dashboard): dropped when it is a dependency
_DEFAULT = re.compile(r"^export\s+default\s+\w+;[ \t]*$", re.MULTILINE)


def hmr_enabled() -> bool:
    """Hot reloading is on when ``ANYWIDGET_HMR=1`` and the sources are not installed."""
    if os.environ.get("ANYWIDGET_HMR") != "1":
        return False
    return not ({"site-packages", "dist-packages"} & set(STATIC.parts))


def _have_watchfiles() -> bool:
    return importlib.util.find_spec("watchfiles") is not None


def sources(module: str) -> list[str]:
    """``module`` and the sibling modules it imports, dependencies first, each once."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise RuntimeError(
                f"import cycle in rtnb/widgets/static: {' -> '.join((*stack, name))}"
            )
        if name in order:
            return
        text = (STATIC / name).read_text(encoding="utf-8")
        for dep in _IMPORT.findall(text):
            visit(dep, (*stack, name))
        order.append(name)

    visit(module, ())
    return order


def compose(module: str) -> str:
    """``module`` with the sibling modules it imports, as one ES module."""
    parts = []
    for name in sources(module):
        text = _IMPORT.sub("", (STATIC / name).read_text(encoding="utf-8"))
        if name != module:
            text = _DEFAULT.sub("", _EXPORT.sub("", text))
        parts.append(f"// ---- {name}\n{text}")
    return "\n".join(parts)


def _watched(parts: list[str], build: Any) -> Any:
    """A ``VirtualFileContents`` rebuilt when any of ``parts`` changes (HMR only)."""
    from anywidget._file_contents import FileContents, VirtualFileContents

    virtual = VirtualFileContents(build())
    watchers = []
    for name in parts:
        fc = FileContents(STATIC / name, start_thread=True)
        fc.changed.connect(lambda _text: setattr(virtual, "contents", build()))
        watchers.append(fc)
    # keep the watcher threads alive as long as the module
    setattr(virtual, "_rtnb_watchers", watchers)  # noqa: B010
    return virtual


def esm(module: str) -> Any:
    """The ``_esm`` for a widget class: a ``str``, or a watched virtual file under HMR."""
    if hmr_enabled():
        if not _have_watchfiles():
            import warnings

            warnings.warn(
                "ANYWIDGET_HMR=1 but watchfiles is not installed: rtnb widgets will not "
                "hot-reload (pip install watchfiles)",
                stacklevel=2,
            )
            return compose(module)
        return _watched(sources(module), lambda: compose(module))
    return compose(module)


def css() -> Any:
    """The ``_css`` shared by every rtnb widget (``static/rtnb.css``)."""
    path = STATIC / "rtnb.css"
    if hmr_enabled():
        if not _have_watchfiles():
            return path.read_text(encoding="utf-8")
        return _watched(["rtnb.css"], lambda: path.read_text(encoding="utf-8"))
    return path.read_text(encoding="utf-8")

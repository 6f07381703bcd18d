"""rtnb's widgets in Panel, offline: anywidget's front end from the server, not a CDN.

A served Panel app (``panel serve``, ``pn.serve``) shows an ipywidget through
``ipywidgets_bokeh`` (``pn.extension("ipywidgets")``), whose page loads every
widget package that is not ipywidgets' own -- anywidget included -- from a CDN
(``https://unpkg.com/anywidget@…/dist/index``). Offline, or where the CDN is
blocked, nothing renders.

rtnb points Panel at the anywidget front end installed beside the kernel
(anywidget's ``nbextension/index.js``, the same AMD module the CDN serves), handed
to the page inside the widget's model as a ``data:`` URL: no request at all, so
it works offline, behind a proxy and under any URL prefix.

* ``pn.panel(widget)`` and Panel layouts (``pn.Column(rtnb.Dashboard(...))``) need
  no call: rtnb widgets implement ``__panel__``.
* ``pn.pane.IPyWidget(widget)`` directly: call :func:`enable` once first (before
  ``pn.extension("ipywidgets")``; calling it again does nothing).

The page's widget manager takes its CDN from the first ipywidget it shows, so a
page whose ipywidgets are all anywidgets (and ipywidgets' own controls) is served
locally; a widget of another package (ipyleaflet…) in the same page keeps the CDN
for the whole page. In a Jupyter kernel (``pn.extension()`` in a notebook) Panel
renders ipywidgets through Jupyter's own widget manager, and nothing changes.
"""

from __future__ import annotations

import base64
import functools
import logging
import pathlib
import threading
from typing import Any, Final

from .protocol.errors import SetupError

__all__ = ["bundle_url", "enable", "is_enabled"]

logger = logging.getLogger("rtnb.panel")

#: ipywidgets' own packages: the page has them built in and never fetches them.
BUILTIN_MODULES: Final = frozenset(
    {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}
)

_lock = threading.Lock()
_enabled = False


@functools.cache
def bundle_url() -> str:
    """anywidget's front end as a ``data:`` URL standing in for the CDN's base URL.

    ipywidgets_bokeh fetches ``{cdn}/anywidget@{version}/dist/index``; everything
    after the ``#`` is a fragment, which ``fetch`` drops: the page gets the bundle
    installed here, the one that matches the kernel's anywidget.
    """
    import anywidget

    path = pathlib.Path(anywidget.__file__).with_name("nbextension") / "index.js"
    if not path.is_file():
        raise SetupError(
            f"anywidget's front end is missing at {path}: reinstall anywidget "
            "(pip install --force-reinstall anywidget)"
        )
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:text/javascript;base64,{encoded}#"


def _modules(model: Any) -> set[str]:
    """The widget packages a bokeh ``IPyWidget`` model's page will ask for."""
    bundle = getattr(model, "bundle", None) or {}
    states = (bundle.get("state") or {}).get("state") or {}
    found = set()
    for entry in states.values():
        for key in ("model_module", "view_module"):
            name = entry.get(key) or (entry.get("state") or {}).get(f"_{key}")
            if name:
                found.add(str(name))
    return found


def serve_locally(model: Any) -> bool:
    """Point one ``ipywidgets_bokeh`` model at the local bundle if all it needs is
    anywidget (and ipywidgets' own packages); True if it did."""
    if not hasattr(model, "cdn"):
        return False
    needed = _modules(model) - BUILTIN_MODULES
    if needed != {"anywidget"}:
        if "anywidget" in needed:
            logger.info(
                "rtnb.panel: %s also need a CDN; anywidget is loaded from it too",
                sorted(needed - {"anywidget"}),
            )
        return False
    model.cdn = bundle_url()
    return True


def enable() -> None:
    """Serve anywidget's front end to Panel pages locally (no CDN request).

    Call it before ``pn.extension("ipywidgets")``; idempotent. Needed only for
    ``pn.pane.IPyWidget(widget)`` made directly: ``pn.panel(widget)`` and layouts
    of rtnb widgets call it themselves.

    Raises:
        ImportError: Panel is not installed (``pip install panel ipywidgets_bokeh``).
    """
    global _enabled
    with _lock:
        if _enabled:
            return
        from panel.pane.ipywidget import IPyWidget

        original: Any = IPyWidget._get_ipywidget

        def _get_ipywidget(self: Any, obj: Any, doc: Any, root: Any, comm: Any, **kw: Any) -> Any:
            model = original(self, obj, doc, root, comm, **kw)
            try:
                serve_locally(model)
            except Exception:  # never break a page over where its bundle comes from
                logger.exception("rtnb.panel: could not point the page at the local bundle")
            return model

        # Panel's pane builds the bokeh model here; the wrapper only sets its ``cdn``
        IPyWidget._get_ipywidget = _get_ipywidget  # type: ignore[method-assign]
        _enabled = True


def is_enabled() -> bool:
    """True once :func:`enable` ran in this process."""
    return _enabled


def pane(widget: Any) -> Any:
    """``pn.pane.IPyWidget(widget)`` with :func:`enable` done (rtnb widgets' ``__panel__``)."""
    enable()
    from panel.pane import IPyWidget

    return IPyWidget(widget)  # type: ignore[no-untyped-call]

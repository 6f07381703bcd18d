"""``LiveChart(conn, kind="lag")``: one of :mod:`rtnb.charts`, redrawn in place as data arrives.

The chart is altair's own anywidget (:class:`altair.JupyterChart`), so it
renders with vega-embed in JupyterLab and keeps its tooltips; a refresh
replaces its spec, which is *one* comm message. Refreshes are rare on
purpose: every :data:`LIVE_CHART_INTERVAL` seconds at most (never more than
once a second), only while a view of it is on screen -- displayed directly or
inside any container (``W.VBox([chart])``): each view tells the kernel when
it is rendered and when it is removed -- only when the log has new
rows, and only if the kernel-wide message budget every rtnb widget shares
(:func:`rtnb.widgets.budget.get_budget`) has a token -- otherwise the tick
is skipped and the next one draws everything since. Building a spec is
pandas work (tens of milliseconds for a large log), so it runs on the chart's
own daemon thread, never on rtnb's runtime thread, which keeps streaming.

By default the chart is self-contained (vega's JavaScript bundled by
vl-convert, no CDN: it works offline and on Binder); ``offline=False`` loads
it from a CDN instead.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Final

import altair as alt

from .budget import get_budget

logger = logging.getLogger("rtnb.widgets")

#: Seconds between refreshes of a live chart: 2.
LIVE_CHART_INTERVAL: Final = 2.0
#: Shortest refresh interval accepted, in seconds (at most one update a second): 1.
MIN_INTERVAL: Final = 1.0
#: Seconds of recent history a live chart shows by default: 300.
LIVE_CHART_WINDOW: Final = 300.0
KINDS: Final = ("lag", "timeline", "outcomes", "mutations")


# Wraps altair's own front end (the ESM string, bundled offline or not): each view
# reports "view" when rendered and "unview" when removed, so the kernel knows a
# view exists wherever the chart is shown (a VBox, a Tab, an Output...).
_VIEW_REPORTER = """
const inner = import(URL.createObjectURL(new Blob([%s], {type: "text/javascript"})));
async function render(ctx) {
  const mod = await inner;
  ctx.model.send({event: "view"});
  const cleanup = await mod.default.render(ctx);
  return () => {
    ctx.model.send({event: "unview"});
    if (typeof cleanup === "function") cleanup();
  };
}
export default { render };
"""


def _front_end(offline: bool) -> str:
    """altair's JupyterChart front end (vega bundled by vl-convert if offline), reporting views."""
    import json

    from altair.jupyter.jupyter_chart import load_js_src

    from ..charts.render import jupyter_chart_esm

    # offline: altair's own offline front end, bundled once per process in a child
    # process (vl-convert holds the GIL for seconds while bundling)
    esm: str = jupyter_chart_esm() if offline else load_js_src()
    return _VIEW_REPORTER % json.dumps(esm)


def _log_of(source: Any) -> Any:
    from ..charts.data import as_log

    return as_log(source)


def _version(log: Any) -> tuple[int, ...]:
    """Rows ever appended to each table of the log (committed or still pending)."""
    version: tuple[int, ...] = log.version
    return version


class LiveChart(alt.JupyterChart):
    """A chart of a connection's (or replay's) log that refreshes itself.

    ``kind``: ``"lag"``, ``"timeline"``, ``"outcomes"`` or ``"mutations"``.
    ``window``: seconds of recent history to show (None: the whole log).
    ``interval``: seconds between refreshes (≥ 1). Other keyword arguments go
    to the chart function (``width=``, ``height=``, ``max_bins=``...).
    """

    def __init__(
        self,
        source: Any,
        kind: str = "lag",
        *,
        window: float | None = LIVE_CHART_WINDOW,
        interval: float = LIVE_CHART_INTERVAL,
        offline: bool = True,
        **chart_options: Any,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if not interval >= MIN_INTERVAL:
            raise ValueError(f"interval must be >= {MIN_INTERVAL} s (at most one update a second)")
        if window is not None and not window > 0:
            raise ValueError(f"window must be > 0 seconds or None, got {window!r}")
        self._esm = _front_end(offline)
        self.kind = kind
        self.window = window
        self.interval = float(interval)
        self._source = source
        self._log = _log_of(source)
        self._options = chart_options
        self._version = _version(self._log)
        self._active = threading.Event()
        self._stopped = threading.Event()
        self._views = 0
        #: refreshes sent since creation, and ticks skipped for the shared budget
        self.refreshes = 0
        self.skipped = 0
        super().__init__(self._build())
        self.on_msg(_on_view_message)
        self._thread = threading.Thread(
            target=_run, args=(weakref.ref(self),), name=f"rtnb-livechart-{kind}", daemon=True
        )
        self._thread.start()

    # -- building ------------------------------------------------------------------

    def _build(self) -> Any:
        from .. import charts

        options = dict(self._options)
        if self.window is not None and "start" not in options:
            newest = _newest(self._log)
            if newest is not None:
                options["start"] = newest - self.window
        return getattr(charts, self.kind)(self._log, **options)

    def refresh(self) -> bool:
        """Redraw now if the log changed and the shared budget allows; True if sent."""
        version = _version(self._log)
        if version == self._version:
            return False
        if not get_budget().take():
            self.skipped += 1
            return False
        self._version = version
        self.chart = self._build()
        self.refreshes += 1
        return True

    # -- life cycle -----------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self._active.set()  # displayed: a view is coming (it reports itself too)
        return super()._repr_mimebundle_(**kwargs)

    def __panel__(self) -> Any:
        """Panel shows it with anywidget's front end from the kernel, no CDN (``rtnb.panel``)."""
        from .. import panel

        return panel.pane(self)

    def _view_changed(self, delta: int) -> None:
        self._views = max(0, self._views + delta)
        if self._views > 0:
            self._active.set()
        elif not self._stopped.is_set():
            self._active.clear()  # no view left anywhere: stop spending the budget

    def start(self) -> None:
        """Refresh even though no view reports itself (a front end without anywidget)."""
        self._active.set()

    def close(self) -> None:
        stopped = getattr(self, "_stopped", None)  # None if __init__ failed half-way
        if stopped is not None:
            stopped.set()
            self._active.set()
        super().close()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else "live"
        return f"<LiveChart {self.kind} every {self.interval:g} s, {state}, {self.refreshes} refreshes>"


def _on_view_message(widget: Any, content: Any, buffers: Any) -> None:
    event = content.get("event") if isinstance(content, dict) else None
    if event == "view":
        widget._view_changed(+1)
    elif event == "unview":
        widget._view_changed(-1)


def _newest(log: Any) -> float | None:
    from ..charts.data import window

    try:
        win = window(log, None, None, 1)
    except ValueError:
        return None
    return win.t1


def _run(ref: weakref.ReferenceType[LiveChart]) -> None:
    """The refresh loop (a daemon thread); ends when the chart is closed or collected."""
    chart = ref()
    if chart is None:
        return
    active, stopped, interval = chart._active, chart._stopped, chart.interval
    del chart
    while not stopped.is_set():
        active.wait()  # sleeps while no view of the chart exists
        if stopped.wait(interval):
            return
        if not active.is_set():
            continue
        chart = ref()
        if chart is None:
            return
        try:
            chart.refresh()
        except Exception:  # keep refreshing; a bad tick must not end the chart
            logger.exception("rtnb LiveChart: refreshing the %s chart failed", chart.kind)
        del chart

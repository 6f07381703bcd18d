"""What a widget showed, as plain HTML, for exports and kernel-less viewers.

A widget view needs a live kernel (or, in an nbconvert HTML export, the widget
manager from a CDN, and even then the rows, which travel as custom messages,
are not in the saved state). nbconvert ranks the widget view above
``text/html``, so a fallback inside the widget's own mimebundle would never be
chosen. Instead, when an rtnb widget is displayed it also displays a *separate*
``text/html`` output with a ``display_id``: the rows it shows (capped at
:data:`RECORDED_ROWS`), labelled "Recorded HH:MM:SS UTC — not live"
(:data:`rtnb.core.wording.WORDING`). The runtime thread refreshes it at most
once per :data:`RECORDED_INTERVAL` seconds while it changes
(``update_display``), and the kernel's main thread refreshes every twin at
the end of each cell (IPython's ``post_run_cell``, before the cell's reply):
so an executed notebook (``jupyter nbconvert --execute``) shows the data as of
the end of its last cell, a saved one reopened without a kernel and GitHub's
viewer as of the last refresh, and none says "Live".

While the live view is on screen the recorded twin is hidden by the widgets'
CSS (``.rtnb-recorded`` inside an output area that also holds a rendered rtnb
view); where no rtnb view renders, nothing hides it.
"""

from __future__ import annotations

import html
import itertools
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ..core.wording import fmt_clock_utc, say

#: Seconds between two refreshes of a recorded view at most: 1.0.
RECORDED_INTERVAL: Final = 1.0
#: Rows a recorded table shows at most: 50 (the rest are counted).
RECORDED_ROWS: Final = 50
#: Characters of one recorded cell at most: 200.
_MAX_CELL: Final = 200

logger = logging.getLogger("rtnb.widgets")
#: every displayed twin, refreshed at the end of each cell
_VIEWS: weakref.WeakSet[RecordedView] = weakref.WeakSet()
_hooked = False


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) > _MAX_CELL:
        text = text[: _MAX_CELL - 1] + "…"
    return html.escape(text)


def recorded_html(
    title: str,
    at: float,
    *,
    columns: Sequence[str] = (),
    rows: Iterable[tuple[str, dict[str, Any]]] = (),
    total: int = 0,
    facts: Sequence[tuple[str, str]] = (),
) -> str:
    """A recorded view: ``title``, the "Recorded … — not live" label, facts and rows."""
    label = say("recorded", clock=fmt_clock_utc(at))
    parts = [
        '<div class="rtnb-recorded" data-rtnb-recorded="1">',
        f"<p><strong>{_cell(title)}</strong> — <em>{html.escape(label)}</em></p>",
    ]
    if facts:
        items = "".join(f"<li>{_cell(k)}: {_cell(v)}</li>" for k, v in facts)
        parts.append(f"<ul>{items}</ul>")
    shown = list(itertools.islice(rows, RECORDED_ROWS))
    if columns or shown:
        head = "".join(f"<th>{_cell(c)}</th>" for c in ("entity_id", *columns))
        body = "".join(
            "<tr>"
            + f"<td>{_cell(eid)}</td>"
            + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns)
            + "</tr>"
            for eid, row in shown
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        more = total - len(shown)
        parts.append(
            f"<p>{total:,} rows" + (f"; the first {len(shown):,} shown" if more else "") + "</p>"
        )
    parts.append("</div>")
    return "".join(parts)


class RecordedView:
    """The ``text/html`` twin of one displayed widget.

    ``render()`` must run on rtnb's runtime thread; ``call(render)`` runs it
    there from any thread. :meth:`show` displays the twin (kernel thread, when
    the widget is displayed); :meth:`refresh` updates it if it changed (the
    runtime thread every :data:`RECORDED_INTERVAL` s, and the kernel thread at
    the end of every cell).
    """

    def __init__(
        self,
        display_id: str,
        render: Callable[[], str],
        call: Callable[[Callable[[], str]], str],
    ) -> None:
        self.display_id = display_id
        self.render = render
        self.call = call
        self.shown: str | None = None
        self.closed = False

    def show(self, html_text: str) -> None:
        from IPython.display import HTML, display

        self.shown = html_text
        display(HTML(html_text), display_id=self.display_id)  # type: ignore[no-untyped-call]
        _VIEWS.add(self)
        _hook_cells()

    def refresh(self, text: str | None = None) -> bool:
        """Update the displayed twin if what it would show changed; True if updated.

        ``text``: what it shows now, if already rendered (else rendered here, so
        call it on the runtime thread).
        """
        if self.shown is None or self.closed:
            return False
        if text is None:
            text = self.render()
        if not text or text == self.shown:
            return False
        from IPython.display import HTML, update_display

        self.shown = text
        update_display(HTML(text), display_id=self.display_id)  # type: ignore[no-untyped-call]
        return True


def refresh_all(*_: Any) -> None:
    """Bring every twin up to date now (kernel thread; IPython's ``post_run_cell``)."""
    for view in list(_VIEWS):
        if view.closed:
            continue
        try:
            view.refresh(view.call(view.render))
        except Exception:  # a closed connection or runtime: keep what it showed
            logger.debug("rtnb: a recorded view was not refreshed", exc_info=True)


def _hook_cells() -> None:
    global _hooked
    if _hooked:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.events.register("post_run_cell", refresh_all)
        _hooked = True

"""``rtnb.charts``: altair charts of a telemetry log, for notebooks and incident reports.

``lag(log)``, ``timeline(log)``, ``outcomes(log)`` and ``mutations(log)`` take
an :class:`rtnb.EnvelopeLog` -- or a connection or replay (their ``.log``) --
and return altair charts. They aggregate in pandas first, so a log of a
million envelopes still embeds at most :data:`MAX_ROWS` rows, and render in
JupyterLab or export with ``chart.save("lag.png")`` (vl-convert). Every chart
takes ``start=`` / ``end=`` (datetimes, ISO strings or unix seconds) to zoom
into an incident.

They draw with no network: ``import rtnb.charts`` enables rtnb's offline
altair renderer (:mod:`.render`: Vega inlined, no CDN) unless you picked
another renderer yourself -- in JupyterLab and in an exported HTML alike.

Importing this package imports pandas and altair (``import rtnb`` does not).
"""

from __future__ import annotations

from . import render
from .specs import HEIGHT, MAX_BINS, MAX_ROWS, WIDTH, lag, mutations, outcomes, timeline

__all__ = ["HEIGHT", "MAX_BINS", "MAX_ROWS", "WIDTH", "lag", "mutations", "outcomes", "timeline"]

render.enable()

"""The words every view uses for a status: one table for Python and the browser.

``Topic.freshness`` (``str()``), the widgets and their browser code all say
the same thing in the same words. Python formats these templates here; the
browser has a verbatim copy, ``WORDING`` in ``rtnb/widgets/static/common.js``,
filled by its ``fill()`` with the same placeholders (``{age}``, ``{topic}``,
…) — the browser must format ages itself, as they tick there without a kernel
message. ``tests/widgets/test_wording_parity.py`` fails when the two tables
differ, and runs the browser's ``fmtAge`` against :func:`fmt_age`.

A new status (say i17's "too large") adds one row here and the same row in
``common.js``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Final

# The rows between the two markers are parsed as JSON by the parity test; keep
# them one string literal per line.
# wording:begin
WORDING: Final[dict[str, str]] = {
    "live": "Live · updated {age} ago",
    "live_no_data": "Live · no data yet",
    "replaying": "Replaying {missing} missed events",
    "replaying_snapshot": "Replaying — refreshing from the server",
    "stale": "Stale — {as_of}, {activity}",
    "pending": "Connecting — {activity}",
    "quiet": "Quiet — no events for {quiet} (expected within {stale_after})",
    "refused": "Refused — {reason}",
    "forbidden": "Forbidden — the server refused topic “{topic}”",
    "forbidden_all": "Forbidden — the server refused every topic",
    "unknown": "Unknown topic — the server has no topic “{topic}”",
    "unknown_all": "Unknown topics — the server has none of them",
    "closed": "Closed — {reason}",
    "as_of": "data as of {clock}",
    "no_data": "no data yet",
    "no_kernel": "No kernel — {as_of}",
    "kernel_restarted": "Kernel restarted — this output is frozen",
    "recorded": "Recorded {clock} UTC — not live",
}
# wording:end


def say(key: str, **values: object) -> str:
    """``WORDING[key]`` with its placeholders filled."""
    return WORDING[key].format(**values)


def fmt_age(s: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 4 s``, ``2 h 5 min`` (as ``fmtAge`` in ``common.js``)."""
    if s < 10:
        return f"{max(0.0, s):.1f} s"
    if s < 60:
        return f"{math.floor(s)} s"
    if s < 3600:
        return f"{math.floor(s / 60)} min {math.floor(s % 60)} s"
    return f"{math.floor(s / 3600)} h {math.floor((s % 3600) / 60)} min"


def fmt_clock_utc(unix: float) -> str:
    """``12:03:55`` in UTC (a recorded view says "UTC": it is read anywhere, later)."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%H:%M:%S")

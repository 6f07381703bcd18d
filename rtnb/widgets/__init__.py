"""rtnb's notebook widgets (anywidget): live tables, freshness pills, dashboards.

``StreamTable(topic)``, ``Freshness(conn_or_topic)`` and ``Dashboard(conn,
topics)`` read batched change sets from the store on rtnb's runtime thread
and send at most ``fps`` custom messages a second each, all of them within
one kernel-wide budget (:mod:`rtnb.widgets.budget`). The front end is plain
ES modules in ``static/`` (:mod:`rtnb.widgets.assets`). The message protocol
between kernel and browser is described in :mod:`rtnb.widgets.feed` and
:mod:`rtnb.widgets.rows`.
"""

from __future__ import annotations

from .budget import DEFAULT_FPS, MessageBudget, get_budget
from .dashboard import Counters, Dashboard
from .freshness import Freshness
from .rows import Action
from .table import StreamTable

__all__ = [
    "DEFAULT_FPS",
    "Action",
    "Counters",
    "Dashboard",
    "Freshness",
    "MessageBudget",
    "StreamTable",
    "get_budget",
]

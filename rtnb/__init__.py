"""rtnb — live, event-driven data as a first-class citizen in Jupyter.

Importing ``rtnb`` is light: pandas, altair, anywidget, the transports and the
reference server are imported only when a name that needs them is first used
(PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.status import Outcome, Status
from .protocol.errors import (
    ConnectionClosed,
    DemoFilesMissing,
    ErrorCode,
    InvalidFrame,
    LocalProtocolError,
    PortInUse,
    RecordingExists,
    RemoteProtocolError,
    RtnbError,
    ServerStartError,
    ServerStopped,
    SetupError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from . import charts, panel
    from .client.connection import Connection, connect, connect_async
    from .client.limits import Limits
    from .client.mutation import Mutation, MutationError
    from .client.replay import Replay, replay
    from .client.source import ConfirmedIdentity, Source
    from .client.state import ConnectionState
    from .client.topic import Topic, TopicFreshness
    from .server import ServerHandle, serve
    from .telemetry import EnvelopeLog
    from .widgets import Dashboard, Freshness, StreamTable
    from .widgets.livechart import LiveChart
    from .widgets.replay_controls import ReplayControls

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY: dict[str, str] = {
    "Connection": "rtnb.client.connection",
    "ConfirmedIdentity": "rtnb.client.source",
    "ConnectionState": "rtnb.client.session",
    "Dashboard": "rtnb.widgets",
    "EnvelopeLog": "rtnb.telemetry",
    "Freshness": "rtnb.widgets",
    "LiveChart": "rtnb.widgets.livechart",
    "Limits": "rtnb.client.limits",
    "Mutation": "rtnb.client.mutation",
    "MutationError": "rtnb.client.mutation",
    "Replay": "rtnb.client.replay",
    "ReplayControls": "rtnb.widgets.replay_controls",
    "ServerHandle": "rtnb.server",
    "Source": "rtnb.client.source",
    "StreamTable": "rtnb.widgets",
    "Topic": "rtnb.client.topic",
    "TopicFreshness": "rtnb.client.topic",
    "connect": "rtnb.client.connection",
    "connect_async": "rtnb.client.connection",
    "replay": "rtnb.client.replay",
    "serve": "rtnb.server",
}
#: submodules reachable as attributes (``rtnb.charts.lag(log)``, ``rtnb.panel.enable()``)
_SUBMODULES = frozenset({"charts", "panel"})

__all__ = [
    "ConfirmedIdentity",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "Dashboard",
    "DemoFilesMissing",
    "EnvelopeLog",
    "ErrorCode",
    "Freshness",
    "InvalidFrame",
    "Limits",
    "LiveChart",
    "LocalProtocolError",
    "Mutation",
    "MutationError",
    "Outcome",
    "PortInUse",
    "RecordingExists",
    "RemoteProtocolError",
    "Replay",
    "ReplayControls",
    "RtnbError",
    "ServerHandle",
    "ServerStartError",
    "ServerStopped",
    "SetupError",
    "Source",
    "Status",
    "StreamTable",
    "Topic",
    "TopicFreshness",
    "WaitTimeout",
    "__version__",
    "charts",
    "connect",
    "connect_async",
    "panel",
    "replay",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        sub = importlib.import_module(f"rtnb.{name}")
        globals()[name] = sub
        return sub
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rtnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)

"""rtnb — live, event-driven data as a first-class citizen in Jupyter.

Importing ``rtnb`` is light: pandas, altair, anywidget, the transports and the
reference server are imported only when a name that needs them is first used
(PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.status import Outcome, Status
from .protocol.errors import InvalidFrame, LocalProtocolError, RemoteProtocolError, RtnbError

if TYPE_CHECKING:
    from .client.connection import Connection, connect
    from .client.mutation import Mutation
    from .client.session import ConnectionState
    from .client.topic import Topic, TopicFreshness
    from .server import ServerHandle, serve
    from .telemetry import EnvelopeLog

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY: dict[str, str] = {
    "Connection": "rtnb.client.connection",
    "ConnectionState": "rtnb.client.session",
    "EnvelopeLog": "rtnb.telemetry",
    "Mutation": "rtnb.client.mutation",
    "ServerHandle": "rtnb.server",
    "Topic": "rtnb.client.topic",
    "TopicFreshness": "rtnb.client.topic",
    "connect": "rtnb.client.connection",
    "serve": "rtnb.server",
}

__all__ = [
    "Connection",
    "ConnectionState",
    "EnvelopeLog",
    "InvalidFrame",
    "LocalProtocolError",
    "Mutation",
    "Outcome",
    "RemoteProtocolError",
    "RtnbError",
    "ServerHandle",
    "Status",
    "Topic",
    "TopicFreshness",
    "__version__",
    "connect",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rtnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

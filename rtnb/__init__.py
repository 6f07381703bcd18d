"""rtnb — live, event-driven data as a first-class citizen in Jupyter.

Importing ``rtnb`` is light: pandas, altair, anywidget and the reference server
are imported only when a name that needs them is first used.
"""

from __future__ import annotations

from .core.status import Outcome, Status
from .protocol.errors import InvalidFrame, LocalProtocolError, RemoteProtocolError, RtnbError

__version__ = "0.1.0"

__all__ = [
    "InvalidFrame",
    "LocalProtocolError",
    "Outcome",
    "RemoteProtocolError",
    "RtnbError",
    "Status",
    "__version__",
]

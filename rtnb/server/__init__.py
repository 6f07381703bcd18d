"""The rtnb reference server: WebSocket + SSE + polling on Starlette/uvicorn.

``serve(...)`` runs it in a background thread and returns a
:class:`ServerHandle` (DESIGN.md §2); ``rtnb serve`` is the command line.
Importing this package imports starlette and uvicorn, which is why ``import
rtnb`` does not import it (``rtnb.serve`` loads it on first use).
"""

from __future__ import annotations

from .app import ServerRuntime, create_app
from .auth import AuthError, Identity, TokenAuthority
from .chaos import Chaos
from .config import ServerConfig
from .handle import ServerHandle, serve
from .storage import LogStorage, MemoryStorage, SQLiteStorage

__all__ = [
    "AuthError",
    "Chaos",
    "Identity",
    "LogStorage",
    "MemoryStorage",
    "SQLiteStorage",
    "ServerConfig",
    "ServerHandle",
    "ServerRuntime",
    "TokenAuthority",
    "create_app",
    "serve",
]

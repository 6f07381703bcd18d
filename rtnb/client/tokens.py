"""The access token of a connection: a fixed string, or a provider called for a fresh one."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

TokenProvider = Callable[[], "str | Awaitable[str]"]


class Tokens:
    """A fixed token, or a provider (sync or async) asked again whenever the server
    refuses or expires the token. Never logged, never in a repr."""

    def __init__(self, token: str | TokenProvider) -> None:
        self._static = token if isinstance(token, str) else None
        self._provider = None if isinstance(token, str) else token
        self._current: str | None = None

    @property
    def current(self) -> str:
        """The token to use now ('' before a provider was first asked)."""
        return self._static or self._current or ""

    async def fetch(self) -> str:
        """A fresh token (the fixed one, or the provider's answer)."""
        if self._static is not None:
            return self._static
        assert self._provider is not None
        value = self._provider()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError("the token provider must return a non-empty str")
        self._current = value
        return value

    def __repr__(self) -> str:
        return f"<Tokens {'provider' if self._provider is not None else 'fixed'}>"

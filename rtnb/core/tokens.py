"""Token rules of the connection machine: what a token is, and when to refresh it.

A token is refreshed at ``expires_at - max(refresh_margin, refresh_fraction ×
lifetime)``, never sooner than ``refresh_retry`` from now, so a skewed clock
(every token looks expired) cannot cause a refresh loop.
"""

from __future__ import annotations

from ..protocol.errors import LocalProtocolError
from .machine_table import MachineConfig


def check_token(token: str) -> str:
    """``token`` itself, if it is a non-empty str (the error never echoes the value)."""
    if not isinstance(token, str) or not token:
        raise LocalProtocolError("a token must be a non-empty str")  # never echo the value
    return token


def refresh_at(now: float, expires_at: float, config: MachineConfig) -> float:
    """When to ask for a fresh token, for a token that expires at ``expires_at``."""
    lifetime = expires_at - now
    margin = max(config.refresh_margin, config.refresh_fraction * lifetime)
    # Floor: with a skewed clock every token may look expired; refresh at
    # most once per refresh_retry instead of in a tight loop.
    return max(expires_at - margin, now + config.refresh_retry)

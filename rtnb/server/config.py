"""Server defaults, each in one named constant, and the keyword-only config object.

The docs quote these names; ``tests/server/test_server_defaults.py`` checks the
documented values so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "DEFAULT_ADMISSION_RATE",
    "DEFAULT_AUTH_TIMEOUT",
    "DEFAULT_BATCH_MAX_BYTES",
    "DEFAULT_BATCH_MAX_MESSAGES",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HTTP_RATE",
    "DEFAULT_MAX_BAD_FRAMES",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_POLL_MAX_WAIT",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RETENTION",
    "DEFAULT_SEND_QUEUE_LIMIT",
    "DEFAULT_TOKEN_TTL",
    "ROLES",
    "ServerConfig",
]

#: Seconds between application-level heartbeats on every transport.
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0
#: Events kept per (tenant, topic) log for replay.
DEFAULT_RETENTION: Final = 10_000
#: Seconds a new WebSocket has to send its ``authenticate`` frame.
DEFAULT_AUTH_TIMEOUT: Final = 5.0
#: Frames queued for one connection before it is dropped as a slow consumer.
#: Larger than the default retention, so a full replay always fits.
DEFAULT_SEND_QUEUE_LIMIT: Final = 50_000
#: A backlog is sent as ``batch`` frames of at most this many messages ...
DEFAULT_BATCH_MAX_MESSAGES: Final = 500
#: ... and at most about this many bytes (well under a client's 1 MiB frame limit).
DEFAULT_BATCH_MAX_BYTES: Final = 256 * 1024
#: Subscriptions one connection may hold.
DEFAULT_MAX_SUBSCRIPTIONS: Final = 100
#: Inbound frames per second per connection, and the burst allowed above it.
DEFAULT_RATE_LIMIT: Final = (200.0, 400.0)
#: HTTP requests per second per (tenant, user), and the burst.
DEFAULT_HTTP_RATE: Final = (100.0, 200.0)
#: New connections admitted per second before 4429 / 503 shedding (None: no limit).
DEFAULT_ADMISSION_RATE: Final = 1000.0
#: Bad frames tolerated per connection within a minute before it is closed 4400.
DEFAULT_MAX_BAD_FRAMES: Final = 10
#: Longest ``wait`` a long-poll may ask for, in seconds.
DEFAULT_POLL_MAX_WAIT: Final = 30.0
#: Lifetime of tokens minted by ``issue_token`` when no ``ttl`` is given.
DEFAULT_TOKEN_TTL: Final = 3600.0

#: Roles in increasing order of privilege: viewer reads, operator also
#: mutates, admin also publishes.
ROLES: Final = ("viewer", "operator", "admin")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Every tunable of the reference server, keyword-only (like ``httpx.Timeout``)."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    retention: int = DEFAULT_RETENTION
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    send_queue_limit: int = DEFAULT_SEND_QUEUE_LIMIT
    batch_max_messages: int = DEFAULT_BATCH_MAX_MESSAGES
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    rate_limit: tuple[float, float] | None = DEFAULT_RATE_LIMIT
    http_rate_limit: tuple[float, float] | None = DEFAULT_HTTP_RATE
    admission_rate: float | None = DEFAULT_ADMISSION_RATE
    max_bad_frames: int = DEFAULT_MAX_BAD_FRAMES
    poll_max_wait: float = DEFAULT_POLL_MAX_WAIT
    #: topic -> minimum role, declared up front (publishing declares more, as viewer)
    topics: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0 s, got {self.heartbeat_interval}")
        if self.retention < 1:
            raise ValueError(f"retention must be >= 1 event, got {self.retention}")
        if self.send_queue_limit < 1 or self.batch_max_messages < 1:
            raise ValueError("send_queue_limit and batch_max_messages must be >= 1")
        for topic, role in self.topics.items():
            if role not in ROLES:
                raise ValueError(
                    f"topic {topic!r}: unknown minimum role {role!r}; expected one of {ROLES}"
                )

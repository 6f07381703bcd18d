"""Server defaults, each in one named constant, and the keyword-only config object.

The docs quote these names; ``tests/server/test_server_defaults.py`` checks the
documented values so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE

#: Seconds between application-level heartbeats on every transport.
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0
#: Events kept per (tenant, topic) log for replay.
DEFAULT_RETENTION: Final = 10_000
#: Seconds a new WebSocket has to send its ``authenticate`` frame.
DEFAULT_AUTH_TIMEOUT: Final = 5.0
#: Frames queued for one connection: live events past three quarters of it fall
#: behind (read from the log as the socket drains, ``session.py``), other frames past
#: it cut the connection as a slow consumer (1013).
DEFAULT_SEND_QUEUE_LIMIT: Final = 50_000
#: Bytes queued for one connection (live events, snapshots and replays alike), with
#: the same rules as ``DEFAULT_SEND_QUEUE_LIMIT``. A replay is read from the log as
#: the queue drains; a snapshot counts one part and its view, the next part made only
#: once the previous one was sent (``snapshots.py``), so a larger topic still fits.
#: Also the most event bytes one ``/poll`` answer carries.
DEFAULT_SEND_QUEUE_BYTES: Final = 8 * 1024 * 1024
#: Snapshots one connection may ask for per second (``snapshot`` and
#: ``subscribe`` frames alike), and the burst: a reconnect re-subscribes up to
#: ``max_subscriptions`` topics at once. Over it: close 4429 with a retry hint.
DEFAULT_SNAPSHOT_RATE: Final = (10.0, 100.0)
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
#: Seconds a connection has to complete a request's headers (and an upload its
#: body) before it is closed: no socket holds a file descriptor by sending nothing.
DEFAULT_REQUEST_TIMEOUT: Final = 5.0
#: Seconds an idle keep-alive HTTP connection stays open (uvicorn ``timeout_keep_alive``).
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 5
#: Open connections (every transport) before new ones are answered 503 with
#: ``Retry-After``; never more than the process's file-descriptor limit minus
#: :data:`FD_RESERVE` and the accept backlog (128, ``runner.ACCEPT_BACKLOG``).
DEFAULT_MAX_CONNECTIONS: Final = 4096
#: Connections one identity (tenant, user) may hold at once — WebSockets once
#: authenticated, SSE streams, and HTTP requests until their answer is sent —
#: before more are refused (4429 / 429 with a retry hint). A connection pins up
#: to ``send_queue_bytes`` of the server's memory; 64 is far more than one person's
#: notebooks and dashboards use, and bounds what one token can pin to 64 of them.
DEFAULT_MAX_CONNECTIONS_PER_IDENTITY: Final = 64
#: Seconds an HTTP response (an SSE stream) may stay blocked on a peer that
#: does not read before the connection is aborted.
DEFAULT_WRITE_TIMEOUT: Final = 30.0
#: File descriptors kept free for the store, logs and the accept itself.
FD_RESERVE: Final = 64
#: Lifetime of tokens minted by ``issue_token`` when no ``ttl`` is given.
DEFAULT_TOKEN_TTL: Final = 3600.0
#: Seconds a ``publishId`` or ``clientMutationId`` is remembered after its event was
#: stored: a retry within it answers the original event and stores nothing (24 h).
DEFAULT_IDEMPOTENCY_WINDOW: Final = 86_400.0
#: Bytes of remembered idempotency keys one server keeps in memory (~800 bytes per key
#: with short names: ~84,000 keys); over it the oldest keys are forgotten first.
DEFAULT_IDEMPOTENCY_BYTES: Final = 64 * 1024 * 1024

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
    send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES
    snapshot_rate: tuple[float, float] | None = DEFAULT_SNAPSHOT_RATE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_identity: int = DEFAULT_MAX_CONNECTIONS_PER_IDENTITY
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    batch_max_messages: int = DEFAULT_BATCH_MAX_MESSAGES
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    rate_limit: tuple[float, float] | None = DEFAULT_RATE_LIMIT
    http_rate_limit: tuple[float, float] | None = DEFAULT_HTTP_RATE
    admission_rate: float | None = DEFAULT_ADMISSION_RATE
    max_bad_frames: int = DEFAULT_MAX_BAD_FRAMES
    poll_max_wait: float = DEFAULT_POLL_MAX_WAIT
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW
    idempotency_bytes: int = DEFAULT_IDEMPOTENCY_BYTES
    #: topic -> minimum role, declared up front (publishing declares more, as viewer)
    topics: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0 s, got {self.heartbeat_interval}")
        if self.retention < 1:
            raise ValueError(f"retention must be >= 1 event, got {self.retention}")
        if self.send_queue_limit < 1 or self.batch_max_messages < 1:
            raise ValueError("send_queue_limit and batch_max_messages must be >= 1")
        if self.send_queue_bytes < self.batch_max_bytes:
            raise ValueError(
                f"send_queue_bytes must be >= batch_max_bytes ({self.batch_max_bytes}), "
                f"got {self.send_queue_bytes}"
            )
        if min(self.request_timeout, self.keep_alive_timeout, self.write_timeout) <= 0:
            raise ValueError("request_timeout, keep_alive_timeout and write_timeout must be > 0 s")
        if self.idempotency_window <= 0 or self.idempotency_bytes < 0:
            raise ValueError(
                "idempotency_window must be > 0 s and idempotency_bytes >= 0, got "
                f"{self.idempotency_window} and {self.idempotency_bytes}"
            )
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        if self.max_connections_per_identity < 1:
            raise ValueError(
                "max_connections_per_identity must be >= 1, "
                f"got {self.max_connections_per_identity}"
            )
        for topic, role in self.topics.items():
            if role not in ROLES:
                raise ValueError(
                    f"topic {topic!r}: unknown minimum role {role!r}; expected one of {ROLES}"
                )

"""Every wire frame of DESIGN.md §3 as a frozen, ``op``-tagged msgspec Struct.

Field names are snake_case in Python and camelCase on the wire
(``rename="camel"``). Decoding *is* validation: the types and constraints here
are the protocol's rules, checked in C by msgspec.

Secrets never reach a repr: ``Authenticate.token``, ``Event.replay_token``,
``Subscribe.replay_from`` and every other opaque cursor print as
``<redacted>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

#: Upper bound on any opaque token or cursor we accept, in characters.
AUTH_TOKEN_MAX = 8192

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
TopicName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Opaque = Annotated[str, msgspec.Meta(min_length=1, max_length=AUTH_TOKEN_MAX)]
SequenceNumber = Annotated[int, msgspec.Meta(ge=0)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
ReplayStatus = Literal["complete", "unavailable", "none"]

_R = "<redacted>"


class _Frame(msgspec.Struct, frozen=True, gc=False, tag_field="op", rename="camel"):
    """Base of every frame: frozen, tagged by ``op``, camelCase on the wire."""


# ---------------------------------------------------------------------------
# server -> client
# ---------------------------------------------------------------------------


class Event(_Frame, frozen=True, tag="event"):
    """One envelope: an event on a topic, carrying its entity's patch.

    ``topic`` is a :data:`TopicName` on the wire like every other frame's; the client
    decoder (:class:`rtnb.protocol.codec.ClientDecoder`) checks it once per distinct
    topic rather than by a regex per event (the check is half the decode of a batch).
    """

    id: NonEmpty
    type: NonEmpty
    topic: str  # a TopicName: checked by the decoders (see the class doc)
    sequence: SequenceNumber
    entity_id: NonEmpty
    occurred_at: AwareDatetime
    replay_token: Opaque
    payload: dict[str, Any] = {}
    version: int = 1

    def __repr__(self) -> str:
        return (
            f"Event(id={self.id!r}, type={self.type!r}, topic={self.topic!r}, "
            f"sequence={self.sequence}, entity_id={self.entity_id!r}, "
            f"occurred_at={self.occurred_at.isoformat()!r}, replay_token={_R})"
        )


class Authenticated(_Frame, frozen=True, tag="authenticated"):
    tenant: NonEmpty
    user: NonEmpty
    role: NonEmpty
    expires_at: float  # unix seconds
    #: seconds between the server's heartbeats; the client's liveness deadline
    #: follows it (optional on the wire: an older server omits it)
    heartbeat_interval: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None


class Subscribed(_Frame, frozen=True, tag="subscribed"):
    topic: TopicName
    replay: ReplayStatus
    latest_token: Opaque | None = None
    #: the latest sequence of the topic's log when the subscription was made
    latest_sequence: SequenceNumber | None = None

    def __repr__(self) -> str:
        return f"Subscribed(topic={self.topic!r}, replay={self.replay!r}, latest_token={_R})"


class SnapshotEntity(msgspec.Struct, frozen=True, rename="camel"):
    entity_id: NonEmpty
    state: dict[str, Any]
    sequence: SequenceNumber


class Snapshot(_Frame, frozen=True, tag="snapshot"):
    """A topic's full state. ``sequence`` is the log position it reflects.

    A large snapshot is split into several frames (each under the frame size
    limit) that share ``token`` and ``sequence``; all but the last carry
    ``more: true``, and the client replaces its state only at the last one.
    """

    topic: TopicName
    entities: list[SnapshotEntity]
    token: Opaque | None = None
    sequence: SequenceNumber = 0
    more: bool = False

    def __repr__(self) -> str:
        return (
            f"Snapshot(topic={self.topic!r}, entities=<{len(self.entities)}>, "
            f"sequence={self.sequence}, token={_R})"
        )


class Heartbeat(_Frame, frozen=True, tag="heartbeat"):
    """Liveness plus the latest token (and sequence) per subscribed topic."""

    server_time: float
    topics: dict[str, Opaque] = {}
    sequences: dict[str, SequenceNumber] = {}

    def __repr__(self) -> str:
        return f"Heartbeat(server_time={self.server_time}, sequences={self.sequences!r})"


class Pong(_Frame, frozen=True, tag="pong"):
    id: NonEmpty
    server_time: float


class MutationRejected(_Frame, frozen=True, tag="mutation_rejected"):
    client_mutation_id: NonEmpty
    code: NonEmpty
    message: str


class Error(_Frame, frozen=True, tag="error"):
    code: NonEmpty
    message: str
    topic: str | None = None


class Batch(_Frame, frozen=True, tag="batch"):
    messages: list[
        Event | Authenticated | Subscribed | Snapshot | Heartbeat | Pong | MutationRejected | Error
    ]


ClientBound = (
    Event
    | Batch
    | Authenticated
    | Subscribed
    | Snapshot
    | Heartbeat
    | Pong
    | MutationRejected
    | Error
)

# ---------------------------------------------------------------------------
# client -> server
# ---------------------------------------------------------------------------


class Authenticate(_Frame, frozen=True, tag="authenticate"):
    token: Opaque

    def __repr__(self) -> str:
        return f"Authenticate(token={_R})"


class Subscribe(_Frame, frozen=True, tag="subscribe"):
    topic: TopicName
    replay_from: Opaque | None = None

    def __repr__(self) -> str:
        rf = _R if self.replay_from is not None else None
        return f"Subscribe(topic={self.topic!r}, replay_from={rf})"


class Unsubscribe(_Frame, frozen=True, tag="unsubscribe"):
    topic: TopicName


class SnapshotRequest(_Frame, frozen=True, tag="snapshot"):
    topic: TopicName


class Ping(_Frame, frozen=True, tag="ping"):
    id: NonEmpty


class Mutate(_Frame, frozen=True, tag="mutate"):
    topic: TopicName
    entity_id: NonEmpty
    patch: dict[str, Any]
    client_mutation_id: NonEmpty


ServerBound = Authenticate | Subscribe | Unsubscribe | SnapshotRequest | Ping | Mutate

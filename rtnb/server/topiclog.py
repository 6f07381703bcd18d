"""One (tenant, topic) log: contiguous sequences, replay, and the state derived from it.

State is derived with :func:`rtnb.core.merge.apply_to`, the very function the
client store uses, so a client that applied every event once, in order, holds
exactly ``TopicLog.entities``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ..core.merge import MergeFn, apply_to, shallow_merge
from ..protocol.codec import encode_str
from ..protocol.frames import Event, Snapshot, SnapshotEntity
from .storage import Key, LogRecord, LogStorage
from .tokens import EPOCH_BYTES, ReplayTokens

#: Target size of one snapshot frame, in bytes: 262,144 (256 KiB, well under 1 MiB).
SNAPSHOT_CHUNK_BYTES: Final = 256 * 1024

__all__ = ["ReplayAnswer", "TopicLog", "new_epoch"]

log = logging.getLogger("rtnb.server")

ReplayAnswer = tuple[Literal["complete", "unavailable"], list[LogRecord], str]


def new_epoch() -> bytes:
    """A fresh random epoch: a log reset can never be mistaken for the old log."""
    return secrets.token_bytes(EPOCH_BYTES)


class TopicLog:
    """The append-only event log of one topic of one tenant, with its current state."""

    def __init__(
        self,
        tenant: str,
        topic: str,
        storage: LogStorage,
        tokens: ReplayTokens,
        *,
        retention: int,
        merge: MergeFn = shallow_merge,
    ) -> None:
        self.tenant = tenant
        self.topic = topic
        self.key: Key = (tenant, topic)
        self._storage = storage
        self._tokens = tokens
        self._retention = retention
        self._merge = merge
        epoch = storage.epoch(self.key)
        if epoch is None:
            epoch = new_epoch()
            storage.reset(self.key, epoch)
        self.epoch = epoch
        self._id_prefix = f"evt-{epoch.hex()}-"
        self._minter = tokens.minter(tenant, topic, epoch)
        first, self.latest = storage.bounds(self.key)
        self._kept = self.latest - first + 1
        stored = storage.entities(self.key)
        self.entities: dict[str, dict[str, Any]] = {e: s for e, (s, _) in stored.items()}
        self.entity_sequence: dict[str, int] = {e: q for e, (_, q) in stored.items()}

    # -- writing -------------------------------------------------------------

    def append(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        *,
        occurred_at: datetime | None = None,
        version: int = 1,
    ) -> tuple[LogRecord, Event]:
        """Append one event, update the state, and return the record and its frame."""
        seq = self.latest + 1
        token = self._minter.mint(seq)
        event = Event(
            id=self._id_prefix + str(seq),
            type=event_type,
            topic=self.topic,
            sequence=seq,
            entity_id=entity_id,
            occurred_at=occurred_at or datetime.now(UTC),
            replay_token=token,
            payload=dict(payload),
            version=version,
        )
        record = LogRecord(self.topic, self.epoch, seq, token, encode_str(event))
        state = apply_to(self.entities, entity_id, event_type, payload, self._merge)
        if state is None:
            self.entity_sequence.pop(entity_id, None)
        else:
            self.entity_sequence[entity_id] = seq
        self._storage.append(self.key, record, entity_id, state)
        self.latest = seq
        self._kept += 1
        if self._kept > self._retention:
            self._storage.trim(self.key, self._retention)
            self._kept = self._retention
        return record, event

    # -- reading -------------------------------------------------------------

    def token(self, position: int | None = None) -> str:
        """The replay token for ``position`` (default: the latest event)."""
        return self._minter.mint(self.latest if position is None else position)

    def snapshot(self) -> Snapshot:
        """Every entity's current state, with the log position it reflects."""
        entities = [
            SnapshotEntity(entity_id=e, state=s, sequence=self.entity_sequence[e])
            for e, s in self.entities.items()
        ]
        return Snapshot(
            topic=self.topic, entities=entities, token=self.token(), sequence=self.latest
        )

    def snapshot_texts(self, max_bytes: int = SNAPSHOT_CHUNK_BYTES) -> list[str]:
        """The snapshot as encoded frames, split so each stays near ``max_bytes``.

        Clients refuse frames over 1 MiB before parsing; a topic with 100,000
        entities is several MiB, so it travels in parts marked ``more``.
        """
        snap = self.snapshot()
        text = encode_str(snap)
        if len(text) <= max_bytes or len(snap.entities) < 2:
            return [text]
        parts = -(-len(text) // max_bytes) + 1
        size = -(-len(snap.entities) // parts)
        chunks = [snap.entities[i : i + size] for i in range(0, len(snap.entities), size)]
        return [
            encode_str(
                Snapshot(
                    topic=snap.topic,
                    entities=chunk,
                    token=snap.token,
                    sequence=snap.sequence,
                    more=i < len(chunks) - 1,
                )
            )
            for i, chunk in enumerate(chunks)
        ]

    def replay(self, token: str) -> ReplayAnswer:
        """The events after ``token``, or ``"unavailable"`` and why; never a silent restart."""
        parsed = self._tokens.parse(self.tenant, self.topic, token)
        if parsed is None:
            return "unavailable", [], "the replay token is not one this server minted"
        epoch, position = parsed
        if epoch != self.epoch:
            return "unavailable", [], "the log was reset since the token was minted (new epoch)"
        if position > self.latest:
            return "unavailable", [], "the replay token is ahead of the log"
        first, _ = self._storage.bounds(self.key)
        if position < first - 1:
            return (
                "unavailable",
                [],
                f"events {position + 1}..{first - 1} are older than retention "
                f"({self._retention} events)",
            )
        return "complete", self._storage.read(self.key, position), ""

    def read(self, after: int, limit: int | None = None) -> list[LogRecord]:
        return self._storage.read(self.key, after, limit)

    def first(self) -> int:
        return self._storage.bounds(self.key)[0]

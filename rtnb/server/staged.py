"""A staged event (``TopicLog.stage``/``stage_many``): built and appended, not yet committed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ..protocol.frames import Event

if TYPE_CHECKING:
    from .idempotency import IdemKey
    from .storage import LogRecord
    from .topiclog import TopicLog


class Staged(msgspec.Struct, gc=False, eq=False):
    """An event built and handed to storage but not yet committed (not yet visible).

    ``event`` is built on first use when the event was staged in bulk
    (:meth:`TopicLog.stage_many` keeps only its parts and its frame text). A
    ``msgspec.Struct`` built in C and not tracked by the garbage collector (nothing it
    refers to refers back to it): a batch stages one per event (issue 22).
    """

    log: TopicLog
    record: LogRecord
    entity_id: str
    state: dict[str, Any] | None
    type: str
    payload: dict[str, Any]  # this event's own copy (``bulk.prepare``)
    occurred_at: datetime
    version: int
    key: IdemKey | None = None  # its idempotency key, stored with it
    built: Event | None = None

    @property
    def event(self) -> Event:
        event = self.built
        if event is None:
            record = self.record
            seq = record.sequence
            log = self.log
            # The payload is this event's own copy (``bulk.prepare``): no copy again.
            event = self.built = Event(
                log.id_prefix + str(seq),
                self.type,
                log.topic,
                seq,
                self.entity_id,
                self.occurred_at,
                record.token,
                self.payload,
                self.version,
            )
        return event

    def applied(self) -> tuple[int, datetime, str]:
        """Its sequence, ``occurredAt`` and type (what remembering its key keeps)."""
        return self.record.sequence, self.occurred_at, self.type


def events_of(items: list[Event | Staged]) -> list[Event]:
    """Each item's :class:`Event` (a staged one's :attr:`Staged.event`), in one loop."""
    out: list[Event] = []
    append = out.append
    for item in items:
        if type(item) is not Staged:
            append(item)  # type: ignore[arg-type]
            continue
        event = item.built
        if event is None:
            record, log = item.record, item.log
            seq = record.sequence
            event = item.built = Event(
                log.id_prefix + str(seq),
                item.type,
                log.topic,
                seq,
                item.entity_id,
                item.occurred_at,
                record.token,
                item.payload,
                item.version,
            )
        append(event)
    return out

    def __repr__(self) -> str:
        return f"Staged(topic={self.log.topic!r}, sequence={self.record.sequence})"

"""Builders for protocol frames used across the test suite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rtnb.protocol import Event, Snapshot, SnapshotEntity, encode

T0 = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def event(
    seq: int,
    *,
    topic: str = "incidents",
    entity: str | None = None,
    type: str = "incident.updated",
    payload: dict[str, Any] | None = None,
    id: str | None = None,
) -> Event:
    return Event(
        id=id or f"evt-{topic}-{seq}",
        type=type,
        topic=topic,
        sequence=seq,
        entity_id=entity or f"e{seq % 7}",
        occurred_at=T0 + timedelta(milliseconds=seq % 10**9),
        replay_token=f"tok-{topic}-{seq}",
        payload={"n": seq} if payload is None else payload,
    )


def snapshot(topic: str, seq: int, entities: dict[str, dict[str, Any]]) -> Snapshot:
    return Snapshot(
        topic=topic,
        entities=[SnapshotEntity(entity_id=k, state=v, sequence=seq) for k, v in entities.items()],
        token=f"tok-{topic}-{seq}",
        sequence=seq,
    )


def wire(frame: Any) -> bytes:
    return encode(frame)


class RecordingSink:
    """An envelope sink that keeps every row as a dict (for assertions)."""

    FIELDS = (
        "received_at", "occurred_at", "topic", "type", "id", "sequence", "entity_id",
        "outcome", "transport", "attempt", "nbytes", "error", "count",
    )  # fmt: skip

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append_envelope(self, *args: Any) -> None:
        from rtnb.core.status import OUTCOMES_BY_CODE

        row = dict(zip(self.FIELDS, args, strict=False))
        row.setdefault("error", None)
        row.setdefault("count", 1)
        row["outcome"] = OUTCOMES_BY_CODE[row["outcome"]].value
        self.rows.append(row)

    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.rows]

    def ids(self, *outcomes: str) -> list[str]:
        return [r["id"] for r in self.rows if r["outcome"] in outcomes]

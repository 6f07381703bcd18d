"""Realistic event frames for benchmarks: ~300 bytes, several topics."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from rtnb.protocol import Event, encode

TOPICS = ("incidents", "fleet", "prices")
TYPES = {
    "incidents": ("incident.opened", "incident.updated", "incident.acknowledged"),
    "fleet": ("vehicle.moved", "vehicle.status"),
    "prices": ("price.tick",),
}


def make_events(n: int, *, entities: int = 1000, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    seqs = dict.fromkeys(TOPICS, 0)
    t0 = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
    out: list[Event] = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        seqs[topic] += 1
        seq = seqs[topic]
        payload = {
            "status": rng.choice(("open", "ack", "resolved")),
            "severity": rng.randint(1, 5),
            "service": rng.choice(("checkout", "search", "auth", "billing")),
            "value": round(rng.uniform(0, 1000), 3),
            "note": "x" * rng.randint(0, 20),
        }
        out.append(
            Event(
                id=f"evt-{uuid.UUID(int=rng.getrandbits(128)).hex}",
                type=rng.choice(TYPES[topic]),
                topic=topic,
                sequence=seq,
                entity_id=f"{topic[:3]}-{rng.randrange(entities)}",
                occurred_at=t0 + timedelta(milliseconds=i),
                replay_token=f"tok.{topic}.{seq}.{'a' * 22}",
                payload=payload,
            )
        )
    return out


def wire(
    events: list[Event], *, dup: float = 0.05, reorder: float = 0.05, seed: int = 2
) -> list[bytes]:
    """Encode, then inject ~``dup`` duplicates and swap ~``reorder`` adjacent pairs."""
    rng = random.Random(seed)
    frames = [encode(e) for e in events]
    out: list[bytes] = []
    i = 0
    while i < len(frames):
        if i + 1 < len(frames) and rng.random() < reorder:
            out += [frames[i + 1], frames[i]]
            i += 2
            continue
        out.append(frames[i])
        if rng.random() < dup:
            out.append(frames[i])
        i += 1
    return out

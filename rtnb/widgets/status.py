"""Freshness payloads: what the header strips and pills show, as plain dicts.

Built from a topic's :class:`~rtnb.client.source.TopicView` (the facts the
client made on the runtime thread: status, counts, events still to replay, the
server's refusal) and the connection's
:class:`~rtnb.client.session.ConnectionState`. The
browser turns them into text ("Live · updated 0.4 s ago", "Stale — data as
of 12:03:55, reconnecting in 3 s (attempt 4)", …) and ticks the age and the
countdown itself, so no kernel message is needed per second.

Times cross the wire as *durations at send time* (``age``, ``retryIn``), not
absolute timestamps, so a browser whose clock disagrees with the kernel's
still counts correctly; ``last`` (unix seconds) is only used to print the
wall-clock time of the newest data.

Statuses and the connection's activity come from
:func:`rtnb.core.freshness.freshness`, the one function ``Topic.freshness``
and ``ReplayTopic.freshness`` use too; the browser shows them as sent and only
ticks the age and the retry countdown (at zero it shows ``connecting``, as
:func:`~rtnb.core.freshness.activity_text` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..core.freshness import connection_status, freshness

if TYPE_CHECKING:
    from ..client.source import ConnectionState, TopicView

#: Seconds the browser's idea of "newest data" may lag the kernel's before a resend: 0.25.
FRESH_DRIFT: Final = 0.25

# fields that change continuously; compared with a tolerance, not for equality
_TEMPORAL: Final = ("age", "last", "retryIn", "gapAge", "lag", "quietAge")


def _connection_fields(cs: ConnectionState, wall: float) -> dict[str, Any]:
    f = freshness(cs.status, cs.attempt, cs.next_retry_at, "pending", None, wall)
    return {
        "conn": cs.status.value,
        "activity": f.activity,
        "reason": cs.reason,
        "transport": cs.transport,
        "attempt": cs.attempt,
        "retryAt": cs.next_retry_at,
        "retryIn": None if f.retry_in is None else max(0.0, f.retry_in),
    }


def topic_status(ts: TopicView, cs: ConnectionState, wall: float) -> str:
    """live | replaying | quiet | stale | forbidden | unknown | refused | pending | closed."""
    return freshness(
        cs.status, cs.attempt, cs.next_retry_at, ts.status, ts.last_event_at, wall, ts.stale_after
    ).status


def topic_payload(
    ts: TopicView, cs: ConnectionState, wall: float, gap_at: float | None = None
) -> dict[str, Any]:
    """The freshness of one topic (for a table's header strip or a topic pill)."""
    last = ts.last_event_at
    out = {
        "scope": "topic",
        "topic": ts.name,
        "status": topic_status(ts, cs, wall),
        "last": last,
        "age": None if last is None else max(0.0, wall - last),
        "gaps": ts.gaps,
        "unrecoverable": ts.unrecoverable,
        "gapAge": None if gap_at is None else max(0.0, wall - gap_at),
        "missing": ts.missing,
        "entities": ts.entities,
        "error": ts.refusal,
        "staleAfter": ts.stale_after,
        # why the client froze the topic (its state passed Limits.max_topic_bytes)
        "limit": ts.over_limit,
    }
    out.update(_connection_fields(cs, wall))
    return out


def connection_payload(
    cs: ConnectionState,
    topics: Iterable[TopicView],
    wall: float,
    *,
    history: Iterable[Mapping[str, Any]] = (),
    lag_p50: float | None = None,
    gap_at: float | None = None,
) -> dict[str, Any]:
    """The freshness of a whole connection: the worst news across its topics."""
    states = list(topics)
    per_topic = [
        {
            "name": ts.name,
            "status": topic_status(ts, cs, wall),
            "gaps": ts.gaps,
            "unrecoverable": ts.unrecoverable,
            "missing": ts.missing,
            "entities": ts.entities,
        }
        for ts in states
    ]
    lasts = [ts.last_event_at for ts in states if ts.last_event_at is not None]
    last = max(lasts) if lasts else None
    status = connection_status(cs.status, [str(t["status"]) for t in per_topic], last is not None)
    missing = [ts.missing for ts in states if ts.missing is not None]
    out = {
        "scope": "connection",
        "status": status,
        "last": last,
        "age": None if last is None else max(0.0, wall - last),
        "gaps": sum(ts.gaps for ts in states),
        "unrecoverable": sum(ts.unrecoverable for ts in states),
        "gapAge": None if gap_at is None else max(0.0, wall - gap_at),
        "missing": sum(missing) if missing else None,
        "topics": per_topic,
        "history": list(history),
        "lag": lag_p50,
    }
    if status == "quiet":  # the words name the silence of the quietest topic
        quiet = [ts for ts, t in zip(states, per_topic, strict=True) if t["status"] == "quiet"]
        oldest = min(quiet, key=lambda ts: ts.last_event_at or wall)
        out["staleAfter"] = oldest.stale_after
        out["quietAge"] = None if oldest.last_event_at is None else wall - oldest.last_event_at
    out.update(_connection_fields(cs, wall))
    return out


def same_freshness(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """True if the browser showing ``a`` would show the same as ``b`` (within drift)."""
    if a is None:
        return False
    for key, value in b.items():
        if key in _TEMPORAL:
            continue
        if a.get(key) != value:
            return False
    last_a, last_b = a.get("last"), b.get("last")
    if (last_a is None) != (last_b is None):
        return False
    if last_a is not None and last_b is not None and abs(last_b - last_a) > FRESH_DRIFT:
        return False
    lag_a, lag_b = a.get("lag"), b.get("lag")
    if (lag_a is None) != (lag_b is None):
        return False
    return not (lag_a is not None and lag_b is not None and abs(lag_b - lag_a) >= 1.0)


def transition(cs: ConnectionState) -> dict[str, Any]:
    """One row of a pill's "last transitions" list."""
    return {
        "at": cs.since,
        "status": cs.status.value,
        "previous": None if cs.previous is None else cs.previous.value,
        "reason": cs.reason,
        "attempt": cs.attempt,
    }

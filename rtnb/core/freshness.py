"""How fresh a topic is: one pure function for every view of it.

``Topic.freshness``, ``ReplayTopic.freshness``, the widgets' payloads
(:mod:`rtnb.widgets.status`) and, through them, the browser all call
:func:`freshness`; nothing else decides a topic's status or what the
connection is doing. Two views of one connection at one instant therefore
cannot disagree (a property test checks it over random states).

The browser receives the computed ``status`` and ``activity`` and only ticks
the age and the retry countdown; when the countdown reaches zero it shows
what :func:`freshness` says for a retry time in the past, ``connecting``,
which is exactly what a fresh payload says once the machine has moved on.
There is no "reconnecting now" state to disagree with "connecting".

Rules (``topic_status`` is the pipeline's :data:`~rtnb.core.pipeline.TopicStatus`):

* a topic the server refused keeps that status: ``forbidden``, ``unknown``,
  or ``refused`` for any other topic-level refusal (``too_many_subscriptions``,
  …; the pipeline keeps the server's code and message beside it);
* a closed connection makes every other topic ``closed``;
* while the connection is not subscribed (idle, connecting, authenticated,
  degraded, reconnecting) a topic is ``pending`` if it never had data and was
  never confirmed, else ``stale``: its data is as of ``last_event_at``;
* when subscribed, the topic's own status (``live``, ``replaying``, ``pending``),
  except that a ``live`` topic with ``stale_after`` set and no event for that
  long is ``quiet`` (the producer may have stopped; the connection is fine).

Everything that decides a topic's status lives here and in the pipeline
(:mod:`rtnb.core.pipeline`, which turns the server's frames into the topic's
own status); drivers only feed frames and read the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from .status import Status

FreshnessStatus = Literal[
    "live", "replaying", "quiet", "stale", "pending", "forbidden", "unknown", "refused", "closed"
]
#: What the connection is doing, as a person reads it.
Activity = Literal["live", "idle", "connecting", "reconnecting", "degraded", "closed"]

#: topic statuses the server decided; no connection state changes them
REFUSED: Final = frozenset({"forbidden", "unknown", "refused"})
_NOT_SUBSCRIBED: Final = frozenset(
    {Status.IDLE, Status.CONNECTING, Status.AUTHENTICATED, Status.DEGRADED, Status.RECONNECTING}
)
_ACTIVITY: Final[dict[Status, Activity]] = {
    Status.IDLE: "idle",
    Status.CONNECTING: "connecting",
    Status.AUTHENTICATED: "connecting",
    Status.SUBSCRIBED: "live",
    Status.DEGRADED: "degraded",
    Status.RECONNECTING: "reconnecting",
    Status.CLOSED: "closed",
}


@dataclass(frozen=True, slots=True)
class FreshnessVerdict:
    """One topic's freshness at ``now`` (plain values; see :func:`freshness`)."""

    status: FreshnessStatus
    activity: Activity
    attempt: int
    #: seconds until the next attempt (only while ``activity == "reconnecting"``)
    retry_in: float | None
    #: seconds since the newest data (None: no data yet)
    age_s: float | None

    @property
    def detail(self) -> str:
        """What the connection is doing: ``reconnecting in 3 s (attempt 4)``, …"""
        return activity_text(self.activity, self.attempt, self.retry_in)


def check_stale_after(stale_after: object) -> None:
    """Raise a clear ``ValueError`` unless ``stale_after`` is None or seconds > 0."""
    if stale_after is None:
        return
    if (
        isinstance(stale_after, bool)
        or not isinstance(stale_after, int | float)
        or not math.isfinite(stale_after)
        or stale_after <= 0
    ):
        raise ValueError(
            f"stale_after must be a number of seconds > 0 (or None: never quiet), "
            f"got {stale_after!r}"
        )


def activity(conn_status: Status, next_retry_at: float | None, now: float) -> Activity:
    """The connection's activity; a retry whose time has come is ``connecting``."""
    act = _ACTIVITY[conn_status]
    if act == "reconnecting" and next_retry_at is not None and next_retry_at <= now:
        return "connecting"
    return act


def freshness(
    conn_status: Status,
    attempt: int,
    next_retry_at: float | None,
    topic_status: str,
    last_event_at: float | None,
    now: float,
    stale_after: float | None = None,
) -> FreshnessVerdict:
    """A topic's freshness from the connection's state and the topic's own state.

    ``stale_after``: seconds without an event after which a live topic is ``quiet``.
    """
    status: FreshnessStatus
    if topic_status in REFUSED:
        status = topic_status  # type: ignore[assignment]
    elif conn_status is Status.CLOSED:
        status = "closed"
    elif conn_status in _NOT_SUBSCRIBED:
        status = "pending" if topic_status == "pending" and last_event_at is None else "stale"
    else:
        status = topic_status  # type: ignore[assignment]
        if (
            status == "live"
            and stale_after is not None
            and last_event_at is not None
            and now - last_event_at >= stale_after
        ):
            status = "quiet"
    act = activity(conn_status, next_retry_at, now)
    retry_in = None
    if act == "reconnecting" and next_retry_at is not None:
        retry_in = next_retry_at - now
    return FreshnessVerdict(
        status=status,
        activity=act,
        attempt=attempt,
        retry_in=retry_in,
        age_s=None if last_event_at is None else max(0.0, now - last_event_at),
    )


def activity_text(act: str, attempt: int, retry_in: float | None) -> str:
    """The words for an activity; mirrored by ``activityText`` in ``common.js``."""
    suffix = f" (attempt {attempt})" if attempt > 0 else ""
    if act == "reconnecting":
        if retry_in is None:
            return f"reconnecting{suffix}"
        wait = math.ceil(retry_in)
        return f"reconnecting in {wait} s{suffix}" if wait > 0 else f"connecting{suffix}"
    if act == "connecting":
        return f"connecting{suffix}"
    if act == "degraded":
        return "connection lost"
    if act == "closed":
        return "connection closed"
    if act == "idle":
        return "not started"
    return ""


def connection_status(
    conn_status: Status, topic_statuses: Iterable[str], has_data: bool
) -> FreshnessStatus:
    """A whole connection's status: the worst news across its topics' freshness.

    ``topic_statuses`` are the topics' :func:`freshness` statuses, so a
    connection of one (not refused) topic has exactly that topic's status.
    """
    statuses = list(topic_statuses)
    if conn_status is Status.CLOSED:
        return "closed"
    if conn_status in _NOT_SUBSCRIBED:
        return "stale" if has_data or "stale" in statuses else "pending"
    for worst in ("replaying", "stale", "pending", "quiet"):
        if worst in statuses:
            return worst
    if statuses and all(s in REFUSED for s in statuses):
        first = statuses[0]
        return first if all(s == first for s in statuses) else "refused"  # type: ignore[return-value]
    return "live"

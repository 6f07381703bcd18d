"""Pieces of a replay a widget touches: its topics, and timestamps for ``seek``.

:class:`ReplayTopic` is a real :class:`~rtnb.client.topic.Topic` (widgets
read it exactly like a live one) whose freshness is measured on the replay's
clock, the recorded instant the replay has reached, instead of the wall
clock.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from .topic import Topic, TopicFreshness, topic_freshness

if TYPE_CHECKING:
    from .replay import Replay

#: Anything ``seek`` takes: unix seconds, an ISO string, a datetime or a pandas Timestamp.
Timestamp = float | int | str | dt.datetime | Any


def to_seconds(value: Timestamp) -> float:
    """A timestamp (unix seconds, ISO string, datetime, pandas Timestamp) as unix seconds."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        import pandas as pd  # parses nanoseconds, which datetime drops

        value = pd.Timestamp(value)
    if hasattr(value, "to_datetime64") and hasattr(value, "value"):
        # a pandas Timestamp: its value is ns since the epoch (UTC; naive counts as UTC)
        whole, ns = divmod(int(value.value), 1_000_000_000)
        return whole + ns / 1e9
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise TypeError(f"expected a timestamp (datetime, ISO string or unix seconds), got {value!r}")


class ReplayTopic(Topic):
    """A topic of a replay: a real :class:`Topic` whose freshness runs on replay time."""

    @property
    def freshness(self) -> TopicFreshness:
        conn = cast("Replay", self._conn)  # a ReplayTopic belongs to a replay
        # measured on the replay's clock; a recorded state has no retry time
        fresh: TopicFreshness = self._read(
            lambda: topic_freshness(self._state, conn.state, conn.position_s)
        )
        return fresh

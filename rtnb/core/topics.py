"""The connection machine's topics: which are wanted, confirmed or refused, and replay tokens.

Sans-I/O bookkeeping for :class:`rtnb.core.machine.ConnectionMachine`, which
sends the frames and reports the changes; this module only keeps the phases.

* A topic is PENDING from ``subscribe()`` until the server confirms it on the
  current connection (SUBSCRIBED). A confirmation holds for one connection
  only: on a loss every SUBSCRIBED topic is PENDING again (still wanted).
* A topic-level ``Error`` resolves that topic only. :func:`refusal_status`
  says which are refusals (``forbidden``, ``unknown_topic``,
  ``too_many_subscriptions``, or any error answering a pending Subscribe): the
  topic is REFUSED — not resubscribed on reconnect until ``subscribe()``
  again. The pipeline applies the same rule to the topic's status, so the
  machine's phase and the status shown agree.
* Each ``Subscribe`` carries the topic's replay token: the pipeline's (asked
  through ``replay_tokens``) if it has one, else the last one given here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from ..protocol.errors import TOPIC_REFUSALS, ErrorCode, LocalProtocolError
from ..protocol.frames import Subscribe, TopicName
from .machine_table import TopicPhase

#: Topic-level error codes with a status of their own; every other topic-level
#: code but ``unavailable`` is a refusal too, shown as ``refused``.
REFUSALS: Final = frozenset({ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_TOPIC})
_OWN_STATUS: Final[dict[str, str]] = {
    ErrorCode.FORBIDDEN: "forbidden",
    ErrorCode.UNKNOWN_TOPIC: "unknown",
}


def refusal_status(code: str, awaiting: bool) -> str | None:
    """The status a topic-level error ``code`` puts its topic in (None: not a refusal).

    The one rule for the machine's phases and the pipeline's statuses.
    ``awaiting``: the topic's subscription on this connection is not confirmed
    yet, so the error answers it. ``unavailable`` (the server cannot serve the
    topic now) is never a refusal; ``forbidden`` and ``unknown_topic`` have
    statuses of their own; ``too_many_subscriptions`` and any other code that
    answers a subscription (one this client may not know yet) refuse the topic:
    ``refused``, with the server's message. Any other error about a confirmed
    topic is reported and leaves it subscribed.
    """
    if code == ErrorCode.UNAVAILABLE:
        return None
    own = _OWN_STATUS.get(code)
    if own is not None:
        return own
    if awaiting or code in TOPIC_REFUSALS:
        return "refused"
    return None


class TopicBook:
    """Topic phases and replay tokens of one machine."""

    __slots__ = ("_phases", "_replay", "_replay_tokens", "view")

    def __init__(self, replay_tokens: Callable[[str], str | None] | None = None) -> None:
        self._phases: dict[str, TopicPhase] = {}
        self._replay: dict[str, str] = {}
        self._replay_tokens = replay_tokens
        #: Read-only live view of the phases.
        self.view: Mapping[str, TopicPhase] = MappingProxyType(self._phases)

    def __len__(self) -> int:
        return len(self._phases)

    def __contains__(self, topic: str) -> bool:
        return topic in self._phases

    def get(self, topic: str) -> TopicPhase | None:
        return self._phases.get(topic)

    @property
    def any_pending(self) -> bool:
        return TopicPhase.PENDING in self._phases.values()

    def pending(self) -> list[str]:
        return [t for t, s in self._phases.items() if s is TopicPhase.PENDING]

    def note_replay(self, topic: str, token: str | None) -> None:
        """Remember ``topic``'s replay token (None: keep the one held)."""
        if token is not None:
            self._replay[topic] = token

    def want(self, topic: str) -> bool:
        """Mark ``topic`` PENDING; False if it already was pending or confirmed."""
        if self._phases.get(topic) in (TopicPhase.PENDING, TopicPhase.SUBSCRIBED):
            return False
        self._phases[topic] = TopicPhase.PENDING
        return True

    def drop(self, topic: str) -> None:
        del self._phases[topic]
        self._replay.pop(topic, None)

    def confirm(self, topic: str) -> bool:
        """A ``Subscribed``: PENDING -> SUBSCRIBED; False if the topic was not pending."""
        if self._phases.get(topic) is not TopicPhase.PENDING:
            return False
        self._phases[topic] = TopicPhase.SUBSCRIBED
        return True

    def error(self, topic: str, code: str) -> bool:
        """A topic-level error: REFUSED if :func:`refusal_status` calls it a refusal.

        False if ``topic`` is not known (the error is ignored).
        """
        state = self._phases.get(topic)
        if state is None:
            return False
        if refusal_status(code, state is TopicPhase.PENDING) is not None:
            self._phases[topic] = TopicPhase.REFUSED  # answered: no longer pending
        return True

    def unconfirm(self) -> list[str]:
        """The connection is gone: every SUBSCRIBED topic is PENDING again (returned)."""
        topics = [t for t, s in self._phases.items() if s is TopicPhase.SUBSCRIBED]
        for topic in topics:
            self._phases[topic] = TopicPhase.PENDING
        return topics

    def subscribe_frame(self, topic: str) -> Subscribe:
        token = self._replay_tokens(topic) if self._replay_tokens is not None else None
        return Subscribe(
            topic=topic, replay_from=token if token is not None else self._replay.get(topic)
        )

    def subscribe_frames(self, topics: Iterable[str]) -> tuple[Subscribe, ...]:
        return tuple(self.subscribe_frame(t) for t in topics)


def check_topic(topic: str) -> None:
    """Raise :class:`LocalProtocolError` unless ``topic`` is a valid topic name."""
    try:
        msgspec.convert(topic, TopicName)
    except msgspec.ValidationError as exc:
        raise LocalProtocolError(f"invalid topic name {topic!r}: {exc}") from None

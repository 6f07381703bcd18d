"""The seven status vocabularies are documented in one place, each member of each
(issue 21 item 4): the docstring of ``rtnb/core/status.py``, and the mapping it states
between ``Status`` and ``Activity`` and into ``FreshnessStatus`` is what the code does."""

from __future__ import annotations

import enum
import re
import typing

import pytest

from rtnb.core import status as status_module
from rtnb.core.freshness import Activity, FreshnessStatus, activity, freshness
from rtnb.core.ledger import MutationStatus
from rtnb.core.machine_table import TopicPhase
from rtnb.core.pipeline import TopicStatus
from rtnb.core.status import Outcome, Status

VOCABULARIES: dict[str, object] = {
    "Status": Status,
    "Outcome": Outcome,
    "TopicPhase": TopicPhase,
    "TopicStatus": TopicStatus,
    "FreshnessStatus": FreshnessStatus,
    "Activity": Activity,
    "MutationStatus": MutationStatus,
}


def members(vocabulary: object) -> set[str]:
    if isinstance(vocabulary, type) and issubclass(vocabulary, enum.Enum):
        return {str(m.value) for m in vocabulary}
    return set(typing.get_args(vocabulary))


def documented() -> dict[str, dict[str, str]]:
    """vocabulary -> {member: the text of its bullet}, from the status module's docstring."""
    doc = status_module.__doc__ or ""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    bullet = ""
    for line in doc.splitlines():
        head = re.match(r"``(\w+)`` \(", line)
        if head:
            current = sections.setdefault(head.group(1), {})
            continue
        if current is None:
            continue
        if line.startswith("* "):
            bullet = line[2:]
        elif line.startswith("  ") and bullet:
            bullet += " " + line.strip()
        else:
            bullet = ""
            continue
        names, _, _ = bullet.partition(" -- ")
        for name in re.findall(r"``(\w+)``", names):
            current[name] = bullet
    return sections


def test_every_vocabulary_has_its_section() -> None:
    assert set(documented()) == set(VOCABULARIES)


@pytest.mark.parametrize("name", sorted(VOCABULARIES))
def test_every_member_is_documented_and_nothing_else(name: str) -> None:
    actual = members(VOCABULARIES[name])
    written = set(documented()[name])
    assert actual - written == set(), f"{name}: document {sorted(actual - written)}"
    assert written - actual == set(), f"{name}: no such members {sorted(written - actual)}"


def test_status_to_activity_is_as_documented() -> None:
    doc = documented()["Status"]
    for s in Status:
        said = re.search(r"Activity ``(\w+)``", doc[s.value])
        assert said, f"Status {s.value}: the docstring does not say its Activity"
        assert activity(s, None, 0.0) == said.group(1), s


def test_refusals_keep_their_status_whatever_the_connection_does() -> None:
    for refusal in ("forbidden", "unknown", "refused"):
        assert "FreshnessStatus" in documented()["TopicStatus"][refusal]
        for s in Status:
            assert freshness(s, 0, None, refusal, None, 0.0).status == refusal


def test_a_subscribed_topic_shows_its_own_status_else_closed_stale_or_pending() -> None:
    for topic_status in ("pending", "replaying", "live", "stale"):
        verdict = freshness(Status.SUBSCRIBED, 0, None, topic_status, 1.0, 1.0)
        assert verdict.status == topic_status
        assert freshness(Status.CLOSED, 0, None, topic_status, 1.0, 1.0).status == "closed"
        for s in (Status.IDLE, Status.CONNECTING, Status.DEGRADED, Status.RECONNECTING):
            assert freshness(s, 0, None, topic_status, 1.0, 1.0).status == "stale"
    assert freshness(Status.CONNECTING, 0, None, "pending", None, 1.0).status == "pending"
    quiet = freshness(Status.SUBSCRIBED, 0, None, "live", 0.0, 10.0, stale_after=5.0)
    assert quiet.status == "quiet"

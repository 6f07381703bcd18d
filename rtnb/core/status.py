"""Names shared by every layer: connection statuses and per-envelope outcomes.

Both are ``str`` enums so that pandas shows readable labels and comparisons with
plain strings work (``Status.SUBSCRIBED == "subscribed"``).

The status vocabularies (issue 21): seven, because they name seven different
things; this is the one place that says what each word means and how they map.
``tests/core/test_status_vocabularies.py`` checks every member of each is below.

``Status`` (here; ``conn.state.status``) -- the connection, DESIGN.md §4:

* ``idle`` -- not started; Activity ``idle``
* ``connecting`` -- opening a transport; Activity ``connecting``
* ``authenticated`` -- the server accepted the token, subscriptions not yet confirmed;
  Activity ``connecting``
* ``subscribed`` -- working; the only Status in which a topic shows its own TopicStatus;
  Activity ``live``
* ``degraded`` -- heartbeats missed or the transport lost; Activity ``degraded``
* ``reconnecting`` -- waiting ``next_retry_at`` for attempt n; Activity ``reconnecting``
  (``connecting`` once that time has passed)
* ``closed`` -- for good; Activity ``closed``, every unrefused topic FreshnessStatus ``closed``

``Outcome`` (here; the ``outcome`` column of ``conn.log.envelopes``) -- one envelope:

* ``applied`` -- merged into the topic's state
* ``duplicate`` -- its ``id`` was seen already: dropped
* ``stale`` -- older than the entity's state (``entity`` ordering): dropped
* ``buffered`` -- held until a gap before it fills (``sequence`` ordering)
* ``replayed`` -- applied while catching up from a replay token
* ``invalid`` -- failed to decode or validate: logged with its error, dropped
* ``unexpected_topic`` -- for a topic this connection did not subscribe: dropped
* ``gap_unrecoverable`` -- a range the server could not replay; a snapshot replaced it

``TopicPhase`` (``rtnb.core.machine_table``) -- the machine's view of one subscription,
what it (re)subscribes on each connection:

* ``pending`` -- wanted, not confirmed on this connection; TopicStatus ``pending`` the
  first time, else it keeps what it was (FreshnessStatus ``stale`` meanwhile)
* ``subscribed`` -- confirmed; TopicStatus ``replaying``, ``live`` or ``stale``
* ``refused`` -- the server refused it: not resubscribed until asked again; TopicStatus
  ``forbidden``, ``unknown`` or ``refused`` (``rtnb.core.topics.refusal_status``, one rule
  for both)

``TopicStatus`` (``rtnb.core.pipeline``) -- the topic's own status, from the server's frames:

* ``pending`` -- asked for, not yet confirmed by the server (first time, or asked again
  after a refusal); FreshnessStatus ``pending`` (``stale`` if it had data)
* ``replaying`` -- confirmed; a snapshot or a replay is on its way or being caught up;
  FreshnessStatus ``replaying`` while subscribed
* ``live`` -- confirmed and up to date; FreshnessStatus ``live``, or ``quiet`` after
  ``stale_after`` seconds without an event
* ``stale`` -- frozen: its state is over ``max_topic_bytes`` (the reason beside it);
  FreshnessStatus ``stale``
* ``forbidden``, ``unknown``, ``refused`` -- the server refused the topic (its code and
  message beside it); the same FreshnessStatus whatever the connection does

``FreshnessStatus`` (``rtnb.core.freshness``; ``topic.freshness.status``, every widget)
-- what a person is shown, ``freshness(Status, TopicStatus, stale_after, now)``:

* ``live``, ``replaying`` -- subscribed, and so is the topic
* ``quiet`` -- subscribed and live, but no event for ``stale_after`` s (the producer may
  have stopped; the connection is fine)
* ``stale`` -- data as of ``last_event_at``: the connection is not subscribed (idle,
  connecting, authenticated, degraded, reconnecting), or the topic is frozen
* ``pending`` -- no data yet and never confirmed
* ``forbidden``, ``unknown``, ``refused`` -- the server refused the topic
* ``closed`` -- the connection is closed

``Activity`` (``rtnb.core.freshness``; beside FreshnessStatus) -- what the connection is
doing, as a person reads it; one per Status except that ``authenticated`` reads
``connecting``:

* ``live``, ``idle``, ``connecting``, ``reconnecting``, ``degraded``, ``closed``

``MutationStatus`` (``rtnb.core.ledger``; ``m.status``, the ``mutations`` log) -- one
optimistic mutation, independent of the others:

* ``queued`` -- made while degraded: sent once the connection is live again
* ``pending`` -- sent; its patch shows in the topic's view
* ``confirmed`` -- an event carried its ``clientMutationId``
* ``rejected`` -- the server said no (``mutation_rejected``): rolled back, error shown
* ``timed_out`` -- no answer in time: rolled back
* ``late_confirmation`` -- confirmed after it had timed out
* ``refused`` -- never sent: degraded with ``on_degraded="reject"``, or too many pending
* ``cancelled`` -- the connection closed first
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """Connection states of DESIGN.md §4."""

    IDLE = "idle"
    CONNECTING = "connecting"
    AUTHENTICATED = "authenticated"
    SUBSCRIBED = "subscribed"
    DEGRADED = "degraded"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    """What happened to one envelope (DESIGN.md §4), logged per envelope."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    BUFFERED = "buffered"
    REPLAYED = "replayed"
    INVALID = "invalid"
    UNEXPECTED_TOPIC = "unexpected_topic"
    GAP_UNRECOVERABLE = "gap_unrecoverable"


#: Stable small-integer codes for outcomes, used by the columnar log.
OUTCOME_CODES: dict[Outcome, int] = {o: i for i, o in enumerate(Outcome)}
OUTCOMES_BY_CODE: tuple[Outcome, ...] = tuple(Outcome)

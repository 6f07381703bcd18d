"""The connection machine's bookkeeping modules on their own: liveness, reconnect,
topics and tokens (the machine's behaviour through them is in test_machine*.py)."""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
from hypothesis import given

from rtnb.core.backoff import Backoff
from rtnb.core.liveness import MAX_OUTSTANDING_PINGS, Liveness, liveness_deadline
from rtnb.core.machine import MachineConfig
from rtnb.core.machine_table import TopicPhase
from rtnb.core.reconnect import RetryClock, classify_drop, retry_hint
from rtnb.core.tokens import check_token, refresh_at
from rtnb.core.topics import TopicBook, check_topic
from rtnb.protocol.errors import LocalProtocolError

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


# -- liveness ------------------------------------------------------------------------------


@given(interval=st.floats(min_value=0.01, max_value=3600.0), missed=st.integers(1, 10))
def test_the_deadline_is_missed_intervals_plus_a_grace_of_at_most_half_a_second(
    interval: float, missed: int
) -> None:
    deadline = liveness_deadline(interval, missed)
    assert missed * interval < deadline <= missed * interval + 0.5 + 1e-9


def test_an_announced_interval_lasts_until_the_next_connection() -> None:
    live = Liveness(5.0, 2)
    live.last_seen = 100.0
    assert (live.interval, live.announced, live.expires_at) == (5.0, False, 110.5)
    live.announce(1.0)
    assert (live.interval, live.announced) == (1.0, True)
    assert live.expires_at == pytest.approx(102.2)
    live.forget_pings()  # a loss: the interval stays until a new transport
    assert live.announced
    live.new_connection()
    assert (live.interval, live.announced) == (5.0, False)


def test_a_pong_is_matched_once_and_only_the_newest_pings_are_remembered() -> None:
    live = Liveness(5.0, 2)
    ids = [live.ping(float(i)) for i in range(MAX_OUTSTANDING_PINGS + 2)]
    assert len(set(ids)) == len(ids)
    assert live.pong(ids[0], 20.0) is None  # forgotten: the oldest go first
    assert live.pong(ids[1], 20.0) is None
    assert live.pong(ids[-1], 10.0) == pytest.approx(1000.0)
    assert live.pong(ids[-1], 10.0) is None  # answered once
    assert live.pong("not-ours", 10.0) is None
    live.new_connection()
    assert live.pong(ids[-2], 20.0) is None


# -- reconnect -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "hint", "drop"),
    [
        (4401, None, "token"),
        (401, 5.0, "token"),
        (4403, None, "forbidden"),
        (403, 5.0, "forbidden"),
        (4429, 2.5, "hint"),
        (503, 0.0, "hint"),
        (503, -1.0, "lost"),
        (None, None, "lost"),
        (1006, None, "lost"),
    ],
)
def test_a_drop_is_classified_by_its_code_then_its_hint(
    code: int | None, hint: float | None, drop: str
) -> None:
    assert classify_drop(code, hint) == drop


def test_a_retry_after_header_wins_over_the_hint_in_the_reason() -> None:
    assert retry_hint(3.0, "rate limited; retry_after=9") == 3.0
    assert retry_hint(None, "rate limited; retry_after=9") == 9.0
    assert retry_hint(None, "going away") is None


def test_the_retry_clock_holds_a_token_loss_delay_for_a_failing_provider() -> None:
    clock = RetryClock(Backoff(max_retry_hint=60.0), random.Random(7))
    assert clock.clamp(600.0) == 60.0 and clock.clamp(6.0) == 6.0
    clock.hold_for_token()
    assert (clock.attempt, clock.next_retry_at) == (1, None)
    # The held delay is the one drawn for attempt 1: the same as a fresh clock's first draw.
    first = RetryClock(Backoff(max_retry_hint=60.0), random.Random(7)).schedule(0.0, None)
    assert clock.token_failed(100.0) == first
    assert clock.next_retry_at == 100.0 + first and clock.attempt == 1
    clock.token_failed(200.0)  # nothing held any more: one more attempt
    assert clock.attempt == 2
    clock.hold_for_token()
    clock.token_arrived()  # the held delay is dropped: a later failure draws anew
    clock.token_failed(300.0)
    assert clock.attempt == 4


@given(hint=st.floats(min_value=0.0, max_value=50.0), now=seconds)
def test_a_scheduled_retry_waits_at_least_the_hint(hint: float, now: float) -> None:
    clock = RetryClock(Backoff(), random.Random(1))
    delay = clock.schedule(now, hint)
    assert delay >= hint and clock.next_retry_at == now + delay


# -- topics --------------------------------------------------------------------------------


def test_topic_phases_through_a_connection_and_a_loss() -> None:
    book = TopicBook()
    assert book.want("a") and book.want("b") and book.want("c")
    assert not book.want("a")  # already pending
    assert book.confirm("a") and not book.confirm("a")
    assert book.error("b", "busy")  # answers a pending Subscribe: refused
    assert book.error("a", "unknown_topic")  # a refusal, even once confirmed
    assert not book.error("zz", "forbidden")  # not ours: ignored
    assert dict(book.view) == {
        "a": TopicPhase.REFUSED,
        "b": TopicPhase.REFUSED,
        "c": TopicPhase.PENDING,
    }
    assert book.confirm("c") and book.unconfirm() == ["c"] and book.pending() == ["c"]
    assert book.want("a")  # subscribe() again after a refusal
    book.drop("b")
    assert "b" not in book and len(book) == 2 and book.any_pending


def test_a_subscribe_carries_the_pipelines_token_else_the_last_one_given() -> None:
    pipeline = {"a": "from-pipeline"}
    book = TopicBook(pipeline.get)
    book.want("a")
    book.want("b")
    book.note_replay("a", "given-a")
    book.note_replay("b", "given-b")
    book.note_replay("b", None)  # None keeps the token held
    assert [f.replay_from for f in book.subscribe_frames(["a", "b"])] == [
        "from-pipeline",
        "given-b",
    ]
    book.drop("b")
    book.want("b")
    assert book.subscribe_frame("b").replay_from is None


def test_bad_topic_names_and_tokens_are_refused_without_echoing_the_token() -> None:
    check_topic("orders")
    with pytest.raises(LocalProtocolError, match="invalid topic name"):
        check_topic("")
    assert check_token("secret") == "secret"
    with pytest.raises(LocalProtocolError) as info:
        check_token("")
    assert "secret" not in str(info.value)


# -- tokens --------------------------------------------------------------------------------


def test_a_refresh_comes_a_margin_before_expiry_but_never_sooner_than_the_retry_floor() -> None:
    cfg = MachineConfig()  # margin 30 s or 10 % of the lifetime; floor 10 s
    assert refresh_at(1000.0, 1100.0, cfg) == 1070.0
    assert refresh_at(1000.0, 4600.0, cfg) == 4240.0
    assert refresh_at(1000.0, 900.0, cfg) == 1010.0  # already expired (a skewed clock)


@given(now=seconds, lifetime=st.floats(min_value=-1e5, max_value=1e6, allow_nan=False))
def test_a_refresh_is_never_sooner_than_the_floor_nor_later_than_the_margin(
    now: float, lifetime: float
) -> None:
    cfg = MachineConfig()
    at = refresh_at(now, now + lifetime, cfg)
    assert at >= now + cfg.refresh_retry
    if at > now + cfg.refresh_retry:  # the floor did not bind
        assert (now + lifetime) - at >= cfg.refresh_margin - 1e-6
        assert (now + lifetime) - at >= cfg.refresh_fraction * lifetime - 1e-6

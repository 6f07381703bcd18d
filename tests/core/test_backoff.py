"""Tests for rtnb.core.backoff: formulas, the cap, hints, the reset rule, documented defaults."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import random
import re
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rtnb.core.backoff as backoff_module
from rtnb.core.backoff import (
    DEFAULT_BASE,
    DEFAULT_CAP,
    DEFAULT_MAX_RETRY_HINT,
    DEFAULT_POLICY,
    DEFAULT_RESET_AFTER,
    HINT_JITTER,
    Backoff,
    Policy,
)

POLICIES: tuple[Policy, ...] = ("full", "equal", "decorrelated")

policies = st.sampled_from(POLICIES)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
bases = st.floats(min_value=0.01, max_value=10.0)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    base = draw(bases)
    cap = base * draw(st.floats(min_value=1.0, max_value=1000.0))
    return Backoff(policy=draw(policies), base=base, cap=cap)


# --- configuration and documented defaults ----------------------------------------


def test_default_backoff_uses_the_named_constants() -> None:
    b = Backoff()
    assert (b.policy, b.base, b.cap, b.reset_after, b.max_retry_hint) == (
        DEFAULT_POLICY,
        DEFAULT_BASE,
        DEFAULT_CAP,
        DEFAULT_RESET_AFTER,
        DEFAULT_MAX_RETRY_HINT,
    )


def test_docstrings_quote_the_default_constants() -> None:
    constants = {
        "policy": DEFAULT_POLICY,
        "base": DEFAULT_BASE,
        "cap": DEFAULT_CAP,
        "reset_after": DEFAULT_RESET_AFTER,
        "max_retry_hint": DEFAULT_MAX_RETRY_HINT,
    }

    def quoted(doc: str) -> dict[str, str | float]:
        found: dict[str, str | float] = {}
        for name, value in re.findall(r"``(\w+)=([^`]+)``", doc):
            found[name] = value.strip('"') if value.startswith('"') else float(value)
        return found

    class_doc = quoted(inspect.getdoc(Backoff) or "")
    assert {k: class_doc[k] for k in constants} == constants
    module_doc = quoted(backoff_module.__doc__ or "")
    for name in ("policy", "base", "cap"):
        assert module_doc[name] == constants[name], name


def test_constant_comments_quote_their_values() -> None:
    source = inspect.getsource(backoff_module)
    documented = re.findall(r"^#: (.*)\n([A-Z_]+): Final", source, flags=re.MULTILINE)
    assert len(documented) == 6
    for comment, name in documented:
        match = re.search(r': "?([^\s"]+?)"?(?: seconds)?\.?$', comment)
        assert match, comment
        value = getattr(backoff_module, name)
        if isinstance(value, str):
            assert match.group(1) == value, name
        else:
            assert float(match.group(1)) == value, name


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base": -1}, ValueError, "base must be finite and > 0, got -1"),
        ({"base": 0}, ValueError, "base must be finite and > 0, got 0"),
        ({"cap": math.inf}, ValueError, "cap must be finite and > 0, got inf"),
        ({"base": 2.0, "cap": 1.0}, ValueError, "cap must be >= base (2.0), got 1.0"),
        ({"policy": "linear"}, ValueError, "policy must be one of full, equal, decorrelated"),
        ({"reset_after": -0.5}, ValueError, "reset_after must be finite and >= 0, got -0.5"),
        ({"max_retry_hint": math.nan}, ValueError, "max_retry_hint must be finite and > 0"),
        ({"base": "1"}, TypeError, "base must be a number of seconds, got str"),
        ({"cap": True}, TypeError, "cap must be a number of seconds, got bool"),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_message(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_configuration_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        Backoff("full")  # type: ignore[misc]
    b = Backoff(policy="full", base=1, cap=30)
    assert isinstance(b.base, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.cap = 5.0  # type: ignore[misc]


# --- the delays ---------------------------------------------------------------------


@given(backoffs(), seeds)
def test_delays_stay_between_zero_and_the_cap(b: Backoff, seed: int) -> None:
    for n, delay in enumerate(itertools.islice(b.delays(random.Random(seed)), 40), start=1):
        assert 0.0 <= delay <= b.cap
        assert delay <= b.envelope(n) * (1 + 1e-12)


@given(bases, st.floats(min_value=1.0, max_value=1000.0))
def test_full_envelope_doubles_until_the_cap_then_stays(base: float, ratio: float) -> None:
    b = Backoff(policy="full", base=base, cap=base * ratio)
    envelopes = [b.envelope(n) for n in range(1, 80)]
    assert envelopes[0] == base
    for n, (e, following) in enumerate(itertools.pairwise(envelopes), start=1):
        assert following >= e
        assert following == min(b.cap, base * 2.0**n)
    assert envelopes[-1] == b.cap


@given(backoffs(), seeds)
def test_equal_jitter_keeps_half_the_envelope_fixed(b: Backoff, seed: int) -> None:
    b = dataclasses.replace(b, policy="equal")
    for n, delay in enumerate(itertools.islice(b.delays(random.Random(seed)), 30), start=1):
        assert b.envelope(n) / 2 <= delay <= b.envelope(n)


@given(backoffs(), seeds)
def test_decorrelated_delays_stay_at_least_the_smaller_of_base_and_half_the_cap(
    b: Backoff, seed: int
) -> None:
    b = dataclasses.replace(b, policy="decorrelated")
    low = min(b.base, b.cap / 2)
    for delay in itertools.islice(b.delays(random.Random(seed)), 30):
        assert low <= delay <= b.cap


@given(backoffs(), seeds)
def test_same_seed_gives_the_same_delays(b: Backoff, seed: int) -> None:
    first = list(itertools.islice(b.delays(random.Random(seed)), 25))
    again = list(itertools.islice(b.delays(random.Random(seed)), 25))
    assert first == again


@given(backoffs(), seeds)
def test_delays_iterator_matches_a_schedule_without_hints(b: Backoff, seed: int) -> None:
    schedule = b.schedule(random.Random(seed))
    expected = [schedule.next_delay() for _ in range(20)]
    assert list(itertools.islice(b.delays(random.Random(seed)), 20)) == expected


@pytest.mark.parametrize("policy", POLICIES)
def test_jitter_does_not_collapse_at_the_cap(policy: Policy) -> None:
    b = Backoff(policy=policy, base=1.0, cap=20.0)
    at_attempt_50 = [
        next(itertools.islice(b.delays(random.Random(seed)), 49, None)) for seed in range(1000)
    ]
    assert statistics.stdev(at_attempt_50) > 0.10 * b.cap
    assert sum(d == b.cap for d in at_attempt_50) <= 10  # no lockstep point mass
    assert len({round(d, 3) for d in at_attempt_50}) > 900


@pytest.mark.parametrize("policy", POLICIES)
def test_jitter_does_not_collapse_even_when_cap_equals_base(policy: Policy) -> None:
    b = Backoff(policy=policy, base=5.0, cap=5.0)
    later = [list(itertools.islice(b.delays(random.Random(s)), 10))[-1] for s in range(500)]
    assert statistics.stdev(later) > 0.10 * b.cap


# --- server retry hints --------------------------------------------------------------


@given(backoffs(), seeds, st.floats(min_value=0.0, max_value=250.0))
def test_a_retry_hint_is_the_minimum_delay_plus_a_little_jitter(
    b: Backoff, seed: int, hint: float
) -> None:
    s = b.schedule(random.Random(seed))
    s.next_delay()
    delay = s.next_delay(retry_hint=hint)
    assert hint <= delay <= hint * (1 + HINT_JITTER) + 1e-9
    assert s.attempt == 2


def test_a_hint_may_exceed_the_cap_but_not_max_retry_hint() -> None:
    s = Backoff(cap=10.0, max_retry_hint=60.0).schedule(random.Random(1))
    assert 40.0 <= s.next_delay(retry_hint=40.0) <= 44.0
    assert 60.0 <= s.next_delay(retry_hint=3600.0) <= 66.0


@pytest.mark.parametrize("hint", [-1.0, math.nan, math.inf])
def test_an_invalid_hint_is_refused(hint: float) -> None:
    s = Backoff().schedule(random.Random(1))
    with pytest.raises(ValueError, match="retry_hint must be finite and >= 0"):
        s.next_delay(retry_hint=hint)


def test_same_hint_to_many_clients_still_spreads_them() -> None:
    delays = [Backoff().schedule(random.Random(seed)).next_delay(5.0) for seed in range(500)]
    assert max(delays) - min(delays) > 0.4


# --- the reset rule ------------------------------------------------------------------


def test_attempt_counts_from_one() -> None:
    s = Backoff().schedule(random.Random(1))
    assert s.attempt == 0
    s.next_delay()
    s.next_delay()
    assert s.attempt == 2


def test_a_server_that_accepts_and_drops_at_once_keeps_being_backed_off() -> None:
    b = Backoff(policy="equal", base=1.0, cap=16.0, reset_after=30.0)
    s = b.schedule(random.Random(3))
    now = 0.0
    for _ in range(8):
        now += s.next_delay()
        s.mark_healthy(now)  # the socket opened and authenticated...
        now += 0.5
        assert s.on_disconnect(now) is False  # ...and dropped half a second later
    assert s.attempt == 8
    assert s.next_delay() >= b.cap / 2


def test_a_connection_healthy_for_reset_after_resets_the_count() -> None:
    b = Backoff(policy="full", base=1.0, cap=16.0, reset_after=30.0)
    s = b.schedule(random.Random(3))
    for _ in range(6):
        s.next_delay()
    s.mark_healthy(100.0)
    assert s.healthy_since == 100.0
    assert s.on_disconnect(130.0) is True
    assert s.attempt == 0
    assert s.healthy_since is None
    assert s.next_delay() <= b.base


def test_a_disconnect_without_a_healthy_mark_never_resets() -> None:
    s = Backoff(reset_after=0.0).schedule(random.Random(3))
    s.next_delay()
    assert s.on_disconnect(1000.0) is False
    assert s.attempt == 1


def test_marking_healthy_twice_keeps_the_first_time() -> None:
    s = Backoff(reset_after=30.0).schedule(random.Random(3))
    s.next_delay()
    s.mark_healthy(10.0)
    s.mark_healthy(25.0)
    assert s.on_disconnect(40.0) is True


def test_reset_restarts_decorrelated_from_base() -> None:
    b = Backoff(policy="decorrelated", base=1.0, cap=100.0)
    s = b.schedule(random.Random(5))
    for _ in range(10):
        s.next_delay()
    s.reset()
    assert b.base <= s.next_delay() <= 3 * b.base


operations = st.lists(
    st.tuples(
        st.sampled_from(["delay", "healthy", "disconnect", "reset"]),
        st.floats(min_value=0.0, max_value=50.0),
    ),
    max_size=60,
)


@given(operations, st.floats(min_value=0.0, max_value=40.0), seeds)
def test_attempt_count_follows_the_reset_rule_for_any_sequence(
    ops: list[tuple[str, float]], reset_after: float, seed: int
) -> None:
    s = Backoff(reset_after=reset_after).schedule(random.Random(seed))
    now, attempts, healthy_since = 0.0, 0, None
    for op, elapsed in ops:
        now += elapsed
        if op == "delay":
            s.next_delay()
            attempts += 1
        elif op == "healthy":
            s.mark_healthy(now)
            healthy_since = now if healthy_since is None else healthy_since
        elif op == "disconnect":
            expect_reset = healthy_since is not None and now - healthy_since >= reset_after
            assert s.on_disconnect(now) is expect_reset
            attempts = 0 if expect_reset else attempts
            healthy_since = None
        else:
            s.reset()
            attempts, healthy_since = 0, None
        assert s.attempt == attempts
        assert s.healthy_since == healthy_since

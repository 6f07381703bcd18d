"""Mutation ledger: confirm, reject, timeout, late confirmation, degraded policy."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from rtnb.core.ledger import MutationLedger
from rtnb.protocol import LocalProtocolError


def _new(ledger: MutationLedger, cmid: str = "m1", **kw: object) -> object:
    return ledger.create(cmid, "incidents", "inc-1", {"status": "ack"}, now=0.0, **kw)  # type: ignore[arg-type]


def test_a_confirmed_mutation_reports_its_latency() -> None:
    led = MutationLedger()
    rec = led.create("m1", "incidents", "inc-1", {"status": "ack"}, now=1.0, timeout=5)
    assert rec.status == "pending" and rec.sent_at == 1.0
    assert led.confirm("m1", 1.25) is rec
    assert rec.status == "confirmed" and rec.latency_ms == pytest.approx(250.0)
    assert led.confirm("m1", 2.0) is None  # a second confirmation changes nothing


def test_a_rejection_keeps_code_and_message() -> None:
    led = MutationLedger()
    led.create("m1", "incidents", "inc-1", {}, now=0.0)
    rec = led.reject("m1", "forbidden", "viewers cannot acknowledge", 0.1)
    assert rec is not None and rec.status == "rejected"
    assert (rec.error_code, rec.error) == ("forbidden", "viewers cannot acknowledge")
    assert led.reject("unknown", "x", "y", 0.2) is None


def test_timeout_then_late_confirmation_is_reconciled() -> None:
    led = MutationLedger()
    rec = led.create("m1", "incidents", "inc-1", {}, now=0.0, timeout=2.0)
    assert led.next_deadline() == 2.0
    assert led.expire(1.9) == []
    assert led.expire(2.0) == [rec]
    assert rec.status == "timed_out" and "2 s" in (rec.error or "")
    assert led.confirm("m1", 3.0) is rec
    assert rec.status == "late_confirmation"
    assert led.next_deadline() is None


def test_while_degraded_mutations_queue_by_default() -> None:
    led = MutationLedger()
    rec = led.create("m1", "incidents", "inc-1", {}, now=0.0, degraded=True)
    assert rec.status == "queued" and rec.while_degraded and rec.sent_at is None
    assert led.take_queued(5.0) == [rec]
    assert rec.status == "pending" and rec.sent_at == 5.0


def test_pending_mutations_are_sent_again_after_a_reconnect() -> None:
    led = MutationLedger()
    rec = led.create("m1", "incidents", "inc-1", {}, now=0.0)
    assert led.take_queued(5.0) == [rec]
    assert rec.status == "pending" and rec.sent_at == 5.0
    assert "re-sent" in rec.history[0]
    led.confirm("m1", 6.0)
    assert led.take_queued(7.0) == []


def test_while_degraded_the_reject_policy_refuses_at_once() -> None:
    led = MutationLedger(on_degraded="reject")
    rec = led.create("m1", "incidents", "inc-1", {}, now=0.0, degraded=True)
    assert rec.status == "refused" and rec.done and "degraded" in (rec.error or "")
    assert len(led) == 0


def test_reusing_a_client_mutation_id_is_a_caller_error() -> None:
    led = MutationLedger()
    led.create("m1", "incidents", "inc-1", {}, now=0.0)
    with pytest.raises(LocalProtocolError, match="already in use"):
        led.create("m1", "incidents", "inc-1", {}, now=0.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="on_degraded"):
        MutationLedger(on_degraded="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        MutationLedger().create("m", "t", "e", {}, now=0.0, timeout=0)


@pytest.mark.slow
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["create", "degraded", "confirm", "reject", "expire"]),
                  st.integers(0, 5)),
        max_size=30,
    )
)  # fmt: skip
def test_closing_resolves_every_open_mutation_as_cancelled(ops: list[tuple[str, int]]) -> None:
    led = MutationLedger()
    made: dict[str, object] = {}
    now = 0.0
    for op, k in ops:
        now += 0.5
        cmid = f"m{k}"
        if op in ("create", "degraded") and cmid not in made:
            made[cmid] = led.create(
                cmid, "t", "e", {"v": k}, now=now, timeout=3.0, degraded=op == "degraded"
            )
        elif op == "confirm":
            led.confirm(cmid, now)
        elif op == "reject":
            led.reject(cmid, "bad", "no", now)
        else:
            led.expire(now)
    was_open = {c: r.status for c, r in made.items() if not r.done}  # type: ignore[attr-defined]
    cancelled = led.cancel_all(now + 1, "connection closed (closed by user)")
    assert {r.client_mutation_id for r in cancelled} == set(was_open)
    assert len(led) == 0 and led.next_deadline() is None
    for rec in cancelled:
        assert rec.done and rec.status == "cancelled" and rec.resolved_at == now + 1
        sent = was_open[rec.client_mutation_id] == "pending"
        assert ("may have applied it" in (rec.error or "")) is sent
        assert led.confirm(rec.client_mutation_id, now + 2) is None  # stays cancelled
    assert all(r.done for r in made.values())  # type: ignore[attr-defined]

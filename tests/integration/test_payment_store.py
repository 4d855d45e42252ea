"""The payment rows' guarantees in the store, on SQLite and PostgreSQL (issue 15 point 4): concurrent refund
confirmations — each in its own transaction on its own connection, as separate API processes would run them —
never take a payment's refunded total above what was paid (a guarded update and a check constraint, no process
lock); reconciliation's claims hand each unsettled payment to one claimer at a time."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from hub.errors import RefundExceedsPaidError
from hub.store import Store, flow_records
from hub.store.flow_records import payments

PAID = 575_000


def add(store: Store, reference: str, *, kind: str = "payment", amount: int = PAID, original: str | None = None,
        **row: object) -> None:  # fmt: skip
    assert flow_records.add_payment(
        store.engine, reference=reference, kind=kind, connector="000.00.00.G05", requester="000.00.00.H12",
        dossier_code="000.00.00.H12-251123-0042", amount=amount, message_id=f"msg-{reference}",
        original_reference=original, **row,
    )  # fmt: skip


def paid(store: Store, reference: str = "PAY-1") -> str:
    add(store, reference)
    assert flow_records.confirm_payment(store.engine, reference, bank_transaction_id="FT1", receipt_message_id="r",
                                        confirm_digest="d")  # fmt: skip
    return reference


def confirm_refund(store: Store, reference: str, original: str, amount: int) -> str:
    keys = {"bank_transaction_id": f"FT-{reference}", "receipt_message_id": f"r-{reference}", "confirm_digest": "d"}
    try:
        first = flow_records.confirm_refund(store.engine, reference, original, amount, **keys)
    except RefundExceedsPaidError:
        return "exceeds"
    return "confirmed" if first else "duplicate"


def race(store: Store, original: str, refunds: list[str], amount: int) -> dict[str, str]:
    """Confirm ``refunds`` of ``original`` all at once, one thread (one connection, one transaction) each."""
    start, outcomes = threading.Barrier(len(refunds)), {}

    def run(reference: str) -> None:
        start.wait()
        outcomes[reference] = confirm_refund(store, reference, original, amount)

    threads = [threading.Thread(target=run, args=(r,)) for r in refunds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_concurrent_refunds_never_exceed_what_was_paid(store: Store) -> None:
    """Eight refunds of 100 000 of a 575 000 payment confirmed at once: exactly five go through, the refunded total
    is 500 000, and the three refused ones stay unconfirmed (their transaction rolled back)."""
    original = paid(store)
    refunds = [f"RF-{n}" for n in range(8)]
    for reference in refunds:
        add(store, reference, kind="refund", amount=100_000, original=original)
    outcomes = race(store, original, refunds, 100_000)
    assert sorted(outcomes.values()) == ["confirmed"] * 5 + ["exceeds"] * 3
    assert flow_records.payment(store.engine, original).refunded == 500_000
    assert flow_records.refunded_total(store.engine, original) == 500_000
    states = {r: flow_records.payment(store.engine, r).state for r in refunds}
    assert {r for r, s in states.items() if s == "refunded"} == {r for r, o in outcomes.items() if o == "confirmed"}
    assert {s for r, s in states.items() if outcomes[r] == "exceeds"} == {"initiated"}


def test_two_refunds_racing_for_the_rest_of_a_payment(store: Store) -> None:
    """Two refunds of 400 000 of one 575 000 payment at the same moment: one, never both."""
    for round_ in range(5):
        original = paid(store, f"PAY-{round_}")
        pair = [f"RF-{round_}-a", f"RF-{round_}-b"]
        for reference in pair:
            add(store, reference, kind="refund", amount=400_000, original=original)
        assert sorted(race(store, original, pair, 400_000).values()) == ["confirmed", "exceeds"]
        assert flow_records.payment(store.engine, original).refunded == 400_000


def test_a_repeated_refund_confirmation_changes_nothing(store: Store) -> None:
    original = paid(store)
    add(store, "RF-1", kind="refund", amount=75_000, original=original)
    assert confirm_refund(store, "RF-1", original, 75_000) == "confirmed"
    assert confirm_refund(store, "RF-1", original, 75_000) == "duplicate"
    assert flow_records.payment(store.engine, original).refunded == 75_000


def test_the_refunded_total_is_constrained_to_what_was_paid(store: Store) -> None:
    """The check constraint holds even against a write that skips the guarded update."""
    original = paid(store)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(payments.update().where(payments.c.reference == original).values(refunded=PAID + 1))
    assert flow_records.payment(store.engine, original).refunded == 0


def test_reconciliation_claims_each_payment_once_until_its_lease_runs_out(store: Store) -> None:
    add(store, "PAY-A")
    add(store, "PAY-B")
    created = flow_records.payment(store.engine, "PAY-A").created_at
    later = created + timedelta(minutes=20)
    assert flow_records.claim_unsettled(store.engine, created - timedelta(seconds=1), lease_s=60, at=later) == []
    first = flow_records.claim_unsettled(store.engine, later, lease_s=60, at=later)
    assert sorted(p.reference for p in first) == ["PAY-A", "PAY-B"]
    assert flow_records.claim_unsettled(store.engine, later, lease_s=60, at=later) == []  # claimed
    again = flow_records.claim_unsettled(store.engine, later, lease_s=60, at=later + timedelta(seconds=61))
    assert sorted(p.reference for p in again) == ["PAY-A", "PAY-B"]  # the lease ran out
    flow_records.mark_failed(store.engine, "PAY-B", platform_state="4")
    flow_records.confirm_payment(store.engine, "PAY-A", bank_transaction_id="FT", receipt_message_id="r",
                                 confirm_digest="d")  # fmt: skip
    assert flow_records.claim_unsettled(store.engine, later, lease_s=60, at=later + timedelta(hours=1)) == []

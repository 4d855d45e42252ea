"""The store's reads behind the operator page's partner states and payment panel, on SQLite and PostgreSQL:
deliveries and synchronous lookups counted together per partner, when it recovered, and the rejected payment
confirmations with their count per connector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hub.store import Store, flow_records

PORTAL, POPULATION, PAYMENT, PROVINCE = "000.00.00.G01", "000.00.00.G03", "000.00.00.G05", "000.00.00.H12"


def _delivery(store: Store, destination: str) -> int:
    accepted = store.accept(
        sender=PROVINCE, message_id=str(uuid.uuid4()), correlation_id=None, message_type="dossier.sync",
        receiver=destination, dossier_code="D-1", envelope=b"<e/>", destinations=[destination],
    )  # fmt: skip
    return accepted.delivery_ids[0]


def test_deliveries_and_lookups_make_one_activity_with_its_recovery(store: Store) -> None:
    now = datetime.now(UTC)
    failing = _delivery(store, PORTAL)
    for _ in range(2):
        store.start_attempts([failing])
        store.record_retry(failing, error="HTTP 503", delay_s=0)
    flow_records.record_lookup(store.engine, at=now - timedelta(minutes=5), requester=PROVINCE, source=POPULATION,
                               result="error", detail="SOAP fault")  # fmt: skip
    flow_records.record_lookup(store.engine, at=now - timedelta(minutes=4), requester=PROVINCE, source=POPULATION,
                               result="repeat")  # fmt: skip
    by_code = {a.destination: a for a in store.partner_activity(900)}
    portal, population = by_code[PORTAL], by_code[POPULATION]
    assert (portal.delivered, portal.failed, portal.last_error, portal.recovered_at) == (0, 2, "HTTP 503", None)
    assert (population.delivered, population.failed, population.last_error) == (0, 1, "SOAP fault")
    assert population.recovered_at is None

    answered_at = now - timedelta(minutes=3)
    flow_records.record_lookup(store.engine, at=answered_at, requester=PROVINCE, source=POPULATION, result="found")
    flow_records.record_lookup(store.engine, requester=PROVINCE, source=POPULATION, result="not_found")
    store.start_attempts([failing])
    store.record_delivered_many([(failing, b"<x/>", "")])
    by_code = {a.destination: a for a in store.partner_activity(900)}
    assert by_code[POPULATION].recovered_at == answered_at and by_code[POPULATION].delivered == 2
    assert by_code[PORTAL].recovered_at == by_code[PORTAL].last_success_at
    assert by_code[PORTAL].recovered_at > by_code[PORTAL].last_failure_at


def test_rejected_payment_confirmations_and_their_counts(store: Store) -> None:
    flow_records.add_payment(store.engine, reference="R-1", kind="payment", connector=PAYMENT, requester=PROVINCE,
                             dossier_code="D-7", amount=1000, message_id="m-1")  # fmt: skip
    for reference, kind in (("R-1", "payment.confirm"), ("R-9", "payment.refund"), ("R-2", "other.kind")):
        flow_records.record_refusal(store.engine, connector=PAYMENT, kind=kind, rule="amount-mismatch", reason="why",
                                    payload=b"{}", reference=reference)  # fmt: skip
    rows = flow_records.payment_refusals(store.engine, limit=10)
    assert [(r["reference"], r["dossier_code"]) for r in rows] == [("R-9", None), ("R-1", "D-7")]
    assert flow_records.payment_refusal_counts(store.engine) == {PAYMENT: 2}

"""Accepting ``dossier.status`` submissions: the status machine decides in the same transaction as the accept
(applied → queued, stale → stored without deliveries, rejected → only on the timeline), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from hub.store import StatusUpdate, Store, Submission
from tests.support import row_count as count

CODE = "000.00.00.H12-251123-0042"
SENDER = "000.00.00.G10"
T0 = dt.datetime(2025, 11, 24, 3, 0, tzinfo=dt.UTC)


def sub(message_id: str, status: int, minutes: int, body: bytes | None = None) -> Submission:
    return Submission(
        sender=SENDER,
        message_id=message_id,
        message_type="dossier.status",
        receiver="000.00.00.H00",
        envelope=body or message_id.encode(),
        destinations=("province", "portal"),
        dossier_code=CODE,
        status=StatusUpdate(CODE, status, T0 + dt.timedelta(minutes=minutes), SENDER),
    )


def test_applied_stale_and_rejected_in_one_batch(store: Store) -> None:
    results = store.accept_many(
        [sub("a", 4, 10), sub("b", 5, 20), sub("stale", 4, 15), sub("bad", 9, 30), sub("b", 5, 20), sub("x", 7, 40)]
    )
    assert [r.outcome for r in results] == ["accepted", "accepted", "accepted", "rejected", "duplicate", "accepted"]
    assert [None if r.decision is None else str(r.decision.outcome) for r in results] == [
        "applied", "applied", "stale", "rejected", None, "applied",
    ]  # fmt: skip
    assert len(results[0].delivery_ids) == 2 and results[2].delivery_ids == () and results[2].status == "accepted"
    assert results[3].message_pk is None and "5 SUPPLEMENT_REQUESTED -> 9 DONE" in results[3].decision.reason
    assert store.trace("bad") is None  # a rejected update is not logged as a message
    assert [e.state for e in store.trace("stale").events] == ["received", "validated", "status_stale"]
    timeline = store.timeline(CODE)
    assert [(t.message_id, t.status, t.outcome) for t in timeline] == [
        ("a", 4, "applied"), ("stale", 4, "stale"), ("b", 5, "applied"), ("bad", 9, "rejected"), ("x", 7, "applied"),
    ]  # fmt: skip  (time order: the stale update of minute 15 sits between minutes 10 and 20)
    assert store.dossier(CODE).status == 7


def test_a_resend_is_not_decided_again(store: Store) -> None:
    (first,) = store.accept_many([sub("done", 9, 10)])
    (again,) = store.accept_many([sub("done", 9, 10)])
    (other,) = store.accept_many([sub("done", 9, 10, body=b"other bytes")])
    assert (first.outcome, again.outcome, other.outcome) == ("accepted", "duplicate", "conflict")
    assert len(store.timeline(CODE)) == 1  # 9 -> 9 again would have been rejected


def test_rejected_then_resent_after_the_state_allows_it(store: Store) -> None:
    store.accept_many([sub("received", 2, 0), sub("supplement", 5, 10)])
    (refused,) = store.accept_many([sub("stopped-then-done", 10, 20)])
    assert refused.outcome == "rejected"
    (later,) = store.accept_many([sub("processing", 4, 30)])
    assert later.outcome == "accepted" and str(later.decision.outcome) == "applied"
    assert count(store, "messages") == 3

"""Operator actions in the store: close a dead letter, retry now (generations), pause and resume a destination;
each audited in the transaction of its change."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.errors import (
    AlreadyReplayedError,
    DeadLetterClosedError,
    DestinationNotPausedError,
    DestinationPausedError,
    NotRetryingError,
    UnknownDeadLetterError,
)
from hub.exchange.pipeline import outbound_for
from hub.store import DeliveryState, Store
from hub.store.audit import AuditFilter
from hub.store.deliveries import GENERATION_HEADER
from tests.unit.test_worker_outages import DEST

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/actions.db")
    s.migrate()
    yield s
    s.close()


def accept(store: Store, message_id: str, destinations=("portal",), sender="000.00.00.H12") -> list[int]:
    result = store.accept(
        sender=sender, message_id=message_id, correlation_id=None, message_type="dossier.status",
        receiver="000.00.00.H00", dossier_code="000.00.00.H12-251123-0042", envelope=b"<env/>",
        destinations=list(destinations),
    )  # fmt: skip
    store.mark_published(result.delivery_ids)
    return list(result.delivery_ids)


def dead_letter(store: Store, message_id: str = "m-1") -> int:
    (delivery_id,) = accept(store, message_id)
    store.start_attempts([delivery_id])
    return store.record_dead(delivery_id, reason="rejected", error="HTTP 400")


def retrying(store: Store, message_id: str, destinations=("portal",), delay_s: float = 3600,
             sender="000.00.00.H12") -> list[int]:  # fmt: skip
    ids = accept(store, message_id, destinations, sender)
    store.start_attempts(ids)
    for delivery_id in ids:
        store.record_retry(delivery_id, error="HTTP 503", delay_s=delay_s)
    return ids


def audit_actions(store: Store, action: str) -> list[tuple[str, str | None, dict | None]]:
    return [(e.actor, e.subject, e.detail) for e in store.audit_entries(AuditFilter(action=action)).items]


# ------------------------------------------------------------------ close


def test_closing_a_dead_letter_records_who_when_why_and_it_leaves_the_open_list(store):
    dead_id = dead_letter(store)
    assert [(q.destination, q.dead) for q in store.queue_overview()] == [("portal", 1)]
    closed = store.close_dead_letter(dead_id, actor="an", reason="  duplicate, sent by hand  ", role="operator")
    assert closed.closed_by == "an" and closed.close_reason == "duplicate, sent by hand"
    assert closed.closed_at is not None and closed.replayed_at is None
    assert [d.id for d in store.dead_letters()] == []
    assert [d.id for d in store.dead_letters(state="closed")] == [dead_id]
    assert [d.id for d in store.dead_letters(state="all")] == [dead_id]
    assert store.dead_letters(state="replayed") == []
    assert store.delivery(closed.delivery_id).state is DeliveryState.DEAD  # not resent
    assert [(q.destination, q.dead) for q in store.queue_overview()] == [("portal", 0)]  # no longer waiting
    trace = store.trace("m-1")
    assert (trace.events[-1].state, trace.events[-1].actor) == ("closed", "an")
    assert audit_actions(store, "dead_letter.close") == [
        ("an", str(dead_id), {"reason": "duplicate, sent by hand", "message_id": "m-1", "destination": "portal"})
    ]


def test_a_closed_dead_letter_is_neither_replayed_nor_closed_again(store):
    dead_id = dead_letter(store)
    store.close_dead_letter(dead_id, actor="an", reason="handled by phone")
    with pytest.raises(DeadLetterClosedError, match="closed by an"):
        store.replay(dead_id, actor="binh")
    with pytest.raises(DeadLetterClosedError):
        store.close_dead_letter(dead_id, actor="binh", reason="again")
    assert store.dead_letter(dead_id).replayed_at is None
    assert len(audit_actions(store, "dead_letter.close")) == 1


def test_recording_a_closed_dead_letter_again_neither_reopens_nor_counts_it(store):
    """A worker re-recording an outcome it held through a store outage, after an operator closed the dead letter."""
    dead_id = dead_letter(store)
    delivery_id = store.dead_letter(dead_id).delivery_id
    store.close_dead_letter(dead_id, actor="an", reason="handled by phone")
    assert store.record_dead(delivery_id, reason="rejected", error="HTTP 400") == dead_id
    assert store.dead_letters(state="open") == [] and store.dead_letter_count(state="all") == 1
    assert sum(d.dead for d in store.history("1h").destinations) == 1


def test_a_replayed_dead_letter_cannot_be_closed_and_a_blank_reason_is_refused(store):
    dead_id = dead_letter(store)
    with pytest.raises(ValueError, match="reason"):
        store.close_dead_letter(dead_id, actor="an", reason=" \n ")
    assert store.dead_letter(dead_id).closed_at is None and audit_actions(store, "dead_letter") == []
    store.replay(dead_id, actor="an")
    with pytest.raises(AlreadyReplayedError):
        store.close_dead_letter(dead_id, actor="an", reason="too late")
    with pytest.raises(UnknownDeadLetterError):
        store.close_dead_letter(9999, actor="an", reason="none")


# ------------------------------------------------------------------ retry now


def test_retry_now_makes_a_waiting_delivery_due_of_a_new_generation_and_audits_it(store):
    (delivery_id,) = retrying(store, "m-1")
    assert store.unpublished() == []  # the broker holds the delayed retry
    before = store.now()
    (due,) = store.retry_now(actor="an", message_id="m-1", role="operator")
    assert (due.delivery_id, due.generation) == (delivery_id, 1)
    view = store.delivery(delivery_id)
    assert view.state is DeliveryState.RETRYING and view.published_at is None
    assert before <= view.next_attempt_at <= store.now()
    assert outbound_for(due).headers[GENERATION_HEADER] == "1"
    assert store.trace("m-1").events[-1].state == "retry_now"
    assert audit_actions(store, "delivery.retry_now") == [("an", "m-1", {"count": 1, "deliveries": [delivery_id]})]


def test_the_copy_superseded_by_retry_now_starts_no_attempt(store):
    (delivery_id,) = retrying(store, "m-1")
    store.retry_now(actor="an", message_id="m-1")
    # The copy still waiting in the broker (generation 0) arrives: no attempt, the worker acknowledges it.
    assert store.start_attempts([delivery_id]) == {}
    assert store.start_attempts([delivery_id], {delivery_id: 1}) == {delivery_id: 2}
    # ... nor while the new copy's call is under way (state delivering, where the state alone cannot tell).
    assert store.start_attempts([delivery_id]) == {}
    assert store.record_delivered_many([(delivery_id, b"<signed/>", "HTTP 200")]) == [True]
    assert store.start_attempts([delivery_id], {delivery_id: 1}) == {}  # a redelivery of the new copy
    assert [e.state for e in store.trace("m-1").events].count("attempt_started") == 2


def test_retry_now_for_a_destination_takes_only_its_waiting_deliveries(store):
    a_portal, a_province = retrying(store, "m-a", ("portal", "province"))
    (b_portal,) = retrying(store, "m-b")
    (delivered,) = accept(store, "m-c")
    store.start_attempts([delivered])
    store.record_delivered_many([(delivered, b"<signed/>", "HTTP 200")])
    due = store.retry_now(actor="an", destination="portal")
    assert [p.delivery_id for p in due] == [a_portal, b_portal]
    assert store.delivery(a_province).published_at is not None  # the other destination's retry still waits
    assert store.retry_now(actor="an", destination="nowhere") == []
    assert [d["count"] for _, _, d in audit_actions(store, "delivery.retry_now")] == [0, 2]


def test_retry_now_for_a_message_id_of_one_sender_leaves_the_other_senders_message(store):
    """Message ids are unique per sender: the same id from two senders is two messages."""
    (province,) = retrying(store, "same", sender="000.00.00.H12")
    (ministry,) = retrying(store, "same", sender="000.00.00.G22")
    (due,) = store.retry_now(actor="an", message_id="same", sender="000.00.00.G22")
    assert due.delivery_id == ministry
    assert store.delivery(province).published_at is not None  # still waiting out its backoff
    with pytest.raises(NotRetryingError):
        store.retry_now(actor="an", message_id="same", sender="000.00.00.G10")


def test_retry_now_for_a_message_with_nothing_waiting_is_refused(store):
    (delivery_id,) = accept(store, "m-1")
    with pytest.raises(NotRetryingError):
        store.retry_now(actor="an", message_id="m-1")
    with pytest.raises(NotRetryingError):
        store.retry_now(actor="an", message_id="unknown")
    assert audit_actions(store, "delivery.retry_now") == []
    assert store.delivery(delivery_id).generation == 0


def test_the_relay_hands_out_a_retry_now_delivery_after_its_grace_period(store):
    (delivery_id,) = retrying(store, "m-1")
    store.retry_now(actor="an", message_id="m-1")
    assert store.claim_unpublished(older_than_s=3600) == []  # the process that retried publishes it first
    (claimed,) = store.claim_unpublished(older_than_s=0)
    assert (claimed.delivery_id, claimed.generation) == (delivery_id, 1)


# ------------------------------------------------------------------ pause / resume


def test_pause_and_resume_are_stored_and_audited(store):
    pause = store.pause_destination("portal", actor="an", reason=" portal maintenance ", role="operator")
    assert (pause.destination, pause.paused_by, pause.reason) == ("portal", "an", "portal maintenance")
    assert list(store.paused_destinations()) == ["portal"]
    with pytest.raises(DestinationPausedError, match="paused already"):
        store.pause_destination("portal", actor="binh", reason="again")
    ended = store.resume_destination("portal", actor="binh")
    assert ended.paused_by == "an" and store.paused_destinations() == {}
    with pytest.raises(DestinationNotPausedError):
        store.resume_destination("portal", actor="binh")
    assert audit_actions(store, "destination") == [
        ("binh", "portal", {"paused_by": "an", "paused_at": ended.paused_at.isoformat(),
                            "reason": "portal maintenance"}),
        ("an", "portal", {"reason": "portal maintenance"}),
    ]  # fmt: skip


def test_pausing_needs_a_reason(store):
    with pytest.raises(ValueError, match="reason"):
        store.pause_destination("portal", actor="an", reason="")
    assert store.paused_destinations() == {} and audit_actions(store, "destination") == []


def test_next_attempt_is_not_moved_for_deliveries_not_waiting(store):
    (delivery_id,) = retrying(store, "m-1", delay_s=60)
    later = store.delivery(delivery_id).next_attempt_at
    store.retry_now(actor="an", destination="province")
    assert store.delivery(delivery_id).next_attempt_at == later
    assert later > store.now() + dt.timedelta(seconds=30)


# ------------------------------------------------------------------ the worker (fake store and broker)


def _rig(tmp_path, store_paused: dict | None = None):
    from dataclasses import replace

    from broker.base import Delivery
    from tests.unit.test_worker_outages import FakeBroker, FakeStore, Rig

    class Store(FakeStore):
        """Starts a delivery only for a queue message of its current generation, as the real store does."""

        def __init__(self) -> None:
            super().__init__()
            self.generation: dict[int, int] = {}
            self.paused: dict = dict(store_paused or {})

        def paused_destinations(self) -> dict:
            return dict(self.paused)

        def start_attempts_at(self, delivery_ids, generations=None):
            current = [i for i in delivery_ids if (generations or {}).get(i, 0) == self.generation.get(i, 0)]
            return super().start_attempts_at(current)

    class Broker(FakeBroker):
        def __init__(self) -> None:
            super().__init__()
            self.retried_copies: list[Delivery] = []

        def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
            super().retry(delivery, delay_s, reason)
            self.retried_copies.append(replace(delivery))

    rig = Rig(tmp_path)
    rig.worker.store = rig.store = Store()
    rig.worker.broker = rig.broker = Broker()
    return rig


def _copy(delivery_id: int, generation: int):
    from tests.unit.test_worker_outages import delivery

    made = delivery(delivery_id)
    if generation:
        made.headers[GENERATION_HEADER] = str(generation)
    return made


def test_a_batch_holding_both_copies_attempts_the_newest_once_and_acknowledges_the_other(tmp_path):
    rig = _rig(tmp_path)
    try:
        rig.store.generation[1] = 1  # retried now: the copy of generation 1 is the one to attempt
        rig.partner.failing.add("m-1")
        rig.worker.process_batch([_copy(1, 0), _copy(1, 1)])
        assert rig.partner.calls == ["m-1"]  # once
        (retried,) = rig.broker.retried_copies  # its retry copy carries the current generation
        assert retried.headers[GENERATION_HEADER] == "1"
        assert rig.broker.acked == [1]  # the stale copy

        rig.worker.process_batch([_copy(1, 0)])  # the stale copy arriving alone later: acknowledged, not sent
        assert rig.partner.calls == ["m-1"] and rig.broker.acked == [1, 1]
    finally:
        rig.worker.close()


def test_a_batch_taken_before_a_pause_was_seen_is_given_back_unattempted(tmp_path):
    rig = _rig(tmp_path, {DEST: "paused"})
    try:
        rig.worker.paused()
        rig.worker.process_batch([_copy(1, 0), _copy(2, 0)])
        assert rig.partner.calls == [] and rig.store.attempts == {}  # no call, no attempt counted
        assert rig.broker.requeued == [1, 2] and rig.broker.retried == [] and rig.broker.dead == []
    finally:
        rig.worker.close()


def test_a_worker_consumes_nothing_for_a_paused_destination_until_it_is_resumed(tmp_path):
    from hub.exchange.worker import PAUSE_CACHE_S
    from tests.unit.test_worker_outages import eventually

    rig = _rig(tmp_path, {DEST: "paused"})
    try:
        rig.broker.put(_copy(1, 0))
        rig.start()
        eventually(lambda: rig.worker._paused_read_at is not None)
        flushes = rig.broker.flushes
        eventually(lambda: rig.broker.flushes > flushes + 1)  # idle turns: the connection is pumped, no busy loop
        assert len(rig.broker.ready) == 1 and rig.partner.calls == []
        rig.store.paused.clear()
        eventually(lambda: rig.broker.acked == [1], seconds=PAUSE_CACHE_S + 3)
        assert rig.partner.calls == ["m-1"]
        rig.stop()
    finally:
        rig.worker.close()

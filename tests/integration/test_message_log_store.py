"""The message log's store query (``hub.store.message_log``) on SQLite and PostgreSQL: every filter, the overall
state as ``message_status`` says it, keyset pages that stay right while messages arrive, totals, and the trace and
dossier timeline in time order."""

from __future__ import annotations

import datetime as dt
from datetime import UTC

import pytest
import sqlalchemy as sa

from hub.errors import InvalidCursorError
from hub.store import StatusUpdate, Store, Submission
from hub.store.message_log import MessageFilter
from hub.store.schema import events, messages

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def submit(store: Store, message_id: str, *, sender: str = "S1", destinations: tuple[str, ...] = ("P1",),
           message_type: str = "dossier.sync", dossier: str | None = "D-1",
           at: dt.datetime | None = None) -> int:  # fmt: skip
    (result,) = store.accept_many([Submission(sender=sender, message_id=message_id, message_type=message_type,
                                              receiver=(destinations or ("hub",))[0], envelope=message_id.encode(),
                                              destinations=destinations, dossier_code=dossier)])  # fmt: skip
    assert result.outcome == "accepted" and result.message_pk is not None
    if at is not None:  # place it in time (the store stamps the real clock)
        with store.transaction() as conn:
            conn.execute(sa.update(messages).where(messages.c.id == result.message_pk).values(received_at=at))
    return result.message_pk


def ids(page) -> list[str]:
    return [m.message_id for m in page.items]


def test_every_filter_alone_and_combined(store: Store) -> None:
    submit(store, "a", sender="S1", destinations=("P1",), message_type="dossier.sync", dossier="D-1", at=T0)
    submit(store, "b", sender="S2", destinations=("P2",), message_type="dossier.status", dossier="D-2",
           at=T0 + dt.timedelta(hours=1))  # fmt: skip
    submit(store, "c", sender="S1", destinations=("P1", "P2"), message_type="dossier.status", dossier=None,
           at=T0 + dt.timedelta(hours=2))  # fmt: skip
    log = store.message_log
    assert ids(log()) == ["c", "b", "a"] and log().total == 3
    assert ids(log(MessageFilter(since=T0 + dt.timedelta(hours=1)))) == ["c", "b"]
    assert ids(log(MessageFilter(until=T0 + dt.timedelta(hours=1)))) == ["a"]  # until is excluded
    assert ids(log(MessageFilter(sender="S1"))) == ["c", "a"]
    assert ids(log(MessageFilter(receiver="P2"))) == ["c", "b"]  # a destination it was routed to
    assert ids(log(MessageFilter(message_type="dossier.status"))) == ["c", "b"]
    assert ids(log(MessageFilter(dossier="D-2"))) == ["b"]
    combined = log(MessageFilter(sender="S1", receiver="P2", since=T0 + dt.timedelta(minutes=30)))
    assert ids(combined) == ["c"] and combined.total == 1
    (row,) = combined.items
    assert row.destinations == ("P1", "P2") and row.status == "queued" and row.received_at == T0 + dt.timedelta(hours=2)
    assert log(MessageFilter(sender="nobody")).total == 0


def test_state_filter_matches_message_status(store: Store) -> None:
    """Each state filter finds exactly the messages whose trace shows that state."""
    submit(store, "none", destinations=())  # accepted: nothing to deliver
    submit(store, "queued", destinations=("P1", "P2"))
    pk = submit(store, "retrying", destinations=("P1", "P2"))
    retrying = store.trace("retrying").deliveries[0].delivery_id
    store.start_attempts([retrying])
    store.record_retry(retrying, error="HTTP 503", delay_s=30)
    delivering = store.trace("queued").deliveries[0].delivery_id
    submit(store, "delivering", destinations=("P1",))
    store.start_attempts([store.trace("delivering").deliveries[0].delivery_id])
    submit(store, "delivered", destinations=("P1", "P2"))
    done = [d.delivery_id for d in store.trace("delivered").deliveries]
    store.start_attempts(done)
    store.record_delivered_many([(d, b"<out/>", "HTTP 200") for d in done])
    submit(store, "dead", destinations=("P1", "P2"))
    first, second = (d.delivery_id for d in store.trace("dead").deliveries)
    store.start_attempts([first, second])
    store.record_delivered_many([(first, b"<out/>", "HTTP 200")])
    store.record_dead(second, reason="rejected", error="HTTP 400")
    store.start_attempts([delivering])  # "queued" now has one delivering and one queued: still queued
    assert pk
    expected = {"accepted": ["none"], "queued": ["queued"], "retrying": ["retrying"], "delivering": ["delivering"],
                "delivered": ["delivered"], "dead": ["dead"]}  # fmt: skip
    for state, names in expected.items():
        found = store.message_log(MessageFilter(state=state))
        assert ids(found) == names, state
        assert found.total == len(names)
        assert all(store.trace(name).status == state for name in names)
        assert [m.status for m in found.items] == [state] * len(names)
    with pytest.raises(ValueError, match="message state"):
        MessageFilter(state="lost")


def test_pages_stay_right_while_messages_arrive(store: Store) -> None:
    for i in range(7):
        submit(store, f"m{i}", sender="S1")
    first = store.message_log(MessageFilter(sender="S1"), limit=3)
    assert ids(first) == ["m6", "m5", "m4"] and first.total == 7 and first.next_cursor
    for i in range(7, 10):  # arrive between two pages: not on the next ones, counted in their totals
        submit(store, f"m{i}", sender="S1")
    submit(store, "other", sender="S2")
    second = store.message_log(MessageFilter(sender="S1"), cursor=first.next_cursor, limit=3)
    assert ids(second) == ["m3", "m2", "m1"] and second.total == 10
    third = store.message_log(MessageFilter(sender="S1"), cursor=second.next_cursor, limit=3)
    assert ids(third) == ["m0"] and third.next_cursor is None
    exact = store.message_log(MessageFilter(sender="S1"), limit=10)
    assert len(exact.items) == 10 and exact.next_cursor is None  # a full last page has no next page
    with pytest.raises(InvalidCursorError):
        store.message_log(cursor="not-a-cursor")


def test_a_total_past_the_cap_is_a_lower_bound(store: Store) -> None:
    from hub.store import message_log

    for i in range(4):
        submit(store, f"m{i}")
    capped = message_log.page(store.db, MessageFilter(), limit=2, count_cap=3)
    assert (capped.total, capped.total_exact) == (3, False)
    exact = message_log.page(store.db, MessageFilter(), limit=2, count_cap=4)
    assert (exact.total, exact.total_exact) == (4, True)


def test_the_envelope_as_received(store: Store) -> None:
    submit(store, "x", sender="S1")
    submit(store, "x", sender="S2")
    assert store.message_envelope("x", "S1").sender == "S1"
    assert store.message_envelope("x").sender == "S2"  # the latest with that id
    assert store.message_envelope("x").envelope == b"x"
    assert store.message_envelope("nope") is None


def test_trace_and_timeline_are_in_time_order(store: Store) -> None:
    code = "D-time"

    def update(message_id: str, status: int, at: dt.datetime) -> Submission:
        return Submission(sender="M", message_id=message_id, message_type="dossier.status", receiver="P1",
                          envelope=message_id.encode(), dossier_code=code, destinations=("P1",),
                          status=StatusUpdate(code, status, at, "M"))  # fmt: skip

    late, early = update("late", 4, T0 + dt.timedelta(hours=2)), update("early", 2, T0)
    store.accept_many([late])
    store.accept_many([early])  # reported after the later one: stale, but it happened first
    assert [(u.status, u.outcome) for u in store.timeline(code)] == [(2, "stale"), (4, "applied")]
    pk = store.trace("late").message_pk
    with store.transaction() as conn:  # an event written later with an earlier time (another process's clock)
        conn.execute(sa.insert(events).values(message_pk=pk, state="viewed", detail="", at=T0 - dt.timedelta(days=1)))
    trail = store.trace("late").events
    assert trail[0].state == "viewed"
    assert [e.at for e in trail] == sorted(e.at for e in trail)


PLANNED = {  # filter → the index SQLite must answer it from (the messages table holds millions of rows)
    "since": (MessageFilter(since=T0), "INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),  # the ids of its time span
    "sender": (MessageFilter(sender="S1"), "ix_messages_sender_id"),
    "type": (MessageFilter(message_type="dossier.sync"), "ix_messages_message_type_id"),
    "dossier": (MessageFilter(dossier="D-1"), "ix_messages_dossier_code"),
    "receiver": (MessageFilter(receiver="P1"), "ix_deliveries_destination_message_pk"),
    "dead": (MessageFilter(state="dead"), "ix_deliveries_open_state"),
    "retrying": (MessageFilter(state="retrying"), "ix_deliveries_open_state"),
}


def _plan(store: Store, query) -> str:
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        return " / ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


@pytest.mark.parametrize("name", sorted(PLANNED))
def test_the_filters_are_answered_from_indexes_on_sqlite(tmp_path, name: str) -> None:
    from hub.store import message_log

    store = Store(f"sqlite:///{tmp_path}/plans.db")
    store.migrate()
    try:
        flt, index = PLANNED[name]
        for query in message_log.queries(flt, ids=(1, 10) if flt.since else None):  # the page, the count
            plan = _plan(store, query)
            assert index in plan, plan
            assert "SCAN messages" not in plan.replace("SCAN messages USING COVERING INDEX", ""), plan
        if flt.since:  # the span itself: from the time index
            assert "ix_messages_received_at" in _plan(store, message_log.time_span(flt))
    finally:
        store.close()

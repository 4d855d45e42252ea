"""The durable store, on SQLite (a temporary file) and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.dossier.status_machine import Correction, Outcome
from hub.errors import (
    AlreadyReplayedError,
    DeliveryClosedError,
    StoreError,
    UnknownDeadLetterError,
    UnknownDeliveryError,
)
from hub.store import MIGRATIONS_DIR, Delivered, DeliveryState, StatusUpdate, Store, Submission, normalise_url
from hub.store.database import HEAD_REVISION
from hub.store.schema import metadata
from tests.support import row_count as count

UTC = dt.UTC


def submit(store: Store, message_id: str = "m-1", body: bytes = b"<env>1</env>", **kw) -> object:
    args = {
        "sender": "000.00.00.H12",
        "message_id": message_id,
        "correlation_id": None,
        "message_type": "dossier.status",
        "receiver": "000.00.00.H00",
        "dossier_code": "000.00.00.H12-251123-0042",
        "envelope": body,
        "destinations": ["portal", "province"],
    }
    args.update(kw)
    return store.accept(**args)


def states(store: Store, message_id: str) -> list[tuple[str, str | None, int | None]]:
    trace = store.trace(message_id)
    assert trace is not None
    return [(e.state, e.destination, e.attempt) for e in trace.events]


# ------------------------------------------------------------------ schema


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def test_the_head_revision_written_in_the_code_is_the_newest_migration() -> None:
    assert _head_revision() == HEAD_REVISION, "a new migration: set HEAD_REVISION in hub/store/database.py to its id"


def test_migrate_twice_is_a_noop_and_matches_the_tables(store: Store) -> None:
    submit(store)
    store.migrate()  # second run: nothing to do, data kept
    assert store.current_revision() == _head_revision()
    assert count(store, "messages") == 1
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_data_files_and_folders_are_created_private(tmp_path) -> None:
    """The store file, the embedded queue file (and their -wal/-shm) 0600; their folders and the key folder 0700:
    they hold personal data and private keys."""
    from broker.embedded import EmbeddedBroker
    from hub.security.keys import issue_key

    s = Store(f"sqlite:///{tmp_path}/data/hub.db")
    try:
        s.migrate()
        submit(s)
    finally:
        s.close()
    queue = EmbeddedBroker(tmp_path / "queue" / "queue.db")
    queue.close()
    issue_key("province", tmp_path / "keys", algorithm="ec")  # the folder mode, not the key: EC is made at once
    made = [tmp_path / "data" / "hub.db", *(tmp_path / "data").glob("hub.db-*"), tmp_path / "queue" / "queue.db"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in made} == {p.name: "0o600" for p in made}
    folders = [tmp_path / "data", tmp_path / "queue", tmp_path / "keys"]
    assert [oct(p.stat().st_mode & 0o777) for p in folders] == ["0o700"] * 3


def test_sqlite_is_tuned(tmp_path) -> None:
    s = Store(f"sqlite:///{tmp_path}/a/b/hub.db", busy_timeout_ms=1234)
    try:
        s.migrate()
        assert (tmp_path / "a" / "b" / "hub.db").exists()
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, the default
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        s.close()


def test_postgresql_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///var/x.db").drivername == "sqlite"
    with pytest.raises(StoreError, match="unsupported"):
        Store("mysql://u@h/db")


# ------------------------------------------------------------------ intake


def test_accept_then_duplicate_then_conflict(store: Store) -> None:
    body = b"<env>exactly these bytes</env>"
    first = submit(store, body=body, actor="api")
    assert first.outcome == "accepted"
    assert first.status == "queued"
    assert first.digest == hashlib.sha256(body).hexdigest()
    assert len(first.delivery_ids) == 2
    assert first.received_at.tzinfo is not None and first.received_at.utcoffset() == dt.timedelta(0)
    rows = (count(store, "messages"), count(store, "deliveries"), count(store, "events"))
    assert rows == (1, 2, 4)
    assert states(store, "m-1") == [
        ("received", None, None),
        ("validated", None, None),
        ("queued", "portal", None),
        ("queued", "province", None),
    ]
    assert store.trace("m-1").events[0].actor == "api"

    again = submit(store, body=body)
    assert again.outcome == "duplicate"
    assert (again.message_pk, again.delivery_ids, again.status) == (first.message_pk, first.delivery_ids, "queued")
    assert again.received_at == first.received_at

    other = submit(store, body=b"<env>other bytes</env>")
    assert other.outcome == "conflict"
    assert other.stored_digest == first.digest != other.digest
    assert (count(store, "messages"), count(store, "deliveries"), count(store, "events")) == rows

    view = store.delivery(first.delivery_ids[0])
    assert view.envelope == body  # bytes exactly as received
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT envelope, digest FROM messages")).one()
    assert (bytes(stored.envelope), stored.digest) == (body, first.digest)


def test_a_duplicate_reports_the_original_status(store: Store) -> None:
    first = submit(store, destinations=["portal"])
    (delivery_id,) = first.delivery_ids
    store.start_attempts([delivery_id])
    store.record_delivered_many([(delivery_id, b"<out/>", "")])
    assert submit(store).status == "delivered"
    # Same message id from another sender is another message.
    assert submit(store, sender="000.00.00.H13").outcome == "accepted"


def test_concurrent_identical_accepts_store_one_message(store: Store) -> None:
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(submit(store, message_id="race"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["accepted"] + ["duplicate"] * (threads_n - 1)
    assert len({r.delivery_ids for r in results}) == 1
    assert (count(store, "messages"), count(store, "deliveries")) == (1, 2)


def test_concurrent_overlapping_batches(store: Store) -> None:
    def batch(offset: int) -> list[Submission]:
        return [
            Submission("S", f"m-{i}", "dossier.sync", "H", f"<m>{i}</m>".encode(), ("portal",))
            for i in range(offset, offset + 100)
        ]

    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            results.extend(store.accept_many(batch(offset)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o,)) for o in (0, 50, 0, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.outcome == "accepted" for r in results) == 150
    assert sum(r.outcome == "duplicate" for r in results) == 250
    assert (count(store, "messages"), count(store, "deliveries")) == (150, 150)


@pytest.mark.parametrize("store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.parametrize("step", ["mark_published", "start_attempts"])
def test_a_batch_update_of_deliveries_locks_them_in_id_order(store: Store, step: str) -> None:
    """The API marks an earlier batch published while a worker starts attempts on deliveries of it: two updates of
    the same rows in one order each, or PostgreSQL finds a deadlock and the API answers 503 (seen in a paced
    ``hub bench``). Rows are locked in id order whatever their order on disk: while the lowest is held, the
    batch holds none of the others."""
    results = store.accept_many(
        [Submission("S", f"m-{i}", "dossier.sync", "H", f"<m>{i}</m>".encode(), ("portal",)) for i in range(6)]
    )
    ids = sorted(i for r in results for i in r.delivery_ids)
    with store.engine.begin() as conn:  # the rows on disk in the reverse order of their ids
        for delivery_id in reversed(ids):
            conn.execute(sa.text("UPDATE deliveries SET attempts = attempts WHERE id = :i"), {"i": delivery_id})
    run = {"mark_published": lambda: store.mark_published(ids), "start_attempts": lambda: store.start_attempts(ids)}
    errors: list[BaseException] = []

    def batch() -> None:
        try:
            run[step]()
        except BaseException as exc:
            errors.append(exc)

    with store.engine.connect() as holder:
        holder.begin()
        holder.execute(sa.text("SELECT id FROM deliveries WHERE id = :i FOR UPDATE"), {"i": ids[0]})
        thread = threading.Thread(target=batch)
        thread.start()
        try:
            time.sleep(0.5)  # the batch is now waiting for the lowest row
            for delivery_id in ids[1:]:  # none of the others is held: no lock order a third party can cross
                holder.execute(sa.text("SELECT id FROM deliveries WHERE id = :i FOR UPDATE NOWAIT"), {"i": delivery_id})
        finally:
            holder.rollback()
            thread.join(timeout=10)
    assert errors == []


def test_accept_many_in_order_with_in_batch_and_stored_duplicates(store: Store) -> None:
    submit(store, message_id="old", body=b"<old/>", destinations=["portal"])
    items: list[object] = [
        {
            "sender": "000.00.00.H12",
            "message_id": f"n-{i}",
            "correlation_id": f"c-{i}",
            "message_type": "dossier.sync",
            "receiver": "H",
            "dossier_code": None,
            "envelope": f"<n>{i}</n>".encode(),
            "destinations": ["portal", "province", "portal"],  # repeated destination kept once
        }
        for i in range(300)
    ]
    items.append(Submission("000.00.00.H12", "n-5", "dossier.sync", "H", b"<n>5</n>", ("portal", "province")))
    items.append(Submission("000.00.00.H12", "n-6", "dossier.sync", "H", b"<changed/>", ("portal",)))
    items.append(Submission("000.00.00.H12", "old", "dossier.sync", "H", b"<old/>", ("portal",)))
    items.append(Submission("000.00.00.H12", "old", "dossier.sync", "H", b"<new/>", ("portal",)))
    results = store.accept_many(items)
    assert [r.message_id for r in results[:300]] == [f"n-{i}" for i in range(300)]
    assert all(r.outcome == "accepted" and len(r.delivery_ids) == 2 for r in results[:300])
    assert [r.outcome for r in results[300:]] == ["duplicate", "conflict", "duplicate", "conflict"]
    assert results[300].delivery_ids == results[5].delivery_ids
    assert results[300].message_pk == results[5].message_pk
    assert len({r.received_at for r in results[:300]}) == 1  # one transaction
    assert (count(store, "messages"), count(store, "deliveries")) == (301, 601)
    assert store.accept_many([]) == []
    assert store.trace("n-7").correlation_id == "c-7"


# ------------------------------------------------------------------ outbox and deliveries


def test_outbox_lists_deliveries_until_published(store: Store) -> None:
    a = submit(store, message_id="a")
    b = submit(store, message_id="b", body=b"<b/>", destinations=["portal"])
    pending = store.unpublished()
    assert [p.delivery_id for p in pending] == [*a.delivery_ids, *b.delivery_ids]
    assert pending[2].envelope == b"<b/>" and pending[2].destination == "portal" and pending[2].attempts == 0
    assert store.unpublished(older_than_s=60) == []  # all younger than the grace period
    assert len(store.unpublished(limit=2)) == 2

    store.mark_published(a.delivery_ids)
    assert [p.delivery_id for p in store.unpublished()] == list(b.delivery_ids)
    store.mark_published([*b.delivery_ids, *b.delivery_ids])
    assert store.unpublished() == []
    assert store.delivery(b.delivery_ids[0]).published_at is not None


def test_attempt_retry_delivered_flow(store: Store) -> None:
    (delivery_id,) = submit(store, destinations=["portal"]).delivery_ids
    store.mark_published([delivery_id])
    assert store.delivery(delivery_id).state is DeliveryState.QUEUED

    assert store.start_attempts([delivery_id]) == {delivery_id: 1}
    assert store.delivery(delivery_id).state is DeliveryState.DELIVERING
    before = dt.datetime.now(UTC)
    store.record_retry(delivery_id, error="HTTP 503", delay_s=30)
    view = store.delivery(delivery_id)
    assert view.state is DeliveryState.RETRYING and view.last_error == "HTTP 503"
    assert before + dt.timedelta(seconds=29) < view.next_attempt_at < before + dt.timedelta(seconds=32)
    assert store.unpublished() == []  # the broker holds the delayed retry

    assert store.start_attempts([delivery_id]) == {delivery_id: 2}
    assert store.record_delivered_many([(delivery_id, b"<signed-by-hub/>", "HTTP 200")]) == [True]
    view = store.delivery(delivery_id)
    assert view.state is DeliveryState.DELIVERED and view.attempts == 2
    assert view.outbound == b"<signed-by-hub/>"
    assert view.outbound_digest == hashlib.sha256(b"<signed-by-hub/>").hexdigest()
    assert view.delivered_at.tzinfo is not None

    # A redelivered queue message: no new attempt, no second delivery, no extra event.
    assert store.start_attempts([delivery_id]) == {}
    assert store.record_delivered_many([(delivery_id, b"<other/>", "")]) == [False]
    assert store.delivery(delivery_id).attempts == 2
    assert store.delivery(delivery_id).outbound == b"<signed-by-hub/>"
    assert states(store, "m-1")[3:] == [
        ("attempt_started", "portal", 1),
        ("failed", "portal", 1),
        ("retry_scheduled", "portal", 1),
        ("attempt_started", "portal", 2),
        ("delivered", "portal", 2),
    ]
    trace = store.trace("m-1")
    assert trace.status == "delivered"
    assert trace.events[-1].detail == "HTTP 200"
    assert [e.at for e in trace.events] == sorted(e.at for e in trace.events)
    with pytest.raises(DeliveryClosedError):
        store.record_retry(delivery_id, error="x", delay_s=1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_message_log_keeps_the_bytes_a_partner_received(store: Store) -> None:
    as_json, as_envelope = submit(store).delivery_ids
    store.start_attempts([as_json, as_envelope])
    body = b'{"MaHoSo": "000.00.00.H12-251123-0042"}'
    recorded = store.record_delivered_many(
        [
            Delivered(as_json, b"<signed-by-hub/>", "HTTP 200", sent=body, sent_type="application/json"),
            (as_envelope, b"<signed-by-hub/>", "HTTP 200"),  # a plain 3-tuple: the envelope itself was sent
        ]
    )
    assert recorded == [True, True]

    json_view, envelope_view = store.delivery(as_json), store.delivery(as_envelope)
    assert (json_view.sent, json_view.sent_type) == (body, "application/json")
    assert json_view.outbound == b"<signed-by-hub/>"  # the hub-signed envelope is kept beside it
    assert (envelope_view.sent, envelope_view.sent_type) == (b"<signed-by-hub/>", "application/xml")
    traced = {d.delivery_id: d for d in store.trace("m-1").deliveries}  # a trace names what was sent, by digest
    assert (traced[as_json].sent_digest, traced[as_json].sent_type) == (sha256(body), "application/json")
    envelope_digest = sha256(b"<signed-by-hub/>")
    assert (traced[as_envelope].sent_digest, traced[as_envelope].sent_type) == (envelope_digest, "application/xml")
    (logged,) = store.dossier_messages("000.00.00.H12-251123-0042")
    assert [d.sent_type for d in logged.deliveries] == ["application/json", "application/xml"]
    with store.engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT id, sent FROM deliveries")).all())
    assert (bytes(stored[as_json]), stored[as_envelope]) == (body, None)  # NULL: the envelope was sent


def test_nothing_sent_reads_as_nothing(store: Store) -> None:
    (delivery_id,) = submit(store, destinations=["portal"]).delivery_ids
    view = store.delivery(delivery_id)
    assert (view.outbound, view.sent, view.sent_type) == (None, None, None)
    assert store.trace("m-1").deliveries[0].sent_digest is None


def test_retry_with_republish_goes_back_to_the_relay_when_due(store: Store) -> None:
    first, second = submit(store).delivery_ids
    store.mark_published([first, second])
    assert store.start_attempts([first, second]) == {first: 1, second: 1}
    for delivery_id, delay in ((first, 0), (second, 3600)):
        store.record_retry(delivery_id, error="timeout", delay_s=delay, republish=True)
    assert [p.delivery_id for p in store.unpublished()] == [first]


def test_unknown_delivery(store: Store) -> None:
    assert store.delivery(999) is None
    # The worker's batches leave unknown ids out: nothing to call, nothing recorded.
    assert store.start_attempts([999]) == {}
    assert store.record_delivered_many([(999, b"x", "")]) == [False]
    with pytest.raises(UnknownDeliveryError):
        store.record_retry(999, error="x", delay_s=1)
    with pytest.raises(UnknownDeliveryError):
        store.record_dead(999, reason="permanent", error="x")
    assert store.trace("nope") is None


# ------------------------------------------------------------------ dead letters


def test_dead_letter_and_replay(store: Store) -> None:
    portal, province = submit(store).delivery_ids
    store.mark_published([portal, province])
    for attempt in (1, 2, 3):
        assert store.start_attempts([portal]) == {portal: attempt}
    dead_id = store.record_dead(portal, reason="exhausted", error="HTTP 503 x3")
    assert store.record_dead(portal, reason="exhausted", error="again") == dead_id  # idempotent
    assert store.delivery(portal).state is DeliveryState.DEAD

    (letter,) = store.dead_letters()
    assert (letter.id, letter.delivery_id, letter.destination, letter.reason) == (
        dead_id,
        portal,
        "portal",
        "exhausted",
    )
    assert (letter.message_id, letter.sender, letter.message_type) == ("m-1", "000.00.00.H12", "dossier.status")
    assert (letter.dossier_code, letter.last_error, letter.attempts) == ("000.00.00.H12-251123-0042", "HTTP 503 x3", 3)
    assert letter.replayed_at is None and letter.created_at.tzinfo is not None
    assert store.dead_letters(destination="province") == []
    assert store.trace("m-1").status == "queued"  # province still pending

    before = dt.datetime.now(UTC)
    replayed = store.replay(dead_id, actor="operator:lan")
    assert (replayed.delivery_id, replayed.state, replayed.attempts) == (portal, DeliveryState.QUEUED, 0)
    assert replayed.envelope == b"<env>1</env>"
    assert [p.delivery_id for p in store.unpublished()] == [portal]
    assert store.dead_letters() == []
    (done,) = store.dead_letters(include_replayed=True)
    assert done.replayed_by == "operator:lan" and done.replayed_at >= before - dt.timedelta(seconds=1)
    trace = store.trace("m-1")
    assert [(e.state, e.actor) for e in trace.events[-3:]] == [
        ("failed", None),
        ("dead_lettered", None),
        ("replayed", "operator:lan"),
    ]
    assert trace.events[-2].detail == "exhausted: HTTP 503 x3"

    with pytest.raises(AlreadyReplayedError) as info:
        store.replay(dead_id, actor="someone-else")
    assert info.value.replayed_by == "operator:lan"
    with pytest.raises(UnknownDeadLetterError):
        store.replay(12345, actor="x")

    # The replayed delivery runs again and can die again: a new dead letter.
    assert store.start_attempts([portal]) == {portal: 1}
    assert store.record_dead(portal, reason="permanent", error="HTTP 400") != dead_id


def test_a_delivered_delivery_cannot_be_dead_lettered_or_replayed(store: Store) -> None:
    (delivery_id,) = submit(store, destinations=["portal"]).delivery_ids
    store.start_attempts([delivery_id])
    dead_id = store.record_dead(delivery_id, reason="exhausted", error="timeout")
    # A stray queue copy of a dead delivery is not attempted again (the worker acknowledges it) …
    assert store.start_attempts([delivery_id]) == {}
    # … but a late success (a call that was in flight when it was declared dead) still records the truth.
    assert store.record_delivered_many([(delivery_id, b"<o/>", "")]) == [True]
    with pytest.raises(DeliveryClosedError):
        store.replay(dead_id, actor="op")
    assert store.dead_letters()[0].replayed_at is None  # the refused replay left nothing behind
    with pytest.raises(DeliveryClosedError):
        store.record_dead(delivery_id, reason="permanent", error="x")


# ------------------------------------------------------------------ dossiers


def test_record_status_outcomes_and_timeline(store: Store) -> None:
    code = "000.00.00.H12-251123-0042"
    submit(store, message_id="st-1")
    t0 = dt.datetime(2025, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))

    def record(status: int, at: dt.datetime, **kw):
        return store.record_status(dossier_code=code, status=status, at=at, message_id=kw.pop("message_id", None),
                                   source="ministry", **kw)  # fmt: skip

    assert store.dossier(code) is None
    assert record(1, t0, message_id="st-1").outcome is Outcome.APPLIED
    assert record(2, t0 + dt.timedelta(hours=1)).outcome is Outcome.APPLIED
    assert record(4, t0 + dt.timedelta(minutes=30)).outcome is Outcome.STALE  # older than the last applied
    assert record(1, t0 + dt.timedelta(hours=2)).outcome is Outcome.REJECTED  # 2 -> 1 is not legal
    current = store.dossier(code)
    assert current.status == 2 and current.status_at == t0 + dt.timedelta(hours=1)
    assert current.status_at.utcoffset() == dt.timedelta(0)  # stored and returned in UTC

    fix = Correction(reason="entered by mistake", corrected_by="operator:lan")
    assert record(1, t0 + dt.timedelta(hours=3), correction=fix).outcome is Outcome.CORRECTED
    assert store.dossier(code).status == 1

    entries = store.timeline(code)
    assert [(e.status, e.outcome) for e in entries] == [  # in time order: the stale update where its time puts it
        (1, "applied"),
        (4, "stale"),
        (2, "applied"),
        (1, "rejected"),
        (1, "corrected"),
    ]
    assert entries[0].message_id == "st-1" and entries[0].source == "ministry"
    assert entries[0].at == t0 and entries[0].at.tzinfo is not None
    assert "operator:lan" in entries[4].reason
    assert store.timeline("unknown") == []
    assert states(store, "st-1")[-1][0] == "status_applied"
    with pytest.raises(ValueError, match="timezone"):
        record(4, dt.datetime(2025, 11, 23, 12, 0))  # naive


def test_concurrent_status_updates_are_serialised(store: Store) -> None:
    code = "000.00.00.H12-251123-0043"
    t0 = dt.datetime(2025, 11, 23, 1, 0, tzinfo=UTC)

    def update(message_id: str, status: int, at: dt.datetime, source: str) -> Submission:
        return Submission(sender=source, message_id=message_id, message_type="dossier.status", receiver="hub",
                          envelope=message_id.encode(), dossier_code=code, destinations=("province",),
                          status=StatusUpdate(code, status, at, source))  # fmt: skip

    store.accept_many([update("s-0", 2, t0, "p")])
    barrier = threading.Barrier(6)
    errors = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            store.accept_many([update(f"s-{i}", 4, t0 + dt.timedelta(minutes=i), "m")])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.timeline(code)) == 7
    # Whatever the order, the state ends at the newest update.
    assert store.dossier(code).status_at == t0 + dt.timedelta(minutes=6)


# ------------------------------------------------------------------ operations


def test_queue_overview(store: Store) -> None:
    a1, a2, a3 = (submit(store, message_id=f"a{i}", destinations=["alpha"]).delivery_ids[0] for i in range(3))
    b1, b2 = (submit(store, message_id=f"b{i}", destinations=["beta"]).delivery_ids[0] for i in range(2))
    (c1,) = submit(store, message_id="c", destinations=["gamma"]).delivery_ids
    assert set(store.start_attempts([a1, a2, b1, b2, c1])) == {a1, a2, b1, b2, c1}
    assert store.record_delivered_many([(a1, b"<o/>", ""), (c1, b"<o/>", "")]) == [True, True]
    store.record_retry(a2, error="503", delay_s=10)
    store.record_dead(b1, reason="permanent", error="400")

    stats = {s.destination: s for s in store.queue_overview()}
    assert list(stats) == ["alpha", "beta", "gamma"]
    alpha, beta, gamma = stats["alpha"], stats["beta"], stats["gamma"]
    assert (alpha.queued, alpha.delivering, alpha.retrying, alpha.delivered, alpha.dead) == (1, 0, 1, 1, 0)
    assert (beta.queued, beta.delivering, beta.retrying, beta.delivered, beta.dead) == (0, 1, 0, 0, 1)
    assert (alpha.pending, beta.pending, gamma.pending) == (2, 1, 0)
    assert (alpha.delivered_last_60s, beta.delivered_last_60s, gamma.delivered_last_60s) == (1, 0, 1)
    assert gamma.rate_per_s == pytest.approx(1 / 60)
    assert 0 <= alpha.oldest_pending_age_s < 60
    assert gamma.oldest_pending_age_s is None
    assert a3 not in (a1, a2)


def test_only_a_status_or_sync_it_sent_makes_a_connector_party_to_a_dossier(store: Store) -> None:
    """Ownership is checked for status and sync messages only, so only those (or being routed a message) count."""
    dossier, sender = "000.00.00.H12-251123-0042", "000.00.00.G31"
    submit(store, "pay-1", message_type="payment.request", sender=sender, destinations=["payment"])
    assert store.dossier_party(dossier, sender).party is False  # a payment request names any dossier it likes
    assert store.dossier_party(dossier, "payment").party is True  # routed one
    submit(store, "st-1", sender=sender, destinations=["province"])
    assert store.dossier_party(dossier, sender).party is True


# -- an unavailable database is told apart from a bug -------------------------------------------------------


def test_an_unreachable_postgresql_raises_store_unavailable() -> None:
    from hub.errors import StoreUnavailableError
    from hub.store.database import Database

    db = Database("postgresql://postgres@127.0.0.1:9/test?connect_timeout=2")  # port 9 (discard): nothing listens
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        db.ping()


def test_a_missing_sqlite_table_is_a_bug_not_an_outage(tmp_path) -> None:
    import sqlalchemy as sa

    from hub.errors import StoreUnavailableError
    from hub.store.database import Database

    db = Database(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(sa.exc.OperationalError) as raised, db.transaction() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, StoreUnavailableError)


@pytest.mark.postgres
def test_a_terminated_postgresql_connection_is_replaced_without_a_restart(postgres_url) -> None:
    import sqlalchemy as sa

    from hub.store.database import Database

    db, admin = Database(postgres_url), Database(postgres_url)
    with db.transaction() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with admin.transaction() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    with db.transaction(readonly=True) as conn:  # the pool's pre-ping finds the dead connection and opens another
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    db.close()
    admin.close()


# -- PostgreSQL failover: multi-host URLs, connections lost mid-transaction -------------------------------------

CLOSED = "127.0.0.1:9"  # port 9 (discard): nothing listens, the connection is refused at once
MULTI_HOST_FORMS = {
    "host=h:p&host=h:p": f"host={CLOSED}&host=127.0.0.1:5432",
    "host=h,h&port=p,p": f"host={CLOSED.split(':')[0]},127.0.0.1&port={CLOSED.split(':')[1]},5432",
}


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("hosts", MULTI_HOST_FORMS.values(), ids=MULTI_HOST_FORMS.keys())
def test_a_multi_host_url_reaches_the_writable_host_after_a_dead_one(store_url: str, hosts: str) -> None:
    """What an operator writes for a primary/standby pair: the hosts in order, `target_session_attrs=read-write`;
    the first host is down, so the store must connect to the second, migrate and store there."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url

    options = quote(make_url(store_url).query["options"])  # the test's own schema
    url = f"postgresql://postgres@/test?{hosts}&target_session_attrs=read-write&connect_timeout=5&options={options}"
    assert normalise_url(url).query["target_session_attrs"] == "read-write"
    store = Store(url)
    store.migrate()
    submit(store, "multi-host")
    with store.transaction(readonly=True) as conn:
        assert conn.execute(sa.text("SELECT inet_server_port()")).scalar() == 5432
        assert conn.execute(sa.text("SHOW transaction_read_only")).scalar() == "off"
    assert states(store, "multi-host")[:2] == [("received", None, None), ("validated", None, None)]
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_connection_lost_mid_transaction_fails_that_call_and_the_next_one_succeeds(store_url: str) -> None:
    """The backend is terminated between the accept's message insert and its delivery insert: the call raises
    StoreUnavailableError, nothing of it was committed, and the client's resend is accepted on a new connection."""
    from sqlalchemy import event

    from hub.errors import StoreUnavailableError

    store, admin = Store(store_url), sa.create_engine(store_url)
    store.migrate()
    killed: list[int] = []

    def kill_own_backend(conn, _cursor, statement: str, *_args) -> None:
        if not killed and statement.lstrip().upper().startswith("INSERT INTO DELIVERIES"):
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.begin() as admin_conn:  # waits (up to 5 s) until the backend has gone
                assert admin_conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar()
            killed.append(pid)

    event.listen(store.engine, "before_cursor_execute", kill_own_backend)
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        submit(store, "m-lost")
    assert killed, "the delivery insert never ran"
    assert store.trace("m-lost") is None  # the message insert was rolled back with the rest
    result = submit(store, "m-lost")  # the client resends: a fresh connection, no restart
    assert result.outcome == "accepted" and len(result.delivery_ids) == 2
    with store.transaction(readonly=True) as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != killed[0]
    store.close()
    admin.dispose()


class PostgresPair:
    """A private primary and its synchronous streaming standby (initdb + pg_basebackup on two free ports, as the
    `postgres` user when run as root): a failover to run without touching the shared server."""

    def __init__(self) -> None:
        import glob
        import os
        import shutil
        import tempfile

        from tests.support import free_port, require

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not bins:
            require("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) to start a primary/standby pair")
        self.bin = os.path.dirname(bins[-1])
        self.runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = tempfile.mkdtemp(prefix="lienthong-pg-pair-")
        if self.runas:
            shutil.chown(self.dir, "postgres")
        self.primary_port, self.standby_port = free_port(), free_port()
        self._options = f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c fsync=off"

    def _run(self, tool: str, *args: str) -> None:
        import subprocess

        subprocess.run([*self.runas, f"{self.bin}/{tool}", *args], check=True, capture_output=True, timeout=60)

    def _pg_ctl(self, node: str, *args: str) -> None:
        self._run("pg_ctl", "-D", f"{self.dir}/{node}", "-l", f"{self.dir}/{node}.log", *args)

    def start(self) -> None:
        self._run("initdb", "-D", f"{self.dir}/primary", "--auth=trust", "-U", "postgres", "--no-sync")
        # every commit waits for the standby's flush: what the README asks of a pair, and what makes the
        # failover below lose nothing
        primary = f"{self._options} -p {self.primary_port} -c synchronous_standby_names=*"
        self._pg_ctl("primary", "-w", "-o", primary, "start")
        self._run(
            "pg_basebackup", "-D", f"{self.dir}/standby", "-R", "-X", "stream", "--no-sync",
            "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
        )  # fmt: skip
        self._pg_ctl("standby", "-w", "-o", f"{self._options} -p {self.standby_port}", "start")

    def fail_over(self) -> None:
        """The primary dies (no shutdown checkpoint, connections cut) and the standby is promoted."""
        self._pg_ctl("primary", "-m", "immediate", "stop")
        self._pg_ctl("standby", "-w", "promote")

    def stop(self) -> None:
        import shutil
        import subprocess

        for node in ("primary", "standby"):
            try:
                self._pg_ctl(node, "-m", "immediate", "stop")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass  # never started, or already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.postgres
def test_a_primary_standby_url_follows_a_failover_without_a_restart() -> None:
    """The standby is listed first: `target_session_attrs=read-write` passes it over for the primary. The primary
    dies and the standby is promoted: the next calls reach the new primary on a fresh connection, with every
    message committed before the failover (synchronous replication), and new ones are stored there."""
    pair = PostgresPair()
    try:
        pair.start()
        hosts = f"host=127.0.0.1:{pair.standby_port}&host=127.0.0.1:{pair.primary_port}"
        store = Store(f"postgresql://postgres@/postgres?{hosts}&target_session_attrs=read-write&connect_timeout=5")
        store.migrate()

        def server_port() -> int:
            with store.transaction(readonly=True) as conn:
                return conn.execute(sa.text("SELECT inet_server_port()")).scalar()

        assert server_port() == pair.primary_port
        assert store.db.durability() == "postgresql synchronous_commit=on fsync=off synchronous_standbys=*"
        for i in range(3):
            submit(store, f"before-{i}")
        pair.fail_over()
        assert all(store.trace(f"before-{i}") is not None for i in range(3))  # the pool's pre-ping reconnects
        assert server_port() == pair.standby_port
        assert store.db.durability().endswith("synchronous_standbys=none")  # the promoted standby has none
        assert submit(store, "after").outcome == "accepted"
        assert store.trace("after") is not None
        store.close()
    finally:
        pair.stop()


@pytest.mark.postgres
def test_a_read_only_postgresql_is_unavailable_and_a_constraint_violation_is_not(postgres_url) -> None:
    """A connection to a server that turned read-only (a primary demoted by a failover) means "try again later";
    what a statement itself breaks (here a division by zero) stays the error it is."""
    import sqlalchemy as sa

    from hub.errors import StoreUnavailableError
    from hub.store.database import Database

    db = Database(postgres_url)
    with pytest.raises(StoreUnavailableError), db.transaction() as conn:
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))
        conn.execute(sa.text("CREATE TEMPORARY TABLE t (x int)"))  # 25006 read_only_sql_transaction
    with pytest.raises(sa.exc.DataError) as raised, db.transaction() as conn:
        conn.execute(sa.text("SELECT 1 / 0"))
    assert not isinstance(raised.value, StoreUnavailableError)
    db.close()

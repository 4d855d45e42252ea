"""The statements a message's life runs on the store read the big tables through their indexes.

A statement that scans the message log (``messages``, ``deliveries``, ``events``, ``dossier_timeline``) costs
more with every message stored: the hub slows down as its log grows, which a short benchmark never shows. Each
statement run while messages are accepted, resent, published, attempted, delivered, retried and dead-lettered
is captured and its SQLite plan read with ``EXPLAIN QUERY PLAN``; a full scan of a big table fails the test.
(A row-value ``(sender, message_id) IN (…)`` list did that on every accepted status: SQLite scanned the whole
log for it, and a soak run's intake fell to a fraction of its rate within minutes.)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from hub.store import Store
from hub.store.types import StatusUpdate, Submission

pytestmark = pytest.mark.unit

BIG_TABLES = ("messages", "deliveries", "events", "dossier_timeline", "dossiers")
# Partial indexes that hold only the rows still in flight: scanning them costs what is open, not what is logged.
BOUNDED_INDEXES = ("ix_deliveries_unpublished", "ix_deliveries_open_state")
SENDER, RECEIVER = "000.00.00.H12", "000.00.00.H00"
SCAN = re.compile(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/plans.db")
    s.migrate()
    yield s
    s.close()


def status(message_id: str, dossier: str, code: int, minute: int) -> Submission:
    at = dt.datetime(2026, 12, 1, 8, minute, tzinfo=dt.UTC)
    return Submission(
        sender=SENDER, message_id=message_id, message_type="dossier.status", receiver=RECEIVER,
        envelope=f"<env id='{message_id}'/>".encode(), destinations=("portal", "ministry"), dossier_code=dossier,
        status=StatusUpdate(dossier, code, at, SENDER),
    )  # fmt: skip


def statements_of_a_message_life(store: Store) -> list[tuple[str, Any]]:
    """Every statement (with its first parameter set) the store runs for a few messages, start to end."""
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters[0] if executemany and parameters else parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        first = store.accept_many([status(f"m-{i}", f"D-{i}", 1, i) for i in range(4)])
        store.accept_many([status("m-0", "D-0", 1, 0), status("m-9", "D-0", 2, 30)])  # a resend and a new status
        ids = [d for result in first for d in result.delivery_ids]
        assert len(ids) == 8, first  # four messages queued to two destinations each: the rest below has work
        store.claim_unpublished(limit=10)
        store.mark_published(ids)
        store.start_attempts_at(ids)
        store.record_delivered_many([(ids[0], b"<out/>", "HTTP 200"), (ids[1], b"<out/>", "HTTP 200")])
        store.record_retry(ids[2], error="HTTP 503", delay_s=30)
        store.record_dead(ids[3], reason="rejected", error="HTTP 400")
        store.trace("m-1", SENDER)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    return seen


def full_scans(conn: sa.Connection, statement: str, parameters: Any) -> list[str]:
    """The plan lines of ``statement`` that scan a big table, or an index of one that grows with the log."""
    plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    out = []
    for row in plan:
        detail = row[-1]
        match = SCAN.match(detail)
        if match and match.group(1) in BIG_TABLES and match.group(2) not in BOUNDED_INDEXES:
            out.append(detail)
    return out


def test_a_message_life_reads_the_big_tables_through_their_indexes(store: Store) -> None:
    statements = statements_of_a_message_life(store)
    reads = [(s, p) for s, p in statements if re.match(r"\s*(SELECT|UPDATE|DELETE|WITH|INSERT .* SELECT)", s, re.S)]
    assert len(reads) >= 10, f"too few statements captured to tell: {statements}"
    with store.engine.connect() as conn:
        scans = {s: found for s, p in reads if (found := full_scans(conn, s, p))}
    assert not scans, "\n\n".join(f"{s}\n  -> {found}" for s, found in scans.items())


def test_the_check_sees_a_scan_of_the_message_log(store: Store) -> None:
    """The plan reader itself: a row-value IN list over (sender, message_id) is the scan it must catch."""
    statement = "SELECT id FROM messages WHERE (sender, message_id) IN (VALUES (?, ?), (?, ?))"
    by_index = "SELECT id FROM messages WHERE sender = ? AND message_id IN (?, ?)"
    with store.engine.connect() as conn:
        assert full_scans(conn, statement, ("a", "b", "a", "c"))
        assert not full_scans(conn, by_index, ("a", "b", "c"))

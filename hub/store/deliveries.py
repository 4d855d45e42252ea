"""Deliveries: the outbox (published or not) and each delivery's lifecycle, in batches as the worker runs it.

queued → delivering (``start_attempts``) → delivered (``record_delivered_many``) or retrying (``record_retry``)
or dead (``hub.store.dead_letters``). A delivered delivery stays delivered: a redelivered queue message is
left out of ``start_attempts`` and not recorded twice (``record_delivered_many`` is state-guarded and locks the
rows it reads on PostgreSQL, so two workers cannot both record it), so the worker acknowledges it without
calling the partner again; a dead one is left out the same way until it is replayed.

"Retry now" (``retry_now``) makes a delivery waiting for its retry due at once and raises its ``generation``: it
is published anew with the new generation in its queue message (``GENERATION_HEADER``), and ``start_attempts``
only starts a delivery for a queue message of its current generation. The copy still waiting out its backoff in
the broker carries the old one, so when it arrives it is acknowledged without calling the partner (even while the
new copy's call is under way, when the state alone could not tell them apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import DeliveryClosedError, NotRetryingError, UnknownDeliveryError
from hub.store import audit
from hub.store.database import Database, chunks, digest, now
from hub.store.history import add_events, delivery_event, event_row
from hub.store.schema import DeliveryState, EventState, UTCDateTime, deliveries, messages
from hub.store.traffic import count
from hub.store.types import Delivered, DeliveryView, PendingDelivery, sent_as

Q, DV, RT, DD, DL = (
    DeliveryState.QUEUED,
    DeliveryState.DELIVERING,
    DeliveryState.RETRYING,
    DeliveryState.DELIVERED,
    DeliveryState.DEAD,
)

# Hot-path statements, built once (SQLAlchemy then only looks up their compiled form). Id lists are expanding
# parameters, so one prepared construct serves every batch.
_B_IDS: sa.BindParameter[Any] = sa.bindparam("b_ids", expanding=True)
_B_NOW = sa.bindparam("b_now", type_=UTCDateTime)
GENERATION_HEADER = "delivery-generation"  # a queue message header; absent: generation 0
RETURNING = (deliveries.c.attempts, deliveries.c.message_pk, deliveries.c.destination)
_STATE = sa.select(deliveries.c.state).where(deliveries.c.id == sa.bindparam("b_id"))


def in_id_order(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """The deliveries matching ``conditions``, locked in id order (PostgreSQL) before an update changes them.

    An ``UPDATE … WHERE id IN (…)`` locks rows in the order its plan reads them, by index or in their order on
    disk: the API marking a batch published and a worker starting attempts on it then took the same rows in
    opposite orders and PostgreSQL broke the deadlock with an error (a 503 to the sender). One order for every
    batch update, no deadlock. SQLite renders no ``FOR UPDATE`` (it serialises writers)."""
    return deliveries.c.id.in_(
        sa.select(deliveries.c.id).where(*conditions).order_by(deliveries.c.id).with_for_update()
    )


_START_ATTEMPTS = (
    deliveries.update()
    .where(
        in_id_order(
            deliveries.c.id.in_(_B_IDS),
            deliveries.c.state.notin_([DD, DL]),
            deliveries.c.generation == sa.bindparam("b_gen"),
        )
    )
    .values(attempts=deliveries.c.attempts + 1, state=DV, next_attempt_at=None, updated_at=_B_NOW)
    .returning(deliveries.c.id, *RETURNING, deliveries.c.created_at)
)
_OPEN_DELIVERIES = sa.select(deliveries.c.id, *RETURNING).where(deliveries.c.id.in_(_B_IDS), deliveries.c.state != DD)
# PostgreSQL: the open rows are locked until the transaction ends, so of two workers recording the same delivery
# (published twice) the second waits, then reads it delivered. SQLite serialises write transactions already.
_OPEN_DELIVERIES_LOCKED = _OPEN_DELIVERIES.order_by(deliveries.c.id).with_for_update()  # one lock order: no deadlock
_DELIVERED = (
    deliveries.update()
    .where(deliveries.c.id == sa.bindparam("b_id"), deliveries.c.state != DD)  # recorded once, whatever happens
    .values(
        state=DD,
        outbound=sa.bindparam("b_outbound", type_=sa.LargeBinary),
        outbound_digest=sa.bindparam("b_digest", type_=sa.String),
        sent=sa.bindparam("b_sent", type_=sa.LargeBinary),
        sent_type=sa.bindparam("b_sent_type", type_=sa.String),
        sent_digest=sa.bindparam("b_sent_digest", type_=sa.String),
        delivered_at=_B_NOW,
        next_attempt_at=None,
        updated_at=_B_NOW,
    )
)
_MARK_PUBLISHED = (
    deliveries.update()
    .where(in_id_order(deliveries.c.id.in_(_B_IDS), deliveries.c.published_at.is_(None)))
    .values(published_at=_B_NOW, relay_claimed_until=None)
)
_PENDING_COLUMNS = (
    deliveries.c.id.label("delivery_id"),
    deliveries.c.message_pk,
    messages.c.message_id,
    messages.c.sender,
    messages.c.receiver,
    messages.c.message_type,
    messages.c.correlation_id,
    messages.c.dossier_code,
    deliveries.c.destination,
    messages.c.envelope,
    deliveries.c.attempts,
    deliveries.c.state,
    deliveries.c.generation,
)
_WITH_MESSAGE = deliveries.join(messages, deliveries.c.message_pk == messages.c.id)
PENDING = sa.select(*_PENDING_COLUMNS).select_from(_WITH_MESSAGE)
_VIEW = sa.select(
    *_PENDING_COLUMNS,
    deliveries.c.last_error,
    deliveries.c.next_attempt_at,
    deliveries.c.published_at,
    deliveries.c.queued_at,
    deliveries.c.delivered_at,
    deliveries.c.outbound,
    deliveries.c.outbound_digest,
    deliveries.c.updated_at,
    deliveries.c.sent,
    deliveries.c.sent_type,
).select_from(_WITH_MESSAGE)


def pending(row: sa.Row) -> PendingDelivery:
    """A ``PENDING`` row as the worker and the relay take it."""
    return PendingDelivery(**{**row._mapping, "state": DeliveryState(row.state)})


def state_of(conn: Connection, delivery_id: int) -> str | None:
    """The delivery's state, ``None`` for an unknown id."""
    return conn.execute(_STATE, {"b_id": delivery_id}).scalar()


def refuse(conn: Connection, delivery_id: int, action: str) -> NoReturn:
    """Raise why ``action`` cannot happen to the delivery: unknown, or closed in its current state."""
    state = state_of(conn, delivery_id)
    if state is None:
        raise UnknownDeliveryError(delivery_id)
    raise DeliveryClosedError(delivery_id, state, action)


# ---------------------------------------------------------------- outbox


def mark_published_in(conn: Connection, delivery_ids: Sequence[int]) -> None:
    """``mark_published`` inside a caller's transaction (intake confirms an earlier batch with the next one)."""
    if not delivery_ids:
        return
    at_now = now()
    for chunk in chunks(sorted(set(delivery_ids))):
        conn.execute(_MARK_PUBLISHED, {"b_ids": list(chunk), "b_now": at_now})


def mark_published(db: Database, delivery_ids: Sequence[int]) -> None:
    """Record that the broker confirmed these deliveries (the relay will not publish them again)."""
    if delivery_ids:
        with db.transaction() as conn:
            mark_published_in(conn, delivery_ids)


def _unpublished_due(at_now: Any, older_than_s: float) -> tuple[sa.ColumnElement[bool], ...]:
    """Committed, never confirmed by the broker, older than ``older_than_s`` and due (not waiting for a retry)."""
    cutoff = at_now - timedelta(seconds=max(older_than_s, 0))
    return (
        deliveries.c.published_at.is_(None),
        deliveries.c.state.in_([Q, RT]),
        deliveries.c.updated_at <= cutoff,
        sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= at_now),
    )


def unpublished(db: Database, older_than_s: float = 0, limit: int = 1000) -> list[PendingDelivery]:
    """Deliveries committed but never confirmed by the broker, oldest first (see ``Store.unpublished``)."""
    query = PENDING.where(*_unpublished_due(now(), older_than_s)).order_by(deliveries.c.id).limit(limit)
    with db.transaction(readonly=True) as conn:
        return [pending(r) for r in conn.execute(query)]


def claim_unpublished(
    db: Database, *, older_than_s: float = 0, limit: int = 500, lease_s: float = 60.0
) -> list[PendingDelivery]:
    """Claim for ``lease_s`` up to ``limit`` of the ``unpublished`` deliveries that no relay holds (unclaimed, or
    claimed by one whose lease ran out), oldest first, in one short transaction (see ``Store.claim_unpublished``).

    PostgreSQL: the candidates are locked ``FOR UPDATE SKIP LOCKED``, so two relays claiming at once take disjoint
    rows instead of waiting for each other. SQLite has no row locks (SQLAlchemy leaves the clause out there): its
    write transactions begin ``IMMEDIATE`` and run one at a time, so the second relay's select already sees the
    first one's claims."""
    at_now = now()
    candidates = (
        sa.select(deliveries.c.id)
        .where(
            *_unpublished_due(at_now, older_than_s),
            sa.or_(deliveries.c.relay_claimed_until.is_(None), deliveries.c.relay_claimed_until <= at_now),
        )
        .order_by(deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        deliveries.update()
        .where(deliveries.c.id.in_(candidates.scalar_subquery()))
        .values(relay_claimed_until=at_now + timedelta(seconds=lease_s))
        .returning(deliveries.c.id)
    )
    with db.transaction() as conn:
        ids = sorted(conn.execute(claim).scalars())
        if not ids:
            return []
        rows = conn.execute(PENDING.where(deliveries.c.id.in_(ids)).order_by(deliveries.c.id))
        return [pending(r) for r in rows]


def release_claims(db: Database, delivery_ids: Sequence[int]) -> None:
    """Give up the relay's claim on deliveries it could not publish, so that any relay may take them at once."""
    if not delivery_ids:
        return
    with db.transaction() as conn:
        for chunk in chunks(sorted(set(delivery_ids))):
            conn.execute(
                deliveries.update()
                .where(in_id_order(deliveries.c.id.in_(chunk), deliveries.c.published_at.is_(None)))
                .values(relay_claimed_until=None)
            )


def delivery(db: Database, delivery_id: int) -> DeliveryView | None:
    """Everything about one delivery, including the inbound and (once delivered) outbound and sent bytes."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(_VIEW.where(deliveries.c.id == delivery_id)).first()
    if row is None:
        return None
    fields = dict(row._mapping)
    fields["sent"], fields["sent_type"] = sent_as(row.sent, row.sent_type, row.outbound)
    return DeliveryView(**{**fields, "state": DeliveryState(row.state)})


# ---------------------------------------------------------------- lifecycle


def start_attempts(
    db: Database, delivery_ids: Sequence[int], generations: Mapping[int, int] | None = None
) -> dict[int, int]:
    """Count a new attempt of each delivery (state ``delivering``, event ``attempt_started``), in one
    transaction and two statements: {delivery id: attempt number}, leaving out delivered, dead or unknown ids (a
    stray copy of a dead delivery is not sent again; a replay makes it queued first), and those whose queue
    message is of an older generation than the delivery (``generations``: id → the message's, 0 when absent; a
    copy superseded by "retry now")."""
    found = start_attempts_at(db, delivery_ids, generations)
    return {delivery_id: attempt for delivery_id, (attempt, _) in found.items()}


def start_attempts_at(
    db: Database, delivery_ids: Sequence[int], generations: Mapping[int, int] | None = None
) -> dict[int, tuple[int, datetime]]:
    """``start_attempts`` with each delivery's creation time, which is its message's acceptance time (same
    transaction): the worker's accept-to-delivered latency costs no extra query."""
    if not delivery_ids:
        return {}
    by_generation: dict[int, list[int]] = {}
    for delivery_id in delivery_ids:
        by_generation.setdefault((generations or {}).get(delivery_id, 0), []).append(delivery_id)
    at_now = now()
    with db.transaction() as conn:
        rows = [
            row
            for generation, ids in sorted(by_generation.items())  # nearly always one statement: generation 0
            for row in conn.execute(_START_ATTEMPTS, {"b_ids": ids, "b_now": at_now, "b_gen": generation})
        ]
        add_events(conn, *(delivery_event(r, EventState.ATTEMPT_STARTED, at_now) for r in rows))
    return {int(r.id): (int(r.attempts), r.created_at) for r in rows}


def record_delivered_many(db: Database, items: Sequence[Sequence[Any]]) -> list[bool]:
    """Record each ``Delivered(*item)`` (a 3-tuple still reads as id, outbound, detail) in one transaction.

    Returns, per item, whether it was recorded now (``False``: already delivered — by another worker too —, a
    repeat of an earlier item, or unknown). The open rows are read locked (PostgreSQL ``FOR UPDATE``; SQLite's
    write transaction is exclusive) and the update changes only rows not delivered: one ``delivered`` each, counted
    in the destinations' history minute (``hub.store.traffic``) by the same transaction."""
    if not items:
        return []
    done = [Delivered(*item) for item in items]
    first: dict[int, Delivered] = {}
    for d in done:
        first.setdefault(d.delivery_id, d)
    at_now = now()
    read = _OPEN_DELIVERIES_LOCKED if db.dialect == "postgresql" else _OPEN_DELIVERIES
    with db.transaction() as conn:
        open_rows = {int(r.id): r for r in conn.execute(read, {"b_ids": list(first)})}
        todo = [d for d in first.values() if d.delivery_id in open_rows]
        if todo:
            conn.execute(
                _DELIVERED,
                [
                    {"b_id": d.delivery_id, "b_now": at_now, "b_outbound": d.outbound, "b_digest": digest(d.outbound),
                     "b_sent": d.sent, "b_sent_type": None if d.sent is None else d.sent_type,
                     "b_sent_digest": None if d.sent is None else digest(d.sent)}
                    for d in todo
                ],
            )  # fmt: skip
            add_events(conn, *(delivery_event(open_rows[d.delivery_id], EventState.DELIVERED, at_now, d.detail)
                               for d in todo))  # fmt: skip
            count(conn, at_now, "delivered", Counter(open_rows[d.delivery_id].destination for d in todo))
    return [d.delivery_id in open_rows and d is first[d.delivery_id] for d in done]


def record_retry(db: Database, delivery_id: int, *, error: str, delay_s: float, republish: bool = False) -> None:
    """Record a failed attempt and the retry planned in ``delay_s`` (see ``Store.record_retry``), counted as
    failed in the destination's history minute."""
    at_now = now()
    due = at_now + timedelta(seconds=max(delay_s, 0))
    values: dict[str, Any] = {"state": RT, "last_error": error, "next_attempt_at": due, "updated_at": at_now}
    if republish:
        values["published_at"] = None
    with db.transaction() as conn:
        row = conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.state.notin_([DD, DL]))
            .values(**values)
            .returning(*RETURNING)
        ).first()
        if row is None:
            refuse(conn, delivery_id, "schedule a retry")
        detail = f"retry in {delay_s:.1f} s at {due.isoformat(timespec='seconds')}"
        add_events(
            conn,
            delivery_event(row, EventState.FAILED, at_now, error),
            delivery_event(row, EventState.RETRY_SCHEDULED, at_now, detail),
        )
        count(conn, at_now, "failed", {row.destination: 1})


def retry_now(
    db: Database,
    *,
    actor: str,
    message_id: str | None = None,
    sender: str | None = None,
    destination: str | None = None,
    role: str | None = None,
    client: str | None = None,
) -> list[PendingDelivery]:
    """Make every delivery of a message (``message_id``, of ``sender`` when given: ids are unique per sender) or of
    a destination that waits for a retry due now (see ``Store.retry_now``); audited (``delivery.retry_now``) in the
    same transaction."""
    if (message_id is None) == (destination is None):
        raise ValueError("retry now: name a message or a destination")
    at_now = now()
    chosen: sa.ColumnElement[bool]
    if message_id is not None:
        of_message = sa.select(messages.c.id).where(messages.c.message_id == message_id)
        if sender is not None:
            of_message = of_message.where(messages.c.sender == sender)
        chosen = deliveries.c.message_pk.in_(of_message)
    else:
        chosen = deliveries.c.destination == destination
    with db.transaction() as conn:
        ids = sorted(
            conn.execute(
                deliveries.update()
                .where(in_id_order(chosen, deliveries.c.state == RT))
                .values(next_attempt_at=at_now, published_at=None, relay_claimed_until=None, updated_at=at_now,
                        generation=deliveries.c.generation + 1)
                .returning(deliveries.c.id)
            ).scalars()
        )  # fmt: skip
        if not ids and message_id is not None:
            raise NotRetryingError(f"message {message_id}")
        rows = [pending(r) for chunk in chunks(ids) for r in conn.execute(PENDING.where(deliveries.c.id.in_(chunk)))]
        add_events(conn, *(event_row(p.message_pk, EventState.RETRY_NOW, at_now, destination=p.destination,
                                     actor=actor, detail="retry now: the backoff skipped") for p in rows))  # fmt: skip
        audit.record(conn, actor=actor, action="delivery.retry_now", subject=message_id or destination, role=role,
                     client=client, detail={"count": len(rows), "deliveries": ids[:100]})  # fmt: skip
    return sorted(rows, key=lambda p: p.delivery_id)

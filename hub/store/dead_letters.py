"""Dead letters: deliveries given up on, filed for an operator, and what the operator does with one: replay it (a
fresh retry budget) or close it with a reason, without resending. Each of the two happens at most once, and not
both; each is audited in the same transaction (``hub.store.audit``)."""

from __future__ import annotations

from typing import Literal, NoReturn

import sqlalchemy as sa

from hub.errors import AlreadyReplayedError, DeadLetterClosedError, UnknownDeadLetterError
from hub.logs import mask_personal
from hub.store import audit
from hub.store.database import Database, now
from hub.store.deliveries import PENDING, RETURNING, pending, refuse, state_of
from hub.store.history import add_events, delivery_event, event_row
from hub.store.schema import DeliveryState, EventState, dead_letters, deliveries, messages
from hub.store.traffic import count
from hub.store.types import DeadLetter, PendingDelivery

DD, DL = DeliveryState.DELIVERED, DeliveryState.DEAD
DeadLetterState = Literal["open", "closed", "replayed", "all"]
DEAD_LETTER_STATES: tuple[DeadLetterState, ...] = ("open", "closed", "replayed", "all")
_OPEN = (dead_letters.c.replayed_at.is_(None), dead_letters.c.closed_at.is_(None))
_LISTING = (
    sa.select(
        dead_letters.c.id,
        dead_letters.c.delivery_id,
        deliveries.c.message_pk,
        messages.c.message_id,
        messages.c.sender,
        deliveries.c.destination,
        messages.c.dossier_code,
        messages.c.message_type,
        dead_letters.c.reason,
        dead_letters.c.last_error,
        dead_letters.c.attempts,
        dead_letters.c.created_at,
        dead_letters.c.replayed_at,
        dead_letters.c.replayed_by,
        dead_letters.c.closed_at,
        dead_letters.c.closed_by,
        dead_letters.c.close_reason,
    )
    .select_from(
        dead_letters.join(deliveries, dead_letters.c.delivery_id == deliveries.c.id).join(
            messages, deliveries.c.message_pk == messages.c.id
        )
    )
    .order_by(dead_letters.c.id)
)


def record_dead(db: Database, delivery_id: int, *, reason: str, error: str) -> int:
    """Give up on a delivery and file a dead letter (see ``Store.record_dead``), counted as dead in the
    destination's history minute; returns the dead letter's id."""
    at_now = now()
    with db.transaction() as conn:
        row = conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.state.notin_([DD, DL]))
            .values(state=DL, last_error=error, next_attempt_at=None, updated_at=at_now)
            .returning(*RETURNING)
        ).first()
        if row is None:
            if state_of(conn, delivery_id) != DL:
                refuse(conn, delivery_id, "dead-letter it")
            # Already dead: this is a repeat (a worker recording again what it held through a store outage), so
            # the latest dead letter stands whatever became of it — closed by an operator included — and nothing is
            # counted twice. (A replay moves the delivery out of "dead", so a later failure takes the path above.)
            latest = conn.execute(
                sa.select(sa.func.max(dead_letters.c.id)).where(dead_letters.c.delivery_id == delivery_id)
            ).scalar()
            if latest is not None:
                return int(latest)
            row = conn.execute(sa.select(*RETURNING).where(deliveries.c.id == delivery_id)).one()
        dead_letter_id = conn.execute(
            dead_letters.insert()
            .values(delivery_id=delivery_id, reason=reason, last_error=error, attempts=row.attempts,
                    created_at=at_now)
            .returning(dead_letters.c.id)
        ).scalar_one()  # fmt: skip
        add_events(
            conn,
            delivery_event(row, EventState.FAILED, at_now, error),
            delivery_event(row, EventState.DEAD_LETTERED, at_now, f"{reason}: {error}"),
        )
        count(conn, at_now, "dead", {row.destination: 1})
        return int(dead_letter_id)


def list_dead_letters(
    db: Database,
    *,
    destination: str | None = None,
    include_replayed: bool = False,
    limit: int = 500,
    state: DeadLetterState | None = None,
    after: int | None = None,
) -> list[DeadLetter]:
    """Dead letters, oldest first: ``state`` open (neither replayed nor closed: the default), closed, replayed or
    all (``include_replayed`` is the older spelling of all); ``after``: only ids above it (the next page);
    ``last_error`` masked (for every list: the API's, the CLI's, the operator page's)."""
    query = _LISTING.where(*_chosen(destination, state or ("all" if include_replayed else "open"))).limit(limit)
    if after is not None:
        query = query.where(dead_letters.c.id > after)
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(query).all()
    # personal IDs masked as answered too (the worker keeps errors masked; rows kept before it did are not)
    return [DeadLetter(**{**r._mapping, "last_error": mask_personal(r.last_error)}) for r in rows]


def _chosen(destination: str | None, state: str) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if destination is not None:
        where.append(deliveries.c.destination == destination)
    if state == "open":
        where.extend(_OPEN)
    elif state == "closed":
        where.append(dead_letters.c.closed_at.is_not(None))
    elif state == "replayed":
        where.append(dead_letters.c.replayed_at.is_not(None))
    return where


def count_dead_letters(db: Database, *, destination: str | None = None, state: DeadLetterState = "open") -> int:
    """How many dead letters ``list_dead_letters`` would list without a limit (a list's total)."""
    joined = dead_letters.join(deliveries, dead_letters.c.delivery_id == deliveries.c.id)
    query = sa.select(sa.func.count()).select_from(joined)
    with db.transaction(readonly=True) as conn:
        return int(conn.execute(query.where(*_chosen(destination, state))).scalar_one())


def get_dead_letter(db: Database, dead_letter_id: int) -> DeadLetter | None:
    """One dead letter, replayed or not (``None`` if unknown); ``last_error`` masked as in the lists."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(_LISTING.where(dead_letters.c.id == dead_letter_id)).first()
    return None if row is None else DeadLetter(**{**row._mapping, "last_error": mask_personal(row.last_error)})


def _refuse(conn: sa.Connection, dead_letter_id: int) -> NoReturn:
    """Why a dead letter cannot be replayed or closed: unknown, replayed already, or closed already."""
    row = conn.execute(
        sa.select(dead_letters.c.replayed_at, dead_letters.c.replayed_by, dead_letters.c.closed_at,
                  dead_letters.c.closed_by).where(dead_letters.c.id == dead_letter_id)
    ).first()  # fmt: skip
    if row is None:
        raise UnknownDeadLetterError(dead_letter_id)
    if row.closed_at is not None:
        raise DeadLetterClosedError(dead_letter_id, row.closed_by, row.closed_at)
    raise AlreadyReplayedError(dead_letter_id, row.replayed_by, row.replayed_at)


def close(db: Database, dead_letter_id: int, *, actor: str, reason: str, role: str | None = None,
          client: str | None = None) -> DeadLetter:  # fmt: skip
    """Close an open dead letter without resending it (see ``Store.close_dead_letter``)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("closing a dead letter needs a reason")
    at_now = now()
    with db.transaction() as conn:
        delivery_id = conn.execute(
            dead_letters.update()
            .where(dead_letters.c.id == dead_letter_id, *_OPEN)
            .values(closed_at=at_now, closed_by=actor, close_reason=reason[:2000])
            .returning(dead_letters.c.delivery_id)
        ).scalar()
        if delivery_id is None:
            _refuse(conn, dead_letter_id)
        row = conn.execute(_LISTING.where(dead_letters.c.id == dead_letter_id)).one()
        add_events(conn, event_row(row.message_pk, EventState.CLOSED, at_now, destination=row.destination,
                                   actor=actor, detail=f"dead letter {dead_letter_id}: {reason[:500]}"))  # fmt: skip
        audit.record(conn, actor=actor, action="dead_letter.close", subject=str(dead_letter_id), role=role,
                     client=client, detail={"reason": reason[:500], "message_id": row.message_id,
                                            "destination": row.destination})  # fmt: skip
    return DeadLetter(**{**row._mapping, "last_error": mask_personal(row.last_error)})


def replay(db: Database, dead_letter_id: int, *, actor: str) -> PendingDelivery:
    """Record who replays a dead letter and requeue its delivery, unpublished, attempts reset (see
    ``Store.replay``)."""
    at_now = now()
    with db.transaction() as conn:
        delivery_id = conn.execute(
            dead_letters.update()
            .where(dead_letters.c.id == dead_letter_id, *_OPEN)
            .values(replayed_at=at_now, replayed_by=actor)
            .returning(dead_letters.c.delivery_id)
        ).scalar()
        if delivery_id is None:
            _refuse(conn, dead_letter_id)
        row = conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.state == DL)
            .values(state=DeliveryState.QUEUED, attempts=0, published_at=None, next_attempt_at=None,
                    queued_at=at_now, updated_at=at_now)
            .returning(deliveries.c.message_pk, deliveries.c.destination)
        ).first()  # fmt: skip
        if row is None:
            refuse(conn, delivery_id, "replay it")
        add_events(conn, event_row(row.message_pk, EventState.REPLAYED, at_now, destination=row.destination,
                                   actor=actor, detail=f"dead letter {dead_letter_id}"))  # fmt: skip
        message_id = conn.execute(sa.select(messages.c.message_id).where(messages.c.id == row.message_pk)).scalar()
        audit.record(conn, actor=actor, action="dead_letter.replay", subject=str(dead_letter_id), at=at_now,
                     detail={"message_id": message_id, "destination": row.destination})  # fmt: skip
        return pending(conn.execute(PENDING.where(deliveries.c.id == delivery_id)).one())

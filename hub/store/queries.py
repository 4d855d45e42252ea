"""Reads for operators and the API: message traces, a dossier's messages, queue and partner overviews, metrics.

Read-only transactions; nothing here is on the delivery hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store.database import Database, chunks, now
from hub.store.flow_records import LOOKUP_ANSWERED, LOOKUP_FAILED, citizen_lookups
from hub.store.schema import (
    PENDING_STATES,
    DeliveryState,
    EventState,
    UTCDateTime,
    dead_letters,
    deliveries,
    events,
    messages,
)
from hub.store.types import (
    DeliveryStatus,
    DestinationStats,
    MessageTrace,
    PartnerActivity,
    TraceEvent,
    message_status,
    sent_as,
)

# A logged message without its bytes, and where each of its deliveries stands.
_MESSAGE = sa.select(
    messages.c.id,
    messages.c.sender,
    messages.c.message_id,
    messages.c.correlation_id,
    messages.c.message_type,
    messages.c.receiver,
    messages.c.dossier_code,
    messages.c.digest,
    messages.c.received_at,
)
_STATUSES = (
    sa.select(
        deliveries.c.message_pk,
        deliveries.c.id.label("delivery_id"),
        deliveries.c.destination,
        deliveries.c.state,
        deliveries.c.attempts,
        deliveries.c.last_error,
        deliveries.c.next_attempt_at,
        deliveries.c.published_at,
        deliveries.c.delivered_at,
        deliveries.c.outbound_digest,
        deliveries.c.sent_digest,
        deliveries.c.sent_type,
    )
    .where(deliveries.c.message_pk.in_(sa.bindparam("b_ids", expanding=True)))
    .order_by(deliveries.c.id)
)
_TRAIL = sa.select(
    events.c.state, events.c.destination, events.c.attempt, events.c.detail, events.c.actor, events.c.at
).order_by(events.c.at, events.c.id)  # time order; events of one transaction in the order written


def _statuses(conn: Connection, message_pks: Sequence[int]) -> dict[int, tuple[DeliveryStatus, ...]]:
    """{message pk: its deliveries' statuses, in delivery order}."""
    found: dict[int, list[DeliveryStatus]] = {}
    for chunk in chunks(message_pks):
        for d in conn.execute(_STATUSES, {"b_ids": list(chunk)}):
            fields = dict(d._mapping)
            pk = fields.pop("message_pk")
            fields["sent_digest"], fields["sent_type"] = sent_as(
                fields["sent_digest"], fields["sent_type"], fields["outbound_digest"]
            )
            found.setdefault(pk, []).append(DeliveryStatus(**{**fields, "state": DeliveryState(d.state)}))
    return {pk: tuple(statuses) for pk, statuses in found.items()}


def _trace(row: sa.Row, statuses: tuple[DeliveryStatus, ...], trail: tuple[TraceEvent, ...] = ()) -> MessageTrace:
    fields = dict(row._mapping)
    return MessageTrace(message_pk=fields.pop("id"), **fields, status=message_status([d.state for d in statuses]),
                        events=trail, deliveries=statuses)  # fmt: skip


def trace(db: Database, message_id: str, sender: str | None = None) -> MessageTrace | None:
    """A message's log entry, its events in time order and its deliveries; ``None`` if unknown.

    Without ``sender``, the most recently received message with that id is traced.
    """
    query = _MESSAGE.where(messages.c.message_id == message_id)
    if sender is not None:
        query = query.where(messages.c.sender == sender)
    with db.transaction(readonly=True) as conn:
        msg = conn.execute(query.order_by(messages.c.id.desc()).limit(1)).first()
        if msg is None:
            return None
        trail = tuple(TraceEvent(**e._mapping) for e in conn.execute(_TRAIL.where(events.c.message_pk == msg.id)))
        statuses = _statuses(conn, [msg.id]).get(msg.id, ())
    return _trace(msg, statuses, trail)


def dossier_messages(
    db: Database, dossier_code: str, limit: int = 500, *, sender: str | None = None
) -> list[MessageTrace]:
    """The messages logged for a dossier (of any sender, or of ``sender`` only: what a connector may see of a
    dossier's log), oldest first, with their deliveries but no events."""
    query = _MESSAGE.where(messages.c.dossier_code == dossier_code)
    if sender is not None:
        query = query.where(messages.c.sender == sender)
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(query.order_by(messages.c.received_at, messages.c.id).limit(limit)).all()
        statuses = _statuses(conn, [r.id for r in rows]) if rows else {}
    return [_trace(r, statuses.get(r.id, ())) for r in rows]


def event_counts(db: Database, states: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(destination, state, count)`` of delivery events in ``states`` (for metrics: retries, dead letters…)."""
    query = (
        sa.select(events.c.destination, events.c.state, sa.func.count())
        .where(events.c.state.in_(list(states)), events.c.destination.is_not(None))
        .group_by(events.c.destination, events.c.state)
    )
    with db.transaction(readonly=True) as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """How many rows of the group meet ``condition`` (0, not NULL, for none)."""
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


# Dead deliveries an operator closed (without resending): no longer waiting for anyone, so not counted as dead.
_CLOSED = sa.select(dead_letters.c.delivery_id).where(dead_letters.c.closed_at.is_not(None))


def queue_overview(db: Database) -> list[DestinationStats]:
    """Per destination: deliveries by state (dead: waiting for an operator, closed ones left out), age of the
    oldest pending one, deliveries in the last 60 s."""
    at_now = now()
    since = at_now - timedelta(seconds=60)
    state = deliveries.c.state
    query = (
        sa.select(
            deliveries.c.destination,
            _count(state == DeliveryState.QUEUED).label("queued"),
            _count(state == DeliveryState.DELIVERING).label("delivering"),
            _count(state == DeliveryState.RETRYING).label("retrying"),
            _count(state == DeliveryState.DELIVERED).label("delivered"),
            _count(sa.and_(state == DeliveryState.DEAD, deliveries.c.id.notin_(_CLOSED))).label("dead"),
            sa.func.min(sa.case((state.in_(PENDING_STATES), deliveries.c.queued_at)), type_=UTCDateTime).label(
                "oldest"
            ),
            _count(sa.and_(state == DeliveryState.DELIVERED, deliveries.c.delivered_at >= since)).label("recent"),
        )
        .group_by(deliveries.c.destination)
        .order_by(deliveries.c.destination)
    )
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(query).all()
    return [
        DestinationStats(
            destination=r.destination,
            queued=int(r.queued),
            delivering=int(r.delivering),
            retrying=int(r.retrying),
            delivered=int(r.delivered),
            dead=int(r.dead),
            oldest_pending_age_s=None if r.oldest is None else max((at_now - r.oldest).total_seconds(), 0.0),
            delivered_last_60s=int(r.recent),
        )
        for r in rows
    ]


@dataclass
class _Tally:
    """One destination's attempts in the window, and its last success and failure ever (with the error)."""

    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    ok_at: datetime | None = None
    ko_at: datetime | None = None
    error: str | None = None

    def add(self, other: _Tally) -> None:
        self.delivered += other.delivered
        self.failed += other.failed
        self.rejected += other.rejected
        if other.ok_at is not None and (self.ok_at is None or other.ok_at > self.ok_at):
            self.ok_at = other.ok_at
        if other.ko_at is not None and (self.ko_at is None or other.ko_at > self.ko_at):
            self.ko_at, self.error = other.ko_at, other.error


def _delivery_tallies(conn: Connection, since: datetime) -> dict[str, _Tally]:
    """From the event log: delivered and failed attempts (4xx rejections among them), last success, last failure."""
    recent = events.c.at >= since
    state = events.c.state
    rejected = sa.and_(recent, state == EventState.DEAD_LETTERED, events.c.detail.like("rejected:%"))
    query = (
        sa.select(
            events.c.destination,
            _count(sa.and_(recent, state == EventState.DELIVERED)).label("delivered"),
            _count(sa.and_(recent, state == EventState.FAILED)).label("failed"),
            _count(rejected).label("rejected"),
            sa.func.max(sa.case((state == EventState.DELIVERED, events.c.at)), type_=UTCDateTime).label("ok_at"),
            sa.func.max(sa.case((state == EventState.FAILED, events.c.id))).label("failed_id"),
        )
        .where(events.c.destination.is_not(None))
        .group_by(events.c.destination)
    )
    rows = conn.execute(query).all()
    ids = [r.failed_id for r in rows if r.failed_id is not None]
    found = sa.select(events.c.id, events.c.at, events.c.detail).where(events.c.id.in_(ids))
    failures = {int(f.id): f for f in conn.execute(found)} if ids else {}
    tallies = {}
    for r in rows:
        failure = failures.get(r.failed_id) if r.failed_id is not None else None
        tallies[r.destination] = _Tally(
            int(r.delivered), int(r.failed), int(r.rejected), r.ok_at,
            None if failure is None else failure.at, None if failure is None else failure.detail,
        )  # fmt: skip
    return tallies


def _lookup_tallies(conn: Connection, since: datetime) -> dict[str, _Tally]:
    """From the lookup audit: each call of a population DB (answered, timed out or failed) is an attempt; lookups
    refused before any call and repeats answered from the kept answer are not."""
    lookups = citizen_lookups
    recent = lookups.c.at >= since
    answered = lookups.c.result.in_(LOOKUP_ANSWERED)
    failed = lookups.c.result.in_(LOOKUP_FAILED)
    query = (
        sa.select(
            lookups.c.source,
            _count(sa.and_(recent, answered)).label("delivered"),
            _count(sa.and_(recent, failed)).label("failed"),
            sa.func.max(sa.case((answered, lookups.c.at)), type_=UTCDateTime).label("ok_at"),
            sa.func.max(sa.case((failed, lookups.c.id))).label("failed_id"),
        )
        .where(lookups.c.source.is_not(None))
        .group_by(lookups.c.source)
    )
    rows = conn.execute(query).all()
    ids = [r.failed_id for r in rows if r.failed_id is not None]
    found = sa.select(lookups.c.id, lookups.c.at, lookups.c.detail).where(lookups.c.id.in_(ids))
    failures = {int(f.id): f for f in conn.execute(found)} if ids else {}
    tallies = {}
    for r in rows:
        failure = failures.get(r.failed_id) if r.failed_id is not None else None
        if not (r.delivered or r.failed or r.ok_at or failure):
            continue  # only repeats: the population DB was never called by these
        tallies[r.source] = _Tally(
            int(r.delivered), int(r.failed), 0, r.ok_at,
            None if failure is None else failure.at, None if failure is None else failure.detail,
        )  # fmt: skip
    return tallies


def _first_success_after(conn: Connection, destination: str, after: datetime) -> datetime | None:
    """When deliveries (or lookups) to ``destination`` first succeeded again after ``after``."""
    delivered = sa.select(sa.func.min(events.c.at, type_=UTCDateTime)).where(
        events.c.destination == destination, events.c.state == EventState.DELIVERED, events.c.at > after
    )
    answered = sa.select(sa.func.min(citizen_lookups.c.at, type_=UTCDateTime)).where(
        citizen_lookups.c.source == destination,
        citizen_lookups.c.result.in_(LOOKUP_ANSWERED),
        citizen_lookups.c.at > after,
    )
    found = [at for at in (conn.execute(delivered).scalar(), conn.execute(answered).scalar()) if at is not None]
    return min(found, default=None)


def partner_activity(db: Database, window_s: float = 900.0) -> list[PartnerActivity]:
    """Per destination: delivered and failed attempts (and 4xx rejections among them) in the last ``window_s``
    seconds, and the time of the last success and last failure ever, with that failure's error. Attempts are
    deliveries (the event log) and synchronous calls (a population DB's lookups, ``citizen_lookups``): a partner
    only asked synchronously has a state too. ``recovered_at``: when attempts first succeeded again after the
    latest failure (``None`` while the latest attempt failed, or without failures)."""
    since = now() - timedelta(seconds=max(window_s, 0))
    with db.transaction(readonly=True) as conn:
        tallies = _delivery_tallies(conn, since)
        for code, tally in _lookup_tallies(conn, since).items():
            tallies.setdefault(code, _Tally()).add(tally)
        recovered = {
            code: _first_success_after(conn, code, t.ko_at)
            for code, t in tallies.items()
            if t.ko_at is not None and t.ok_at is not None and t.ok_at > t.ko_at
        }
    return [
        PartnerActivity(
            destination=code,
            delivered=t.delivered,
            failed=t.failed,
            rejected=t.rejected,
            last_success_at=t.ok_at,
            last_failure_at=t.ko_at,
            last_error=t.error,
            recovered_at=recovered.get(code),
        )
        for code, t in sorted(tallies.items())
    ]


def oldest_undelivered(db: Database, destinations: Sequence[str], message_type: str) -> tuple[int, datetime | None]:
    """How many messages of ``message_type`` to ``destinations`` are not delivered yet (pending or dead),
    and when the oldest of them was received (the national portal's sync lag)."""
    if not destinations:
        return 0, None
    query = (
        sa.select(sa.func.count(), sa.func.min(messages.c.received_at, type_=UTCDateTime))
        .select_from(deliveries.join(messages, deliveries.c.message_pk == messages.c.id))
        .where(
            deliveries.c.destination.in_(list(destinations)),
            messages.c.message_type == message_type,
            deliveries.c.state != DeliveryState.DELIVERED,
        )
    )
    with db.transaction(readonly=True) as conn:
        count, oldest = conn.execute(query).one()
    return int(count), oldest

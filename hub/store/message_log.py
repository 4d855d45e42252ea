"""The message log as operators browse it: a filtered page of logged messages, newest first, with totals.

Filters (all optional, combined with AND): a time range on ``received_at`` (``until`` excluded), the sender,
a destination the message was routed to, the message type, the dossier code, and the message's overall state
(``message_status`` of its deliveries: ``accepted`` (no deliveries), ``queued``, ``delivering``, ``retrying``,
``delivered``, ``dead``). Pages are keyset pages on ``messages.id`` (``hub.store.pages``), so a page stays right
while messages arrive.

The messages table holds millions of rows on a busy hub, so every filter is answered from an index (migration
0012): ``received_at``, ``(sender, id)``, ``(message_type, id)``, ``dossier_code``, deliveries'
``(destination, message_pk)``, and a partial index of the deliveries not delivered (few: pending or dead) by
``(state, message_pk)``, which the state filters name with the same ``state <> 'delivered'`` condition so
SQLite's planner may use it. A time range is read through the ids it holds (``time_span``), so a page of the
last five minutes never walks the older log. A total is counted up to ``COUNT_CAP`` matching rows; past that it
is a lower bound (``total_exact`` false), so a page of an unfiltered log never costs a scan of the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store.database import Database, chunks
from hub.store.pages import Page, clamp_limit, decode_cursor, encode_cursor
from hub.store.schema import DeliveryState, deliveries, messages
from hub.store.types import message_status

#: The overall states a message can be in (``hub.store.types.message_status``), the ``state`` filter's values.
MESSAGE_STATES = ("accepted", "queued", "delivering", "retrying", "delivered", "dead")
#: How many matching rows a total counts at most (past it, the total is a lower bound).
COUNT_CAP = 100_000

_OPEN = sa.text("deliveries.state <> 'delivered'")  # the partial index's condition, word for word


@dataclass(frozen=True)
class MessageFilter:
    """What the message log is asked for; every field optional. Times are timezone-aware; ``until`` excluded."""

    since: datetime | None = None
    until: datetime | None = None
    sender: str | None = None
    receiver: str | None = None  # a destination the message was routed to
    message_type: str | None = None
    state: str | None = None  # one of MESSAGE_STATES
    dossier: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in MESSAGE_STATES:
            raise ValueError(f"message state {self.state!r}: one of {', '.join(MESSAGE_STATES)}")


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """One row of the message log: the message without its bytes, where it stands and where it was routed."""

    message_pk: int
    message_id: str
    sender: str
    receiver: str
    message_type: str
    dossier_code: str | None
    correlation_id: str | None
    received_at: datetime
    status: str
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class MessageLogPage(Page[LoggedMessage]):
    """A page of the log; ``total_exact`` is false when counting stopped at ``COUNT_CAP``."""

    total_exact: bool = True


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    """A logged message's envelope exactly as received (what a payload download reads)."""

    message_pk: int
    message_id: str
    sender: str
    message_type: str
    envelope: bytes


def _in_state(*states: DeliveryState) -> sa.ColumnElement[bool]:
    """The message has a delivery in one of ``states`` (none of them ``delivered``: the partial index)."""
    pks = sa.select(deliveries.c.message_pk).where(deliveries.c.state.in_([s.value for s in states]), _OPEN)
    return messages.c.id.in_(pks)


def _none_in_state(*states: DeliveryState) -> sa.ColumnElement[bool]:
    """No delivery of the message is in ``states`` (a probe of the message's few deliveries)."""
    named = deliveries.c.state.in_([s.value for s in states])
    return ~sa.exists().where(deliveries.c.message_pk == messages.c.id, named)


def _state_condition(state: str) -> sa.ColumnElement[bool]:
    """``message_status(...) == state``, in SQL (the same precedence: retrying, queued, delivering, then done)."""
    s = DeliveryState
    if state == "accepted":
        return ~sa.exists().where(deliveries.c.message_pk == messages.c.id)
    if state == "retrying":
        return _in_state(s.RETRYING)
    if state == "queued":
        return sa.and_(_in_state(s.QUEUED), _none_in_state(s.RETRYING))
    if state == "delivering":
        return sa.and_(_in_state(s.DELIVERING), _none_in_state(s.RETRYING, s.QUEUED))
    if state == "dead":
        return sa.and_(_in_state(s.DEAD), _none_in_state(s.RETRYING, s.QUEUED, s.DELIVERING))
    if state == "delivered":
        return sa.and_(
            sa.exists().where(deliveries.c.message_pk == messages.c.id),
            _none_in_state(s.QUEUED, s.DELIVERING, s.RETRYING, s.DEAD),
        )
    raise ValueError(f"message state {state!r}: one of {', '.join(MESSAGE_STATES)}")


def _where(flt: MessageFilter) -> list[sa.ColumnElement[bool]]:
    c = messages.c
    out: list[sa.ColumnElement[bool]] = []
    if flt.since is not None:
        out.append(c.received_at >= flt.since)
    if flt.until is not None:
        out.append(c.received_at < flt.until)
    if flt.sender:
        out.append(c.sender == flt.sender)
    if flt.message_type:
        out.append(c.message_type == flt.message_type)
    if flt.dossier:
        out.append(c.dossier_code == flt.dossier)
    if flt.receiver:
        out.append(c.id.in_(sa.select(deliveries.c.message_pk).where(deliveries.c.destination == flt.receiver)))
    if flt.state:
        out.append(_state_condition(flt.state))
    return out


_ROW = sa.select(
    messages.c.id,
    messages.c.message_id,
    messages.c.sender,
    messages.c.receiver,
    messages.c.message_type,
    messages.c.dossier_code,
    messages.c.correlation_id,
    messages.c.received_at,
)
_ROUTED = (
    sa.select(deliveries.c.message_pk, deliveries.c.destination, deliveries.c.state)
    .where(deliveries.c.message_pk.in_(sa.bindparam("b_ids", expanding=True)))
    .order_by(deliveries.c.id)
)


def _routed(conn: Connection, pks: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """{message pk: [(destination, state)…]} in delivery order."""
    found: dict[int, list[tuple[str, str]]] = {}
    for chunk in chunks(pks):
        for r in conn.execute(_ROUTED, {"b_ids": list(chunk)}):
            found.setdefault(r.message_pk, []).append((r.destination, r.state))
    return found


def time_span(flt: MessageFilter, cap: int = COUNT_CAP) -> sa.Select[Any, Any, int]:
    """The lowest and highest id of the messages in ``flt``'s time range, and how many there are, counting at most
    ``cap + 1`` (from the ``received_at`` index)."""
    where = _where(MessageFilter(since=flt.since, until=flt.until))
    span = sa.select(messages.c.id).where(*where).limit(cap + 1).subquery()
    return sa.select(sa.func.min(span.c.id), sa.func.max(span.c.id), sa.func.count()).select_from(span)


def queries(flt: MessageFilter, *, before: int | None = None, size: int = 50, cap: int = COUNT_CAP,
            ids: tuple[int, int] | None = None) -> tuple[sa.Select[Any], sa.Select[Any]]:  # fmt: skip
    """The page's query (``size + 1`` rows below the key ``before``, newest first) and the capped count's (at most
    ``cap + 1`` matching rows counted): what ``page`` runs, and what the plan tests explain.

    ``ids``: the lowest and highest id the matching messages can have (``time_span``), so that a time range is
    read as a range of the primary key: newest first by id without walking past the range's oldest message."""
    where = _where(flt)
    if ids is not None:
        where.append(messages.c.id.between(*ids))
    rows = _ROW.where(*where)
    if before is not None:
        rows = rows.where(messages.c.id < before)
    capped = sa.select(messages.c.id).where(*where).limit(cap + 1).subquery()
    return rows.order_by(messages.c.id.desc()).limit(size + 1), sa.select(sa.func.count()).select_from(capped)


def page(db: Database, flt: MessageFilter = MessageFilter(), *, cursor: str | None = None,
         limit: int | None = None, count_cap: int = COUNT_CAP) -> MessageLogPage:  # fmt: skip
    """A page of the message log matching ``flt``, newest first, with the (capped) total.

    A time range is first turned into the range of ids it holds (when it holds at most ``count_cap`` messages):
    ids grow with time only roughly, so the range's own rows are read for it, never guessed.
    ``InvalidCursorError`` for a cursor this log did not hand out."""
    size = clamp_limit(limit)
    before = decode_cursor(cursor)
    with db.transaction(readonly=True) as conn:
        ids = None
        if flt.since is not None or flt.until is not None:
            low, high, spanned = conn.execute(time_span(flt, count_cap)).one()
            if not spanned:
                return MessageLogPage([], 0, None, True)
            ids = (int(low), int(high)) if spanned <= count_cap else None
        query, counting = queries(flt, before=before, size=size, cap=count_cap, ids=ids)
        rows = conn.execute(query).all()
        found = int(conn.execute(counting).scalar_one())
        routed = _routed(conn, [r.id for r in rows[:size]]) if rows else {}
    total, exact = min(found, count_cap), found <= count_cap
    items = []
    for r in rows[:size]:
        routes = routed.get(r.id, [])
        fields = dict(r._mapping)
        items.append(LoggedMessage(message_pk=fields.pop("id"), **fields, status=message_status([s for _, s in routes]),
                                   destinations=tuple(d for d, _ in routes)))  # fmt: skip
    more = len(rows) > size
    return MessageLogPage(items, total, encode_cursor(items[-1].message_pk) if more and items else None, exact)


def envelope(db: Database, message_id: str, sender: str | None = None) -> StoredEnvelope | None:
    """A logged message's envelope as received (of ``sender``, else the most recently received with that id)."""
    query = sa.select(messages.c.id, messages.c.message_id, messages.c.sender, messages.c.message_type,
                      messages.c.envelope).where(messages.c.message_id == message_id)  # fmt: skip
    if sender is not None:
        query = query.where(messages.c.sender == sender)
    with db.transaction(readonly=True) as conn:
        row = conn.execute(query.order_by(messages.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return StoredEnvelope(row.id, row.message_id, row.sender, row.message_type, bytes(row.envelope))

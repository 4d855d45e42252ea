"""The message log's retention: which logged messages may leave the store for an archive file, the record each one
is archived as, and its deletion once a verified file holds it (``hub log archive``, ``hub.services.log_archive``).

The message log is a message's row in ``messages`` (the envelope as received) with everything hung on it: its
deliveries (the outbox, with the hub-signed envelope and the bytes each partner received), its events (the
history), the dead letters filed for its deliveries and the calls of a multi-call delivery a partner accepted
(``delivery_steps``). One archive record holds all of them, binary columns in base64 and times in ISO 8601 UTC.

A message may be archived only when it is final: none of its deliveries is queued, being delivered or waiting for
a retry, and none has an open dead letter (an operator may still replay it; a closed one is final). Two kinds of
final message stay, because the hub still reads them: the latest ``dossier.sync`` that is not stale of a dossier
not finished (no terminal status: 3, 7, 10) — the dossier as it stands, which citizen notifications and the portal's
refreshed record read (``hub.store.sync_records``) — and the ``payment.request`` of a payment not yet settled (its
settlement reads it back).

Deletion re-reads each record in the deleting transaction (its rows locked on PostgreSQL; SQLite's write lock holds
every writer off) and deletes only a message that is still final and whose record is byte for byte the one
archived; one that changed meanwhile stays in the store (and is archived again by a later run). Each deleting
transaction writes its audit row (``message_log.archive``).

What leaves with an archived message: the de-duplication of its (sender, message id) — a resend after that is a
new message — and what it proved of who is party to its dossier (``hub.registry`` reads the log for that, unless a
connector's ``handles`` names the dossier). Archive only well past a dossier's life (docs/message-log-archive.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.dossier.status_machine import TERMINAL
from hub.store import audit
from hub.store.database import Database, chunks
from hub.store.delivery_steps import delivery_steps
from hub.store.flow_records import OPEN_STATES, payments
from hub.store.schema import PENDING_STATES, dead_letters, deliveries, dossier_timeline, dossiers, events, messages

FORMAT = "lienthong message-log archive"
VERSION = 1
BATCH = 500  # messages per read and per deleting transaction
AUDIT_ACTION = "message_log.archive"

_m, _d, _dl = messages.c, deliveries.c, dead_letters.c
_PENDING = sa.exists().where(_d.message_pk == _m.id, _d.state.in_([s.value for s in PENDING_STATES]))
_OPEN_DEAD_LETTER = sa.exists().where(
    _d.message_pk == _m.id, _dl.delivery_id == _d.id, _dl.replayed_at.is_(None), _dl.closed_at.is_(None)
)
_later = messages.alias("later")
_tl = dossier_timeline.c
_STALE_LATER = sa.exists().where(
    _tl.dossier_code == _later.c.dossier_code, _tl.message_id == _later.c.message_id, _tl.source == _later.c.sender,
    _tl.outcome == "stale",
)  # fmt: skip
# The dossier's latest sync that is not stale (``sync_records._LATEST``): no later one that is not stale exists.
_LATEST_SYNC = sa.and_(
    _m.message_type == "dossier.sync",
    _m.dossier_code.is_not(None),
    ~sa.exists().where(
        _later.c.dossier_code == _m.dossier_code,
        _later.c.message_type == "dossier.sync",
        _later.c.id > _m.id,
        ~_STALE_LATER,
    ),
    ~sa.exists().where(
        _tl.dossier_code == _m.dossier_code, _tl.message_id == _m.message_id, _tl.source == _m.sender,
        _tl.outcome == "stale",
    ),
)  # fmt: skip
_TERMINAL = sorted(int(s) for s in TERMINAL)
_FINISHED = sa.exists().where(dossiers.c.code == _m.dossier_code, dossiers.c.status.in_(_TERMINAL))
_OPEN_PAYMENT = sa.and_(
    _m.message_type == "payment.request",
    sa.exists().where(payments.c.message_id == _m.message_id, payments.c.state.in_(OPEN_STATES)),
)
#: A message that may be archived (see the module docstring), whatever its age.
ARCHIVABLE = sa.and_(~_PENDING, ~_OPEN_DEAD_LETTER, ~sa.and_(_LATEST_SYNC, ~_FINISHED), ~_OPEN_PAYMENT)


@dataclass(frozen=True, slots=True)
class Archived:
    """One message as archived: its key in the store, who sent it with which id, and its record's line and digest."""

    message_pk: int
    sender: str
    message_id: str
    received_at: str
    line: bytes  # the record as one line of canonical JSON (UTF-8, no newline)
    sha256: str


@dataclass(frozen=True)
class Deleted:
    """What one deleting transaction did: the messages deleted, and those kept because they changed meanwhile."""

    deleted: tuple[int, ...]
    changed: tuple[int, ...]


def count(db: Database, before: datetime) -> int:
    """How many messages received before ``before`` may be archived now."""
    query = sa.select(sa.func.count()).select_from(messages).where(_m.received_at < before, ARCHIVABLE)
    with db.transaction(readonly=True) as conn:
        return int(conn.execute(query).scalar_one())


def batches(db: Database, before: datetime, *, size: int = BATCH) -> Iterator[list[Archived]]:
    """The archivable messages received before ``before``, oldest key first, ``size`` at a time, as records; each
    batch read in a transaction of its own (a long archive run never holds the store)."""
    after = 0
    while True:
        with db.transaction(readonly=True) as conn:
            pks = conn.scalars(
                sa.select(_m.id).where(_m.received_at < before, _m.id > after, ARCHIVABLE).order_by(_m.id).limit(size)
            ).all()
            if not pks:
                return
            found = read_records(conn, pks)
        yield found
        after = pks[-1]


def _value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [{k: _value(v) for k, v in row._mapping.items()} for row in conn.execute(query)]


def canonical(record: Mapping[str, Any]) -> bytes:
    """A record as one line of canonical JSON (sorted keys, no spaces, UTF-8): what its digest is taken of."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_records(conn: Connection, pks: Sequence[int]) -> list[Archived]:
    """The archive records of these messages (those that exist), in key order."""
    out: list[Archived] = []
    for chunk in chunks(list(pks)):
        rows = _rows(conn, sa.select(messages).where(_m.id.in_(chunk)).order_by(_m.id))
        routed = _rows(conn, sa.select(deliveries).where(_d.message_pk.in_(chunk)).order_by(_d.id))
        ids = [d["id"] for d in routed]
        history = _rows(conn, sa.select(events).where(events.c.message_pk.in_(chunk)).order_by(events.c.id))
        letters = _rows(conn, sa.select(dead_letters).where(_dl.delivery_id.in_(ids)).order_by(_dl.id)) if ids else []
        steps = (
            _rows(conn, sa.select(delivery_steps).where(delivery_steps.c.delivery_id.in_(ids))
                  .order_by(delivery_steps.c.delivery_id, delivery_steps.c.step))
            if ids else []
        )  # fmt: skip
        of_message = {d["id"]: d["message_pk"] for d in routed}
        parts: dict[str, dict[int, list[dict[str, Any]]]] = {p: {} for p in ("deliveries", "events", "dead_letters",
                                                                              "delivery_steps")}  # fmt: skip
        for item in routed:
            parts["deliveries"].setdefault(item["message_pk"], []).append(item)
        for item in history:
            parts["events"].setdefault(item["message_pk"], []).append(item)
        for item in letters:
            parts["dead_letters"].setdefault(of_message[item["delivery_id"]], []).append(item)
        for item in steps:
            parts["delivery_steps"].setdefault(of_message[item["delivery_id"]], []).append(item)
        for row in rows:
            pk = row["id"]
            record = {"format": FORMAT, "version": VERSION, "message": row,
                      **{part: by_message.get(pk, []) for part, by_message in parts.items()}}  # fmt: skip
            line = canonical(record)
            out.append(Archived(pk, row["sender"], row["message_id"], row["received_at"], line,
                                hashlib.sha256(line).hexdigest()))  # fmt: skip
    return out


def delete_archived(
    db: Database, expected: Mapping[int, str], *, actor: str, archive: str, archive_sha256: str
) -> Deleted:
    """Delete the messages ``expected`` names (key → the sha256 of the record archived) in one transaction with its
    audit row: only those still archivable whose record is unchanged (see the module docstring)."""
    pks = sorted(expected)
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.select(_m.id).where(_m.id.in_(pks)).with_for_update())
            conn.execute(sa.select(_d.id).where(_d.message_pk.in_(pks)).with_for_update())
        still = set(conn.scalars(sa.select(_m.id).where(_m.id.in_(pks), ARCHIVABLE)).all())
        current = {a.message_pk: a.sha256 for a in read_records(conn, sorted(still))}
        gone = [pk for pk in pks if current.get(pk) == expected[pk]]
        changed = tuple(pk for pk in pks if pk not in gone)
        if gone:
            ids = conn.scalars(sa.select(_d.id).where(_d.message_pk.in_(gone))).all()
            for chunk in chunks(list(ids)):
                conn.execute(sa.delete(delivery_steps).where(delivery_steps.c.delivery_id.in_(chunk)))
                conn.execute(sa.delete(dead_letters).where(_dl.delivery_id.in_(chunk)))
            for chunk in chunks(gone):
                conn.execute(sa.delete(events).where(events.c.message_pk.in_(chunk)))
                conn.execute(sa.delete(deliveries).where(_d.message_pk.in_(chunk)))
                conn.execute(sa.delete(messages).where(_m.id.in_(chunk)))
        audit.record(
            conn, actor=actor, action=AUDIT_ACTION, subject=archive[:200],
            detail={"file_sha256": archive_sha256, "deleted": len(gone), "first_pk": pks[0], "last_pk": pks[-1],
                    "kept_changed": list(changed[:50])},
        )  # fmt: skip
    return Deleted(tuple(gone), changed)

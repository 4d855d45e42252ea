"""Records the partner flows F2–F4 keep: population DB lookups, payments and refunds, refusals, postal tracking.

Kept apart from the exchange's message log and deliveries; the tables share ``hub.store.schema.metadata`` and
are created by migration ``0004``. Writes go through the store's ``transaction`` helper, so they take SQLite's
write lock up front like the rest of the store.

- ``citizen_lookups``: the audit of every citizen lookup (Ninh Thuận Điều 28.2.b) — who asked (connector,
  officer), for which dossier, procedure and purpose, the subject's ID masked, the result (found, not_found,
  mismatch, refused, timeout, error, repeat), the record's digest and the list of fields returned.
- ``lookup_answers`` (migration ``0008``): the first answer to each lookup (requester, message id, digest of the
  request), so a repeat is answered with the same signed bytes and the population DB is asked once per request.
- ``payments``: fee requests sent to a payment platform (reference, amount, dossier, requester) and their
  confirmation (bank transaction, receipt message id); refunds are rows with ``kind`` ``refund`` and the paid
  reference they return money from in ``original_reference`` (migration ``0005``), ``state`` ``refunded`` once
  the platform confirmed them.
- ``partner_refusals``: callbacks the hub refused (forged checksum, receipt signed by someone else, amount
  mismatch, unknown reference…), with the rule and the reason, for operators.
- ``postal_cursors`` / ``postal_events``: the last tracking-feed id read per postal connector (VNPost's ``$oid``,
  a string since migration ``0018``), and every event emitted (unique per connector and event id: never emitted
  twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.store.database import digest as digest  # re-exported: the flows fingerprint payloads as the store does
from hub.store.database import now, transaction
from hub.store.schema import Id, UTCDateTime, metadata

#: ``citizen_lookups.result`` of a lookup the population DB answered, and of one where calling it failed (the
#: others, ``refused`` and ``repeat``, did not call it): a population DB's health on the operator page.
LOOKUP_ANSWERED = ("found", "not_found", "mismatch")
LOOKUP_FAILED = ("timeout", "error")

citizen_lookups = sa.Table(
    "citizen_lookups",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("requester", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("request_id", sa.String(100), nullable=True),
    sa.Column("officer_id", sa.String(100), nullable=True),
    sa.Column("dossier_code", sa.String(64), nullable=True),
    sa.Column("procedure_code", sa.String(100), nullable=True),
    sa.Column("purpose", sa.Text, nullable=True),
    sa.Column("subject", sa.String(32), nullable=True),
    sa.Column("source", sa.String(64), nullable=True),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("fields", sa.JSON, nullable=True),
    sa.Column("record_digest", sa.String(64), nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=True),
    sa.Index(None, "dossier_code", "id"),
    sa.Index(None, "requester", "id"),
)

lookup_answers = sa.Table(
    "lookup_answers",
    metadata,
    sa.Column("requester", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("reply_message_id", sa.String(128), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("record_digest", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("reference", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("requester", sa.String(64), nullable=False),
    sa.Column("dossier_code", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("payment_url", sa.Text, nullable=True),
    sa.Column("bank_transaction_id", sa.String(100), nullable=True),
    sa.Column("receipt_message_id", sa.String(128), nullable=True),
    sa.Column("confirm_digest", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
    sa.Column("original_reference", sa.String(100), nullable=True),
)

partner_refusals = sa.Table(
    "partner_refusals",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reference", sa.String(100), nullable=True),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload_digest", sa.String(64), nullable=False),
    sa.Index(None, "connector", "id"),
)

postal_cursors = sa.Table(
    "postal_cursors",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("last_id", sa.String(64), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

postal_events = sa.Table(
    "postal_events",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("order_number", sa.String(100), nullable=False),
    sa.Column("status_code", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)


# ---------------------------------------------------------------------------------------------- F2 lookups


def record_lookup(engine: sa.Engine, **row: Any) -> int:
    """Append one lookup audit row (keys: the ``citizen_lookups`` columns; ``at`` defaults to now)."""
    row.setdefault("at", now())
    with transaction(engine) as conn:
        return int(conn.execute(citizen_lookups.insert().values(**row).returning(citizen_lookups.c.id)).scalar_one())


def lookups(engine: sa.Engine, *, dossier_code: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    query = sa.select(citizen_lookups).order_by(citizen_lookups.c.id.desc()).limit(limit)
    if dossier_code is not None:
        query = query.where(citizen_lookups.c.dossier_code == dossier_code)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


@dataclass(frozen=True)
class LookupAnswer:
    """The first answer to one lookup. ``envelope`` (the hub-signed ``citizen.record``) holds personal data: it is
    kept only so that a repeat gets the very bytes the requester already holds instead of a second query of the
    population DB; nothing the requester was not sent is kept."""

    requester: str
    message_id: str
    request_digest: str
    reply_message_id: str
    source: str
    result: str
    fields: list[str]
    record_digest: str
    envelope: bytes
    at: datetime


def first_answer(engine: sa.Engine, requester: str, message_id: str, request_digest: str) -> LookupAnswer | None:
    """The answer kept for this lookup, if the same requester sent the same id with the same content before."""
    query = sa.select(lookup_answers).where(
        lookup_answers.c.requester == requester,
        lookup_answers.c.message_id == message_id,
        lookup_answers.c.request_digest == request_digest,
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else LookupAnswer(**row._mapping)


def keep_answer(engine: sa.Engine, **row: Any) -> bool:
    """Keep the first answer to a lookup (keys: the ``lookup_answers`` columns; ``at`` defaults to now); False
    when a concurrent identical lookup kept one first (both were answered; the first kept answers repeats)."""
    row.setdefault("at", now())
    try:
        with transaction(engine) as conn:
            conn.execute(lookup_answers.insert().values(**row))
    except sa.exc.IntegrityError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- F3 payments


@dataclass(frozen=True)
class Payment:
    reference: str
    kind: str
    connector: str
    requester: str
    dossier_code: str
    amount: int
    message_id: str
    state: str
    payment_url: str | None
    bank_transaction_id: str | None
    receipt_message_id: str | None
    confirm_digest: str | None
    created_at: datetime
    confirmed_at: datetime | None
    original_reference: str | None = None


def add_payment(engine: sa.Engine, **row: Any) -> bool:
    """Record a fee (or refund) request sent to a payment platform; False when the reference is known already."""
    row.setdefault("created_at", now())
    row.setdefault("state", "initiated")
    with transaction(engine) as conn:
        if conn.execute(sa.select(payments.c.reference).where(payments.c.reference == row["reference"])).first():
            return False
        conn.execute(payments.insert().values(**row))
        return True


def initiated_recorder(engine_or_url: sa.Engine | str) -> Callable[[str, Any, str, dict[str, Any]], None]:
    """The payment adapter's ``on_initiated`` hook: record each reference it initiated, so the ``CONFIRM`` that
    comes back for it can be matched (``hub.flows.payments``). ``request`` is the canonical ``PaymentRequest``."""
    engine = sa.create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    lock = threading.Lock()

    def record(connector: str, request: Any, message_id: str, answer: dict[str, Any]) -> None:
        with lock:
            add_payment(
                engine,
                reference=request.reference,
                kind=request.kind,
                original_reference=request.original_reference,
                connector=connector,
                requester="",
                dossier_code=request.dossier_code,
                amount=request.amount,
                message_id=message_id,
                payment_url=answer.get("UrlThanhToan"),
            )

    return record


def payment(engine: sa.Engine, reference: str) -> Payment | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(payments).where(payments.c.reference == reference)).first()
    return None if row is None else Payment(**row._mapping)


def confirm_payment(
    engine: sa.Engine,
    reference: str,
    *,
    bank_transaction_id: str,
    receipt_message_id: str,
    confirm_digest: str,
    state: str = "paid",
) -> bool:
    """Mark a payment (``paid``) or a refund (``refunded``) confirmed, once: False when it already was."""
    with transaction(engine) as conn:
        done = conn.execute(
            payments.update()
            .where(payments.c.reference == reference, payments.c.confirmed_at.is_(None))
            .values(
                state=state,
                bank_transaction_id=bank_transaction_id,
                receipt_message_id=receipt_message_id,
                confirm_digest=confirm_digest,
                confirmed_at=now(),
            )
        )
        return done.rowcount == 1


def refunded_total(engine: sa.Engine, original_reference: str, *, excluding: str | None = None) -> int:
    """What the confirmed refunds of a paid reference add up to (VND), leaving out ``excluding``."""
    query = sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount), 0)).where(
        payments.c.kind == "refund",
        payments.c.original_reference == original_reference,
        payments.c.confirmed_at.is_not(None),
    )
    if excluding is not None:
        query = query.where(payments.c.reference != excluding)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def set_payment_url(engine: sa.Engine, reference: str, url: str | None) -> None:
    with transaction(engine) as conn:
        conn.execute(payments.update().where(payments.c.reference == reference).values(payment_url=url))


def record_refusal(
    engine: sa.Engine, *, connector: str, kind: str, rule: str, reason: str, payload: bytes, reference: str | None
) -> int:
    with transaction(engine) as conn:
        refusal_id = conn.execute(
            partner_refusals.insert().values(
                at=now(), connector=connector, kind=kind, reference=reference, rule=rule, reason=reason,
                payload_digest=digest(payload),
            ).returning(partner_refusals.c.id)
        ).scalar_one()  # fmt: skip
        return int(refusal_id)


def refusals(engine: sa.Engine, *, connector: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    query = sa.select(partner_refusals).order_by(partner_refusals.c.id.desc()).limit(limit)
    if connector is not None:
        query = query.where(partner_refusals.c.connector == connector)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


PAYMENT_REFUSAL_KINDS = ("payment.confirm", "payment.refund")


def payment_refusals(engine: sa.Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` rejected payment and refund confirmations, newest first, each with the dossier of the
    payment it names (when the hub initiated that payment)."""
    query = (
        sa.select(partner_refusals, payments.c.dossier_code)
        .select_from(partner_refusals.outerjoin(payments, payments.c.reference == partner_refusals.c.reference))
        .where(partner_refusals.c.kind.in_(PAYMENT_REFUSAL_KINDS))
        .order_by(partner_refusals.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def payment_refusal_counts(engine: sa.Engine) -> dict[str, int]:
    """Rejected payment and refund confirmations per payment connector, since the hub began (rows are never
    deleted): the ``lienthong_payment_confirmations_rejected_total`` counter."""
    query = (
        sa.select(partner_refusals.c.connector, sa.func.count())
        .where(partner_refusals.c.kind.in_(PAYMENT_REFUSAL_KINDS))
        .group_by(partner_refusals.c.connector)
    )
    with engine.connect() as conn:
        return {str(code): int(count) for code, count in conn.execute(query)}


# ---------------------------------------------------------------------------------------------- F4 postal


def postal_cursor(engine: sa.Engine, connector: str) -> str | None:
    """The tracking feed's last id read for ``connector`` (VNPost's ``$oid``), ``None`` before the first page."""
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(postal_cursors.c.last_id).where(postal_cursors.c.connector == connector)
        ).scalar_one_or_none()
    return None if value is None else str(value)


def claim_postal_events(
    engine: sa.Engine, connector: str, events: Sequence[tuple[str, str, str, str]], last_id: str
) -> list[str]:
    """Record tracking events ``(event_id, order_number, status_code, message_id)`` and move the cursor to
    ``last_id``, in one transaction; returns the event ids that were new (the ones to emit)."""
    at_now = now()
    new: list[str] = []
    with transaction(engine) as conn:
        known = set(
            conn.execute(
                sa.select(postal_events.c.event_id).where(
                    postal_events.c.connector == connector,
                    postal_events.c.event_id.in_([e[0] for e in events] or [""]),
                )
            ).scalars()
        )
        for event_id, order_number, status_code, message_id in events:
            if event_id in known:
                continue
            known.add(event_id)
            conn.execute(
                postal_events.insert().values(
                    connector=connector, event_id=event_id, order_number=order_number, status_code=status_code,
                    message_id=message_id, at=at_now,
                )
            )  # fmt: skip
            new.append(event_id)
        updated = conn.execute(
            postal_cursors.update()
            .where(postal_cursors.c.connector == connector)
            .values(last_id=last_id, updated_at=at_now)
        )
        if updated.rowcount == 0:
            conn.execute(postal_cursors.insert().values(connector=connector, last_id=last_id, updated_at=at_now))
    return new

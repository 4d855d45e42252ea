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
  the platform confirmed them. Migration ``0017``: the profile spoken, the INIT's and the CONFIRM's
  ``ThoiGianGD`` (what QUERY and GET_BILL are sent with), PayGov's own ``orderId`` (``partner_reference``),
  reconciliation's claim (``check_until``) and last answer (``checked_at``, ``platform_state``), and on a paid row
  the total refunded so far (``refunded``, never above ``amount``: a check constraint, and the guarded update of
  ``confirm_refund`` in the refund's own transaction, so two API processes cannot over-refund).
- ``partner_refusals``: callbacks the hub refused (forged checksum, amount mismatch, unknown reference…) and
  receipts it held (kind ``payment.receipt``: signed by someone else, unsigned, altered…), with the rule and the
  reason, for operators.
- ``postal_cursors`` / ``postal_events``: the last tracking-feed id read per postal connector (VNPost's ``$oid``,
  a string since migration ``0017``), and every event emitted (unique per connector and event id: never emitted
  twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.errors import RefundExceedsPaidError
from hub.store.database import digest as digest  # re-exported: the flows fingerprint payloads as the store does
from hub.store.database import now, transaction
from hub.store.schema import Id, UTCDateTime, dossiers, messages, metadata

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
    sa.Column("profile", sa.String(32), nullable=True),
    sa.Column("init_time", sa.String(14), nullable=True),
    sa.Column("confirm_time", sa.String(14), nullable=True),
    sa.Column("partner_reference", sa.String(100), nullable=True),
    sa.Column("checked_at", UTCDateTime, nullable=True),
    sa.Column("check_until", UTCDateTime, nullable=True),
    sa.Column("platform_state", sa.String(8), nullable=True),
    sa.Column("refunded", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded"),
    sa.Index(None, "partner_reference"),
    sa.Index(None, "state", "created_at"),
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


#: ``payments.state``: initiated (INIT answered), pending (a QUERY said "3"), failed (the platform reports the
#: payment failed), disputed (a QUERY said paid with another amount), receipt-rejected (paid, but its receipt
#: breaks the receipt rule: held, ``hold_payment``), paid, refunded (a refund row the platform confirmed).
#: Reconciliation asks about the open ones.
OPEN_STATES = ("initiated", "pending")
RECEIPT_HELD = "receipt-rejected"
RECEIPT_REFUSAL = "payment.receipt"  # partner_refusals.kind of a held receipt


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
    profile: str | None = None
    init_time: str | None = None
    confirm_time: str | None = None
    partner_reference: str | None = None
    checked_at: datetime | None = None
    check_until: datetime | None = None
    platform_state: str | None = None
    refunded: int = 0


def add_payment(engine: sa.Engine, **row: Any) -> bool:
    """Record a fee (or refund) request sent to a payment platform; False when the reference is known already."""
    row.setdefault("created_at", now())
    row.setdefault("state", "initiated")
    with transaction(engine) as conn:
        if conn.execute(sa.select(payments.c.reference).where(payments.c.reference == row["reference"])).first():
            return False
        conn.execute(payments.insert().values(**row))
        return True


#: ``on_initiated(connector, request, message_id, answer, details)``: ``details`` holds what later calls need —
#: ``profile``, ``init_time`` (the INIT's ThoiGianGD), ``partner_reference`` (PayGov's orderId), ``payment_url``.
Recorder = Callable[..., None]


def initiated_recorder(engine_or_url: sa.Engine | str) -> Recorder:
    """The payment adapter's ``on_initiated`` hook: record each reference it initiated, so the ``CONFIRM`` that
    comes back for it can be matched (``hub.flows.payments``) and a lost one reconciled (``hub.flows.reconcile``).
    ``request`` is the canonical ``PaymentRequest``."""
    engine = sa.create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    lock = threading.Lock()

    def record(
        connector: str, request: Any, message_id: str, answer: dict[str, Any], details: dict[str, Any] | None = None
    ) -> None:
        extra = details or {}
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
                payment_url=extra.get("payment_url", answer.get("UrlThanhToan")),
                profile=extra.get("profile"),
                init_time=extra.get("init_time"),
                partner_reference=extra.get("partner_reference"),
            )

    return record


def payment(engine: sa.Engine, reference: str) -> Payment | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(payments).where(payments.c.reference == reference)).first()
    return None if row is None else Payment(**row._mapping)


def payment_by_partner_reference(engine: sa.Engine, connector: str, partner_reference: str) -> Payment | None:
    """The payment a partner names by its own reference (PayGov's ``orderId``); the newest when several."""
    query = (
        sa.select(payments)
        .where(payments.c.connector == connector, payments.c.partner_reference == partner_reference)
        .order_by(payments.c.created_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else Payment(**row._mapping)


def confirm_payment(
    engine: sa.Engine,
    reference: str,
    *,
    bank_transaction_id: str,
    receipt_message_id: str,
    confirm_digest: str,
    state: str = "paid",
    confirm_time: str | None = None,
) -> bool:
    """Mark a payment (``paid``) or a refund (``refunded``) confirmed, once: False when it already was."""
    with transaction(engine) as conn:
        return _confirm(conn, reference, bank_transaction_id=bank_transaction_id, receipt_message_id=receipt_message_id,
                        confirm_digest=confirm_digest, state=state, confirm_time=confirm_time)  # fmt: skip


def _confirm(conn: sa.Connection, reference: str, **values: Any) -> bool:
    done = conn.execute(
        payments.update()
        .where(payments.c.reference == reference, payments.c.confirmed_at.is_(None))
        .values(**values, confirmed_at=now(), check_until=None)
    )
    return done.rowcount == 1


def confirm_refund(
    engine: sa.Engine,
    reference: str,
    original_reference: str,
    amount: int,
    *,
    bank_transaction_id: str,
    receipt_message_id: str,
    confirm_digest: str,
) -> bool:
    """Confirm the refund ``reference`` and add ``amount`` to the refunded total of the paid ``original_reference``
    in one transaction: False when the refund was confirmed already (nothing changes), ``RefundExceedsPaidError`` when
    the total would exceed what was paid (nothing changes). The total is checked by the guarded update itself (on
    PostgreSQL the row lock makes a concurrent refund wait and re-check it; SQLite writers are serialised) and by
    the ``refunded <= amount`` constraint: no process lock, so any number of API processes cannot over-refund."""
    with transaction(engine) as conn:
        if not _confirm(conn, reference, bank_transaction_id=bank_transaction_id, receipt_message_id=receipt_message_id,
                        confirm_digest=confirm_digest, state="refunded"):  # fmt: skip
            return False
        added = conn.execute(
            payments.update()
            .where(
                payments.c.reference == original_reference,
                payments.c.kind == "payment",
                payments.c.confirmed_at.is_not(None),
                payments.c.refunded + amount <= payments.c.amount,
            )
            .values(refunded=payments.c.refunded + amount)
        )
        if added.rowcount != 1:
            # rolls the refund's confirmation back too
            raise RefundExceedsPaidError(f"refunding {amount} VND exceeds what is left of {original_reference}")
        return True


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


def hold_payment(
    engine: sa.Engine,
    reference: str,
    *,
    rule: str,
    reason: str,
    receipt_digest: str,
    bank_transaction_id: str,
    confirm_digest: str,
    confirm_time: str | None,
) -> bool:
    """A paid payment whose receipt breaks the receipt rule: ``receipt-rejected`` with the confirmation's
    transaction (reconciliation no longer asks about it), and a refusal of kind ``payment.receipt`` naming
    ``rule`` for operators — in one transaction, once: False when it was held or confirmed already."""
    with transaction(engine) as conn:
        done = conn.execute(
            payments.update()
            .where(
                payments.c.reference == reference,
                payments.c.confirmed_at.is_(None),
                payments.c.state != RECEIPT_HELD,
            )
            .values(
                state=RECEIPT_HELD,
                bank_transaction_id=bank_transaction_id,
                confirm_digest=confirm_digest,
                confirm_time=confirm_time or None,
                checked_at=now(),
                check_until=None,
            )
        )
        if done.rowcount != 1:
            return False
        connector = conn.execute(sa.select(payments.c.connector).where(payments.c.reference == reference)).scalar_one()
        conn.execute(
            partner_refusals.insert().values(
                at=now(), connector=connector, kind=RECEIPT_REFUSAL, reference=reference, rule=rule,
                reason=reason, payload_digest=receipt_digest,
            )
        )  # fmt: skip
        return True


def mark_failed(engine: sa.Engine, reference: str, *, platform_state: str | None = None) -> bool:
    """The platform reports the payment failed (a CONFIRM whose MaLoi is not "00", a QUERY's TrangThaiGD "4"):
    reconciliation stops asking; a later successful CONFIRM still settles it. False when it was confirmed."""
    with transaction(engine) as conn:
        done = conn.execute(
            payments.update()
            .where(payments.c.reference == reference, payments.c.confirmed_at.is_(None))
            .values(state="failed", platform_state=platform_state, checked_at=now(), check_until=None)
        )
        return done.rowcount == 1


def dossier_status(engine: sa.Engine, dossier_code: str) -> int | None:
    """The dossier's current status as the hub applied it (``None``: none applied yet)."""
    with engine.connect() as conn:
        value = conn.execute(sa.select(dossiers.c.status).where(dossiers.c.code == dossier_code)).scalar_one_or_none()
    return None if value is None else int(value)


def refund_guard(engine_or_url: sa.Engine | str) -> Callable[[str], str | None]:
    """The payment adapter's check before it sends a REFUND: why the dossier's fees may not be refunded (resolved,
    Tiền Giang Điều 17.4), or ``None``."""
    from hub.dossier.refunds import refund_refusal

    engine = sa.create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    return lambda dossier_code: refund_refusal(dossier_code, dossier_status(engine, dossier_code))


def request_envelope(engine: sa.Engine, message_id: str) -> bytes | None:
    """The stored envelope of the ``payment.request`` ``message_id`` (what a later call may need of it)."""
    query = sa.select(messages.c.envelope).where(
        messages.c.message_id == message_id, messages.c.message_type == "payment.request"
    )
    with engine.connect() as conn:
        value = conn.execute(query.limit(1)).scalar_one_or_none()
    return None if value is None else bytes(value)


# ---------------------------------------------------------------------------------------------- reconciliation


def _unsettled(older_than: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        payments.c.kind == "payment",
        payments.c.confirmed_at.is_(None),
        payments.c.state.in_(OPEN_STATES),
        payments.c.created_at <= older_than,
    )


def unsettled(engine: sa.Engine, older_than: datetime, *, limit: int = 500) -> list[Payment]:
    """Payments initiated before ``older_than`` and neither paid nor failed yet, oldest first."""
    query = sa.select(payments).where(_unsettled(older_than)).order_by(payments.c.created_at).limit(limit)
    with engine.connect() as conn:
        return [Payment(**r._mapping) for r in conn.execute(query)]


def claim_unsettled(
    engine: sa.Engine, older_than: datetime, *, lease_s: float, limit: int = 100, at: datetime | None = None
) -> list[Payment]:
    """Claim up to ``limit`` unsettled payments initiated before ``older_than`` whose claim is free (never taken,
    or run out): each is then queried by this process only, until ``lease_s`` seconds have passed or
    ``record_check`` / a confirmation releases it. The claim is a guarded update per row (one process wins it)."""
    at_now = at or now()
    free = sa.or_(payments.c.check_until.is_(None), payments.c.check_until < at_now)
    candidates = (
        sa.select(payments.c.reference).where(_unsettled(older_than), free).order_by(payments.c.created_at).limit(limit)
    )
    until = at_now + timedelta(seconds=lease_s)
    claimed: list[str] = []
    with transaction(engine, readonly=True) as conn:  # most runs find nothing: no write lock for them
        found = list(conn.execute(candidates).scalars())
    if not found:
        return []
    with transaction(engine) as conn:
        for reference in found:
            done = conn.execute(
                payments.update()
                .where(payments.c.reference == reference, _unsettled(older_than), free)
                .values(check_until=until)
            )
            if done.rowcount == 1:
                claimed.append(reference)
        if not claimed:
            return []
        rows = conn.execute(sa.select(payments).where(payments.c.reference.in_(claimed))).all()
    by_ref = {r.reference: Payment(**r._mapping) for r in rows}
    return [by_ref[r] for r in claimed]


def record_check(
    engine: sa.Engine, reference: str, *, platform_state: str | None, next_check: datetime | None, state: str
) -> None:
    """What a reconciliation QUERY found for a payment still open (``state`` initiated or pending): asked again
    from ``next_check`` (the claim holds until then)."""
    with transaction(engine) as conn:
        conn.execute(
            payments.update()
            .where(payments.c.reference == reference, payments.c.confirmed_at.is_(None))
            .values(state=state, platform_state=platform_state, checked_at=now(), check_until=next_check)
        )


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


PAYMENT_REFUSAL_KINDS = ("payment.confirm", "payment.refund", RECEIPT_REFUSAL)


def payment_refusals(engine: sa.Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` rejected payment and refund confirmations and held receipts, newest first, each with the
    dossier of the payment it names (when the hub initiated that payment)."""
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
    """Rejected payment and refund confirmations (and held receipts) per payment connector, since the hub began
    (rows are never deleted): the ``lienthong_payment_confirmations_rejected_total`` counter."""
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

"""Dossiers: their current state under the status machine, their timelines and the intake-deadline query.

The status machine (``hub.dossier.status_machine``) decides; this module locks the dossiers' rows, feeds it
their current state and writes what it decided — for a batch of accepted submissions (``decide_statuses``: a
``dossier.status``, the status a ``dossier.sync`` reports, an operator's correction the hub injects) or for one
update with an optional operator correction (``record_status``). A correction is audited (``dossier.correct``:
who, why, before, after) in the transaction that applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store import audit, due_dates
from hub.store.database import Database, chunks, now
from hub.store.history import add_events, event_row
from hub.store.schema import UTCDateTime, deliveries, dossier_timeline, dossiers, messages
from hub.store.types import DossierParty, DossierRecord, IntakeDossier, StatusUpdate, Submission, TimelineEntry

if TYPE_CHECKING:
    from hub.dossier.status_machine import Decision, DossierState, Source

_INSERT_TIMELINE = dossier_timeline.insert()
_SET_DOSSIER_STATE = (
    dossiers.update()
    .where(dossiers.c.code == sa.bindparam("b_code"))
    .values(
        status=sa.bindparam("b_status", type_=sa.Integer),
        status_at=sa.bindparam("b_status_at", type_=UTCDateTime),
        applied_at=sa.bindparam("b_applied", type_=UTCDateTime),
    )
)
_LOCK_DOSSIERS = (
    sa.select(dossiers.c.code, dossiers.c.status, dossiers.c.status_at)
    .where(dossiers.c.code.in_(sa.bindparam("b_codes", expanding=True)))
    .order_by(dossiers.c.code)
    .with_for_update()
)
_KEEP_INTAKE = (
    dossiers.update()
    .where(dossiers.c.code == sa.bindparam("b_code"))
    .values(
        submitted_at=sa.func.coalesce(dossiers.c.submitted_at, sa.bindparam("b_submitted", type_=UTCDateTime)),
        channel=sa.func.coalesce(sa.bindparam("b_channel", type_=sa.Integer), dossiers.c.channel),
    )
)
# The messages of one sender among the ids given. By sender, then ids, rather than ``(sender, message_id) IN (…)``:
# SQLite answers a row-value IN list by scanning the whole message log (each batch cost grew with the log); both
# databases answer this form from the unique (sender, message_id) index.
_STORED_OF_SENDER = sa.select(
    messages.c.id, messages.c.sender, messages.c.message_id, messages.c.digest, messages.c.received_at
).where(messages.c.sender == sa.bindparam("b_sender"), messages.c.message_id.in_(sa.bindparam("b_ids", expanding=True)))


def stored_messages(conn: Connection, keys: Iterable[tuple[str, str]]) -> Iterator[Any]:
    """The rows (id, sender, message_id, digest, received_at) of the (sender, message_id) ``keys`` already in the
    message log; keys not stored yield nothing."""
    by_sender: dict[str, list[str]] = {}
    for sender, message_id in keys:
        by_sender.setdefault(sender, []).append(message_id)
    for sender, ids in by_sender.items():
        for chunk in chunks(ids):
            yield from conn.execute(_STORED_OF_SENDER, {"b_sender": sender, "b_ids": list(chunk)})


# Is any message about the dossier logged; did the party send a status or sync about it, or was it routed one? Read
# through the index on messages.dossier_code and the unique (message_pk, destination) index of deliveries.
_ABOUT = messages.c.dossier_code == sa.bindparam("b_code")
_PARTY: sa.BindParameter[str] = sa.bindparam("b_party", type_=sa.String)
_DOSSIER_PARTY = sa.select(
    sa.exists().where(_ABOUT).label("known"),
    sa.exists()
    .where(
        _ABOUT,
        sa.or_(
            # what it sent counts only when ownership was checked for it: a status or a sync (not, say, a
            # payment.request naming any dossier, which would make its sender a party at will)
            sa.and_(messages.c.sender == _PARTY, messages.c.message_type.in_(("dossier.status", "dossier.sync"))),
            sa.exists().where(deliveries.c.message_pk == messages.c.id, deliveries.c.destination == _PARTY),
        ),
    )
    .label("party"),
)
SYNC = "sync"  # ``Submission.sync``'s update is decided as ``Source.SYNC``
DONE = 9  # the status only the sender that set it may restate (with new result documents)


@dataclass
class StatusWrites:
    """Status-machine results of one transaction, written together: timeline entries, and each dossier's last
    new state (later decisions in the same transaction already saw the earlier ones in memory)."""

    timeline: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def flush(self, conn: Connection) -> None:
        if self.states:
            conn.execute(_SET_DOSSIER_STATE, list(self.states.values()))
        if self.timeline:
            due_dates.note_due_changes(conn, self.timeline)  # a supplement received moves the due date
            conn.execute(_INSERT_TIMELINE, self.timeline)


def lock_dossiers(db: Database, conn: Connection, codes: Sequence[str]) -> dict[str, DossierState | None]:
    """Create the dossiers' rows if missing and lock them (in code order: no deadlock between batches); returns
    each one's current state (``None`` before a first applied update). SQLite's IMMEDIATE lock is wider."""
    from hub.dossier.status_machine import DossierState, DossierStatus

    codes = sorted(set(codes))
    conn.execute(db.insert_ignoring(dossiers, ("code",)), [{"code": code} for code in codes])
    state: dict[str, DossierState | None] = {}
    for chunk in chunks(codes):
        for r in conn.execute(_LOCK_DOSSIERS, {"b_codes": list(chunk)}):
            state[r.code] = None if r.status is None else DossierState(DossierStatus(r.status), r.status_at)
    return state


def decide_status(
    dossier_code: str,
    current: DossierState | None,
    status: int,
    at: datetime,
    *,
    message_id: str | None,
    source: str,
    correction: Any,
    at_now: datetime,
    pending: StatusWrites,
    detail: Any = None,
    kind: Source | str = "step",
    reported_at: datetime | None = None,
    amends_result: bool = False,
) -> Decision:
    """Decide one update against the locked dossier's ``current`` state; queue its timeline entry and, when
    applied, the dossier's new state on ``pending`` (written by ``StatusWrites.flush``). A correction's entry
    keeps who made it, why and the status before in its ``detail``, and the time it was applied at (after the
    dossier's last update, see ``hub.dossier.status_machine``). ``reported_at``: when a sync's record was written;
    ``amends_result``: a step at 9 bringing result documents other than those 9 was set (or last restated) with."""
    from hub.dossier.status_machine import Source, decide

    decision = decide(current, status, at, correction, source=Source(kind), sender=source, reported_at=reported_at,
                      amends_result=amends_result)  # fmt: skip
    if correction is not None:
        detail = {**(detail or {}), **_correction_detail(correction, current)}
        if decision.new_state is not None:
            at = decision.new_state.at  # on the timeline after the update it corrects
    if decision.new_state is not None:
        pending.states[dossier_code] = {
            "b_code": dossier_code,
            "b_status": int(decision.new_state.status),
            "b_status_at": decision.new_state.at,
            "b_applied": at_now,
        }
    pending.timeline.append(
        {
            "dossier_code": dossier_code,
            "message_id": message_id,
            "status": int(status),
            "at": at,
            "outcome": outcome_name(decision),
            "reason": decision.reason or "",
            "source": source,
            "recorded_at": at_now,
            "detail": None if detail is None else dict(detail),
        }
    )
    return decision


def _correction_detail(correction: Any, current: DossierState | None) -> dict[str, Any]:
    """Who corrected, why, and the status before (the entry's own status is the one after)."""
    before = None if current is None else int(current.status)
    return {"corrected_by": correction.corrected_by, "reason": correction.reason, "status_before": before}


def audit_correction(
    conn: Connection, dossier_code: str, status: int, decision: Decision, correction: Any,
    current: DossierState | None, at_now: datetime, message_id: str | None = None,
) -> None:  # fmt: skip
    """The audit row of an operator's correction (the audit view's "dossier" group): the status before and after,
    why, the outcome and the message that reported it; in the caller's transaction."""
    outcome = outcome_name(decision)
    detail = {"status": int(status), "status_before": None if current is None else int(current.status),
              "reason": correction.reason[:200], "outcome": outcome, "message_id": message_id}  # fmt: skip
    audit.record(conn, actor=correction.corrected_by, action="dossier.correct", subject=dossier_code,
                 outcome="ok" if outcome == "corrected" else "refused", at=at_now, role=correction.role,
                 client=correction.client, detail={k: v for k, v in detail.items() if v is not None})  # fmt: skip


def update_of(sub: Submission) -> tuple[StatusUpdate, str] | None:
    """The status update a submission carries and how the machine takes it: a ``dossier.status`` (``step``) or
    the status a ``dossier.sync`` reports (``sync``); ``None`` for neither."""
    if sub.status is not None:
        return sub.status, "step"
    sync = sub.sync
    if sync is None:
        return None
    detail = {"reported_by": "dossier.sync", **(sync.detail or {})}
    if sync.due_at is not None:  # the due date (NgayHenTra) it carries: the dossier's current one (due_dates)
        detail["due_at"] = due_dates.iso(sync.due_at)
    return StatusUpdate(sync.dossier_code, int(sync.status), sync.at, sync.source, detail,
                        reported_at=sync.reported_at), SYNC  # fmt: skip


def outcome_name(decision: Decision) -> str:
    """The decision's outcome as recorded (``applied``, ``stale``…)."""
    return str(getattr(decision.outcome, "value", decision.outcome)).lower()


def decide_statuses(
    db: Database, conn: Connection, subs: list[Submission], first: dict[tuple[str, str], int], at_now: datetime
) -> dict[int, Decision]:
    """Run the status updates of the batch's new messages through the status machine (index → decision).

    The dossiers' rows are locked first, then the messages already stored are skipped: a resend, or a twin a
    concurrent transaction stored while this one waited for the lock, is decided once."""
    updates = {i: u for i in first.values() if (u := update_of(subs[i])) is not None}
    if not updates:
        return {}
    state = lock_dossiers(db, conn, [update.dossier_code for update, _ in updates.values()])
    keys = [(subs[i].sender, subs[i].message_id) for i in updates]
    known = {(r.sender, r.message_id) for r in stored_messages(conn, keys)}
    decisions: dict[int, Decision] = {}
    pending = StatusWrites()
    for i, (update, kind) in updates.items():
        sub = subs[i]
        if (sub.sender, sub.message_id) in known:
            continue
        current = state[update.dossier_code]
        amends_result = False
        if current is not None and kind != SYNC and int(current.status) == int(update.status) == DONE:
            setter, results = result_state(conn, update.dossier_code, pending.timeline)  # may it restate 9?
            current = replace(current, set_by=setter)
            amends_result = bool(attachments_of(update.detail)) and attachments_of(update.detail) != results
        decision = decide_status(
            update.dossier_code, current, update.status, update.at,
            message_id=sub.message_id, source=update.source, correction=update.correction, at_now=at_now,
            pending=pending, detail=update.detail, kind=kind, reported_at=update.reported_at,
            amends_result=amends_result,
        )  # fmt: skip
        if update.correction is not None:
            audit_correction(conn, update.dossier_code, update.status, decision, update.correction, current, at_now,
                             sub.message_id)  # fmt: skip
        if decision.new_state is not None:
            state[update.dossier_code] = decision.new_state
        decisions[i] = decision
    pending.flush(conn)
    return decisions


def attachments_of(detail: Any) -> frozenset[tuple[str, str]]:
    """The result documents a step's detail names, as (URL, declared SHA-256) pairs."""
    found = detail.get("attachments") if isinstance(detail, dict) else None
    if not isinstance(found, list):
        return frozenset()
    return frozenset((str(a.get("url", "")), str(a.get("sha256") or "").lower()) for a in found if isinstance(a, dict))


def result_state(
    conn: Connection, dossier_code: str, pending: Sequence[dict[str, Any]] = ()
) -> tuple[str | None, frozenset[tuple[str, str]]]:
    """Who set the dossier's current status — the source of the applied (or corrected) timeline entry that moved it
    there, amendments restating it since left aside — and the result documents of the setter's latest entry at that
    status (those a restatement must differ from). Reads the stored timeline, then ``pending`` (this transaction's
    entries not yet written)."""
    tl = dossier_timeline.c
    query = (
        sa.select(tl.status, tl.source, tl.detail)
        .where(tl.dossier_code == dossier_code, tl.outcome.in_(("applied", "corrected")))
        .order_by(tl.id)
    )
    rows = [(r.status, r.source, r.detail) for r in conn.execute(query)]
    rows += [(r["status"], r["source"], r["detail"]) for r in pending
             if r["dossier_code"] == dossier_code and r["outcome"] in ("applied", "corrected")]  # fmt: skip
    setter, previous, results = None, None, frozenset[tuple[str, str]]()
    for status, source, detail in rows:
        if status != previous:
            setter, previous, results = source, status, frozenset()
        if source == setter:
            results = attachments_of(detail) or results
    return setter, results


def record_syncs(db: Database, conn: Connection, new: list[tuple[int, Submission]], at_now: datetime) -> None:
    """Keep each dossier's submission time (the first one reported) and channel from newly stored ``dossier.sync``
    messages (their status went through the status machine with the rest, ``decide_statuses``)."""
    syncs = [sub.sync for _, sub in new if sub.sync is not None]
    if not syncs:
        return
    codes = sorted({sync.dossier_code for sync in syncs})
    conn.execute(db.insert_ignoring(dossiers, ("code",)), [{"code": code} for code in codes])
    intake: dict[str, tuple[datetime | None, int | None]] = {}
    for sync in syncs:
        submitted, channel = intake.get(sync.dossier_code, (None, None))
        intake[sync.dossier_code] = (submitted or sync.submitted_at, sync.channel or channel)
    conn.execute(
        _KEEP_INTAKE,
        [{"b_code": code, "b_submitted": intake[code][0], "b_channel": intake[code][1]} for code in codes],
    )


def record_status(
    db: Database,
    *,
    dossier_code: str,
    status: int,
    at: datetime,
    message_id: str | None,
    source: str,
    correction: Any = None,
    sender: str | None = None,
) -> Decision:
    """One update (possibly an operator's correction) through the status machine under the dossier's row lock:
    the path of updates that arrive outside a submission; see ``Store.record_status``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("record_status: 'at' must be timezone-aware")
    at_now = now()
    with db.transaction() as conn:
        current = lock_dossiers(db, conn, [dossier_code])[dossier_code]
        pending = StatusWrites()
        decision = decide_status(
            dossier_code, current, status, at,
            message_id=message_id, source=source, correction=correction, at_now=at_now, pending=pending,
        )  # fmt: skip
        pending.flush(conn)
        if correction is not None:  # an operator's correction: the audit view's "dossier" group
            audit_correction(conn, dossier_code, status, decision, correction, current, at_now, message_id)
        if message_id is not None:
            query = sa.select(messages.c.id).where(messages.c.message_id == message_id)
            if sender is not None:
                query = query.where(messages.c.sender == sender)
            pk = conn.execute(query.order_by(messages.c.id.desc()).limit(1)).scalar()
            if pk is not None:
                outcome = outcome_name(decision)
                actor = getattr(correction, "corrected_by", None) or source
                detail = f"{dossier_code} -> {int(status)}: {decision.reason or outcome}"
                add_events(conn, event_row(pk, f"status_{outcome}", at_now, detail=detail, actor=actor))
        return decision


def timeline(db: Database, dossier_code: str) -> list[TimelineEntry]:
    """Every status update recorded for a dossier, in time order: by the update's own time, then as recorded (a
    stale update, reported late, sits where its time puts it)."""
    tl = dossier_timeline.c
    query = sa.select(dossier_timeline).where(tl.dossier_code == dossier_code).order_by(tl.at, tl.id)
    with db.transaction(readonly=True) as conn:
        return [TimelineEntry(**r._mapping) for r in conn.execute(query)]


def dossier_party(db: Database, dossier_code: str, party: str) -> DossierParty:
    """Whether ``party`` sent or was routed a message about the dossier, and whether any is logged at all: the
    ownership check of every ``dossier.status`` and ``dossier.sync`` a connector sends (one indexed query)."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(_DOSSIER_PARTY, {"b_code": dossier_code, "b_party": party}).one()
    return DossierParty(known=bool(row.known), party=bool(row.party))


def dossier(db: Database, dossier_code: str) -> DossierRecord | None:
    """The dossier's current state, ``None`` until an update has been applied."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(dossiers).where(dossiers.c.code == dossier_code)).first()
    if row is None or row.status is None:
        return None
    return DossierRecord(**row._mapping)


def dossiers_at_intake(db: Database, *, exclude_channels: Sequence[int] = (1,)) -> list[IntakeDossier]:
    """Dossiers whose latest reported status (applied or corrected, or synced before syncs ran through the status
    machine; latest by ``at``) is 1 (new), with
    their submission time: the one their ``dossier.sync`` carried, else the first entry of their timeline.
    Dossiers submitted through ``exclude_channels`` (default: 1, in person) are left out."""
    tl = dossier_timeline
    counted = tl.c.outcome.in_(("applied", "corrected", "synced"))
    candidates = sa.select(tl.c.dossier_code).where(tl.c.status == 1).distinct().scalar_subquery()
    ranked = (
        sa.select(
            tl.c.dossier_code,
            tl.c.status,
            tl.c.source,
            sa.func.row_number()
            .over(partition_by=tl.c.dossier_code, order_by=(tl.c.at.desc(), tl.c.id.desc()))
            .label("rn"),
        )
        .where(counted, tl.c.dossier_code.in_(candidates))
        .subquery()
    )
    first = (
        sa.select(tl.c.dossier_code, sa.func.min(tl.c.at).label("first_at"))
        .where(tl.c.dossier_code.in_(candidates))
        .group_by(tl.c.dossier_code)
        .subquery()
    )
    query = (
        sa.select(
            ranked.c.dossier_code,
            ranked.c.source,
            dossiers.c.submitted_at,
            dossiers.c.channel,
            sa.type_coerce(first.c.first_at, UTCDateTime).label("first_at"),
        )
        .join(first, first.c.dossier_code == ranked.c.dossier_code)
        .outerjoin(dossiers, dossiers.c.code == ranked.c.dossier_code)
        .where(ranked.c.rn == 1, ranked.c.status == 1)
        .order_by(ranked.c.dossier_code)
    )
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(query).all()
    return [
        IntakeDossier(r.dossier_code, r.submitted_at or r.first_at, r.channel, r.source)
        for r in rows
        if r.channel is None or r.channel not in exclude_channels
    ]

"""Intake: log inbound envelopes and queue one delivery per destination, idempotently, in one transaction.

A (sender, message id) is stored once: a resend with the same bytes is a ``duplicate``, with other bytes a
``conflict`` — both answered from what was stored first, nothing inserted, nothing raised. Status updates run
through the status machine in the same transaction (``hub.store.dossiers``), the status a ``dossier.sync`` reports
and an operator's correction included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store import dossiers
from hub.store.database import Database, chunks, digest, now
from hub.store.deliveries import mark_published_in
from hub.store.history import INSERT_EVENT, event_row
from hub.store.schema import DeliveryState, EventState, deliveries, messages
from hub.store.types import AcceptOutcome, AcceptResult, Submission, message_status

if TYPE_CHECKING:
    from hub.dossier.status_machine import Decision

_INSERT_DELIVERIES = deliveries.insert().returning(deliveries.c.id, deliveries.c.message_pk, deliveries.c.destination)
_DELIVERIES_OF = (
    sa.select(deliveries.c.id, deliveries.c.message_pk, deliveries.c.state, deliveries.c.destination)
    .where(deliveries.c.message_pk.in_(sa.bindparam("b_ids", expanding=True)))
    .order_by(deliveries.c.id)
)
_Q = DeliveryState.QUEUED


class Intake:
    """The intake part of a store: ``accept_many`` and the statements it prebuilds for its database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert_message = db.insert_ignoring(messages, ("sender", "message_id")).returning(
            messages.c.id, messages.c.sender, messages.c.message_id
        )

    def accept_many(
        self, items: Iterable[Submission | Mapping[str, Any]], *, published: Sequence[int] = ()
    ) -> list[AcceptResult]:
        """Accept a batch (see ``Store.accept_many``); results are in the order of ``items``."""
        subs = [Submission.coerce(item) for item in items]
        digests = [digest(s.envelope) for s in subs]
        if not subs and not published:
            return []
        with self.db.transaction() as conn:
            mark_published_in(conn, published)
            return self._accept(conn, subs, digests) if subs else []

    def _accept(self, conn: Connection, subs: list[Submission], digests: list[str]) -> list[AcceptResult]:
        at_now = now()
        first: dict[tuple[str, str], int] = {}
        for index, sub in enumerate(subs):
            first.setdefault((sub.sender, sub.message_id), index)

        # 0. Status updates of new messages through the status machine: a rejected one is not stored, a stale
        #    one is stored without deliveries, an amendment (a status restated) is queued for every destination
        #    but the notification connectors: the applicant was told of that status when it was set.
        decisions = dossiers.decide_statuses(self.db, conn, subs, first, at_now)
        rejected: dict[tuple[str, str], Decision] = {}
        for index, decision in decisions.items():
            sub = subs[index]
            if decision.outcome == "rejected":
                rejected[(sub.sender, sub.message_id)] = decision
            elif decision.outcome == "stale":
                subs[index] = replace(sub, destinations=())
            elif getattr(decision, "amendment", False) and sub.notifiers:
                subs[index] = replace(sub, destinations=tuple(d for d in sub.destinations if d not in sub.notifiers))

        # 1. Insert every first occurrence; keys stored before (or concurrently) are skipped, not raised.
        rows = [
            {
                "sender": subs[i].sender,
                "message_id": subs[i].message_id,
                "correlation_id": subs[i].correlation_id,
                "message_type": subs[i].message_type,
                "receiver": subs[i].receiver,
                "dossier_code": subs[i].dossier_code,
                "digest": digests[i],
                "envelope": subs[i].envelope,
                "received_at": at_now,
            }
            for key, i in first.items()
            if key not in rejected
        ]
        inserted: dict[tuple[str, str], int] = (
            {(r.sender, r.message_id): r.id for r in conn.execute(self._insert_message, rows)} if rows else {}
        )

        # 2. Deliveries and events of the new messages, set-based.
        delivery_ids: dict[int, tuple[int, ...]] = {}
        if inserted:
            new = {pk: subs[first[key]] for key, pk in inserted.items()}
            decided = {pk: decisions.get(first[key]) for key, pk in inserted.items()}
            delivery_ids = self._queue(conn, new, decided, at_now)
            dossiers.record_syncs(self.db, conn, list(new.items()), at_now)

        # 3. What was there before: its digest, time and deliveries.
        stored: dict[tuple[str, str], tuple[int, str, datetime]] = {
            key: (pk, digests[first[key]], at_now) for key, pk in inserted.items()
        }
        missing = [key for key in first if key not in inserted and key not in rejected]
        states: dict[int, list[str]] = {pk: [_Q] * len(ids) for pk, ids in delivery_ids.items()}
        queued_to: dict[int, tuple[str, ...]] = {pk: subs[first[key]].destinations for key, pk in inserted.items()}
        if missing:
            for r in dossiers.stored_messages(conn, missing):
                stored[(r.sender, r.message_id)] = (r.id, r.digest, r.received_at)
            old_pks = [stored[key][0] for key in missing]
            found: dict[int, list[tuple[int, str, str]]] = {pk: [] for pk in old_pks}
            for chunk in chunks(old_pks):
                for d in conn.execute(_DELIVERIES_OF, {"b_ids": list(chunk)}):
                    found[d.message_pk].append((d.id, d.state, d.destination))
            for pk, rows_of in found.items():
                delivery_ids[pk] = tuple(i for i, _, _ in rows_of)
                states[pk] = [s for _, s, _ in rows_of]
                queued_to[pk] = tuple(d for _, _, d in rows_of)

        # 4. One result per submission, in order.
        results = []
        for index, sub in enumerate(subs):
            key = (sub.sender, sub.message_id)
            if key in rejected:
                results.append(
                    AcceptResult(
                        outcome="rejected", sender=sub.sender, message_id=sub.message_id, digest=digests[index],
                        stored_digest="", status="rejected", message_pk=None, delivery_ids=(), received_at=at_now,
                        decision=rejected[key],
                    )
                )  # fmt: skip
                continue
            pk, stored_digest, received_at = stored[key]
            outcome: AcceptOutcome
            if key in inserted and first[key] == index:
                outcome = "accepted"
            elif stored_digest == digests[index]:
                outcome = "duplicate"
            else:
                outcome = "conflict"
            results.append(
                AcceptResult(
                    outcome=outcome, sender=sub.sender, message_id=sub.message_id, digest=digests[index],
                    stored_digest=stored_digest, status=message_status(states.get(pk, [])), message_pk=pk,
                    delivery_ids=delivery_ids.get(pk, ()), received_at=received_at,
                    decision=decisions.get(index) if outcome == "accepted" else None,
                    destinations=queued_to.get(pk, ()),
                )
            )  # fmt: skip
        return results

    @staticmethod
    def _queue(
        conn: Connection,
        new: dict[int, Submission],
        decisions: dict[int, Decision | None],
        at_now: datetime,
    ) -> dict[int, tuple[int, ...]]:
        """Insert the deliveries and the first events of newly stored messages; {message pk: delivery ids}."""
        delivery_rows = []
        event_rows = []
        for pk, sub in new.items():
            event_rows.append(event_row(pk, EventState.RECEIVED, at_now, actor=sub.actor))
            event_rows.append(event_row(pk, EventState.VALIDATED, at_now, actor=sub.actor))
            for warning in sub.warnings:
                event_rows.append(event_row(pk, EventState.WARNING, at_now, detail=warning, actor=sub.actor))
            for destination in sub.destinations:
                delivery_rows.append(
                    {"message_pk": pk, "destination": destination, "state": _Q, "attempts": 0, "queued_at": at_now,
                     "created_at": at_now, "updated_at": at_now}
                )  # fmt: skip
                event_rows.append(event_row(pk, EventState.QUEUED, at_now, destination=destination, actor=sub.actor))
            decision = decisions.get(pk)
            found = dossiers.update_of(sub)
            if decision is not None and found is not None:
                update = found[0]
                detail = f"{update.dossier_code} -> {int(update.status)}: {decision.reason}"
                actor = getattr(update.correction, "corrected_by", None) or update.source
                event_rows.append(event_row(pk, f"status_{decision.outcome}", at_now, detail=detail, actor=actor))
        by_key: dict[tuple[int, str], int] = {}
        if delivery_rows:
            # Rows come back in any order; they are matched on (message, destination).
            by_key = {(r.message_pk, r.destination): r.id for r in conn.execute(_INSERT_DELIVERIES, delivery_rows)}
        conn.execute(INSERT_EVENT, event_rows)
        return {pk: tuple(by_key[(pk, d)] for d in sub.destinations) for pk, sub in new.items()}

"""Paused destinations: an operator stops the hub calling a partner for a while, and resumes it.

A paused destination keeps its queued work: the workers stop consuming its queue (they read this table with a
short cache, ``hub.exchange.worker.PAUSE_CACHE_S``), so deliveries wait in the broker, count no attempt and are
not lost; resuming deletes the row and they flow again. Both actions are audited in their own transaction
(``destination.pause`` / ``destination.resume``, subject = the destination's code).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hub.errors import DestinationNotPausedError, DestinationPausedError
from hub.store import audit
from hub.store.database import Database, now
from hub.store.schema import paused_destinations


@dataclass(frozen=True, slots=True)
class Pause:
    """Who paused a destination, when and why."""

    destination: str
    paused_at: datetime
    paused_by: str
    reason: str


def pause(db: Database, destination: str, *, actor: str, reason: str, role: str | None = None,
          client: str | None = None) -> Pause:  # fmt: skip
    """Pause ``destination`` (``DestinationPausedError`` if it is paused already); ``reason`` must not be blank."""
    reason = reason.strip()
    if not reason:
        raise ValueError("pausing a destination needs a reason")
    record = Pause(destination, now(), actor[:128], reason[:2000])
    with db.transaction() as conn:
        inserted = conn.execute(
            db.insert_ignoring(paused_destinations, ["destination"])
            .values(destination=destination, paused_at=record.paused_at, paused_by=record.paused_by,
                    reason=record.reason)
            .returning(paused_destinations.c.destination)
        ).first()  # fmt: skip
        if inserted is None:
            row = conn.execute(sa.select(paused_destinations).where(paused_destinations.c.destination == destination))
            held = row.one()
            raise DestinationPausedError(destination, held.paused_by, held.paused_at)
        audit.record(conn, actor=actor, action="destination.pause", subject=destination, role=role, client=client,
                     detail={"reason": record.reason[:500]})  # fmt: skip
    return record


def resume(db: Database, destination: str, *, actor: str, role: str | None = None, client: str | None = None) -> Pause:
    """Resume ``destination``; returns the pause it ended (``DestinationNotPausedError`` if it was not paused)."""
    with db.transaction() as conn:
        row = conn.execute(
            paused_destinations.delete()
            .where(paused_destinations.c.destination == destination)
            .returning(*paused_destinations.c)
        ).first()
        if row is None:
            raise DestinationNotPausedError(destination)
        ended = Pause(row.destination, row.paused_at, row.paused_by, row.reason)
        audit.record(conn, actor=actor, action="destination.resume", subject=destination, role=role, client=client,
                     detail={"paused_by": ended.paused_by, "paused_at": ended.paused_at.isoformat(),
                             "reason": ended.reason[:500]})  # fmt: skip
    return ended


def paused(db: Database) -> dict[str, Pause]:
    """Every paused destination: {code: its pause}."""
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(sa.select(paused_destinations).order_by(paused_destinations.c.destination)).all()
    return {r.destination: Pause(r.destination, r.paused_at, r.paused_by, r.reason) for r in rows}

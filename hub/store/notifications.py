"""What citizen notifications (``adapters.notification``) write and check on a dossier's timeline (the applicant's
contact and consent are read from the dossier's latest ``dossier.sync``: ``Store.latest_sync``).

A notification is recorded on the dossier's timeline (``dossier_timeline``) with outcome ``notified`` or
``notify_skipped`` (the applicant declined, or gave no address), the connector as its source, the status and time
of the update it is about, and a readable reason with the recipient masked. What counts as "already told"
(``notified``): for the events told once per dossier (intake, received, not received, stopped, result) any entry of
the connector at that status, whoever reported the update and at whatever time; for a supplement, an entry at the
same request time (to the second, the precision partners stamp) or about the same message. So neither an update
reported again (by another system, with its own time) nor a delivery redelivered after a crash notifies twice.
Neither outcome counts as a status of the dossier (``hub.store.dossiers`` reads applied, corrected and synced
entries only).

The time recorded is the update's: the one the notice gives, else the one the status machine recorded for the
message that reported it (``update_time``) — never the clock's, which would make each report a new update.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store.database import Database, now
from hub.store.schema import dossier_timeline, dossiers

NOTIFIED = "notified"
SKIPPED = "notify_skipped"
OUTCOMES = (NOTIFIED, SKIPPED)

_tl = dossier_timeline.c
_TOLD = sa.select(_tl.at, _tl.message_id).where(
    _tl.dossier_code == sa.bindparam("b_code"),
    _tl.source == sa.bindparam("b_source"),
    _tl.status == sa.bindparam("b_status"),
    _tl.outcome.in_(OUTCOMES),
)
# The time the status machine gave the update a message reported (its own timeline entry, not a notification's).
_UPDATE_TIME = (
    sa.select(_tl.at)
    .where(_tl.dossier_code == sa.bindparam("b_code"))
    .where(_tl.message_id == sa.bindparam("b_message"), _tl.outcome.not_in(OUTCOMES))
    .order_by(_tl.id.desc())
    .limit(1)
)


def _second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def notified(
    db: Database,
    *,
    source: str,
    dossier_code: str,
    status: int,
    at: datetime | None = None,
    message_id: str | None = None,
    once: bool = True,
) -> bool:
    """Whether ``source`` already recorded a notification (sent or skipped) of this: at ``status`` for the dossier
    (``once``), else at the same time to the second or about the same message (a supplement request)."""
    values = {"b_code": dossier_code, "b_source": source, "b_status": int(status)}
    with db.transaction(readonly=True) as conn:
        told = conn.execute(_TOLD, values).all()
    if once:
        return bool(told)
    return any((message_id is not None and r.message_id == message_id)
               or (at is not None and _second(r.at) == _second(at)) for r in told)  # fmt: skip


def update_time(conn: Connection, dossier_code: str, message_id: str | None) -> datetime | None:
    """The time the status machine recorded for the update ``message_id`` reported, else the dossier's state time."""
    if message_id is not None:
        found = conn.execute(_UPDATE_TIME, {"b_code": dossier_code, "b_message": message_id}).scalar()
        if found is not None:
            return found
    return conn.execute(sa.select(dossiers.c.status_at).where(dossiers.c.code == dossier_code)).scalar()


def record_notification(
    db: Database,
    *,
    dossier_code: str,
    message_id: str | None,
    status: int,
    at: datetime | None,
    outcome: str,
    reason: str,
    source: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Put one notification on the dossier's timeline (``outcome``: ``notified`` or ``notify_skipped``); ``at``
    ``None``: the update's time as the status machine recorded it (``update_time``). ``ValueError`` when no time is
    known at all (the dossier has no status)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"a notification's outcome is one of {', '.join(OUTCOMES)}, not {outcome!r}")
    with db.transaction() as conn:
        when = at if at is not None else update_time(conn, dossier_code, message_id)
        if when is None:
            raise ValueError(f"no time is known for the update {message_id} of dossier {dossier_code}")
        conn.execute(
            dossier_timeline.insert(),
            {"dossier_code": dossier_code, "message_id": message_id, "status": int(status), "at": when,
             "outcome": outcome, "reason": reason, "source": source, "recorded_at": now(),
             "detail": None if not detail else dict(detail)},
        )  # fmt: skip

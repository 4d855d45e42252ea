"""What citizen notifications (``adapters.notification``) read and write of a dossier: the envelope of its latest
``dossier.sync`` (the applicant's contact and consent, read where the message log already keeps them — no second
copy of personal data), and its timeline's notification entries.

A notification is recorded on the dossier's timeline (``dossier_timeline``) with outcome ``notified`` or
``notify_skipped`` (the applicant declined, or gave no address), the connector as its source, the status and time
of the update it is about, and a readable reason with the recipient masked. The same (connector, dossier, status,
time) recorded once means that update was told: ``notified`` answers it, so neither a resent update nor a
delivery redelivered after a crash notifies twice. Neither outcome counts as a status of the dossier
(``hub.store.dossiers`` reads applied, corrected and synced entries only).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.store.database import Database, now
from hub.store.schema import dossier_timeline, messages

NOTIFIED = "notified"
SKIPPED = "notify_skipped"
OUTCOMES = (NOTIFIED, SKIPPED)
SYNC_TYPE = "dossier.sync"

_LATEST_SYNC = (
    sa.select(messages.c.envelope)
    .where(messages.c.dossier_code == sa.bindparam("b_code"), messages.c.message_type == SYNC_TYPE)
    .order_by(messages.c.id.desc())
    .limit(1)
)
_tl = dossier_timeline.c
_NOTIFIED = sa.select(
    sa.exists().where(
        _tl.dossier_code == sa.bindparam("b_code"),
        _tl.source == sa.bindparam("b_source"),
        _tl.status == sa.bindparam("b_status"),
        _tl.at == sa.bindparam("b_at", type_=dossier_timeline.c.at.type),
        _tl.outcome.in_(OUTCOMES),
    )
)


def latest_sync(db: Database, dossier_code: str) -> bytes | None:
    """The envelope (as received) of the dossier's latest logged ``dossier.sync``; ``None`` when none is logged."""
    with db.transaction(readonly=True) as conn:
        return conn.execute(_LATEST_SYNC, {"b_code": dossier_code}).scalar()


def notified(db: Database, *, source: str, dossier_code: str, status: int, at: datetime) -> bool:
    """Whether ``source`` already recorded a notification (sent or skipped) about this update of the dossier."""
    values = {"b_code": dossier_code, "b_source": source, "b_status": int(status), "b_at": at}
    with db.transaction(readonly=True) as conn:
        return bool(conn.execute(_NOTIFIED, values).scalar())


def record_notification(
    db: Database,
    *,
    dossier_code: str,
    message_id: str | None,
    status: int,
    at: datetime,
    outcome: str,
    reason: str,
    source: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Put one notification on the dossier's timeline (``outcome``: ``notified`` or ``notify_skipped``)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"a notification's outcome is one of {', '.join(OUTCOMES)}, not {outcome!r}")
    with db.transaction() as conn:
        conn.execute(
            dossier_timeline.insert(),
            {"dossier_code": dossier_code, "message_id": message_id, "status": int(status), "at": at,
             "outcome": outcome, "reason": reason, "source": source, "recorded_at": now(),
             "detail": None if not detail else dict(detail)},
        )  # fmt: skip

"""A dossier's latest ``dossier.sync``: the record its system of record (the provincial one-stop system) last sent,
read where the message log keeps it — no second copy of personal data. The one query and the one decoder that the
citizen notifications (the applicant's contact and consent) and the national portal's refreshed record (its data,
``hub.exchange.portal_refresh``) share, so they cannot disagree about which record is the latest or how it reads.

Latest: the last one stored (insertion order, ``messages.id``), leaving out a stale record (written before an update
the dossier had already applied: ``hub.dossier.status_machine``), which is history, not the dossier as it stands.
Decoded as at intake: a canonical body, or a partner format mapped by its pure converter (``mappings``).
"""

from __future__ import annotations

import sqlalchemy as sa

from hub import packets
from hub.packets.dossier import DossierSync
from hub.security.envelope import body_payload
from hub.store.database import Database
from hub.store.schema import dossier_timeline, messages
from hub.xmlparse import parse_xml

SYNC_TYPE = "dossier.sync"

_m, _tl = messages.c, dossier_timeline.c
_STALE = sa.exists().where(
    _tl.dossier_code == _m.dossier_code, _tl.message_id == _m.message_id, _tl.source == _m.sender,
    _tl.outcome == "stale",
)  # fmt: skip
_LATEST = (
    sa.select(_m.envelope)
    .where(_m.dossier_code == sa.bindparam("b_code"), _m.message_type == SYNC_TYPE, ~_STALE)
    .order_by(_m.id.desc())
    .limit(1)
)


def latest_sync_envelope(db: Database, dossier_code: str) -> bytes | None:
    """The stored envelope (as received) of the dossier's latest ``dossier.sync`` (see the module docstring)."""
    with db.transaction(readonly=True) as conn:
        found = conn.execute(_LATEST, {"b_code": dossier_code}).scalar()
    return None if found is None else bytes(found)


def read_sync(envelope: bytes) -> DossierSync:
    """The canonical ``dossier.sync`` of a stored envelope (a partner-format body mapped as at intake)."""
    from mappings import inbound_for_root

    body = body_payload(parse_xml(envelope, strip_comments=True))
    mapping = inbound_for_root(SYNC_TYPE, body.tag)
    model = packets.read_validated(SYNC_TYPE, body) if mapping is None else mapping.to_canonical(body)
    if not isinstance(model, DossierSync):  # pragma: no cover - the registry maps dossier.sync to DossierSync
        raise TypeError(f"a stored dossier.sync decoded to {type(model).__name__}")
    return model


def latest_sync(db: Database, dossier_code: str) -> DossierSync | None:
    """The dossier's latest ``dossier.sync``, decoded; ``None`` when none is held."""
    envelope = latest_sync_envelope(db, dossier_code)
    return None if envelope is None else read_sync(envelope)

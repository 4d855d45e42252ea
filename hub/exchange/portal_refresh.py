"""What the national portal gets for a supplement step: its progress record, then the dossier's record refreshed.

The portal learns that a due date moved lawfully (Quảng Nam Điều 13) from the dossier's ``DongBoHoSoMC`` record:
its ``DanhSachHoSoBoSung`` (NgayHenTraTruoc, NgayHenTraMoi; TH-SI:187-203) and ``NgayHenTra``. A ministry's
supplement step arrives as a ``dossier.status``, whose portal record (``CapNhatTienDoHoSoMC``) has none of those
fields. So, for a ``dvcqg`` destination, the worker builds the dossier's record as it now stands
(``DossierRecords.refreshed``): the provincial system's latest ``dossier.sync`` the hub holds (its system of
record; ``Store.latest_sync``, the record the citizen notifications read too), with the supplement rounds read
from the timeline added to those the sync lists (``hub.dossier.supplements``), the current due date
(``hub.store.due_dates``) and the current status. Read at
delivery, not at acceptance: two supplement steps delivered out of order both send the latest record, and the
portal keeps the newest. Without a sync (the province never sent the dossier through the hub) only the progress
record goes: the hub cannot build a whole record.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from hub.dossier.supplements import SupplementRound, supplement_rounds
from hub.packets.dossier import DossierStatusUpdate, DossierSync, Supplement

log = logging.getLogger(__name__)


class DossierFacts(Protocol):
    """The store's reads a refreshed record needs (``hub.store.Store``)."""

    def latest_sync(self, dossier_code: str) -> DossierSync | None: ...
    def timeline(self, dossier_code: str) -> Any: ...
    def due_date(self, dossier_code: str) -> tuple[datetime | None, datetime | None]: ...
    def dossier(self, dossier_code: str) -> Any: ...


def supplement_of(found: SupplementRound) -> Supplement:
    """A round as the canonical packet's supplement (its state left to the portal profile's values)."""
    fields = {
        "requested_by": found.requested_by,
        "content": found.content,
        "requested_at": found.requested_at,
        "receipt_info": found.receipt_note,
        "received_at": found.received_at,
        "previous_due_at": found.previous_due_at,
        "new_due_at": found.new_due_at,
    }
    try:
        return Supplement.model_validate({"supplement_id": found.round_id, **fields})
    except ValidationError:  # an id (or text) the packet refuses: a derived id, the texts cut to their limits
        at = found.requested_at or found.received_at
        derived = f"BS-{at:%Y%m%d%H%M%S}" if at is not None else "BS"
        cut = {k: v[:200] if k == "requested_by" and isinstance(v, str) else v for k, v in fields.items()}
        cut = {k: v[:4000] if isinstance(v, str) else v for k, v in cut.items()}
        return Supplement.model_validate({"supplement_id": derived, **cut})


class DossierRecords:
    """Builds a dossier's refreshed record from the store, for the worker (``OutboundBuilder``)."""

    def __init__(self, store: DossierFacts) -> None:
        self.store = store

    def refreshed(self, update: DossierStatusUpdate) -> DossierSync | None:
        """The dossier's record as it stands now (see the module docstring); ``None`` without a stored sync."""
        code = update.dossier_code
        basis = self.store.latest_sync(code)
        if basis is None:
            log.info("dossier=%s no dossier.sync held: the portal gets the progress record only", code)
            return None
        listed = {s.supplement_id for s in basis.supplements}
        rounds = [supplement_of(r) for r in supplement_rounds(self.store.timeline(code))]
        supplements = [*basis.supplements, *(s for s in rounds if s.supplement_id not in listed)]
        due, _ = self.store.due_date(code)
        current = self.store.dossier(code)
        status = update.status if current is None else int(current.status)
        return basis.model_copy(
            update={"supplements": supplements, "due_at": due or update.new_due_at or basis.due_at, "status": status}
        )

"""Models of ``postal.order`` and ``postal.status`` (``schemas/packets/postal.*.xsd``)."""

from __future__ import annotations

from enum import StrEnum

from hub.dossier.validators import DossierCode, VndAmount
from hub.packets.common import Code, LongText, PacketModel, PostalParty, UtcDateTime


class Direction(StrEnum):
    """Pickup of the dossier at the citizen's address, or delivery of the result."""

    PICKUP = "pickup"
    DELIVERY = "delivery"


class PostalOrder(PacketModel):
    """``postal.order``: a pickup or delivery order; ``cod_amount`` is collected on delivery (VND)."""

    dossier_code: DossierCode
    direction: Direction
    sender: PostalParty
    receiver: PostalParty
    cod_amount: VndAmount
    description: LongText | None = None


class PostalStatus(PacketModel):
    """``postal.status``: a tracking event of a postal order (the carrier's own status code)."""

    dossier_code: DossierCode
    order_number: Code
    status_code: Code
    message: LongText
    at: UtcDateTime

"""Models of ``postal.order`` and ``postal.status`` (``schemas/packets/postal.*.xsd``)."""

from __future__ import annotations

from enum import StrEnum

from hub.dossier.validators import DossierCode, VndAmount
from hub.packets.common import Code, LongText, PacketModel, PostalParty, UtcDateTime


class Direction(StrEnum):
    """Pickup of the dossier at the citizen's address, or delivery of the result."""

    PICKUP = "pickup"
    DELIVERY = "delivery"


class PostalState(StrEnum):
    """What a tracking event means, whatever the carrier's own code: the carrier's codes are mapped per connector
    (VNPost publishes no StatusCode list; profile ``vnpost/ngsp`` value ``status_map``)."""

    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    OTHER = "other"


class PostalOrder(PacketModel):
    """``postal.order``: a pickup or delivery order; ``cod_amount`` is collected on delivery (VND).

    ``item_code`` is the waybill code the caller assigns (VNPost's ``ItemCode``, from the codes VNPost pre-issued
    to the province); without one, the hub takes the next unused code of the connector's pool. ``contents`` names
    the dossier's parts (VNPost ``SenderDesc``)."""

    dossier_code: DossierCode
    direction: Direction
    sender: PostalParty
    receiver: PostalParty
    cod_amount: VndAmount
    description: LongText | None = None
    item_code: Code | None = None
    contents: LongText | None = None


class PostalStatus(PacketModel):
    """``postal.status``: a tracking event of a postal order: the carrier's own status code and message, and what
    the hub knows with it: the canonical ``state``, the order's ``direction`` and its ``cod_amount`` (on a
    delivered event, the amount collected), the post office (``post_office``) and the carrier's notes."""

    dossier_code: DossierCode
    order_number: Code
    status_code: Code
    message: LongText
    at: UtcDateTime
    state: PostalState | None = None
    direction: Direction | None = None
    cod_amount: VndAmount | None = None
    post_office: Code | None = None
    notes: LongText | None = None

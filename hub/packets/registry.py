"""The canonical packet types: message type name -> model, root element and XSD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree
from pydantic import BaseModel

from hub.errors import Issue, PacketInvalidError, UnknownMessageTypeError
from hub.packets.citizen import CitizenLookup, CitizenRecord
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.packets.payment import PaymentReceipt, PaymentRequest
from hub.packets.postal import PostalOrder, PostalStatus
from hub.packets.schemas import load_schema

PACKET_NAMESPACE: Final[str] = "urn:lienthong:packet:1"
#: The prefix the hub writes for the packet namespace (readers accept any prefix, or none).
PACKET_PREFIX: Final[str] = "p"


@dataclass(frozen=True)
class PacketType:
    """One message type: its contract name (``dossier.sync``), model and root element's local name."""

    name: str
    model: type[BaseModel]
    root: str

    @property
    def tag(self) -> str:
        """The root element's qualified name, ``{urn:lienthong:packet:1}root``."""
        return f"{{{PACKET_NAMESPACE}}}{self.root}"

    @property
    def xsd(self) -> str:
        """The XSD's file name in ``schemas/packets``."""
        return f"{self.name}.xsd"

    @property
    def schema(self) -> etree.XMLSchema:
        """The compiled XSD (compiled on first use in each thread, then cached)."""
        return load_schema(self.xsd)


PACKET_TYPES: Final[dict[str, PacketType]] = {
    t.name: t
    for t in (
        PacketType("dossier.sync", DossierSync, "dossierSync"),
        PacketType("dossier.status", DossierStatusUpdate, "dossierStatus"),
        PacketType("citizen.lookup", CitizenLookup, "citizenLookup"),
        PacketType("citizen.record", CitizenRecord, "citizenRecord"),
        PacketType("payment.request", PaymentRequest, "paymentRequest"),
        PacketType("payment.receipt", PaymentReceipt, "paymentReceipt"),
        PacketType("postal.order", PostalOrder, "postalOrder"),
        PacketType("postal.status", PostalStatus, "postalStatus"),
    )
}
_BY_TAG: Final = {t.tag: t for t in PACKET_TYPES.values()}
_BY_MODEL: Final = {t.model: t for t in PACKET_TYPES.values()}


def packet_type(name: str) -> PacketType:
    """The packet type called ``name``; raises ``UnknownMessageTypeError`` listing the valid names."""
    try:
        return PACKET_TYPES[name]
    except KeyError:
        valid = ", ".join(sorted(PACKET_TYPES))
        raise UnknownMessageTypeError(f"unknown message type {name!r}; valid types: {valid}") from None


def packet_type_for_element(element: etree._Element) -> PacketType:
    """The packet type whose root element ``element`` is; raises ``PacketInvalidError`` (rule root-element)."""
    found = _BY_TAG.get(element.tag) if isinstance(element.tag, str) else None
    if found is None:
        raise PacketInvalidError("not a canonical packet", [root_element_issue(element)])
    return found


def packet_type_for_model(model: BaseModel | type[BaseModel]) -> PacketType:
    """The packet type of a packet model (class or instance); raises ``TypeError`` for other models."""
    cls = model if isinstance(model, type) else type(model)
    try:
        return _BY_MODEL[cls]
    except KeyError:
        raise TypeError(f"{cls.__name__} is not a canonical packet model") from None


def root_element_issue(element: etree._Element, expected: PacketType | None = None) -> Issue:
    """The issue for a root element that is not the expected packet's (or not any packet's)."""
    qname = etree.QName(element)
    found = f"<{qname.localname}>" + (f" in namespace {qname.namespace}" if qname.namespace else " (no namespace)")
    if expected is not None:
        want = f"{expected.name} expects <{expected.root}> in namespace {PACKET_NAMESPACE}"
    else:
        roots = ", ".join(f"<{t.root}>" for t in PACKET_TYPES.values())
        want = f"expected one of {roots} in namespace {PACKET_NAMESPACE}"
    return Issue(
        path=f"/{qname.localname}",
        rule="root-element",
        message=f"root element is {found}; {want}",
        line=element.sourceline,
    )

"""Model <-> XML conversion and two-stage validation (XSD first, then the pydantic/domain rules)."""

from __future__ import annotations

from lxml import etree
from pydantic import BaseModel, ValidationError

from hub.errors import Issue, PacketInvalidError, XmlRejectedError
from hub.packets import codec
from hub.packets.issues import model_issues, xsd_issues
from hub.packets.registry import (
    PACKET_NAMESPACE,
    PACKET_PREFIX,
    PacketType,
    packet_type,
    packet_type_for_model,
    root_element_issue,
)
from hub.packets.schemas import validate as xsd_validate
from hub.xmlparse import parse_xml


def to_element(model: BaseModel) -> etree._Element:
    """``model`` as its packet's root element (namespace ``urn:lienthong:packet:1``, prefix ``p``)."""
    return codec.encode(model, packet_type_for_model(model).root, PACKET_NAMESPACE, PACKET_PREFIX)


def to_xml(model: BaseModel) -> bytes:
    """``model`` as a UTF-8, pretty-printed XML document with an XML declaration."""
    return etree.tostring(to_element(model), encoding="UTF-8", xml_declaration=True, pretty_print=True)


def _check(ptype: PacketType, element: etree._Element) -> tuple[list[Issue], BaseModel | None]:
    """Issues and, when there are none, the decoded model (validated once, decoded once)."""
    if element.tag != ptype.tag:
        return [root_element_issue(element, ptype)], None
    errors = xsd_validate(ptype.schema, element)
    if errors is not None:
        return xsd_issues(errors, element), None
    try:
        return [], codec.decode(ptype.model, element)
    except ValidationError as exc:
        return model_issues(exc, element), None


def decode_element(type_name: str, element: etree._Element) -> tuple[list[Issue], BaseModel | None]:
    """``validate_element`` and ``from_element`` in one pass: the issues, and the model when there are none."""
    return _check(packet_type(type_name), element)


def validate_element(type_name: str, element: etree._Element) -> list[Issue]:
    """Every issue of ``element`` as a ``type_name`` payload ([] if valid).

    The root element is checked first, then the XSD; the model's own rules only run when the XSD passes.
    """
    return _check(packet_type(type_name), element)[0]


def validate_xml(type_name: str, data: bytes) -> list[Issue]:
    """``validate_element`` on untrusted bytes; XML that cannot be parsed safely is reported as issues."""
    ptype = packet_type(type_name)
    try:
        element = parse_xml(data)
    except XmlRejectedError as exc:
        return exc.issues
    return _check(ptype, element)[0]


def from_element(type_name: str, element: etree._Element) -> BaseModel:
    """The ``type_name`` model of ``element`` after validating it; raises ``PacketInvalidError(issues)``."""
    issues, model = _check(packet_type(type_name), element)
    if model is None:
        count = f"{len(issues)} issue" + ("s" if len(issues) != 1 else "")
        raise PacketInvalidError(f"invalid {type_name} payload ({count}; first: {issues[0]})", issues)
    return model


def read_validated(type_name: str, element: etree._Element) -> BaseModel:
    """The model of a body the hub validated when it accepted it (a stored envelope's): decoded without a second
    XSD pass, since the stored bytes are the ones that passed (``from_element`` for anything else)."""
    return codec.decode(packet_type(type_name).model, element)


def from_xml(type_name: str, data: bytes) -> BaseModel:
    """``from_element`` on untrusted bytes, parsed with the hardened parser (may raise ``XmlRejectedError``)."""
    packet_type(type_name)  # an unknown type is reported before the bytes are looked at
    return from_element(type_name, parse_xml(data))

"""The canonical packets: one XSD (``schemas/packets``) and one pydantic model per message type.

XML list convention: a list field is a wrapper element named after the field holding one item element per
entry (``<documents><document>…</document></documents>``); an empty list omits the wrapper. Optional
fields that are ``None`` are omitted. Datetimes are timezone-aware and written in UTC with ``Z``.
"""

from __future__ import annotations

from hub.packets.convert import (
    decode_element,
    from_element,
    from_xml,
    read_validated,
    to_element,
    to_xml,
    validate_element,
    validate_xml,
)
from hub.packets.examples import example
from hub.packets.registry import (
    PACKET_NAMESPACE,
    PACKET_TYPES,
    PacketType,
    packet_type,
    packet_type_for_element,
    packet_type_for_model,
)

__all__ = [
    "PACKET_NAMESPACE",
    "PACKET_TYPES",
    "PacketType",
    "decode_element",
    "example",
    "from_element",
    "from_xml",
    "packet_type",
    "packet_type_for_element",
    "packet_type_for_model",
    "read_validated",
    "to_element",
    "to_xml",
    "validate_element",
    "validate_xml",
]

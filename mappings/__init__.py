"""Mapping profiles: how a partner's own formats become canonical packets, and canonical packets partner requests.

A connector's spec names a profile per message type (``mapping: {dossier.status: ministry-steps}``; the default
is ``canonical``: the body already is the canonical packet). This package is the registry of profiles:

- ``profile_names()``: every known profile (``hub.registry.KNOWN_PROFILES`` is built from it);
- ``inbound_mapping(profile, message_type)``: the converter a sender's profile uses for one type, or ``None``;
- ``inbound_for_root(message_type, tag)``: the converter for a body whose root element is ``tag`` (what the
  worker uses to build the canonical outbound body from a stored inbound envelope);
- ``outbound_mapping(kind_or_profile, message_type)``: the converter from a canonical packet to the request data
  of a partner that does not take the envelope (the national portal's JSON record, the population DB's SOAP
  request, the payment platform's and the postal service's JSON), or ``None``.

Converters are pure functions (element in, canonical model out, no I/O, no clock), so intake and the worker map
the same bytes to the same canonical packet, and each converter is tested alone with golden files.

A profile module registers itself with ``register_inbound`` (or ``register_profile`` for a profile with no
inbound converter) and is imported at the bottom of this file; a partner kind's module registers its outbound
converters with ``register_outbound``. The worker runs an outbound converter once per delivery and hands the
adapter its result: adapters only send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree
from pydantic import BaseModel

from hub.errors import Issue, PacketInvalidError

CANONICAL = "canonical"


@dataclass(frozen=True)
class InboundMapping:
    """A partner format for one message type: its root element and its pure converter to the canonical model.

    ``to_canonical(element)`` validates the partner element (its own XSD and rules) and returns the canonical
    model, or raises ``PacketInvalidError`` whose issues name the partner's elements."""

    profile: str
    message_type: str
    root: str  # the partner root element's qualified name, {namespace}local
    to_canonical: Callable[[etree._Element], BaseModel]

    def decode(self, element: etree._Element) -> tuple[list[Issue], BaseModel | None]:
        """Every problem of ``element`` in this format, and the canonical model when there is none (one mapping
        serves both: intake validates and keeps what it mapped)."""
        try:
            return [], self.to_canonical(element)
        except PacketInvalidError as exc:
            return list(exc.issues), None

    def issues(self, element: etree._Element) -> list[Issue]:
        """Every problem of ``element`` in this format ([] if it maps to a valid canonical packet)."""
        return self.decode(element)[0]


_INBOUND: dict[str, dict[str, InboundMapping]] = {}
_BY_ROOT: dict[tuple[str, str], InboundMapping] = {}
_NAMES: set[str] = {CANONICAL}


def register_profile(name: str) -> None:
    """Make ``name`` a known profile (for a profile with outbound converters only)."""
    _NAMES.add(name)


def register_inbound(mapping: InboundMapping) -> InboundMapping:
    """Register an inbound converter; a partner root element may belong to one profile per message type."""
    owner = _BY_ROOT.get((mapping.message_type, mapping.root))
    if owner is not None and owner.profile != mapping.profile:
        raise ValueError(f"{mapping.root} for {mapping.message_type} is already mapped by profile {owner.profile!r}")
    _NAMES.add(mapping.profile)
    _INBOUND.setdefault(mapping.profile, {})[mapping.message_type] = mapping
    _BY_ROOT[(mapping.message_type, mapping.root)] = mapping
    return mapping


def profile_names() -> frozenset[str]:
    return frozenset(_NAMES)


def inbound_mapping(profile: str, message_type: str) -> InboundMapping | None:
    """The converter ``profile`` uses for ``message_type`` from its partners, ``None`` for canonical bodies."""
    return _INBOUND.get(profile, {}).get(message_type)


def inbound_for_root(message_type: str, tag: object) -> InboundMapping | None:
    """The converter for a ``message_type`` body whose root element is ``tag`` (``None``: not a partner format)."""
    return _BY_ROOT.get((message_type, tag)) if isinstance(tag, str) else None


@dataclass(frozen=True)
class OutboundMapping:
    """A partner's request format for one message type: a pure converter from the canonical model.

    ``to_partner(model)`` returns the partner's request data (JSON-ready values). Fields that name the caller or
    the moment of the call (partner codes, transaction time) are left ``None``: the adapter fills them when it
    sends, with the checksum or session they go with."""

    kind: str  # the connector kind (or mapping profile) whose adapter takes this format
    message_type: str
    to_partner: Callable[[BaseModel], object]


_OUTBOUND: dict[str, dict[str, OutboundMapping]] = {}


def register_outbound(mapping: OutboundMapping) -> OutboundMapping:
    """Register an outbound converter; one per (kind, message type)."""
    kinds = _OUTBOUND.setdefault(mapping.kind, {})
    if mapping.message_type in kinds:
        raise ValueError(f"{mapping.message_type} for {mapping.kind} already has an outbound mapping")
    kinds[mapping.message_type] = mapping
    return mapping


def outbound_mapping(kind_or_profile: str, message_type: str) -> OutboundMapping | None:
    """The converter to ``kind_or_profile``'s request for ``message_type``, ``None`` when it has none."""
    return _OUTBOUND.get(kind_or_profile, {}).get(message_type)


def outbound_types(kind_or_profile: str) -> frozenset[str]:
    """The message types ``kind_or_profile`` has outbound converters for (to say what a partner takes)."""
    return frozenset(_OUTBOUND.get(kind_or_profile, {}))


# Profiles shipped with the hub register themselves on import.
from mappings import (  # noqa: E402
    dvcqg,
    ministry_steps,
    national_portal,
    notification,
    paygov_lgsp,
    payment,
    population_db,
    postal,
)

__all__ = [
    "CANONICAL",
    "InboundMapping",
    "OutboundMapping",
    "dvcqg",
    "inbound_for_root",
    "inbound_mapping",
    "ministry_steps",
    "national_portal",
    "notification",
    "outbound_mapping",
    "outbound_types",
    "paygov_lgsp",
    "payment",
    "population_db",
    "postal",
    "profile_names",
    "register_inbound",
    "register_outbound",
    "register_profile",
]

"""The hub envelope: header model, building an unsigned envelope, reading and validating one.

Signing and verification live in ``hub.security.signing``; this module only knows the envelope's shape.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from hub.errors import EnvelopeInvalidError, Issue
from hub.xmlparse import make_parser

ENVELOPE_NAMESPACE = "urn:lienthong:envelope:1"
DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
SCHEMA_VERSION = "1.0"

_E = f"{{{ENVELOPE_NAMESPACE}}}"
ENVELOPE_TAG = f"{_E}envelope"
HEADER_TAG = f"{_E}header"
BODY_TAG = f"{_E}body"
SIGNATURE_TAG = f"{{{DSIG_NAMESPACE}}}Signature"

# Header fields in document order: (model attribute, element name).
_HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("message_id", "messageId"),
    ("correlation_id", "correlationId"),
    ("sender", "sender"),
    ("receiver", "receiver"),
    ("message_type", "messageType"),
    ("schema_version", "schemaVersion"),
    ("created_at", "createdAt"),
    ("dossier_code", "dossierCode"),
    ("user_id", "userId"),
)
_ELEMENT_OF = dict(_HEADER_FIELDS)


def _element_of(loc: tuple[int | str, ...]) -> str:
    """The header element a validation error is about (``created_at`` → ``createdAt``), for the issue's path."""
    return _ELEMENT_OF.get(str(loc[0]), str(loc[0])) if loc else ""


def new_message_id() -> str:
    """A fresh, globally unique message id."""
    return str(uuid.uuid4())


class EnvelopeHeader(BaseModel):
    """Who sends what to whom: the X-Road idea of client, service, id and userId."""

    model_config = ConfigDict(frozen=True)

    message_id: str = Field(default_factory=new_message_id)
    correlation_id: str = ""
    sender: str
    receiver: str
    message_type: str
    schema_version: str = SCHEMA_VERSION
    created_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))
    dossier_code: str | None = None
    user_id: str | None = None

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a time zone")
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is in year 10000 in UTC: a 422, never a 500
            raise PydanticCustomError(
                "datetime-range",
                "{value} is outside the range of representable instants (years 1 to 9999 in UTC)",
                {"value": value.isoformat()},
            ) from None

    def model_post_init(self, _context: object) -> None:
        if not self.correlation_id:
            object.__setattr__(self, "correlation_id", self.message_id)


class Freshness(BaseModel):
    """How old or how far ahead a message's ``createdAt`` may be when it arrives (per connector: its spec's
    ``freshness``): a replayed old message or one dated far ahead is refused, whatever its signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age_s: float = Field(7 * 24 * 3600, gt=0)  # 7 days back
    max_ahead_s: float = Field(300, ge=0)  # 5 minutes ahead: clock skew

    def check(self, header: EnvelopeHeader, now: dt.datetime) -> None:
        """Raise ``EnvelopeInvalidError`` (``message-stale`` / ``message-future``) outside the window."""
        age = (now - header.created_at).total_seconds()
        if -self.max_ahead_s <= age <= self.max_age_s:
            return
        rule, why = (
            ("message-stale", f"more than {self.max_age_s:g} s old")
            if age > 0
            else ("message-future", f"more than {self.max_ahead_s:g} s ahead")
        )
        message = f"createdAt {_format_time(header.created_at)} is {why} (hub time {_format_time(now)})"
        raise EnvelopeInvalidError(
            f"message {rule[8:]}", [Issue("/envelope/header/createdAt", rule, message)], message_id=header.message_id
        )


#: The window of a message no connector declared one for (and of ``Acceptor.check`` without one).
DEFAULT_FRESHNESS = Freshness()


def _format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


_local = threading.local()


@lru_cache(maxsize=1)
def _envelope_xsd() -> bytes:
    return resources.files("schemas").joinpath("envelope.xsd").read_bytes()


def envelope_schema() -> etree.XMLSchema:
    """The envelope XSD, compiled once per thread (an lxml validator's error log is per object)."""
    schema = getattr(_local, "schema", None)
    if schema is None:
        schema = _local.schema = etree.XMLSchema(etree.fromstring(_envelope_xsd(), parser=make_parser()))
    return schema


def build_envelope(header: EnvelopeHeader, body: etree._Element, *, move_body: bool = False) -> etree._Element:
    """An unsigned envelope element holding ``header`` and a copy of the payload ``body``.

    ``move_body=True`` moves the element instead of copying it, for a caller that discards its tree.
    """
    root = etree.Element(ENVELOPE_TAG, nsmap={"env": ENVELOPE_NAMESPACE})
    head = etree.SubElement(root, HEADER_TAG)
    for attr, name in _HEADER_FIELDS:
        value = getattr(header, attr)
        if value is None:
            continue
        text = _format_time(value) if isinstance(value, dt.datetime) else str(value)
        etree.SubElement(head, f"{_E}{name}").text = text
    body_el = etree.SubElement(root, BODY_TAG)
    body_el.append(body if move_body else etree.fromstring(etree.tostring(body), parser=make_parser()))
    return root


def peek_message_id(root: etree._Element) -> str | None:
    """The message id if the header has one, for error reports on envelopes that fail other checks."""
    el = root.find(f"{HEADER_TAG}/{_E}messageId")
    return el.text.strip() if el is not None and el.text else None


def _schema_issues(root: etree._Element) -> list[Issue]:
    schema = envelope_schema()
    if schema.validate(root):
        return []
    return [
        Issue(path=err.path or "/", rule=f"xsd:{err.type_name.lower()}", message=err.message, line=err.line)
        for err in schema.error_log
    ]


def read_header(root: etree._Element, *, validate: bool = True) -> EnvelopeHeader:
    """Read the header of a structurally valid envelope; raise ``EnvelopeInvalidError`` otherwise.

    ``validate=False`` skips the XSD check, for envelopes the hub verified when it accepted them.
    """
    if root.tag != ENVELOPE_TAG:
        raise EnvelopeInvalidError(
            f"root element is {root.tag}, expected {ENVELOPE_TAG}",
            [Issue("/", "envelope-root", f"root element must be {{{ENVELOPE_NAMESPACE}}}envelope", root.sourceline)],
        )
    issues = _schema_issues(root) if validate else []
    message_id = peek_message_id(root)
    if issues:
        raise EnvelopeInvalidError("envelope does not match envelope.xsd", issues, message_id=message_id)
    head = root.find(HEADER_TAG)
    assert head is not None  # guaranteed by the schema
    try:
        return EnvelopeHeader(**_header_values(head))
    except ValidationError as exc:
        raise EnvelopeInvalidError(
            "envelope header is invalid",
            [Issue(f"/envelope/header/{_element_of(e['loc'])}", e["type"], e["msg"]) for e in exc.errors()],
            message_id=message_id,
        ) from None


def peek_header(root: etree._Element) -> EnvelopeHeader | None:
    """The header's fields as received, neither verified nor validated (``model_construct``), for a decision that
    is taken again on the verified header, such as an early access check; ``None`` when sender or type is missing."""
    head = root.find(HEADER_TAG) if root.tag == ENVELOPE_TAG else None
    if head is None:
        return None
    # Unvalidated on purpose: model_construct keeps the text as received (created_at stays a string).
    values: dict[str, Any] = {attr: text for attr, text in _header_values(head).items() if text}
    if "sender" not in values or "message_type" not in values:
        return None
    return EnvelopeHeader.model_construct(**values)


def _header_values(head: etree._Element) -> dict[str, str]:
    """The header's fields by attribute name, their text stripped (elements without text left out)."""
    values = {}
    for attr, name in _HEADER_FIELDS:
        el = head.find(f"{_E}{name}")
        if el is not None and el.text is not None:
            values[attr] = el.text.strip()
    return values


def body_payload(root: etree._Element) -> etree._Element:
    """The canonical payload element inside the body."""
    body = root.find(BODY_TAG)
    children = [] if body is None else [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise EnvelopeInvalidError(
            "envelope body must hold exactly one payload",
            [Issue("/envelope/body", "body-one-payload", f"found {len(children)} payload elements")],
            message_id=peek_message_id(root),
        )
    return children[0]


#: Checks an envelope's payload given its (signed) header: the issues found, paths relative to the payload.
PayloadCheck = Callable[[EnvelopeHeader, etree._Element], list[Issue]]


def validate_envelope(
    root: etree._Element, payload_check: PayloadCheck | None = None
) -> tuple[EnvelopeHeader, list[Issue]]:
    """Check the envelope, its header and its payload against their schemas and against each other.

    ``payload_check`` replaces the canonical packet validation of the body (a sender whose mapping profile
    sends its own format); the header checks are the same either way. Returns the header and the list of
    issues found (empty when valid). Raises ``EnvelopeInvalidError`` only when the envelope is too broken to
    read a header from.
    """
    from hub import packets  # the packet registry imports heavier modules; keep envelope import light

    header = read_header(root)
    payload = body_payload(root)
    issues: list[Issue] = []
    if header.schema_version != SCHEMA_VERSION:
        issues.append(
            Issue(
                "/envelope/header/schemaVersion",
                "schema-version",
                f"schema version {header.schema_version} is not supported (this hub speaks {SCHEMA_VERSION})",
            )
        )
    if header.message_type not in packets.PACKET_TYPES:
        issues.append(
            Issue(
                "/envelope/header/messageType",
                "message-type",
                f"unknown message type {header.message_type!r}; known: {', '.join(sorted(packets.PACKET_TYPES))}",
            )
        )
        return header, issues
    found = (
        packets.validate_element(header.message_type, payload)
        if payload_check is None
        else payload_check(header, payload)
    )
    issues.extend(Issue(f"/envelope/body{i.path}", i.rule, i.message, i.line) for i in found)
    if header.dossier_code is not None:
        body_code = payload.find(f"{{{packets.PACKET_NAMESPACE}}}dossierCode")
        if body_code is not None and (body_code.text or "").strip() != header.dossier_code:
            issues.append(
                Issue(
                    "/envelope/header/dossierCode",
                    "dossier-code-matches-body",
                    f"header names dossier {header.dossier_code} but the body is about {body_code.text}",
                )
            )
    return header, issues

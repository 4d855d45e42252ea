"""Exception classes and the structured ``Issue`` every rejection carries.

Every rejection names the field (``path``), the rule that was broken and, where known, the message id,
so a partner can act on it without reading hub logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a packet: where it is, which rule it breaks, and a readable message."""

    path: str
    rule: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "rule": self.rule, "message": self.message, "line": self.line}


class LienthongError(Exception):
    """Base class of every error the hub raises on purpose."""


class RejectedError(LienthongError):
    """Input was refused. Carries the issues found and the message id when it could be read."""

    default_rule = "rejected"

    def __init__(
        self,
        message: str,
        issues: Iterable[Issue] = (),
        *,
        message_id: str | None = None,
    ) -> None:
        self.issues: list[Issue] = list(issues) or [Issue(path="/", rule=self.default_rule, message=message)]
        self.message_id = message_id
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (message id {self.message_id})" if self.message_id else text


class XmlRejectedError(RejectedError):
    """The bytes are not acceptable XML: malformed, too large, too deep, or carrying a DTD/entities."""

    default_rule = "xml-wellformed"


class PacketInvalidError(RejectedError):
    """A canonical payload breaks its XSD or a domain rule."""

    default_rule = "schema"


class UnknownMessageTypeError(LienthongError, KeyError):
    """The message type is not one of the canonical packet types."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown message type"


class EnvelopeInvalidError(RejectedError):
    """The envelope's structure or header is invalid."""

    default_rule = "envelope"


class SignatureRejectedError(RejectedError):
    """The envelope's signature, certificate or signing policy check failed."""

    default_rule = "signature"


class AccessDeniedError(RejectedError):
    """The authenticated caller may not send this message (type not granted, not its own sender code, …)."""

    default_rule = "forbidden"


class KeyMaterialError(LienthongError):
    """A key or certificate file could not be loaded or does not meet the signing policy."""


class TransitionError(LienthongError):
    """A dossier status update is not allowed by the status machine."""

"""Every error the hub raises on purpose, in one tree, and the structured ``Issue`` every rejection carries.

::

    LienthongError
    ├── RejectedError                 input refused; ``issues`` name path + rule, ``kind`` says what sort
    │   ├── XmlRejectedError          xml-*            (malformed, or too-large past the size limit)
    │   ├── PacketInvalidError        schema
    │   ├── EnvelopeInvalidError      envelope
    │   ├── SignatureRejectedError    signature
    │   ├── UnauthenticatedError      api-key-*        (unauthenticated)
    │   ├── AccessDeniedError         forbidden
    │   ├── NoRouteError              no-route
    │   ├── InvalidCursorError        cursor           (a page cursor this hub did not hand out)
    │   ├── AccountRefusedError       account-*        (an operator account change: invalid, exists, unknown)
    │   ├── ConflictError             idempotency-conflict (conflict)
    │   ├── StatusTransitionError     status-transition (the status machine and the pipeline)
    │   ├── CorrectionRefusedError    correction-* / dossier-unknown / reason-required (an operator's correction)
    │   ├── ReceiptRejected           receipt-*        (a bank receipt's signature)
    │   ├── DocumentSignatureRejected <purpose>-*      (a signed PDF or XML document: a result, a receipt)
    │   ├── PaymentRefusedError       the payment CONFIRM checks (kind + the platform's MaLoi code)
    │   ├── PartnerUnavailableError   partner-unavailable / partner-refused (bad-gateway)
    │   ├── PartnerTimeoutError       partner-timeout  (gateway-timeout)
    │   └── SpecInvalidError          connector-spec   (also a RegistryError)
    ├── RuleViolation                 a named domain rule (also ValueError: raised inside pydantic validators)
    ├── DsigError                     a signature check, by rule (becomes a SignatureRejectedError)
    ├── KeyMaterialError              a key or certificate file
    ├── UnknownMessageTypeError       (also KeyError)
    ├── ConfigError                   a setting that cannot be used (also ValueError)
    ├── RoutingError                  the routing file
    ├── UnknownDestinationError       an operator action names no routed destination (also LookupError)
    ├── MappingError                  canonical ⇄ partner format (also ValueError)
    │   ├── NoOutboundMappingError    the destination's format has no mapping for the type
    │   ├── UnknownProfileError       a partner profile reference or file (mappings.profiles)
    │   ├── ProfileValueError         a profile value unset or unknown (mappings.profiles)
    │   ├── UnknownAreaError          an area code VNPost's tables lack (mappings.postal): vnpost-area-*
    │   └── NotificationTemplateError a citizen notification template that does not compile or render
    ├── MissingCredentialsError       a partner configured without endpoint.credentials
    ├── CatalogueError                the procedure catalogue could not be read (the portal's refusal, a bad reply)
    │   ├── CatalogueUnavailableError no connector, or its profile has no sourced catalogue (dvcqg/proxy)
    │   ├── CatalogueBusyError        another sync holds the store-wide lease (or this one lost it)
    │   └── CatalogueShrinkError      the list read is empty or less than half the catalogue: kept (--allow-shrink)
    ├── ArchiveError                  a message-log archive cannot be written or read (exists, unreadable manifest)
    │   └── ArchiveMismatchError      an archive differs from its manifest (``differences`` name what)
    ├── RegistryError
    │   ├── SpecInvalidError, UnknownConnectorError (also KeyError)
    │   └── CertificateError          certificate / key-policy / certificate-pinned-elsewhere
    └── StoreError
        ├── StoreUnavailableError     the database cannot be reached (or is locked) now: try again later
        ├── UnknownDeliveryError, UnknownDeadLetterError   (also LookupError)
        ├── DeliveryClosedError, AlreadyReplayedError, DeadLetterClosedError
        ├── NotRetryingError          "retry now" for a message with no delivery waiting for a retry
        ├── RefundExceedsPaidError    a refund would take a payment's refunded total above what was paid
        ├── DestinationPausedError, DestinationNotPausedError   pause twice / resume what is not paused
        └── ItemCodeError             a postal order's ItemCode: item-code-pool-empty / item-code-in-use

Lower layers keep their own roots, for what crosses their interface: ``broker.base.BrokerError``
(``BrokerUnavailable``) and ``adapters.base.DeliveryError`` (``TransientDeliveryError`` /
``PermanentDeliveryError``, which decide whether the worker retries). Only ``hub.api.problems`` turns a
``RejectedError`` into an HTTP answer: ``kind`` picks the status, ``issues`` become ``errors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


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
    """Input was refused: the one base of errors that carry a rule name, so a partner can act without our logs.

    ``rule`` is the first issue's rule (``default_rule`` when no issue is given); ``kind`` is the sort of refusal
    (the vocabulary of ``hub.api.problems.KINDS``: ``invalid``, ``forbidden``, ``conflict``…)."""

    default_rule: ClassVar[str] = "rejected"
    default_kind: ClassVar[str] = "invalid"

    def __init__(
        self,
        message: str,
        issues: Iterable[Issue] = (),
        *,
        message_id: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.issues: list[Issue] = list(issues) or [Issue(path="/", rule=rule or self.default_rule, message=message)]
        self.message_id = message_id
        super().__init__(message)

    @property
    def rule(self) -> str:
        return self.issues[0].rule

    @property
    def kind(self) -> str:
        return self.default_kind

    @property
    def detail(self) -> str:
        """The message without the message id (``str()`` appends it)."""
        return str(self.args[0]) if self.args else self.default_rule

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (message id {self.message_id})" if self.message_id else text


class XmlRejectedError(RejectedError):
    """The bytes are not acceptable XML: malformed, too large, too deep, or carrying a DTD/entities."""

    default_rule = "xml-wellformed"

    @property
    def kind(self) -> str:
        return "too-large" if any(i.rule == "xml-max-size" for i in self.issues) else "malformed"


class PacketInvalidError(RejectedError):
    """A canonical payload breaks its XSD or a domain rule."""

    default_rule = "schema"


class EnvelopeInvalidError(RejectedError):
    """The envelope's structure or header is invalid."""

    default_rule = "envelope"


class SignatureRejectedError(RejectedError):
    """The envelope's signature, certificate or signing policy check failed."""

    default_rule = "signature"


class UnauthenticatedError(RejectedError):
    """No API key was sent, or it is unknown or its connector disabled."""

    default_rule = "api-key-required"
    default_kind = "unauthenticated"


class AccessDeniedError(RejectedError):
    """The authenticated caller may not do this (type not granted, not its own sender code, wrong role…)."""

    default_rule = "forbidden"
    default_kind = "forbidden"


class InvalidCursorError(RejectedError):
    """A page cursor this hub did not hand out (``hub.store.pages``)."""

    default_rule = "cursor"


class AccountRefusedError(RejectedError):
    """An operator account change refused (``hub.store.accounts``): ``account-name``, ``account-role`` or
    ``account-password`` (invalid); ``account-exists``, ``account-disabled``, ``account-enabled`` (conflict: the
    change is made already); ``account-unknown`` (not found)."""

    default_rule = "account"

    @property
    def kind(self) -> str:
        return "not-found" if self.rule == "account-unknown" else "invalid" if self.rule in _INVALID else "conflict"


_INVALID = ("account", "account-name", "account-role", "account-password")


class NoRouteError(RejectedError):
    """Nobody is configured to receive this message type from this sender."""

    default_rule = "no-route"


class ConflictError(RejectedError):
    """The same message id was accepted before with different content."""

    default_rule = "idempotency-conflict"
    default_kind = "conflict"


class StatusTransitionError(RejectedError):
    """A dossier status update the status machine refuses (an illegal transition); nothing is queued."""

    default_rule = "status-transition"


class CorrectionRefusedError(RejectedError):
    """An operator's status correction refused (``hub.services.corrections``): ``dossier-unknown`` (not found: no
    status was ever applied), ``correction-unchanged`` (conflict: the dossier has that status already),
    ``correction-stale`` (conflict: recorded, not applied — the dossier's last update is later), ``reason-required``
    and ``status-code`` (malformed)."""

    default_rule = "correction"

    @property
    def kind(self) -> str:
        if self.rule == "dossier-unknown":
            return "not-found"
        return "conflict" if self.rule in ("correction-unchanged", "correction-stale") else "malformed"


class ReceiptRejected(RejectedError):
    """A bank receipt cannot be had (``receipt-unavailable``), or a refund's XML receipt is unsigned, signed by a
    certificate not registered for the connector, or altered (a payment's e-receipt that breaks the receipt rule is
    a ``DocumentSignatureRejected``)."""

    default_rule = "receipt-signature"


class DocumentSignatureRejected(RejectedError):
    """A document that must carry a registered signer's signature does not (``hub.security.pdf_signatures``,
    ``hub.security.signed_documents``); the rule names the purpose and the check: ``result-unsigned``,
    ``receipt-signer-not-registered``… ``report`` is what the check found (a ``DocumentSignature``)."""

    default_rule = "document-signature"

    def __init__(self, message: str, *, rule: str, report: object = None) -> None:
        super().__init__(message, rule=rule)
        self.report = report


class PaymentRefusedError(RejectedError):
    """A payment platform's CONFIRM failed one of the checks (``hub.flows.payments``); recorded before raised.

    ``code`` is the platform's ``MaLoi`` (or PayGov's ``error_code``) for the answer, ``reference`` the payment
    reference when it was read; ``kind`` says what sort of refusal it is (``declined``: the platform's own failure
    report). The callback is answered HTTP 200 in the platform's format whatever the kind."""

    default_rule = "payment-refused"

    def __init__(self, kind: str, code: str, rule: str, reason: str, reference: str | None = None) -> None:
        super().__init__(reason, rule=rule)
        self._kind, self.code, self.reason, self.reference = kind, code, reason, reference

    @property
    def kind(self) -> str:
        return self._kind


class PartnerUnavailableError(RejectedError):
    """A synchronous partner call failed (the partner is down, failing, or refused the call)."""

    default_rule = "partner-unavailable"
    default_kind = "bad-gateway"


class PartnerTimeoutError(RejectedError):
    """A synchronous partner call did not answer in time."""

    default_rule = "partner-timeout"
    default_kind = "gateway-timeout"


class RuleViolation(LienthongError, ValueError):
    """A value breaks a named domain rule; ``rule`` is stable, ``message`` is for people.

    A ``ValueError`` too: raised inside pydantic validators, it becomes a validation error with the rule name."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


class DsigError(LienthongError):
    """A signature outside the profile or one that does not verify; ``rule`` names the check that failed
    (``hub.security.signing`` turns it into a ``SignatureRejectedError``)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class KeyMaterialError(LienthongError):
    """A key or certificate file could not be loaded or does not meet the signing policy."""


class UnknownMessageTypeError(LienthongError, KeyError):
    """The message type is not one of the canonical packet types."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown message type"


class ConfigError(LienthongError, ValueError):
    """A setting cannot be used as given (e.g. a malformed operator account)."""


class RoutingError(LienthongError):
    """The routing file is missing or invalid."""


class MappingError(LienthongError, ValueError):
    """A canonical packet cannot be put into a partner's format, or a partner's message read back into one."""


class NoOutboundMappingError(MappingError):
    """The destination's adapter takes a partner format that has no mapping for this message type."""


class NotificationTemplateError(MappingError):
    """A citizen notification template (``mappings.notification``) that does not compile, or does not render
    (a name it uses is not one the hub gives templates); ``name`` is the template's (``intake.email``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"notification template {name}: {message}")
        self.name = name


class MissingCredentialsError(LienthongError):
    """A partner that logs in or signs its calls is configured without ``endpoint.credentials``."""


# ---------------------------------------------------------------------------------------------- the registry


class CatalogueError(LienthongError):
    """The national portal's procedure catalogue could not be read: a refused login or call, a malformed reply."""


class CatalogueUnavailableError(CatalogueError):
    """No connector to read the catalogue from, or one whose profile has no sourced catalogue service."""


class CatalogueBusyError(CatalogueError):
    """Another catalogue sync (another process or host) holds the store-wide lease, or this one lost it."""


class CatalogueShrinkError(CatalogueError):
    """A sync read an empty procedure list, or one less than half the catalogue's: the catalogue is kept."""


class ArchiveError(LienthongError):
    """A message-log archive (``hub log archive`` / ``hub log verify``) cannot be written or read: the file exists
    already, or it or its manifest is missing or not one."""


class ArchiveMismatchError(ArchiveError):
    """An archive differs from its manifest; ``differences`` names each record (or the file) that does."""

    def __init__(self, path: str, differences: Iterable[str]) -> None:
        self.path = path
        self.differences = list(differences)
        super().__init__(f"{path} differs from its manifest: " + "; ".join(self.differences[:5]))


class RegistryError(LienthongError):
    """Base class of the connector registry's errors."""


class SpecInvalidError(RegistryError, RejectedError):
    """A connector declaration is invalid; ``issues`` lists every problem (path, rule, message, line)."""

    default_rule = "connector-spec"


class UnknownConnectorError(RegistryError, KeyError):
    """No connector is registered under that code."""

    def __str__(self) -> str:
        return f"no connector {self.args[0]!r} is registered" if self.args else "unknown connector"


class CertificateError(RegistryError):
    """A certificate given to the registry cannot be loaded (rule ``certificate``) or breaks the signing key
    policy (rule ``key-policy``)."""

    def __init__(self, message: str, rule: str = "certificate") -> None:
        self.rule = rule
        super().__init__(message)


# ---------------------------------------------------------------------------------------------- the store


class StoreError(LienthongError):
    """Base class of the store's own errors."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached, lost the connection, or stayed locked: nothing was written by the failed
    statement's transaction, and the same call may succeed later (the API answers 503 with ``Retry-After``, the
    worker backs off). Raised in place of the driver's error by ``hub.store.database``.

    ``message_id``: the message whose acceptance it stopped, when the caller knows it (the API's 503 names it)."""

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        self.message_id = message_id
        super().__init__(message)


class RefundExceedsPaidError(StoreError):
    """Confirming a refund would take the paid payment's refunded total above what was paid: the refund's own
    transaction is rolled back (``hub.store.flow_records.confirm_refund``)."""


class UnknownDeliveryError(StoreError, LookupError):
    """No delivery has this id."""

    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"unknown delivery {delivery_id}")


class DeliveryClosedError(StoreError):
    """The delivery is in a state that does not allow the requested change (e.g. it was already delivered)."""

    def __init__(self, delivery_id: int, state: str, action: str) -> None:
        self.delivery_id = delivery_id
        self.state = state
        super().__init__(f"delivery {delivery_id} is {state}; cannot {action}")


class UnknownDeadLetterError(StoreError, LookupError):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: int) -> None:
        self.dead_letter_id = dead_letter_id
        super().__init__(f"unknown dead letter {dead_letter_id}")


class AlreadyReplayedError(StoreError):
    """The dead letter was replayed before; a dead letter is replayed at most once."""

    def __init__(self, dead_letter_id: int, replayed_by: str | None, replayed_at: datetime | None) -> None:
        self.dead_letter_id = dead_letter_id
        self.replayed_by = replayed_by
        self.replayed_at = replayed_at
        when = replayed_at.isoformat() if replayed_at else "?"
        super().__init__(f"dead letter {dead_letter_id} was already replayed by {replayed_by} at {when}")


class DeadLetterClosedError(StoreError):
    """The dead letter was closed by an operator (no resend); a closed dead letter is not replayed or closed again."""

    def __init__(self, dead_letter_id: int, closed_by: str | None, closed_at: datetime | None) -> None:
        self.dead_letter_id = dead_letter_id
        self.closed_by = closed_by
        self.closed_at = closed_at
        when = closed_at.isoformat() if closed_at else "?"
        super().__init__(f"dead letter {dead_letter_id} was closed by {closed_by} at {when}")


class NotRetryingError(StoreError):
    """Retry now asked for a message none of whose deliveries waits for a retry (delivered, dead, or under way)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}: no delivery waits for a retry")


class DestinationPausedError(StoreError):
    """The destination is paused already (by whom, since when)."""

    def __init__(self, destination: str, paused_by: str, paused_at: datetime) -> None:
        self.destination = destination
        self.paused_by = paused_by
        self.paused_at = paused_at
        super().__init__(f"{destination} is paused already (by {paused_by} at {paused_at.isoformat()})")


class DestinationNotPausedError(StoreError):
    """Resume asked for a destination that is not paused."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        super().__init__(f"{destination} is not paused")


class UnknownDestinationError(LienthongError, LookupError):
    """An operator action (pause, resume, retry now) names a destination the hub does not route to."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        super().__init__(f"no destination {destination!r} is routed")


class ItemCodeError(StoreError):
    """A postal order's waybill code (VNPost ``ItemCode``) cannot be had: ``rule`` is ``item-code-pool-empty``
    (every pre-issued code is used: the order waits) or ``item-code-in-use`` (the code serves another order)."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(f"{message} [{rule}]")

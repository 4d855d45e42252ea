"""What the hub proves about a signed document — a dossier's result (Quảng Nam Điều 16.3), a payment receipt
(Quảng Nam Điều 14.3) — and the rule it names when it cannot; and signed XML documents, checked with the hub's own
XML-DSig verifier (``hub.security.dsig``, the envelope profile, on any root element). PDFs: ``pdf_signatures``.

**Trust** is the hub's one rule, ``TrustStore.check``, for the code the document must be signed for (the
``signer``): when the store pins certificates for that code, only those sign; else a certificate an anchor issued
whose subject ``serialNumber`` names the code. Callers pin the certificates registered for the purpose
(``registered``): a result's competent agency (``result_signers`` of the ministry's connector), a payment
intermediary's receipt certificate. No revocation is fetched (no OCSP, no CRL, no AIA: the hub makes no network
call to check a signature); a compromised signer is stopped by removing its certificate from the registry.

**Rules** are ``<purpose>-<check>`` (``result-unsigned``, ``receipt-signer-not-registered``…), at most 32
characters (a dead letter's reason):

==========================  =====================================================================================
``<purpose>-too-large``      larger than the caller's limit (checked before anything is parsed)
``<purpose>-not-a-pdf``      neither a PDF nor an XML document, or one that cannot be read (encrypted, broken)
``<purpose>-malformed``      an XML document that is not well-formed or breaks the hardened parser's limits
``<purpose>-unsigned``       no signature at all
``<purpose>-signature-invalid``  a signature that does not verify: the document was changed after signing, a
                             broken signature, or the registered signer's signature followed by other changes
``<purpose>-signer-not-registered``  valid signatures, none by a certificate the trust rule accepts for the signer
``<purpose>-unavailable``    (callers that fetch the document) it could not be had: missing, refused, gone
``<purpose>-digest-mismatch``  (callers that were given its SHA-256) the bytes are not the document named
==========================  =====================================================================================
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hub.errors import DocumentSignatureRejected, DsigError, KeyMaterialError, LienthongError, SignatureRejectedError
from hub.security import dsig, keys
from hub.security.signing import TrustStore, check_key_policy
from hub.xmlparse import XmlLimits, parse_xml, parser

TOO_LARGE = "too-large"
NOT_A_PDF = "not-a-pdf"
MALFORMED = "malformed"
UNSIGNED = "unsigned"
SIGNATURE_INVALID = "signature-invalid"
SIGNER_NOT_REGISTERED = "signer-not-registered"
UNAVAILABLE = "unavailable"
DIGEST_MISMATCH = "digest-mismatch"
HOST_NOT_ALLOWED = "host-not-allowed"  # the link's host is not one the sender's connector allows: never fetched
CHECKS = (TOO_LARGE, NOT_A_PDF, MALFORMED, UNSIGNED, SIGNATURE_INVALID, SIGNER_NOT_REGISTERED, UNAVAILABLE,
          DIGEST_MISMATCH, HOST_NOT_ALLOWED)  # fmt: skip

#: A purpose names what the document is for: lower-case letters, short enough for every rule to fit 32 characters.
PURPOSE_PATTERN = re.compile(r"[a-z]{1,10}")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # a signed result or receipt is a few hundred KB; scans stay below this


def rule(purpose: str, check: str) -> str:
    """The rule name for ``check`` failing on a document for ``purpose`` (``rule("result", UNSIGNED)``)."""
    if not PURPOSE_PATTERN.fullmatch(purpose):
        raise ValueError(f"purpose {purpose!r} must be 1-10 lower-case letters")
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}")
    return f"{purpose}-{check}"


def rules(purpose: str) -> frozenset[str]:
    """Every rule a document for ``purpose`` can fail with."""
    return frozenset(rule(purpose, check) for check in CHECKS)


def registered(signer: str, certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> TrustStore:
    """A trust store in which only ``certificates`` sign for ``signer`` (the certificates registered for the
    purpose); none at all when the list is empty."""
    store = TrustStore()
    for cert in certificates:
        store.pin(signer, cert)
    return store


@dataclass(frozen=True, slots=True)
class DocumentSignature:
    """What a check found in one document. ``valid``: it carries an intact signature by a certificate the trust
    rule accepts for ``signer``, and nothing changed the document after it; otherwise ``rule`` and ``reason`` say
    why. The signer fields describe the accepted signature (or, when none was accepted, the first one read).

    ``signing_time`` is the time stamp's when ``timestamped`` (a trusted RFC 3161 token), else the time the
    signer claims (not proven). ``digest_intact``: the signed bytes hash to the signed digest.
    ``covers_whole_document``: nothing follows the signature in the file (an XML enveloped signature over
    ``URI=""`` always covers the whole document). ``modification``: pyHanko's diff analysis of what follows it
    (``NONE``, ``LTA_UPDATES``, ``FORM_FILLING``, ``ANNOTATIONS``, ``OTHER``)."""

    purpose: str
    signer: str
    format: str  # "pdf" | "xml" | "unknown"
    sha256: str
    size: int
    valid: bool
    rule: str | None = None
    reason: str = ""
    signatures: int = 0
    signer_subject: str | None = None
    signer_name: str | None = None
    signer_fingerprint: str | None = None
    trusted_as: str | None = None
    signing_time: dt.datetime | None = None
    timestamped: bool = False
    digest_intact: bool = False
    covers_whole_document: bool = False
    modification: str | None = None

    def require(self) -> DocumentSignature:
        """This report when valid, else ``DocumentSignatureRejected`` with its rule (and this report)."""
        if self.valid:
            return self
        assert self.rule is not None
        raise DocumentSignatureRejected(f"{self.purpose} document: {self.reason}", rule=self.rule, report=self)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times ISO 8601)."""
        data = asdict(self)
        data["signing_time"] = None if self.signing_time is None else self.signing_time.isoformat()
        return data


def blank(data: bytes, *, purpose: str, signer: str, fmt: str) -> DocumentSignature:
    """The report of a document nothing was proved about yet (invalid, no rule): checks fill it in with
    ``dataclasses.replace``."""
    rule(purpose, UNSIGNED)  # the purpose is checked once, here
    return DocumentSignature(purpose, signer, fmt, hashlib.sha256(data).hexdigest(), len(data), valid=False)


def failed(report: DocumentSignature, check: str, reason: str, **found: Any) -> DocumentSignature:
    """``report`` refused by ``check`` for ``reason``, with what was found on the way."""
    return replace(report, valid=False, rule=rule(report.purpose, check), reason=reason, **found)


def signer_fields(cert: x509.Certificate) -> dict[str, Any]:
    """The report's description of a signing certificate."""
    return {
        "signer_subject": cert.subject.rfc4514_string(),
        "signer_name": keys.common_name(cert),
        "signer_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
    }


def trust_check(trust: TrustStore, cert: x509.Certificate, signer: str, at: dt.datetime) -> tuple[str | None, str]:
    """(how the trust rule accepts ``cert`` for ``signer`` at ``at``, "") or (None, why not); the key policy too."""
    try:
        trusted_as = trust.check(cert, signer, at)
        check_key_policy(cert.public_key(), "signing certificate")
    except SignatureRejectedError as exc:
        return None, exc.detail
    except KeyMaterialError as exc:
        return None, str(exc)
    return trusted_as, ""


def too_large(report: DocumentSignature, max_bytes: int) -> DocumentSignature | None:
    """The refusal of a document over ``max_bytes`` (``None`` when it is within the limit)."""
    if report.size <= max_bytes:
        return None
    return failed(report, TOO_LARGE, f"{report.size} bytes, more than the {max_bytes} accepted")


# ---------------------------------------------------------------------------------------------- signed XML

_KEY_CERT = f"{{{dsig.DSIG}}}KeyInfo/{{{dsig.DSIG}}}X509Data/{{{dsig.DSIG}}}X509Certificate"


def inspect_xml(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """Check a signed XML document: one enveloped XML-DSig signature in the hub's profile (``dsig``: the last child
    of the root, ``URI=""``, exclusive C14N, SHA-256, RSA-2048+/P-256) by a certificate the trust rule accepts for
    ``signer`` at ``at`` (default now). Parsed by the hub's hardened parser (no DTD, no entities, no network).
    Never raises for what the document holds: the report says (``require`` raises)."""
    report = blank(data, purpose=purpose, signer=signer, fmt="xml")
    refused = too_large(report, max_bytes)
    if refused is not None:
        return refused
    try:
        root = parse_xml(data, XmlLimits(max_bytes=max_bytes))
    except LienthongError as exc:
        return failed(report, MALFORMED, f"not a well-formed XML document: {exc}")
    signatures = list(root.iter(dsig.SIGNATURE_TAG))
    if not signatures:
        return failed(report, UNSIGNED, "the document carries no XML signature")
    if len(signatures) > 1:
        return failed(report, SIGNATURE_INVALID, f"exactly one signature expected, found {len(signatures)}",
                      signatures=len(signatures))  # fmt: skip
    cert_el = signatures[0].find(_KEY_CERT)
    if cert_el is None:
        return failed(report, SIGNATURE_INVALID, "the signature carries no X.509 certificate", signatures=1)
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join((cert_el.text or "").split()), validate=True))
    except (binascii.Error, ValueError):
        return failed(report, SIGNATURE_INVALID, "the signature's certificate cannot be read", signatures=1)
    found = {"signatures": 1, **signer_fields(cert)}
    try:
        dsig.verify_enveloped(root, cert, parser())
    except DsigError as exc:
        return failed(report, SIGNATURE_INVALID, f"{exc} [{exc.rule}]", **found)
    trusted_as, why = trust_check(trust, cert, signer, at or dt.datetime.now(dt.UTC))
    if trusted_as is None:
        return failed(report, SIGNER_NOT_REGISTERED, f"signed by {keys.common_name(cert)}: {why}", digest_intact=True,
                      covers_whole_document=True, **found)  # fmt: skip
    return replace(report, valid=True, trusted_as=trusted_as, digest_intact=True, covers_whole_document=True,
                   modification="NONE", **found)  # fmt: skip


def verify_xml(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """``inspect_xml`` that raises ``DocumentSignatureRejected`` unless the document is valid."""
    return inspect_xml(data, trust=trust, signer=signer, purpose=purpose, max_bytes=max_bytes, at=at).require()

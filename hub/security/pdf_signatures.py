"""PDF signatures, validated with pyHanko: does this PDF carry an intact signature by the certificate registered
for it, and was nothing changed after that signature? Used for a dossier's result documents (Quảng Nam Điều 16.3,
``hub.exchange.results``) and, later, payment receipts (``GET_BILL``; Quảng Nam Điều 14.3).

The decision, in this order (rules ``<purpose>-<check>``, see ``hub.security.signed_documents``):

1. at most ``max_bytes`` (``too-large``), checked before anything is parsed;
2. a PDF header in the first KB, readable by pyHanko's strict reader with its limits for untrusted documents
   (decompression bombs), not encrypted (``not-a-pdf``);
3. at least one signature (``/Sig``; document time stamps do not count) (``unsigned``);
4. every signature intact (the signed byte ranges hash to the signed digest) and cryptographically valid — one
   broken signature means the document was changed (``signature-invalid``);
5. one of them by a certificate the hub's trust rule accepts for ``signer`` (``TrustStore.check``, with
   pyHanko's path validation to the same roots and its key-usage check for signatures) (``signer-not-registered``);
6. that signature covers the whole file, or only validation data (a DSS, document time stamps) follows it
   (pyHanko's diff analysis: ``ModificationLevel.LTA_UPDATES`` at most) (``signature-invalid``).

No network: the validation context has fetching off, so no OCSP, CRL or AIA request is ever made (revocation
"soft-fail" with no data: not checked; a signer is revoked by removing its certificate from the registry).
Certificates are judged at ``at`` (default now), as the hub's envelopes are.

pyHanko is asynchronous; ``inspect_pdf``/``verify_pdf`` run it with ``asyncio.run`` and so must not be called
from a running event loop (use ``ainspect_pdf``/``averify_pdf`` there, or a thread).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from dataclasses import replace
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from hub.security import keys
from hub.security.signed_documents import (
    DEFAULT_MAX_BYTES,
    NOT_A_PDF,
    SIGNATURE_INVALID,
    SIGNER_NOT_REGISTERED,
    UNSIGNED,
    DocumentSignature,
    blank,
    failed,
    registered,
    signer_fields,
    too_large,
    trust_check,
)
from hub.security.signing import TrustStore

log = logging.getLogger(__name__)
# pyHanko logs every path it cannot build and every unexplained change as a warning with a traceback; the report
# carries the reason, and a document signed by someone else is an expected outcome here, not a fault to log.
logging.getLogger("pyhanko").setLevel(logging.ERROR)

PDF_MAGIC = b"%PDF-"
HEADER_WINDOW = 1024  # ISO 32000 readers accept the header anywhere in the first KB
MAX_SIGNATURES = 16  # more than any real result or receipt carries; each costs a diff analysis
#: What may follow the registered signer's signature: nothing, or validation data (DSS, document time stamps).
ALLOWED_AFTER = ModificationLevel.LTA_UPDATES


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _crypto(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _roots(trust: TrustStore, signer: str) -> list[asn1_x509.Certificate]:
    """pyHanko's trust roots for the same rule: the certificates pinned for ``signer`` when it has any (a pinned
    end-entity certificate is its own root), else the anchors."""
    pinned = trust.pinned.get(signer, [])
    return [_asn1(cert) for cert in (pinned or trust.anchors)]


def _signing_time(status: PdfSignatureStatus) -> tuple[dt.datetime | None, bool]:
    stamp = status.timestamp_validity
    if stamp is not None and stamp.valid and stamp.intact and stamp.trusted:
        return stamp.timestamp, True
    return status.signer_reported_dt, False


def _found(status: PdfSignatureStatus, cert: x509.Certificate) -> dict[str, Any]:
    """What a signature's status tells the report."""
    signing_time, timestamped = _signing_time(status)
    level = status.modification_level
    return {
        **signer_fields(cert),
        "signing_time": signing_time,
        "timestamped": timestamped,
        "digest_intact": bool(status.intact),
        "covers_whole_document": status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        "modification": None if level is None else level.name,
    }


def _unchanged_after(status: PdfSignatureStatus) -> bool:
    """Nothing but validation data follows the signature, and no certification (DocMDP) rule is broken."""
    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return True
    level = status.modification_level
    return level is not None and level <= ALLOWED_AFTER and status.docmdp_ok is not False


async def ainspect_pdf(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """Check the signatures of a PDF (see the module's order of checks); never raises for what the document holds:
    the report says (``DocumentSignature.require`` raises ``DocumentSignatureRejected``)."""
    report = blank(data, purpose=purpose, signer=signer, fmt="pdf")
    refused = too_large(report, max_bytes)
    if refused is not None:
        return refused
    if PDF_MAGIC not in data[:HEADER_WINDOW]:
        return failed(report, NOT_A_PDF, "the document is not a PDF (no %PDF- header)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=True)
        encrypted = reader.encrypted
        signatures = [] if encrypted else list(reader.embedded_regular_signatures)
    except Exception as exc:  # hostile input may break the reader anywhere: it is not a PDF we can read
        log.info("unreadable PDF (%s): %s", type(exc).__name__, exc)
        return failed(report, NOT_A_PDF, f"the PDF cannot be read: {type(exc).__name__}: {exc}"[:500])
    if encrypted:
        return failed(report, NOT_A_PDF, "the PDF is encrypted: an encrypted document's signatures are not checked")
    if not signatures:
        return failed(report, UNSIGNED, "the PDF carries no signature")
    if len(signatures) > MAX_SIGNATURES:
        return failed(report, SIGNATURE_INVALID, f"{len(signatures)} signatures, more than the {MAX_SIGNATURES} "
                      "accepted", signatures=len(signatures))  # fmt: skip
    return await _judge(report, signatures, trust, signer, at or dt.datetime.now(dt.UTC))


async def _judge(
    report: DocumentSignature,
    signatures: list[EmbeddedPdfSignature],
    trust: TrustStore,
    signer: str,
    at: dt.datetime,
) -> DocumentSignature:
    report = replace(report, signatures=len(signatures))
    roots = _roots(trust, signer)
    checked: list[tuple[EmbeddedPdfSignature, PdfSignatureStatus, x509.Certificate]] = []
    for embedded in signatures:
        context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail", moment=at)
        name = embedded.field_name
        try:
            status = await async_validate_pdf_signature(embedded, context)
            cert = _crypto(status.signing_cert)
        except Exception as exc:  # a malformed signature dictionary, an unsupported or broken CMS structure…
            return failed(report, SIGNATURE_INVALID, f"signature {name!r} cannot be validated: "
                          f"{type(exc).__name__}: {exc}"[:500])  # fmt: skip
        if not (status.intact and status.valid):
            what = "the document was changed after it was signed" if not status.intact else "it does not verify"
            return failed(report, SIGNATURE_INVALID, f"signature {name!r} by {keys.common_name(cert)} is broken: "
                          f"{what}", **_found(status, cert))  # fmt: skip
        checked.append((embedded, status, cert))

    refusals: list[str] = []
    for embedded, status, cert in checked:
        trusted_as, why = trust_check(trust, cert, signer, at)
        if trusted_as is not None and not status.trusted:
            problem = status.trust_problem_indic
            trusted_as, why = None, f"pyHanko found no valid path to the registered certificates ({problem})"
        if trusted_as is None:
            refusals.append(f"{embedded.field_name!r} by {keys.common_name(cert)}: {why}")
            continue
        found = _found(status, cert)
        if not _unchanged_after(status):
            return failed(report, SIGNATURE_INVALID, f"the document was changed after {keys.common_name(cert)} "
                          f"signed it (signature {embedded.field_name!r}; changes: {found['modification']})",
                          trusted_as=trusted_as, **found)  # fmt: skip
        return replace(report, valid=True, trusted_as=trusted_as, **found)
    _, first_status, first_cert = checked[0]
    return failed(report, SIGNER_NOT_REGISTERED, f"no signature by a certificate registered for {signer}: "
                  + "; ".join(refusals), **_found(first_status, first_cert))  # fmt: skip


def inspect_pdf(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """``ainspect_pdf`` from synchronous code (not from a running event loop)."""
    return asyncio.run(ainspect_pdf(data, trust=trust, signer=signer, purpose=purpose, max_bytes=max_bytes, at=at))


async def averify_pdf(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """``ainspect_pdf`` that raises ``DocumentSignatureRejected`` unless the PDF is valid."""
    report = await ainspect_pdf(data, trust=trust, signer=signer, purpose=purpose, max_bytes=max_bytes, at=at)
    return report.require()


def verify_pdf(
    data: bytes,
    *,
    trust: TrustStore,
    signer: str,
    purpose: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """``inspect_pdf`` that raises ``DocumentSignatureRejected`` unless the PDF is valid."""
    return inspect_pdf(data, trust=trust, signer=signer, purpose=purpose, max_bytes=max_bytes, at=at).require()


__all__ = [
    "DocumentSignature",
    "ainspect_pdf",
    "averify_pdf",
    "inspect_pdf",
    "registered",
    "verify_pdf",
]

"""The receipts of F3 and the receipt rule: the province proceeds only on a receipt signed by the bank /
intermediary (Quảng Nam Điều 14.3, Tiền Giang Điều 17.5, Ninh Thuận Điều 18.2).

``obtain_receipt`` is the one step "fetch and check the receipt" after a verified CONFIRM (or a QUERY that says
paid; ``hub.flows.settlement``):

1. **fetch** the payment platform's e-receipt with ``GET_BILL`` (PARTNER-FORMATS §3: a PDF in TH-PS:62-79, JSON in
   OC-PI:2343), PayGov's through its e-receipt call (``transactionReceipt``, OC-API:347-410, a link to the PDF).
   None to be had now (the platform refused, is unreachable, sent nothing): ``ReceiptRejected`` with rule
   ``receipt-unavailable`` — transient: the CONFIRM is answered "99" and reconciliation tries again;
2. **check** its signature (``check_receipt``): a PDF with pyHanko (``hub.security.pdf_signatures``), a signed XML
   document with the hub's XML-DSig verifier; only the certificates registered as the payment connector's
   ``receipt_signers`` sign for it (its ``certificates`` are its envelope keys, not the intermediary's
   document-signing certificate). The connector's profile value ``receipt_signed`` says whether receipts are
   signed (``paygov/1.0.6``: yes; ``paygov/lgsp``: not sourced, no). The receipt stops — ``DocumentSignatureRejected``
   with the report's rule — when it is not valid and either the profile says receipts are signed
   (``receipt-unsigned``, ``receipt-not-a-pdf``, …) or what it carries is wrong whatever the profile says: a
   signature by anyone else (``receipt-signer-not-registered``), a broken or altered one
   (``receipt-signature-invalid``), too large a document (``receipt-too-large``). That is permanent: the settlement
   holds the payment (``hub.flows.settlement``).

The receipt that passes carries its ``ReceiptVerification`` (the report, JSON-ready) to the province in
``payment.receipt``.

A refund's receipt (the hub's own REFUND protocol, no public source) comes inside its ``CONFIRM_REFUND`` as an XML
document (``<BienLai>``) with an enveloped XML-DSig signature by the bank's certificate, which must be one of the
certificates registered on the payment connector (``verify_receipt``). Same algorithm policy as the envelopes
(``hub.security.signing``): RSA-2048+/ECDSA P-256, SHA-256, exclusive C14N, one reference ``URI=""``; only the XML
returned as signed is read afterwards.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

from adapters.base import DeliveryError
from adapters.paygov_lgsp import PayGovLgspAdapter
from adapters.payment import PaymentAdapter
from hub.errors import DocumentSignatureRejected, LienthongError, ReceiptRejected
from hub.packets.payment import DocumentFormat, PaymentRequest, ReceiptVerification
from hub.security import dsig, pdf_signatures
from hub.security.signed_documents import (
    DEFAULT_MAX_BYTES,
    NOT_A_PDF,
    UNAVAILABLE,
    UNSIGNED,
    DocumentSignature,
    blank,
    failed,
    inspect_xml,
    registered,
    rule,
    too_large,
)
from hub.security.signing import ALLOWED_SIGNATURE_METHODS, Signer
from hub.xmlparse import parse_xml, parser
from mappings import payment as pm

if TYPE_CHECKING:
    from hub.registry.core import Connector
    from hub.store.flow_records import Payment

DS = "{http://www.w3.org/2000/09/xmldsig#}"
PURPOSE = "receipt"
MISSING = rule(PURPOSE, UNAVAILABLE)  # receipt-unavailable: none to be had now (transient)
#: What a receipt may lack where its connector's profile says receipts are not signed: a signature (an unsigned
#: PDF), or a signed format altogether (OC's JSON receipt). Anything else wrong with it stops it everywhere.
TOLERATED_UNSIGNED = frozenset({rule(PURPOSE, UNSIGNED), rule(PURPOSE, NOT_A_PDF)})
FORMATS: dict[str, DocumentFormat] = {"pdf": "pdf", "xml": "xml", "json": "json"}


@dataclass(frozen=True)
class ReceiptContext:
    """What fetching and checking one payment's receipt may need: the connector (its registered certificates),
    its adapter, the payment row, the verified confirmation's fields, and the original ``payment.request`` (read
    from the message log on demand: PayGov's e-receipt call names the payer)."""

    connector: Connector
    adapter: Any
    payment: Payment
    confirm: Mapping[str, Any]
    load_request: Callable[[], PaymentRequest | None]


@dataclass(frozen=True)
class Receipt:
    """A payment's receipt document as fetched, where from (``GET_BILL`` or ``transactionReceipt``), and once
    checked (``check_receipt``) what was proved about its signature."""

    document: bytes
    content_type: str
    source: str
    verification: ReceiptVerification | None = None


def obtain_receipt(context: ReceiptContext) -> Receipt:
    """Fetch and check the receipt of a verified confirmation (see the module): ``ReceiptRejected`` with rule
    ``receipt-unavailable`` when there is none to be had now, ``DocumentSignatureRejected`` (its report attached)
    when the one fetched breaks the receipt rule. Blocking (pyHanko runs its own event loop): call it from a
    thread, never from a running event loop."""
    return check_receipt(context.connector, fetch_receipt(context))


def fetch_receipt(context: ReceiptContext) -> Receipt:
    """The receipt of a verified confirmation as the platform sends it; ``ReceiptRejected`` (``receipt-unavailable``)
    when there is none to be had now (the platform refused or is unreachable, or sent nothing)."""
    adapter, payment = context.adapter, context.payment
    try:
        if isinstance(adapter, PaymentAdapter):
            at = str(context.confirm.get("ThoiGianGD") or payment.confirm_time or "") or None
            bill = adapter.get_bill(payment.reference, at)
            receipt = Receipt(bill.content, bill.content_type, "GET_BILL")
        elif isinstance(adapter, PayGovLgspAdapter):
            request = context.load_request()
            if request is None:
                raise ReceiptRejected(f"the payment.request of {payment.reference} is not in the message log",
                                      rule=MISSING)  # fmt: skip
            code = str(context.confirm.get("transactionCode") or context.confirm.get("MaGiaoDich") or "")
            bill = adapter.receipt(request, code)
            receipt = Receipt(bill.content, bill.content_type, "transactionReceipt")
        else:
            why = f"connector {context.connector.code} cannot fetch receipts: {adapter!r}"
            raise ReceiptRejected(why, rule=MISSING)
    except DeliveryError as exc:
        raise ReceiptRejected(f"the receipt of {payment.reference} could not be fetched: {exc}", rule=MISSING) from None
    if not receipt.document:
        raise ReceiptRejected(f"the platform sent an empty receipt for {payment.reference}", rule=MISSING)
    return receipt


# ---------------------------------------------------------------------------------------------- the receipt rule


def receipt_signed(connector: Connector) -> bool:
    """Whether the connector's profile says its receipts are signed (``receipt_signed``; a connector without a
    profile speaks ``paygov/1.0.6``, whose default is yes)."""
    return pm.receipt_signed(connector.spec.profile, connector.spec.profile_values)


def receipt_signers(connector: Connector) -> tuple[x509.Certificate, ...]:
    """The certificates registered to sign the connector's receipts (``receipt_signers``)."""
    return tuple(_certificate(pem) for pem in connector.spec.receipt_signers)


@cache
def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def document_format(data: bytes) -> str:
    """``pdf``, ``xml``, ``json`` or ``unknown``, from the first bytes (the content type is the sender's word)."""
    if pdf_signatures.PDF_MAGIC in data[: pdf_signatures.HEADER_WINDOW]:
        return "pdf"
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return {b"<": "xml", b"{": "json", b"[": "json"}.get(start, "unknown")


def inspect_receipt(
    data: bytes,
    *,
    signer: str,
    certificates: Iterable[x509.Certificate],
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> DocumentSignature:
    """The report on a receipt document that ``certificates`` (and nothing else) sign for connector ``signer``;
    never raises for what the document holds."""
    trust = registered(signer, tuple(certificates))
    fmt = document_format(data)
    if fmt == "pdf":
        return pdf_signatures.inspect_pdf(data, trust=trust, signer=signer, purpose=PURPOSE, max_bytes=max_bytes,
                                          at=at)  # fmt: skip
    if fmt == "xml":
        return inspect_xml(data, trust=trust, signer=signer, purpose=PURPOSE, max_bytes=max_bytes, at=at)
    report = blank(data, purpose=PURPOSE, signer=signer, fmt=fmt)
    return too_large(report, max_bytes) or failed(
        report, NOT_A_PDF, f"the receipt is {'JSON' if fmt == 'json' else 'neither a PDF nor XML'}: no signature "
        "can be checked on it"
    )  # fmt: skip


def holds(report: DocumentSignature, *, required: bool) -> bool:
    """Whether ``report`` stops the receipt: not valid, and the profile says receipts are signed or the fault is
    more than a missing signature."""
    return not report.valid and (required or report.rule not in TOLERATED_UNSIGNED)


def check_receipt(
    connector: Connector, receipt: Receipt, *, max_bytes: int = DEFAULT_MAX_BYTES, at: dt.datetime | None = None
) -> Receipt:
    """``receipt`` with its verification, or ``DocumentSignatureRejected`` (rule ``receipt-*``, the report
    attached) when it breaks the receipt rule for ``connector`` (see the module)."""
    return judge_receipt(receipt, signer=connector.code, certificates=receipt_signers(connector),
                         required=receipt_signed(connector), max_bytes=max_bytes, at=at)  # fmt: skip


def judge_receipt(
    receipt: Receipt,
    *,
    signer: str,
    certificates: Iterable[x509.Certificate],
    required: bool,
    max_bytes: int = DEFAULT_MAX_BYTES,
    at: dt.datetime | None = None,
) -> Receipt:
    """``check_receipt`` for connector code ``signer``, its registered ``certificates`` and whether its profile
    says receipts are signed (``required``)."""
    checked_at = at or dt.datetime.now(dt.UTC)
    report = inspect_receipt(receipt.document, signer=signer, certificates=certificates, max_bytes=max_bytes,
                             at=checked_at)  # fmt: skip
    if holds(report, required=required):
        assert report.rule is not None
        raise DocumentSignatureRejected(f"the receipt ({receipt.source}) is held: {report.reason}", rule=report.rule,
                                        report=report)  # fmt: skip
    return replace(receipt, verification=verification(report, required=required, checked_at=checked_at))


def verification(report: DocumentSignature, *, required: bool, checked_at: dt.datetime) -> ReceiptVerification:
    """The packet's account of ``report`` (``DocumentSignature.as_dict``, as the province reads it)."""

    def text(value: str | None, limit: int) -> str | None:
        return value[:limit] if value else None

    signing_time = report.signing_time
    if signing_time is not None and signing_time.tzinfo is None:  # a signer's claim without a zone: read as UTC
        signing_time = signing_time.replace(tzinfo=dt.UTC)
    return ReceiptVerification(
        format=FORMATS.get(report.format, "unknown"),
        sha256=report.sha256,
        size=report.size,
        required=required,
        valid=report.valid,
        signer=report.signer,
        rule=report.rule,
        reason=text(report.reason, 4000),
        signatures=report.signatures,
        signer_subject=text(report.signer_subject, 4000),
        signer_name=text(report.signer_name, 200),
        signer_fingerprint=report.signer_fingerprint,
        trusted_as=text(report.trusted_as, 1000),
        signing_time=signing_time,
        timestamped=report.timestamped,
        covers_whole_document=report.covers_whole_document,
        modification=report.modification,
        checked_at=checked_at,
        validator=validator(report.format),
    )


@cache
def validator(fmt: str) -> str:
    """What checked a document of format ``fmt``."""
    if fmt == "pdf":
        return f"pyHanko {version('pyHanko')}"
    return "Lienthong XML-DSig (hub.security.dsig)" if fmt == "xml" else "none (no signed format)"


def sign_receipt(signer: Signer, document: bytes) -> bytes:
    """The bank's side: sign a receipt document (enveloped)."""
    signed = signer.sign(parse_xml(document))
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def verify_receipt(data: bytes, trusted: Iterable[x509.Certificate]) -> etree._Element:
    """The signed ``<BienLai>`` element, or ``ReceiptRejected`` (rules ``receipt-unsigned``, ``receipt-signer``,
    ``receipt-signature``)."""
    try:
        root = parse_xml(data)
    except LienthongError as exc:
        raise ReceiptRejected(f"the receipt is not XML: {exc}", rule="receipt-malformed") from None
    cert_el = root.find(f"{DS}Signature/{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    if root.find(f"{DS}Signature") is None or cert_el is None:
        raise ReceiptRejected("the receipt carries no XML-DSig signature with a certificate", rule="receipt-unsigned")
    try:
        der = base64.b64decode("".join((cert_el.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptRejected("the receipt's certificate cannot be read", rule="receipt-signer") from None
    cert = next((c for c in trusted if _der(c) == der), None)
    if cert is None:
        raise ReceiptRejected(
            "the receipt is signed by a certificate not registered for this payment connector", rule="receipt-signer"
        )
    config = SignatureConfiguration(
        require_x509=True,
        signature_methods=frozenset(map(SignatureMethod, ALLOWED_SIGNATURE_METHODS)),
        digest_algorithms=frozenset({DigestAlgorithm(dsig.SHA256)}),
        default_reference_c14n_method=CanonicalizationMethod(dsig.EXC_C14N),
    )
    try:
        result = XMLVerifier().verify(data, x509_cert=cert, expect_config=config, parser=parser())
    except (SignXMLException, etree.DocumentInvalid) as exc:
        raise ReceiptRejected(f"the receipt's signature does not verify: {exc}", rule="receipt-signature") from None
    if isinstance(result, list):  # only when more than one reference is expected, which the config does not
        raise ReceiptRejected("the receipt carries more than one signed reference", rule="receipt-signature")
    signed = result.signed_xml
    if signed is None or signed.tag != root.tag:
        raise ReceiptRejected("the signature does not cover the whole receipt", rule="receipt-signature")
    return signed


def receipt_fields(signed: etree._Element) -> dict[str, str]:
    """The receipt's simple child elements (the signature left out)."""
    return {
        child.tag: (child.text or "") for child in signed if isinstance(child.tag, str) and not child.tag.startswith(DS)
    }

"""The receipts of F3.

``obtain_receipt`` is the one step "fetch and check the receipt" after a verified CONFIRM (or a QUERY that says
paid): the payment platform's e-receipt fetched with ``GET_BILL`` (PARTNER-FORMATS §3: a PDF in TH-PS:62-79, JSON
in OC-PI:2343), PayGov's through its e-receipt call (``transactionReceipt``, OC-API:347-410). It returns the
document as fetched; checking the document's own signature (the receipt rule: Quảng Nam Điều 14.3, Tiền Giang
Điều 17.5, Ninh Thuận Điều 18.2 — a PDF signature validated with pyHanko against the intermediary's registered
certificate, issue 15 point 3) belongs in this function and is not done yet. A receipt that cannot be fetched
stops the settlement with rule ``receipt-missing``: the CONFIRM is answered "99" and reconciliation tries again.

A refund's receipt (the hub's own REFUND protocol, no public source) comes inside its ``CONFIRM_REFUND`` as an XML
document (``<BienLai>``) with an enveloped XML-DSig signature by the bank's certificate, which must be one of the
certificates registered on the payment connector (``verify_receipt``). Same algorithm policy as the envelopes
(``hub.security.signing``): RSA-2048+/ECDSA P-256, SHA-256, exclusive C14N, one reference ``URI=""``; only the XML
returned as signed is read afterwards.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

from adapters.base import DeliveryError
from adapters.paygov_lgsp import PayGovLgspAdapter
from adapters.payment import PaymentAdapter
from hub.errors import LienthongError, ReceiptRejected
from hub.packets.payment import PaymentRequest
from hub.security import dsig
from hub.security.signing import ALLOWED_SIGNATURE_METHODS, Signer
from hub.xmlparse import parse_xml, parser

if TYPE_CHECKING:
    from hub.registry.core import Connector
    from hub.store.flow_records import Payment

DS = "{http://www.w3.org/2000/09/xmldsig#}"
MISSING = "receipt-missing"


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
    """A payment's receipt document as fetched, and where from (``GET_BILL`` or ``transactionReceipt``)."""

    document: bytes
    content_type: str
    source: str


def obtain_receipt(context: ReceiptContext) -> Receipt:
    """Fetch (and, once issue 15 point 3 lands, check) the receipt of a verified confirmation; ``ReceiptRejected``
    with rule ``receipt-missing`` when there is none to be had now (the platform refused or is unreachable)."""
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

"""The bank's signed receipt (F3): an XML document (``<BienLai>``) with an enveloped XML-DSig signature by the
bank's certificate, which must be one of the certificates registered on the payment connector.

Same algorithm policy as the envelopes (``hub.security.signing``): RSA-2048+/ECDSA P-256, SHA-256, exclusive C14N, one
reference ``URI=""``; only the XML returned as signed is read afterwards.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

from hub.errors import LienthongError, ReceiptRejected
from hub.security import dsig
from hub.security.signing import ALLOWED_SIGNATURE_METHODS, Signer
from hub.xmlparse import parse_xml, parser

DS = "{http://www.w3.org/2000/09/xmldsig#}"


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

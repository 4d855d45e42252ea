"""XML-DSig for the hub's one signature profile, in a single canonicalisation pass each way.

The profile (the only one the hub signs or accepts on envelopes): an enveloped signature, last child of the
root; one ``Reference URI=""`` whose transforms are enveloped-signature then exclusive C14N; SHA-256 digest;
exclusive C14N of ``SignedInfo``; RSA-SHA256 (PKCS#1 v1.5) or ECDSA-SHA256; the signer's X.509 certificate
in ``KeyInfo/X509Data``.

Written by hand because, for this fixed profile, signxml parses and serialises the whole document four times
per verification (and again when signing) where one exclusive C14N is enough: about a third of the CPU, on the
hub's hottest path. signxml (still used for bank receipts, whose profile is not ours) and Debian's xmlsec1 are
the oracles the tests hold this module to, in both directions.

Nothing here decides trust: the caller checks the certificate (``hub.security.signing.TrustStore``) and reads only the
returned ``signed`` tree, re-parsed from the canonical bytes the digest covers (no comments, no signature).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from hub.errors import DsigError

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"

_DS = f"{{{DSIG}}}"
SIGNATURE_TAG = f"{_DS}Signature"
_INCLUSIVE_NAMESPACES = f"{{{EXC_C14N}}}InclusiveNamespaces"
_P256_HALF = 32  # bytes of r and of s in an ECDSA P-256 XML signature value (r || s)


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verification proved: the canonical bytes the digest covers, and a tree parsed from them."""

    signed_c14n: bytes
    signed: etree._Element


def exc_c14n(element: etree._Element, inclusive_prefixes: Sequence[str] | None = None) -> bytes:
    """Exclusive XML canonicalisation 1.0 of ``element``'s subtree, without comments."""
    return etree.tostring(
        element, method="c14n", exclusive=True, with_comments=False, inclusive_ns_prefixes=inclusive_prefixes
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=64)
def _certificate_text(cert: x509.Certificate) -> str:
    return _b64(cert.public_bytes(Encoding.DER))


def _b64decode(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise DsigError("signature-policy", f"{what} is not valid base64") from None


# ---------------------------------------------------------------- signing


@lru_cache(maxsize=2)
def _signature_template(is_ec: bool) -> etree._Element:
    """``ds:Signature`` with the profile's ``SignedInfo`` (digest value empty), copied for each signature."""
    signature = etree.Element(SIGNATURE_TAG, nsmap={"ds": DSIG})
    signed_info = etree.SubElement(signature, f"{_DS}SignedInfo")
    etree.SubElement(signed_info, f"{_DS}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(signed_info, f"{_DS}SignatureMethod", Algorithm=ECDSA_SHA256 if is_ec else RSA_SHA256)
    reference = etree.SubElement(signed_info, f"{_DS}Reference", URI="")
    transforms = etree.SubElement(reference, f"{_DS}Transforms")
    etree.SubElement(transforms, f"{_DS}Transform", Algorithm=ENVELOPED)
    etree.SubElement(transforms, f"{_DS}Transform", Algorithm=EXC_C14N)
    etree.SubElement(reference, f"{_DS}DigestMethod", Algorithm=SHA256)
    etree.SubElement(reference, f"{_DS}DigestValue")
    return signature


def sign_enveloped(
    root: etree._Element, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, certs: Sequence[x509.Certificate]
) -> etree._Element:
    """Append the profile's signature to ``root`` (changing it in place) and return ``root``."""
    digest = hashlib.sha256(exc_c14n(root)).digest()
    is_ec = isinstance(private_key, ec.EllipticCurvePrivateKey)
    signature = copy.deepcopy(_signature_template(is_ec))
    root.append(signature)
    signed_info = signature[0]
    signed_info[2][2].text = _b64(digest)  # SignedInfo/Reference/DigestValue
    data = exc_c14n(signed_info)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(_P256_HALF, "big") + s.to_bytes(_P256_HALF, "big")
    else:
        value = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    etree.SubElement(signature, f"{_DS}SignatureValue").text = _b64(value)
    x509_data = etree.SubElement(etree.SubElement(signature, f"{_DS}KeyInfo"), f"{_DS}X509Data")
    for cert in certs:
        etree.SubElement(x509_data, f"{_DS}X509Certificate").text = _certificate_text(cert)
    return root


# ---------------------------------------------------------------- verification


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _expect(element: etree._Element, tags: Sequence[str], rule: str) -> list[etree._Element]:
    """The element children of ``element``, which must be exactly ``tags`` (``?`` suffix: optional last one)."""
    children = _children(element)
    required = [t for t in tags if not t.endswith("?")]
    got = [c.tag for c in children]
    wanted = [f"{_DS}{t.rstrip('?')}" for t in tags]
    if got != wanted and got != wanted[: len(required)]:
        names = ", ".join(etree.QName(t).localname for t in got) or "nothing"
        raise DsigError(rule, f"{etree.QName(element).localname} holds {names}; expected {', '.join(tags)}")
    return children


def _inclusive_prefixes(method: etree._Element) -> list[str] | None:
    """The ``InclusiveNamespaces PrefixList`` of an exclusive-C14N method, if any (the only child it may have)."""
    children = _children(method)
    if not children:
        return None
    if len(children) != 1 or children[0].tag != _INCLUSIVE_NAMESPACES:
        raise DsigError("signature-c14n", "exclusive C14N may only carry an InclusiveNamespaces PrefixList")
    prefixes = (children[0].get("PrefixList") or "").split()
    if "#default" in prefixes:
        raise DsigError("signature-c14n", "an InclusiveNamespaces PrefixList with #default is not accepted")
    return prefixes or None


def _check_value(public_key: object, value: bytes, data: bytes, method: str) -> None:
    try:
        if method == RSA_SHA256 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
        elif method == ECDSA_SHA256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(value) != 2 * _P256_HALF:
                raise InvalidSignature
            r, s = int.from_bytes(value[:_P256_HALF], "big"), int.from_bytes(value[_P256_HALF:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        else:
            raise DsigError("signature-algorithm", "the signature method does not match the certificate's key type")
    except InvalidSignature:
        raise DsigError("signature-value", "signature does not verify with the signer's certificate") from None


def verify_enveloped(root: etree._Element, certificate: x509.Certificate, parser: etree.XMLParser) -> Verified:
    """Verify the profile's signature on ``root`` (a tree the caller owns: its signature is detached) with
    ``certificate``'s key. Raises ``DsigError``; on success the signed content is read from the result only."""
    signature = root[-1] if len(root) else None
    if signature is None or signature.tag != SIGNATURE_TAG:
        raise DsigError("signature-location", "the signature must be the root's last child element")
    signed_info, signature_value, *_ = _expect(signature, ("SignedInfo", "SignatureValue", "KeyInfo?"),
                                               "signature-policy")  # fmt: skip
    c14n_method, method, _ = _expect(
        signed_info, ("CanonicalizationMethod", "SignatureMethod", "Reference"), "signature-reference"
    )
    if c14n_method.get("Algorithm") != EXC_C14N:
        raise DsigError("signature-c14n", "SignedInfo must use exclusive C14N")
    signed_info_c14n = exc_c14n(signed_info, _inclusive_prefixes(c14n_method))
    value = _b64decode(signature_value.text, "SignatureValue")
    _check_value(certificate.public_key(), value, signed_info_c14n, method.get("Algorithm") or "")

    # From here on, only the SignedInfo that was verified is read.
    *_, verified_reference = _expect(
        etree.fromstring(signed_info_c14n, parser=parser),
        ("CanonicalizationMethod", "SignatureMethod", "Reference"),
        "signature-reference",
    )
    if verified_reference.get("URI") != "":
        raise DsigError("signature-coverage", 'the reference must be URI="" (the whole envelope)')
    transforms, digest_method, digest_value = _expect(
        verified_reference, ("Transforms", "DigestMethod", "DigestValue"), "signature-transforms"
    )
    steps = _children(transforms)
    if [t.get("Algorithm") for t in steps] != [ENVELOPED, EXC_C14N] or _children(steps[0]):
        raise DsigError("signature-transforms", "reference transforms must be enveloped-signature then exclusive C14N")
    if digest_method.get("Algorithm") != SHA256:
        raise DsigError("signature-digest-algorithm", "digest method must be SHA-256")

    # The enveloped-signature transform: the document without the Signature element (its tail text stays).
    previous = signature.getprevious()
    if signature.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            root.text = (root.text or "") + signature.tail
    root.remove(signature)
    signed_c14n = exc_c14n(root, _inclusive_prefixes(steps[1]))
    expected = _b64decode(digest_value.text, "DigestValue")
    if not hmac.compare_digest(expected, hashlib.sha256(signed_c14n).digest()):
        raise DsigError("signature-digest", "digest mismatch: the envelope was changed after it was signed")
    return Verified(signed_c14n, etree.fromstring(signed_c14n, parser=parser))

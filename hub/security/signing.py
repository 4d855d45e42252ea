"""Sign and verify hub envelopes with XML-DSig under one pinned policy.

Policy: enveloped signature, RSA-2048+ (PKCS#1 v1.5) or ECDSA P-256, SHA-256 digests, exclusive C14N, a
single reference with ``URI=""`` (the whole envelope), exactly one ``ds:Signature`` as the envelope's last
child, an X.509 certificate in ``KeyInfo`` that is pinned for the sender or issued by a trusted CA for the
sender's code, and valid now (the one trust rule: ``TrustStore``). Only the XML that the verifier returns as
signed is ever read.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from lxml import etree

from hub.errors import DsigError, EnvelopeInvalidError, Issue, KeyMaterialError, SignatureRejectedError
from hub.security import dsig, keys
from hub.security.envelope import (
    DSIG_NAMESPACE,
    ENVELOPE_TAG,
    SIGNATURE_TAG,
    EnvelopeHeader,
    PayloadCheck,
    body_payload,
    build_envelope,
    peek_message_id,
    validate_envelope,
)
from hub.xmlparse import XmlLimits, parse_xml, parser

ALLOWED_SIGNATURE_METHODS = frozenset({dsig.RSA_SHA256, dsig.ECDSA_SHA256})
ANY_SENDER = "*"

_DS = f"{{{DSIG_NAMESPACE}}}"


def check_key_policy(public_key: object, where: str) -> None:
    """Raise ``KeyMaterialError`` unless the key is RSA >= 2048 bits or ECDSA on P-256."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < keys.MIN_RSA_BITS:
            raise KeyMaterialError(f"{where}: RSA key of {public_key.key_size} bits, at least 2048 required")
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise KeyMaterialError(f"{where}: ECDSA curve {public_key.curve.name}, only P-256 is accepted")
        return
    raise KeyMaterialError(f"{where}: only RSA-2048+ and ECDSA P-256 keys are accepted")


def _spki(key: PublicKeyTypes) -> bytes:
    """A public key as DER SubjectPublicKeyInfo: comparable whatever its algorithm."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Signer:
    """Signs envelopes with one key and certificate, both loaded once and kept as objects."""

    def __init__(
        self,
        private_key: keys.PrivateKey,
        certificate: x509.Certificate,
        chain: Iterable[x509.Certificate] = (),
    ) -> None:
        check_key_policy(private_key.public_key(), "signing key")
        if _spki(certificate.public_key()) != _spki(private_key.public_key()):
            raise KeyMaterialError("the certificate does not belong to the signing key")
        self.private_key = private_key
        self.certificate = certificate
        self._certs = [certificate, *chain]

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path) -> Signer:
        """A signer for a PEM key and a PEM certificate file (chain certificates may follow the leaf)."""
        return _cached_signer(*keys._file_stamp(key_path), *keys._file_stamp(cert_path))

    def sign(self, envelope: etree._Element) -> etree._Element:
        """Return a signed copy of an unsigned envelope element (``sign_in_place`` signs the element itself)."""
        return self.sign_in_place(copy.deepcopy(envelope))

    def sign_in_place(self, envelope: etree._Element) -> etree._Element:
        """Append the signature to ``envelope``, a freshly built unsigned envelope the caller owns; return it."""
        if envelope.find(SIGNATURE_TAG) is not None:
            raise SignatureRejectedError(
                "envelope is already signed",
                [Issue("/envelope/Signature", "one-signature", "refusing to add a second signature")],
                message_id=peek_message_id(envelope),
            )
        return dsig.sign_enveloped(envelope, self.private_key, self._certs)


@lru_cache(maxsize=16)
def _cached_signer(
    key_file: str, key_mtime: int, key_size: int, cert_file: str, cert_mtime: int, cert_size: int
) -> Signer:
    certs = keys.load_certificates(Path(cert_file))
    return Signer(keys.load_private_key(Path(key_file)), certs[0], certs[1:])


@dataclass
class TrustStore:
    """What the verifier trusts: CA certificates (``anchors``) and certificates pinned per sender code.

    The one trust rule of the hub (``check``), for a certificate valid now that signs for sender S — one
    connector, its own certificates:

    * S has pinned certificates (a registered connector with certificates): only those sign for S, even a
      certificate a trusted CA issued is refused (``certificate-pinned``);
    * a certificate pinned for another sender never signs for S (``certificate-pinned-elsewhere``);
    * S has none: a certificate pinned for any sender (``"*"``) signs for S, and so does one issued directly by
      an anchor valid now whose subject names S: exactly one ``serialNumber`` attribute (OID 2.5.4.5,
      ``keys.CONNECTOR_CODE_ATTRIBUTE``) equal to S (``certificate-subject`` otherwise). serialNumber because
      X.520 defines it as the subject's registered identifier, qualified certificates carry the holder's
      registration there, and the common name stays free for a readable name.

    The hub builds its one store with ``hub.runtime.trust_store``: the CA certificates of ``LIENTHONG_TRUST_DIR``
    (``anchors_from``: end-entity certificates there are not pinned, so a connector signs only as itself) plus
    every registered connector's certificates pinned for its code (``Registry.trust_store``). Only the standalone
    tools (``hub envelope verify --trust``, simulators) pin end-entity certificates for any sender (``from_path``).
    """

    anchors: list[x509.Certificate] = field(default_factory=list)
    #: Change through ``pin``/``add``, which keep ``_owners`` (who each certificate is pinned for) up to date.
    pinned: dict[str, list[x509.Certificate]] = field(default_factory=dict)
    _owners: dict[x509.Certificate, set[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for sender, certs in self.pinned.items():
            for cert in certs:
                self._owners.setdefault(cert, set()).add(sender)

    @classmethod
    def from_path(cls, path: Path) -> TrustStore:
        """Trust a PEM file or every ``*.pem``/``*.crt`` in a folder: CA certificates become anchors,
        end-entity certificates are pinned for any sender."""
        store = cls()
        for cert in _certificates_at(Path(path)):
            store.add(cert)
        if not store.anchors and not store.pinned:
            raise KeyMaterialError(f"no certificates found in {path}")
        return store

    @classmethod
    def anchors_from(cls, path: Path) -> TrustStore:
        """Only the CA certificates of a PEM file or folder (none when it does not exist): the hub's anchors,
        to which the registry adds its pins."""
        try:
            certs = _certificates_at(Path(path))
        except KeyMaterialError:
            return cls()
        return cls([cert for cert in certs if _is_ca(cert)])

    def copy(self) -> TrustStore:
        """A copy whose anchors and pins can be extended without touching this one."""
        return TrustStore(list(self.anchors), {sender: list(certs) for sender, certs in self.pinned.items()})

    def add(self, cert: x509.Certificate, sender: str = ANY_SENDER) -> None:
        """Add a CA certificate as an anchor, or pin an end-entity certificate for ``sender``."""
        if _is_ca(cert):
            self.anchors.append(cert)
        else:
            self.pin(sender, cert)

    def pin(self, sender: str, cert: x509.Certificate) -> None:
        """Pin ``cert`` for ``sender`` (a connector may have several valid certificates during rotation)."""
        self.pinned.setdefault(sender, []).append(cert)
        self._owners.setdefault(cert, set()).add(sender)

    def check(self, cert: x509.Certificate, sender: str, at: dt.datetime) -> str:
        """Return how ``cert`` is trusted for ``sender`` at ``at``, or raise ``SignatureRejectedError``."""
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            state = "expired" if at > cert.not_valid_after_utc else "not yet valid"
            raise _rejected(
                "certificate-validity",
                f"signing certificate {keys.common_name(cert)} is {state} (valid "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})",
            )
        own_pins = self.pinned.get(sender, [])
        if own_pins:
            # A sender with pinned certificates may sign only with one of them.
            if cert in own_pins:
                return "pinned for sender"
            raise _rejected(
                "certificate-pinned",
                f"certificate {keys.common_name(cert)} is not one registered for sender {sender}",
            )
        owners = self._owners.get(cert)
        if owners:
            others = owners - {ANY_SENDER}
            if others:
                raise _rejected(
                    "certificate-pinned-elsewhere",
                    f"certificate {keys.common_name(cert)} is registered for {', '.join(sorted(others))}, "
                    f"not for sender {sender}",
                )
            return "pinned"
        for anchor in self.anchors:
            if anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc and _issued_by(cert, anchor):
                named = keys.connector_code(cert)
                if named != sender:
                    raise _rejected(
                        "certificate-subject",
                        f"certificate {keys.common_name(cert)} issued by {keys.common_name(anchor)} names "
                        + (f"connector {named}" if named else "no connector code")
                        + f" in its subject serialNumber, not sender {sender}",
                    )
                return f"issued by {keys.common_name(anchor)} for {sender}"
        raise _rejected(
            "certificate-trust",
            f"certificate {keys.common_name(cert)} (issuer {cert.issuer.rfc4514_string()}) "
            "is neither pinned nor issued by a trusted CA",
        )


@lru_cache(maxsize=4096)
def _issued_by(cert: x509.Certificate, anchor: x509.Certificate) -> bool:
    """Whether ``anchor`` issued ``cert`` (name and signature); cached, as the answer never changes."""
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, CryptoInvalidSignature):
        return False
    return True


def _certificates_at(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, or of the ``*.pem``/``*.crt`` files of a folder (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".pem", ".crt"} and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise KeyMaterialError(f"trust path {path} does not exist")
    return [cert for file in files for cert in keys.load_certificates(file)]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _rejected(rule: str, message: str, path: str = "/envelope/Signature") -> SignatureRejectedError:
    return SignatureRejectedError(message, [Issue(path, rule, message)])


@lru_cache(maxsize=1024)
def _certificate_from_b64(text: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(text, validate=True))


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope whose signature checked out; everything here comes from the signed XML only."""

    header: EnvelopeHeader
    envelope: etree._Element
    payload: etree._Element
    certificate: x509.Certificate
    trusted_as: str
    signed_c14n: bytes

    @property
    def signer(self) -> str:
        return keys.common_name(self.certificate)


class EnvelopeVerifier:
    """Verifies signed envelopes against a ``TrustStore`` under the pinned signature policy."""

    def __init__(
        self,
        trust: TrustStore,
        *,
        limits: XmlLimits | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        validate_payload: bool = True,
    ) -> None:
        self.trust = trust
        self.limits = limits or XmlLimits()
        self.clock = clock
        self.validate_payload = validate_payload

    def verify(
        self,
        data: bytes | etree._Element,
        payload_check: PayloadCheck | None = None,
        *,
        parsed: etree._Element | None = None,
    ) -> VerifiedEnvelope:
        """Verify a signed envelope; raise ``SignatureRejectedError`` / ``EnvelopeInvalidError`` with the reason.

        ``payload_check`` validates the body instead of the canonical packet check (see ``validate_envelope``);
        it sees only the signed XML. ``parsed``: ``data`` already parsed with ``hub.xmlparse.parse_xml`` under
        this verifier's limits, by a caller that hands the tree over (verification detaches its signature)."""
        if parsed is not None:
            root, owned = parsed, True
        elif isinstance(data, etree._Element):
            root, owned = data, False
        else:
            root, owned = parse_xml(data, self.limits), True
        message_id = peek_message_id(root) if root.tag == ENVELOPE_TAG else None
        try:
            # Verification detaches the signature: a tree parsed for it is changed, a caller's element is copied.
            return self._verify(root, owned, payload_check)
        except (SignatureRejectedError, EnvelopeInvalidError) as exc:
            exc.message_id = exc.message_id or message_id
            raise

    def _verify(self, root: etree._Element, owned: bool, payload_check: PayloadCheck | None = None) -> VerifiedEnvelope:
        if root.tag != ENVELOPE_TAG:
            raise EnvelopeInvalidError(
                f"root element is {root.tag}, not a Lienthong envelope",
                [Issue("/", "envelope-root", "root element must be {urn:lienthong:envelope:1}envelope")],
            )
        signature = self._the_signature(root)
        cert = self._check_signature_policy(signature)
        claimed_sender = root.findtext("{urn:lienthong:envelope:1}header/{urn:lienthong:envelope:1}sender")
        now = self.clock()
        trusted_as = self.trust.check(cert, (claimed_sender or "").strip(), now)
        try:
            check_key_policy(cert.public_key(), "signing certificate")
        except KeyMaterialError as exc:
            raise _rejected("key-policy", str(exc)) from None

        try:
            result = dsig.verify_enveloped(root if owned else copy.deepcopy(root), cert, parser())
        except DsigError as exc:
            raise _rejected(exc.rule, str(exc)) from None

        signed = result.signed
        if signed.tag != ENVELOPE_TAG:
            raise _rejected("signature-coverage", "the signature does not cover the whole envelope")
        # From here on only the signed XML is read (no signature wrapping).
        header, issues = validate_envelope(signed, payload_check)
        if header.sender != (claimed_sender or "").strip():
            raise _rejected("signature-coverage", "signed header differs from the received one")
        if self.validate_payload and issues:
            raise EnvelopeInvalidError("envelope content is invalid", issues, message_id=header.message_id)
        return VerifiedEnvelope(
            header=header,
            envelope=signed,
            payload=body_payload(signed),
            certificate=cert,
            trusted_as=trusted_as,
            signed_c14n=result.signed_c14n,
        )

    @staticmethod
    def _the_signature(root: etree._Element) -> etree._Element:
        signatures = list(root.iter(SIGNATURE_TAG))
        if not signatures:
            raise _rejected("signature-required", "the envelope is not signed", "/envelope")
        if len(signatures) > 1:
            raise _rejected("one-signature", f"exactly one signature expected, found {len(signatures)}", "/envelope")
        signature = signatures[0]
        if signature.getparent() is not root or root[-1] is not signature:
            raise _rejected("signature-location", "the signature must be the envelope's last child element")
        return signature

    @staticmethod
    def _check_signature_policy(signature: etree._Element) -> x509.Certificate:
        def algorithm(path: str) -> str | None:
            el = signature.find(path)
            return None if el is None else el.get("Algorithm")

        if algorithm(f"{_DS}SignedInfo/{_DS}CanonicalizationMethod") != dsig.EXC_C14N:
            raise _rejected("signature-c14n", "SignedInfo must use exclusive C14N")
        if algorithm(f"{_DS}SignedInfo/{_DS}SignatureMethod") not in ALLOWED_SIGNATURE_METHODS:
            raise _rejected("signature-algorithm", "signature method must be rsa-sha256 or ecdsa-sha256")
        references = signature.findall(f"{_DS}SignedInfo/{_DS}Reference")
        if len(references) != 1:
            raise _rejected("signature-reference", f"exactly one reference expected, found {len(references)}")
        reference = references[0]
        if reference.get("URI") != "":
            raise _rejected("signature-coverage", 'the reference must be URI="" (the whole envelope)')
        transforms = [t.get("Algorithm") for t in reference.findall(f"{_DS}Transforms/{_DS}Transform")]
        if transforms != [dsig.ENVELOPED, dsig.EXC_C14N]:
            raise _rejected(
                "signature-transforms", "reference transforms must be enveloped-signature then exclusive C14N"
            )
        if algorithm(f"{_DS}SignedInfo/{_DS}Reference/{_DS}DigestMethod") != dsig.SHA256:
            raise _rejected("signature-digest-algorithm", "digest method must be SHA-256")
        cert_els = signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
        if not cert_els:
            raise _rejected("signature-certificate", "KeyInfo must carry the signer's X.509 certificate")
        try:
            return _certificate_from_b64("".join((cert_els[0].text or "").split()))
        except (ValueError, binascii.Error):
            raise _rejected("signature-certificate", "KeyInfo's X509Certificate is not a valid certificate") from None


def sign_payload(signer: Signer, header: EnvelopeHeader, payload: etree._Element) -> etree._Element:
    """Wrap ``payload`` in an envelope with ``header`` and sign it."""
    return signer.sign(build_envelope(header, payload))

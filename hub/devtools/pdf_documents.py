"""Signed PDF documents for the simulators, the demo and the tests: a small one-page PDF (written by pyHanko, no
other PDF library), signed with pyHanko by a key of the demo CA (``hub.security.keys``).

The demo's PDF signers (``demo_pdf_keys``), all issued by the demo CA in one key folder:

* ``competent-agency`` — the agency that signs a dossier's results (Quảng Nam Điều 16.3); register its certificate
  as ``result_signers`` on the ministry's connector;
* ``payment-intermediary`` — the payment intermediary that signs e-receipts (Quảng Nam Điều 14.3);
* ``other-signer`` — a certificate the same CA issued but registered for nothing: what a forged or misrouted
  document is signed with in negative tests (the hub answers ``<purpose>-signer-not-registered``).

For flow F7 and tests::

    signers = demo_pdf_keys(data_dir / "keys")
    pdf = signed_result_pdf("000.00.00.H12-251123-0042", signers.agency)   # bytes, validated by the hub
    bad = signed_result_pdf("000.00.00.H12-251123-0042", signers.other)     # held: result-signer-not-registered
    changed = append_change(pdf)                                            # held: result-signature-invalid

PDF text uses the standard Helvetica font (no font file to embed), so Vietnamese letters are written without
their diacritics (``Kết quả`` → ``Ket qua``).
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from hub.security import keys

AGENCY, INTERMEDIARY, OTHER = "competent-agency", "payment-intermediary", "other-signer"
A4 = (0, 0, 595, 842)


@dataclass(frozen=True)
class PdfSigningKey:
    """A key and its certificate (and the CA chain embedded in signatures) that sign PDFs."""

    key: keys.PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path, ca_path: Path | None = None) -> PdfSigningKey:
        chain = (keys.load_certificate(ca_path),) if ca_path is not None else ()
        return cls(keys.load_private_key(key_path), keys.load_certificate(cert_path), chain)

    @property
    def cert_pem(self) -> str:
        """The certificate as PEM text (what a connector's ``result_signers`` lists)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class DemoPdfKeys:
    """The demo's three PDF signers and the CA that issued them."""

    agency: PdfSigningKey
    intermediary: PdfSigningKey
    other: PdfSigningKey
    ca_certificate: x509.Certificate


def demo_pdf_keys(
    directory: Path, *, agency_code: str | None = None, intermediary_code: str | None = None
) -> DemoPdfKeys:
    """The demo's PDF signers in ``directory`` (``competent-agency``, ``payment-intermediary``, ``other-signer``
    ``.key``/``.pem``), issued by the demo CA there (created if absent); existing files are reused, so the demo
    and its connectors agree across runs. ``*_code``: the connector code a new certificate's subject names."""
    directory = Path(directory)

    def load(name: str, code: str | None) -> PdfSigningKey:
        key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
        if not (key_path.exists() and cert_path.exists()):
            keys.issue_key(name, directory, code=code)
        return PdfSigningKey.from_files(key_path, cert_path, directory / keys.CA_CERT_FILE)

    agency, intermediary, other = load(AGENCY, agency_code), load(INTERMEDIARY, intermediary_code), load(OTHER, None)
    return DemoPdfKeys(agency, intermediary, other, keys.load_certificate(directory / keys.CA_CERT_FILE))


# ---------------------------------------------------------------------------------------------- writing


def ascii_text(text: str) -> str:
    """``text`` without diacritics (Helvetica's encoding has no Vietnamese letters): ``Đất`` → ``Dat``."""
    folded = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in folded if not unicodedata.combining(ch) and (ch.isascii() and ch.isprintable()))


def _pdf_string(text: str) -> bytes:
    escaped = ascii_text(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})".encode("ascii")


def minimal_pdf(title: str, lines: Sequence[str] = ()) -> bytes:
    """A one-page A4 PDF with ``title`` and ``lines`` in Helvetica."""
    writer = PdfFileWriter()
    font = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"), pdf_name("/Subtype"): pdf_name("/Type1"),
        pdf_name("/BaseFont"): pdf_name("/Helvetica"), pdf_name("/Encoding"): pdf_name("/WinAnsiEncoding"),
    })  # fmt: skip
    resources = generic.DictionaryObject(
        {pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): writer.add_object(font)})}
    )
    commands = [b"BT /F1 16 Tf 72 770 Td", _pdf_string(title) + b" Tj", b"/F1 11 Tf"]
    for line in lines:
        commands += [b"0 -20 Td", _pdf_string(line) + b" Tj"]
    commands.append(b"ET")
    content = writer.add_object(generic.StreamObject(stream_data=b"\n".join(commands)))
    writer.insert_page(PageObject(contents=content, media_box=list(A4), resources=resources))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class _LoadedKeySigner(signers.SimpleSigner):
    """pyHanko's ``SimpleSigner`` signing with the key object already loaded (``keys.load_private_key``, cached):
    ``SimpleSigner.sign_raw`` parses the DER key again for every signature, twice per PDF (the dry run that sizes
    the signature, then the signature), and OpenSSL 3 checks an RSA key on each parse, ~60 ms of CPU."""

    def __init__(self, key: keys.PrivateKey, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._key = key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        try:  # as SimpleSigner.sign_raw reads it
            algorithm = mechanism.signature_algo
        except ValueError:
            algorithm = mechanism["algorithm"].native
        hash_algorithm = get_pyca_cryptography_hash(digest_algorithm)
        if algorithm == "rsassa_pkcs1v15" and isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, PKCS1v15(), hash_algorithm)
        if algorithm == "ecdsa" and isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hash_algorithm))
        return super().sign_raw(data, digest_algorithm)  # anything else as pyHanko does it


def sign_pdf(
    pdf: bytes,
    signer: PdfSigningKey,
    *,
    field_name: str = "Signature1",
    reason: str | None = None,
    location: str | None = None,
) -> bytes:
    """``pdf`` with one more signature (an incremental update, PAdES baseline B, SHA-256) by ``signer``, whose
    certificate and chain are embedded. Synchronous: not from a running event loop (pyHanko runs its own)."""
    key_der = signer.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pdf_signer = _LoadedKeySigner(
        signer.key,
        signing_cert=_asn1_cert(signer.certificate),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(c) for c in signer.chain]),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        reason=None if reason is None else ascii_text(reason),
        location=None if location is None else ascii_text(location),
        subfilter=SigSeedSubFilter.PADES,
    )
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=pdf_signer)
    return out.getvalue()


def signed_pdf(title: str, lines: Sequence[str], signer: PdfSigningKey, **options: str) -> bytes:
    """``minimal_pdf(title, lines)`` signed by ``signer`` (``options``: ``sign_pdf``'s field_name, reason,
    location)."""
    return sign_pdf(minimal_pdf(title, lines), signer, **options)


def signed_result_pdf(dossier_code: str, signer: PdfSigningKey, *, name: str = "Kết quả giải quyết hồ sơ") -> bytes:
    """A dossier's result document signed by ``signer`` (the competent agency for the demo's happy path)."""
    return signed_pdf(name, [f"Ho so: {dossier_code}", f"Co quan ky: {keys.common_name(signer.certificate)}"],
                      signer, field_name="KyKetQua", reason="Ket qua giai quyet thu tuc hanh chinh")  # fmt: skip


def signed_receipt_pdf(reference: str, amount: int, signer: PdfSigningKey) -> bytes:
    """A payment e-receipt (biên lai điện tử) signed by ``signer`` (the payment intermediary on the happy path)."""
    return signed_pdf("Bien lai dien tu", [f"Ma tham chieu: {reference}", f"So tien: {amount} VND"], signer,
                      field_name="KyBienLai", reason="Bien lai thu phi, le phi")  # fmt: skip


def append_change(signed: bytes, text: str = "Noi dung da bi sua") -> bytes:
    """``signed`` with an incremental update after its signature that adds visible text to the first page: the
    signed bytes stay intact, but the document shown is no longer the one signed (``signature-invalid``)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    extra = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 11 Tf 72 400 Td " + _pdf_string(text)
                                                   + b" Tj ET"))  # fmt: skip
    contents = page["/Contents"]
    existing = list(contents) if isinstance(contents, generic.ArrayObject) else [page.raw_get("/Contents")]
    page[pdf_name("/Contents")] = generic.ArrayObject([*existing, extra])
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def flip_signed_byte(signed: bytes) -> bytes:
    """``signed`` with one byte inside the signed range changed (the page's text): the digest no longer matches."""
    at = signed.index(b"Tj") - 3
    return signed[:at] + bytes([signed[at] ^ 0x01]) + signed[at + 1 :]

"""Signed documents: PDF signatures validated with pyHanko (``hub.security.pdf_signatures``), signed XML with the
hub's XML-DSig verifier (``hub.security.signed_documents``), both under the hub's trust rule, failing with
``<purpose>-<check>`` rules; the PDFs come from the demo signer (``hub.devtools.pdf_documents``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from lxml import etree

from hub.devtools.pdf_documents import (
    DemoPdfKeys,
    PdfSigningKey,
    append_change,
    demo_pdf_keys,
    flip_signed_byte,
    minimal_pdf,
    sign_pdf,
    signed_pdf,
    signed_receipt_pdf,
    signed_result_pdf,
)
from hub.errors import DocumentSignatureRejected
from hub.exchange.results import ResultCheck, document_format
from hub.security import keys
from hub.security.pdf_signatures import inspect_pdf, verify_pdf
from hub.security.signed_documents import inspect_xml, registered, rule, rules
from hub.security.signing import Signer, TrustStore

AGENCY_CODE, PAYMENT_CODE = "000.00.00.G10", "000.00.00.G30"
DOSSIER = "000.00.00.H12-251123-0042"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pdf-keys")


@pytest.fixture(scope="module")
def signers(key_dir: Path) -> DemoPdfKeys:
    return demo_pdf_keys(key_dir, agency_code=AGENCY_CODE, intermediary_code=PAYMENT_CODE)


@pytest.fixture(scope="module")
def result(signers: DemoPdfKeys) -> bytes:
    return signed_result_pdf(DOSSIER, signers.agency)


def agency_trust(signers: DemoPdfKeys) -> TrustStore:
    return registered(AGENCY_CODE, [signers.agency.certificate])


def check(data: bytes, signers: DemoPdfKeys, **options):
    return inspect_pdf(data, trust=agency_trust(signers), signer=AGENCY_CODE, purpose="result", **options)


# ---------------------------------------------------------------------------------------------- PDF


def test_a_result_signed_by_the_registered_agency_is_valid(signers: DemoPdfKeys, result: bytes) -> None:
    report = check(result, signers)
    assert report.valid and report.rule is None and report.reason == ""
    assert report.format == "pdf" and report.signatures == 1
    assert report.signer_name == "competent-agency"
    assert f"2.5.4.5={AGENCY_CODE}" in (report.signer_subject or "")
    assert report.signer_fingerprint == signers.agency.certificate.fingerprint(hashes.SHA256()).hex()
    assert report.trusted_as == "pinned for sender"
    assert report.digest_intact and report.covers_whole_document and report.modification == "NONE"
    assert report.signing_time is not None and report.signing_time.tzinfo is not None and not report.timestamped
    assert report.sha256 == hashlib.sha256(result).hexdigest() and report.size == len(result)
    assert verify_pdf(result, trust=agency_trust(signers), signer=AGENCY_CODE, purpose="result") == report
    assert report.as_dict()["signing_time"] == report.signing_time.isoformat()


def test_a_byte_changed_inside_the_signed_range_breaks_the_signature(signers: DemoPdfKeys, result: bytes) -> None:
    report = check(flip_signed_byte(result), signers)
    assert not report.valid and report.rule == "result-signature-invalid"
    assert not report.digest_intact and "changed after it was signed" in report.reason


def test_content_added_after_signing_is_a_modified_document(signers: DemoPdfKeys, result: bytes) -> None:
    changed = append_change(result)
    assert changed.startswith(result)  # the signed bytes are intact; the document shown is not the one signed
    report = check(changed, signers)
    assert not report.valid and report.rule == "result-signature-invalid"
    assert report.digest_intact and not report.covers_whole_document and report.modification == "OTHER"
    assert "changed after competent-agency signed it" in report.reason


def test_an_unsigned_pdf(signers: DemoPdfKeys) -> None:
    report = check(minimal_pdf("Kết quả", ["chưa ký"]), signers)
    assert not report.valid and report.rule == "result-unsigned" and report.signatures == 0


def test_a_pdf_signed_by_another_key_of_the_same_ca_is_not_the_registered_signer(
    signers: DemoPdfKeys, result: bytes
) -> None:
    forged = signed_result_pdf(DOSSIER, signers.other)
    report = check(forged, signers)
    assert not report.valid and report.rule == "result-signer-not-registered"
    assert report.digest_intact and report.signer_name == "other-signer"  # intact, just not the agency's
    with pytest.raises(DocumentSignatureRejected) as refused:
        report.require()
    assert refused.value.rule == "result-signer-not-registered" and refused.value.report is report
    # another connector's registered certificate does not sign for this one either
    elsewhere = registered(PAYMENT_CODE, [signers.intermediary.certificate])
    elsewhere.pin(AGENCY_CODE, signers.agency.certificate)
    payment_signed = signed_result_pdf(DOSSIER, signers.intermediary)
    report = inspect_pdf(payment_signed, trust=elsewhere, signer=AGENCY_CODE, purpose="result")
    assert report.rule == "result-signer-not-registered"
    # and with nothing registered nothing is accepted
    nothing = inspect_pdf(result, trust=TrustStore(), signer=AGENCY_CODE, purpose="result")
    assert nothing.rule == "result-signer-not-registered"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not a document", b"<html><body>404</body></html>", b"%PDF-1.7\nnothing else", b"\x00" * 2048],
    ids=["empty", "text", "html", "truncated", "binary"],
)
def test_not_a_pdf(signers: DemoPdfKeys, data: bytes) -> None:
    report = check(data, signers)
    assert not report.valid and report.rule == "result-not-a-pdf"


def test_a_truncated_signed_pdf_is_refused_not_raised(signers: DemoPdfKeys, result: bytes) -> None:
    report = check(result[: len(result) // 2], signers)
    assert not report.valid and report.rule == "result-not-a-pdf" and "cannot be read" in report.reason


def test_the_size_limit_is_checked_before_parsing(signers: DemoPdfKeys, result: bytes) -> None:
    report = check(result, signers, max_bytes=len(result) - 1)
    assert report.rule == "result-too-large" and report.signatures == 0
    assert check(result, signers, max_bytes=len(result)).valid


def test_the_rules_name_the_purpose(signers: DemoPdfKeys) -> None:
    trust = registered(PAYMENT_CODE, [signers.intermediary.certificate])
    receipt = signed_receipt_pdf("dvc-0001", 150000, signers.intermediary)
    assert inspect_pdf(receipt, trust=trust, signer=PAYMENT_CODE, purpose="receipt").valid
    refusals = {
        inspect_pdf(data, trust=trust, signer=PAYMENT_CODE, purpose="receipt").rule
        for data in (minimal_pdf("Bien lai"), signed_receipt_pdf("dvc-0001", 150000, signers.other), b"x")
    }
    assert refusals == {"receipt-unsigned", "receipt-signer-not-registered", "receipt-not-a-pdf"}
    assert refusals <= rules("receipt") and max(len(r) for r in rules("receipt")) <= 32  # a dead letter's reason
    with pytest.raises(ValueError, match="purpose"):
        rule("Receipt!", "unsigned")


def test_a_registered_certificate_is_judged_at_the_given_time(signers: DemoPdfKeys, result: bytes) -> None:
    after = signers.agency.certificate.not_valid_after_utc + dt.timedelta(days=1)
    report = check(result, signers, at=after)
    assert report.rule == "result-signer-not-registered" and "expired" in report.reason


def test_through_a_ca_anchor_the_subject_must_name_the_signer(signers: DemoPdfKeys, result: bytes) -> None:
    anchors = TrustStore([signers.ca_certificate])
    assert inspect_pdf(result, trust=anchors, signer=AGENCY_CODE, purpose="result").valid  # its serialNumber
    report = inspect_pdf(result, trust=anchors, signer=PAYMENT_CODE, purpose="result")
    assert report.rule == "result-signer-not-registered" and "serialNumber" in report.reason


def test_the_registered_signature_may_follow_others_but_nothing_may_follow_it(signers: DemoPdfKeys) -> None:
    officer_first = sign_pdf(signed_pdf("Ket qua", ["ban du thao"], signers.other, field_name="CanBo"),
                             signers.agency, field_name="CoQuan")  # fmt: skip
    report = check(officer_first, signers)
    assert report.valid and report.signatures == 2 and report.signer_name == "competent-agency"
    agency_first = sign_pdf(signed_result_pdf(DOSSIER, signers.agency), signers.other, field_name="SauCung")
    report = check(agency_first, signers)
    assert report.rule == "result-signature-invalid" and report.signatures == 2


def test_no_network_is_used_even_when_the_certificate_points_at_revocation_services(
    signers: DemoPdfKeys, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = with_revocation_links(key, keys.load_private_key(key_dir / keys.CA_KEY_FILE), signers.ca_certificate)
    signed = signed_result_pdf(DOSSIER, PdfSigningKey(key, cert))  # no chain embedded: an AIA fetch would be tempting
    connections: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        connections.append(args)
        raise AssertionError("the validator opened a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for trust in (registered(AGENCY_CODE, [cert]), TrustStore([signers.ca_certificate])):  # pinned, and via the CA
        report = inspect_pdf(signed, trust=trust, signer=AGENCY_CODE, purpose="result")
        assert report.valid, report.reason
    assert connections == []


def with_revocation_links(key: rsa.RSAPrivateKey, ca_key, ca_cert: x509.Certificate) -> x509.Certificate:
    """A signing certificate for ``AGENCY_CODE`` naming a CRL, an OCSP responder and its issuer's URL."""
    now = dt.datetime.now(dt.UTC)
    link = x509.UniformResourceIdentifier
    name = [x509.NameAttribute(NameOID.COMMON_NAME, "agency"), x509.NameAttribute(NameOID.SERIAL_NUMBER, AGENCY_CODE)]
    crl = x509.DistributionPoint([link("http://127.0.0.1:9/ca.crl")], None, None, None)
    access = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, link("http://127.0.0.1:9/ocsp")),
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, link("http://127.0.0.1:9/ca.cer")),
    ]
    usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.CRLDistributionPoints([crl]), critical=False)
        .add_extension(x509.AuthorityInformationAccess(access), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


# ---------------------------------------------------------------------------------------------- signed XML


@pytest.fixture(scope="module")
def xml_signers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Signer]:
    folder = tmp_path_factory.mktemp("xml-keys")
    agency = keys.issue_key("agency-xml", folder, algorithm="ec", code=AGENCY_CODE)
    other = keys.issue_key("other-xml", folder)
    return Signer.from_files(agency.key_path, agency.cert_path), Signer.from_files(other.key_path, other.cert_path)


def signed_xml(signer: Signer, text: str = "Giấy chứng nhận") -> bytes:
    root = etree.fromstring(f"<KetQua><MaHoSo>{DOSSIER}</MaHoSo><NoiDung>{text}</NoiDung></KetQua>".encode())
    return etree.tostring(signer.sign(root), xml_declaration=True, encoding="UTF-8")


def test_signed_xml_results_use_the_hubs_verifier(xml_signers: tuple[Signer, Signer]) -> None:
    agency, other = xml_signers
    trust = registered(AGENCY_CODE, [agency.certificate])

    def inspect(data: bytes):
        return inspect_xml(data, trust=trust, signer=AGENCY_CODE, purpose="result")

    good = signed_xml(agency)
    report = inspect(good)
    assert report.valid and report.format == "xml" and report.signer_name == "agency-xml"
    assert report.digest_intact and report.covers_whole_document
    changed = good.replace("Giấy chứng nhận".encode(), "Giấy phép".encode())
    assert inspect(changed).rule == "result-signature-invalid"
    assert inspect(signed_xml(other)).rule == "result-signer-not-registered"
    assert inspect(b"<KetQua><MaHoSo>x</MaHoSo></KetQua>").rule == "result-unsigned"
    assert inspect(b"<KetQua>").rule == "result-malformed"
    assert inspect(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>').rule == "result-malformed"  # hardened parser


def test_the_result_check_picks_the_validator_by_content(
    signers: DemoPdfKeys, result: bytes, xml_signers: tuple[Signer, Signer]
) -> None:
    assert [document_format(d) for d in (result, b"\xef\xbb\xbf <x/>", b"GIF89a")] == ["pdf", "xml", "unknown"]
    agency, _ = xml_signers
    registered_certs = {AGENCY_CODE: (signers.agency.certificate, agency.certificate)}
    check_ = ResultCheck(lambda code: registered_certs.get(code, ()))
    certs = registered_certs[AGENCY_CODE]
    assert check_.verify(result, AGENCY_CODE, certs).valid
    assert check_.verify(signed_xml(agency), AGENCY_CODE, certs).valid
    assert check_.verify(b"GIF89a....", AGENCY_CODE, certs).rule == "result-not-a-pdf"
    assert check_.verify(result, AGENCY_CODE, ()).rule == "result-signer-not-registered"

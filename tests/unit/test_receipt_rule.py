"""The receipt rule (Quảng Nam Điều 14.3, Tiền Giang Điều 17.5, Ninh Thuận Điều 18.2; ``hub.flows.receipts``): an
e-receipt passes only when signed by a certificate registered as the payment connector's ``receipt_signers``
(pyHanko for a PDF), or — where the connector's profile says receipts are not signed — when it carries no
signature at all; what passes carries its verification into ``payment.receipt``. PDFs from the demo signers
(``hub.devtools.pdf_documents``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub import packets
from hub.devtools.pdf_documents import (
    DemoPdfKeys,
    append_change,
    demo_pdf_keys,
    flip_signed_byte,
    minimal_pdf,
    signed_receipt_pdf,
)
from hub.errors import DocumentSignatureRejected
from hub.flows.receipts import Receipt, document_format, judge_receipt
from hub.security.signed_documents import DocumentSignature
from mappings import payment as pm

PAYMENT = "000.00.00.G05"


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> DemoPdfKeys:
    return demo_pdf_keys(Path(tmp_path_factory.mktemp("receipt-keys")), intermediary_code=PAYMENT)


@pytest.fixture(scope="module")
def at(signers: DemoPdfKeys) -> dt.datetime:
    """When the receipts are checked: once the demo keys exist (their certificates start when issued)."""
    return max(signers.intermediary.certificate.not_valid_before_utc, dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def documents(signers: DemoPdfKeys) -> dict[str, bytes]:
    signed = signed_receipt_pdf("PAY-1", 575_000, signers.intermediary)
    return {
        "intermediary": signed,
        "other": signed_receipt_pdf("PAY-1", 575_000, signers.other),
        "unsigned": minimal_pdf("Bien lai dien tu", ["Ma tham chieu: PAY-1"]),
        "changed": append_change(signed),
        "flipped": flip_signed_byte(signed),
        "json": b'{"MaLoi": "00", "MaThamChieu": "PAY-1", "SoTien": 575000}',
    }


@pytest.fixture
def judge(signers: DemoPdfKeys, at: dt.datetime):
    def judged(data: bytes, *, required: bool, max_bytes: int = 1 << 20, certificates=None) -> Receipt:
        receipt = Receipt(data, "application/pdf", "GET_BILL")
        registered = [signers.intermediary.certificate] if certificates is None else certificates
        return judge_receipt(receipt, signer=PAYMENT, certificates=registered, required=required,
                             max_bytes=max_bytes, at=at)  # fmt: skip

    return judged


def held_rule(judge, data: bytes, **options) -> str:
    with pytest.raises(DocumentSignatureRejected) as held:
        judge(data, **options)
    assert isinstance(held.value.report, DocumentSignature) and held.value.report.rule == held.value.rule
    return held.value.rule


def test_the_intermediarys_signed_pdf_passes_with_its_verification(judge, at, documents) -> None:
    receipt = judge(documents["intermediary"], required=True)
    checked = receipt.verification
    assert checked is not None
    assert (checked.format, checked.required, checked.valid, checked.rule, checked.signer) == (
        "pdf", True, True, None, PAYMENT)  # fmt: skip
    assert checked.signer_name == "payment-intermediary" and checked.trusted_as == "pinned for sender"
    assert checked.covers_whole_document and checked.modification in (None, "NONE")
    assert checked.checked_at == at and checked.validator.startswith("pyHanko ")
    assert checked.size == len(documents["intermediary"])
    # it fits the packet (XSD and model) the province receives
    model = packets.example("payment.receipt").model_copy(
        update={"signed_receipt": receipt.document, "verification": checked}
    )
    assert packets.from_xml("payment.receipt", packets.to_xml(model)) == model


@pytest.mark.parametrize(
    ("document", "rule"),
    [
        ("other", "receipt-signer-not-registered"),
        ("unsigned", "receipt-unsigned"),
        ("changed", "receipt-signature-invalid"),
        ("flipped", "receipt-signature-invalid"),
        ("json", "receipt-not-a-pdf"),
    ],
)
def test_where_receipts_are_signed_anything_but_the_intermediarys_signature_holds_it(
    judge, documents, document: str, rule: str
) -> None:
    assert held_rule(judge, documents[document], required=True) == rule


@pytest.mark.parametrize(
    ("document", "rule"),
    [("other", "receipt-signer-not-registered"), ("changed", "receipt-signature-invalid"),
     ("flipped", "receipt-signature-invalid")],
)  # fmt: skip
def test_where_receipts_are_not_signed_a_signature_that_is_there_must_still_be_the_intermediarys(
    judge, documents, document: str, rule: str
) -> None:
    assert held_rule(judge, documents[document], required=False) == rule


@pytest.mark.parametrize(("document", "fmt", "rule"), [("unsigned", "pdf", "receipt-unsigned"),
                                                       ("json", "json", "receipt-not-a-pdf")])  # fmt: skip
def test_where_receipts_are_not_signed_an_unsigned_one_passes_saying_so(
    judge, documents, document: str, fmt: str, rule: str
) -> None:
    checked = judge(documents[document], required=False).verification
    assert checked is not None
    assert (checked.format, checked.required, checked.valid, checked.rule) == (fmt, False, False, rule)


def test_too_large_a_receipt_is_held_before_it_is_read_whatever_the_profile(judge, documents) -> None:
    for required in (True, False):
        rule = held_rule(judge, documents["intermediary"], required=required, max_bytes=1000)
        assert rule == "receipt-too-large"


def test_no_registered_signer_holds_every_signed_receipt(judge, documents) -> None:
    rule = held_rule(judge, documents["intermediary"], required=True, certificates=[])
    assert rule == "receipt-signer-not-registered"


def test_document_format_is_read_from_the_bytes() -> None:
    assert [document_format(d) for d in (b"%PDF-1.7\n", b"\xef\xbb\xbf <BienLai/>", b' {"a": 1}', b"[]", b"GIF89")] \
        == ["pdf", "xml", "json", "json", "unknown"]  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "values", "signed"),
    [
        ("paygov/1.0.6", {}, True),
        ("paygov/1.0.6", {"receipt_signed": "false"}, False),
        ("paygov/lgsp", {}, False),
        ("paygov/lgsp", {"receipt_signed": "true"}, True),
        (None, {}, True),  # no profile: paygov/1.0.6's default
    ],
)
def test_the_profile_says_whether_receipts_are_signed(profile: str | None, values: dict, signed: bool) -> None:
    assert pm.receipt_signed(profile, values) is signed


def test_receipt_signers_are_read_like_certificates_and_only_for_payment_connectors(signers: DemoPdfKeys) -> None:
    from hub.errors import SpecInvalidError
    from hub.registry.spec import ConnectorSpec, parse_spec

    base = {"code": PAYMENT, "name": "Payment platform", "kind": "payment", "receives": ["payment.request"]}
    pem = signers.intermediary.cert_pem
    spec = parse_spec({**base, "receipt_signers": [pem, pem]})
    assert spec.receipt_signers == (pem,)  # read once, as PEM
    assert ConnectorSpec.from_stored(spec.stored(), (), True).receipt_signers == spec.receipt_signers
    with pytest.raises(SpecInvalidError) as refused:
        parse_spec({**base, "receipt_signers": ["certs/bank.pem"]})  # a file path, and no folder to read it in
    assert [i.path for i in refused.value.issues] == ["receipt_signers[0]"]
    ministry = {"code": "000.00.00.G22", "name": "Ministry", "kind": "ministry", "sends": ["dossier.status"]}
    with pytest.raises(SpecInvalidError) as refused:
        parse_spec({**ministry, "receipt_signers": [pem]})
    assert [i.rule for i in refused.value.issues] == ["receipt-signers-kind"]

"""F3, payment intermediaries: checksum vectors and message builders, the platform simulator over real HTTP,
the adapter's retry classification, and the CONFIRM callback (unknown connector, garbage and forged checksum
refused and only counted; unregistered receipt signer, amount mismatch, unknown reference refused and recorded;
a repeated CONFIRM idempotent; success routes the payment.receipt to the province and the 6 → 4 status to the
national portal). Refunds (Tiền Giang Điều 17.4): a payment.request of kind refund → REFUND → CONFIRM_REFUND with
a bank-signed receipt, the same checks plus the original reference and what was paid, a payment.receipt of kind
refund to the province."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import prometheus_client
import pytest
import requests
import sqlalchemy as sa
from lxml import etree
from pydantic import ValidationError

from adapters.base import OutboundRequest, PermanentDeliveryError
from adapters.payment import PaymentAdapter
from hub import packets
from hub.devtools.simulators.payment import DEFAULT_PARTNERS, PaymentSimulator
from hub.errors import MappingError, ReceiptRejected
from hub.exchange.worker import OutboundBuilder
from hub.flows.payments import ID_NAMESPACE
from hub.flows.receipts import sign_receipt, verify_receipt
from hub.packets.common import FeeLine
from hub.runtime import hub_signer
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import sign_payload
from hub.store import flow_records
from mappings import payment as pm
from tests.support import FAILURE_MODES, hub_client, hub_settings, post_accepted, province_connector

HUB, PROVINCE, PORTAL, PAYMENT = "000.00.00.H00", "000.00.00.H12", "000.00.00.G22", "000.00.00.G05"
ADMIN_KEY = "admin-secret-key"
PARTNER = "LIENTHONG"
SECRET = DEFAULT_PARTNERS[PARTNER]
AT = datetime(2025, 11, 24, 2, 47, tzinfo=UTC)  # 09:47 in Hà Nội


# ---------------------------------------------------------------------------------------------- checksums


def test_checksum_vectors() -> None:
    query = {"LoaiBanTin": "QUERY", "PhienBan": "1.0.0", "MaDoiTac": PARTNER, "MaThamChieu": "PAY-1",
             "ThoiGianGD": "20251124094700"}  # fmt: skip
    assert pm.checksum_input(query, "s3cret") == "QUERY|1.0.0|LIENTHONG|PAY-1|20251124094700|s3cret"
    assert pm.checksum(query, "s3cret") == "5a0f3606bbe1e1447072e65eab57de626220f84be0f62ae8ec0a90b099b3249c"
    assert pm.query_message(pm.QUERY, partner_code=PARTNER, reference="PAY-1", at=AT) == query
    confirm = pm.confirm_message(partner_code=PARTNER, reference="PAY-1", amount=575000, transaction_id="FT1",
                                 bank_code="VCB", at=AT, info="Nop phi")  # fmt: skip
    assert pm.checksum(confirm, "s3cret") == "a23c07d7f9e551d1dff2ce52bdaf57b303043c99a4fcae99862f8f8eb6261dde"
    signed = pm.sign(confirm, "s3cret")
    assert pm.checksum_ok(signed, "s3cret") and not pm.checksum_ok(signed, "other")
    assert not pm.checksum_ok({**signed, "SoTien": 1}, "s3cret")


def test_init_vector_and_fee_lines() -> None:
    request = packets.example("payment.request").model_copy(update={"reference": "PAY-1", "description": "Nop phi"})
    message = pm.init_message(request, partner_code=PARTNER, at=AT)
    assert pm.checksum_input(message, "s3cret") == (
        "INIT|1.0.0|LIENTHONG|PAY-1|575000|PAY|1|1|vi|VND||Nop phi|20251124094700|127.0.0.1|s3cret"
    )
    assert pm.checksum(message, "s3cret") == "a818eb56fb9b9c31e92aa097b2ba9de946df903c4fc582a39faec4596313fbf9"
    bill = message["ThongTinBienLai"]
    assert bill["MaHoSo"] == request.dossier_code and bill["MaTTHC"] == request.procedure_code
    assert [x["SoTien"] for x in bill["PhiLePhi"]] == [75_000, 500_000]


def test_receipt_from_confirm() -> None:
    confirm = pm.confirm_message(partner_code=PARTNER, reference="PAY-1", amount=575000, transaction_id="FT1",
                                 bank_code="VCB", at=AT)  # fmt: skip
    receipt = pm.receipt_from_confirm(confirm, dossier_code=packets.examples.DOSSIER_CODE, signed_receipt=b"<x/>")
    assert receipt.paid_at == AT and receipt.amount == 575000 and receipt.result_code == "00"
    packets.validate_element("payment.receipt", packets.to_element(receipt))


# ---------------------------------------------------------------------------------------------- simulator + adapter


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with PaymentSimulator(key_dir=tmp_path_factory.mktemp("bank")) as server:
        yield server


def request_for(reference: str | None = None):
    return packets.example("payment.request").model_copy(
        update={"reference": reference or f"PAY-{uuid.uuid4().hex[:10]}"}
    )


def test_init_query_pay_and_get_bill_over_http(sim) -> None:
    adapter = PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET, timeout_s=2)
    request = request_for()
    _, answer = adapter.init(request)
    assert answer["UrlThanhToan"].endswith(request.reference)
    assert adapter.query(request.reference)["TrangThai"] == "CHUA_THANH_TOAN"
    with pytest.raises(PermanentDeliveryError, match="MaLoi 04"):
        adapter.query(request.reference, pm.GET_BILL)
    confirm = sim.confirmation({"MaThamChieu": request.reference})
    assert pm.checksum_ok(confirm, SECRET) and confirm["SoTien"] == 575000
    assert adapter.query(request.reference)["TrangThai"] == "DA_THANH_TOAN"
    bill = base64.b64decode(adapter.query(request.reference, pm.GET_BILL)["BienLai"])
    from cryptography import x509

    bank = x509.load_pem_x509_certificate(sim.bank_cert_pem.encode())
    assert verify_receipt(bill, [bank]).findtext("MaThamChieu") == request.reference


def test_wrong_secret_and_reused_reference_are_permanent(sim) -> None:
    with pytest.raises(PermanentDeliveryError, match="MaLoi 01"):
        PaymentAdapter(sim.url, partner_code=PARTNER, secret="wrong").init(request_for())
    adapter = PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET)
    request = request_for()
    adapter.init(request)
    adapter.init(request)  # the same INIT again is fine
    other = request.model_copy(update={"amount": 75_000, "fee_lines": request.fee_lines[:1]})
    with pytest.raises(PermanentDeliveryError, match="MaLoi 03"):
        adapter.init(other)


@pytest.mark.parametrize(("mode", "error"), FAILURE_MODES)
def test_failure_modes_are_classified(sim, mode: str, error: type) -> None:
    sim.fail(mode, count=1)
    with pytest.raises(error) as caught:
        PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET, timeout_s=2).init(request_for())
    if mode != "4xx":
        assert not isinstance(caught.value, PermanentDeliveryError)


def test_receipt_signature_checks(sim, pki) -> None:
    from cryptography import x509

    bank = x509.load_pem_x509_certificate(sim.bank_cert_pem.encode())
    doc = b"<BienLai><MaThamChieu>R</MaThamChieu><SoTien>1</SoTien></BienLai>"
    signed = sign_receipt(sim.bank_signer, doc)
    assert verify_receipt(signed, [bank]).findtext("SoTien") == "1"
    with pytest.raises(ReceiptRejected) as caught:
        verify_receipt(sign_receipt(sim.impostor_signer, doc), [bank])
    assert caught.value.rule == "receipt-signer"
    with pytest.raises(ReceiptRejected) as caught:
        verify_receipt(signed.replace(b"<SoTien>1<", b"<SoTien>9<"), [bank])
    assert caught.value.rule == "receipt-signature"
    with pytest.raises(ReceiptRejected) as caught:
        verify_receipt(doc, [bank])
    assert caught.value.rule == "receipt-unsigned"


# ---------------------------------------------------------------------------------------------- the callback


@pytest.fixture
def api(tmp_path: Path, pki, sim):
    specs = [
        province_connector(pki, sends=["payment.request"], receives=["payment.receipt"]),
        {"code": PORTAL, "name": "National portal", "kind": "national_portal", "receives": ["dossier.status"],
         "endpoint": {"url": "http://127.0.0.1:9/api", "transport": "json",
                      "credentials": {"username": "u", "password": "p"}}},
        {"code": PAYMENT, "name": "Payment platform", "kind": "payment", "receives": ["payment.request"],
         "endpoint": {"url": sim.url, "transport": "json",
                      "credentials": {"username": PARTNER, "password": SECRET}},
         "certificates": [sim.bank_cert_pem]},
    ]  # fmt: skip
    with hub_client(hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY), specs) as client:
        yield client


def worker_request(api, data: bytes, adapter: PaymentAdapter) -> OutboundRequest:
    """What the worker hands the adapter for the queued envelope: signed by the hub, mapped to the INIT/REFUND."""
    builder = OutboundBuilder(hub_signer(api.app.state.hub.runtime.settings), HUB)
    return builder.prepare(data, PAYMENT, adapter.partner_format).request(PAYMENT)


def initiate(api, pki, sim) -> tuple[str, str]:
    """The province sends a payment.request; the payment adapter INITs it. Returns (reference, message id)."""
    hub = api.app.state.hub
    request = request_for()
    header = EnvelopeHeader(sender=PROVINCE, receiver=PAYMENT, message_type="payment.request",
                            dossier_code=request.dossier_code)  # fmt: skip
    data = etree.tostring(sign_payload(pki.province.signer, header, packets.to_element(request)))
    assert post_accepted(api, data, api.keys[PROVINCE])["destinations"] == [PAYMENT]
    adapter = PaymentAdapter(
        sim.url, partner_code=PARTNER, secret=SECRET, on_initiated=flow_records.initiated_recorder(hub.store.engine)
    )
    receipt = adapter.deliver(worker_request(api, data, adapter))
    assert "UrlThanhToan" in receipt.detail and b"MaXacThuc" in receipt.sent
    sent = json.loads(receipt.sent)  # the body exactly as posted: stamped and checksummed by the adapter
    assert sent["MaDoiTac"] == PARTNER and sent["ThoiGianGD"] is not None and pm.checksum_ok(sent, SECRET)
    return request.reference, header.message_id


def callback(api, message: dict):
    return api.post(f"/api/v1/callbacks/payment/{PAYMENT}", json=message)


def refusals(api) -> list[dict]:
    return api.get("/api/v1/partner-refusals", headers={"X-Api-Key": ADMIN_KEY}).json()


def refused_count(connector: str, reason: str) -> float:
    """``lienthong_callbacks_refused_total`` for one label set (the counter is process-wide: compare deltas)."""
    labels = {"connector": connector, "reason": reason}
    return prometheus_client.REGISTRY.get_sample_value("lienthong_callbacks_refused_total", labels) or 0.0


def trace(api, message_id: str):
    return api.get(f"/api/v1/messages/{message_id}", headers={"X-Api-Key": ADMIN_KEY})


def test_confirm_routes_the_receipt_and_the_status_and_is_idempotent(api, pki, sim) -> None:
    reference, request_id = initiate(api, pki, sim)
    confirm = sim.confirmation({"MaThamChieu": reference})
    response = callback(api, confirm)
    assert response.status_code == 200 and response.json()["MaLoi"] == "00", response.text
    receipt_id = str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{reference}"))
    status_id = str(uuid.uuid5(ID_NAMESPACE, f"dossier.status:{reference}"))
    receipt = trace(api, receipt_id).json()
    assert receipt["message_type"] == "payment.receipt" and receipt["correlation_id"] == request_id
    assert [d["destination"] for d in receipt["deliveries"]] == [PROVINCE]
    status = trace(api, status_id).json()
    assert [d["destination"] for d in status["deliveries"]] == [PORTAL]
    hub = api.app.state.hub
    payment = flow_records.payment(hub.store.engine, reference)
    assert payment.state == "paid" and payment.bank_transaction_id == confirm["MaGiaoDich"]
    envelope = hub.store.trace(receipt_id)
    assert envelope is not None
    again = callback(api, confirm)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(trace(api, receipt_id).json()["deliveries"]) == 1
    assert refusals(api) == []


def test_forged_checksum_is_refused_and_counted_not_stored(api, pki, sim) -> None:
    reference, _ = initiate(api, pki, sim)
    before = refused_count(PAYMENT, "checksum")
    response = callback(api, sim.confirmation({"MaThamChieu": reference, "forge_checksum": True}))
    assert response.status_code == 401 and response.json()["MaLoi"] == "01"
    assert refusals(api) == []
    assert refused_count(PAYMENT, "checksum") == before + 1
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "initiated"


def test_receipt_signed_by_an_unregistered_key_is_refused(api, pki, sim) -> None:
    reference, _ = initiate(api, pki, sim)
    response = callback(api, sim.confirmation({"MaThamChieu": reference, "signer": "impostor"}))
    assert response.status_code == 400 and response.json()["rule"] == "receipt-signer"
    assert refusals(api)[0]["rule"] == "receipt-signer"
    assert trace(api, str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{reference}"))).status_code == 404


def test_amount_mismatch_and_unknown_reference_are_refused(api, pki, sim) -> None:
    reference, _ = initiate(api, pki, sim)
    assert callback(api, sim.confirmation({"MaThamChieu": reference, "SoTien": 1000})).json()["rule"] == (
        "amount-mismatch"
    )
    unknown = callback(api, sim.confirmation({"MaThamChieu": reference, "reference": "PAY-NOBODY-ASKED"}))
    assert unknown.status_code == 404 and unknown.json()["rule"] == "unknown-reference"
    assert [r["rule"] for r in refusals(api)] == ["unknown-reference", "amount-mismatch"]
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).status_code == 200  # the real one still works


def test_unauthenticated_callbacks_write_no_row_and_are_counted(api) -> None:
    """50 junk callbacks (unknown connector, garbage, a stranger's partner code) leave the store as it was; the
    refusals are counted per rule, unknown connector codes under one ``unknown`` label."""
    counted = [("unknown", "unknown-connector"), (PAYMENT, "malformed"), (PAYMENT, "partner-code")]
    before = [refused_count(*labels) for labels in counted]
    stranger = {"LoaiBanTin": "CONFIRM", "MaDoiTac": "SOMEONE", "MaThamChieu": "PAY-1", "MaXacThuc": "x"}
    for n in range(17):
        assert api.post(f"/api/v1/callbacks/payment/000.00.00.X{n:02d}", json={}).status_code == 404
        assert api.post(f"/api/v1/callbacks/payment/{PAYMENT}", content=b"not json").status_code == 400
        if n < 16:
            assert api.post(f"/api/v1/callbacks/payment/{PAYMENT}", json=stranger).json()["rule"] == "partner-code"
    assert refusals(api) == []
    assert [refused_count(*labels) - b for labels, b in zip(counted, before, strict=True)] == [17, 17, 16]


def test_simulator_posts_confirm_to_the_callback_url(sim) -> None:
    """/_pay sends the CONFIRM over real HTTP to callback_url (here a throw-away receiver)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = b'{"MaLoi": "00"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        adapter = PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET)
        request = request_for()
        adapter.init(request)
        requests.post(sim.base_url + "/_control", json={"callback_url": f"http://127.0.0.1:{server.server_port}/cb"},
                      timeout=5)  # fmt: skip
        answer = requests.post(sim.base_url + "/_pay", json={"MaThamChieu": request.reference, "repeat": 2}, timeout=10)
        assert [r["status"] for r in answer.json()["results"]] == [200, 200]
        assert len(got) == 2 and got[0] == got[1] and pm.checksum_ok(got[0], SECRET)
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------- refunds


def refund_for(original: str, amount: int = 75_000, reference: str | None = None):
    return request_for(reference or f"RF-{uuid.uuid4().hex[:10]}").model_copy(
        update={"kind": "refund", "original_reference": original, "amount": amount,
                "fee_lines": [FeeLine(code="LP01", name="Lệ phí hoàn trả", amount=amount)],
                "description": "Hoàn phí: cơ quan không giải quyết được hồ sơ"}
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- packets, mapping


def test_refund_request_and_receipt_round_trip_and_validate() -> None:
    refund = refund_for("PAY-H12-251123-000042", reference="RF-1")
    xml = packets.to_xml(refund)
    assert b"<p:kind>refund<" in xml and b"<p:originalReference>PAY-H12-251123-000042<" in xml
    assert packets.validate_xml("payment.request", xml) == []
    assert packets.from_xml("payment.request", xml) == refund
    plain = packets.to_xml(packets.example("payment.request")).replace(b"<p:kind>payment</p:kind>", b"")
    assert packets.from_xml("payment.request", plain).kind == "payment"  # absent kind: a payment
    with pytest.raises(ValidationError, match="refund-original-reference"):
        refund.model_copy(update={"original_reference": None}).model_validate(
            {**refund.model_dump(), "original_reference": None}
        )
    with pytest.raises(ValidationError, match="refund-original-reference"):
        packets.example("payment.request").model_validate(
            {**packets.example("payment.request").model_dump(), "original_reference": "PAY-1"}
        )
    confirm = pm.confirm_message(partner_code=PARTNER, reference="RF-1", amount=75_000, transaction_id="FT2",
                                 bank_code="VCB", at=AT, original_reference="PAY-1")  # fmt: skip
    receipt = pm.receipt_from_confirm(confirm, dossier_code=refund.dossier_code, signed_receipt=b"<x/>")
    assert receipt.kind == "refund" and receipt.original_reference == "PAY-1"
    assert packets.validate_element("payment.receipt", packets.to_element(receipt)) == []


def test_refund_checksum_orders_are_ours_and_documented() -> None:
    message = pm.refund_message(refund_for("PAY-1", reference="RF-1"), partner_code=PARTNER, at=AT)
    assert pm.checksum_input(message, "s3cret") == (
        "REFUND|1.0.0|LIENTHONG|RF-1|PAY-1|75000|20251124094700|Hoàn phí: cơ quan không giải quyết được hồ sơ|s3cret"
    )
    confirm = pm.confirm_message(partner_code=PARTNER, reference="RF-1", amount=75_000, transaction_id="FT2",
                                 bank_code="VCB", at=AT, original_reference="PAY-1")  # fmt: skip
    assert confirm["LoaiBanTin"] == pm.CONFIRM_REFUND
    assert (
        pm.checksum_input(confirm, "k") == "CONFIRM_REFUND|00|LIENTHONG|RF-1|PAY-1|75000|VND|FT2|VCB|20251124094700||k"
    )
    with pytest.raises(MappingError):
        pm.refund_message(request_for(), partner_code=PARTNER, at=AT)


# ---------------------------------------------------------------------------------------------- simulator


def test_simulator_refunds_only_a_paid_reference_up_to_what_was_paid(sim) -> None:
    adapter = PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET, timeout_s=2)
    paid = request_for()
    adapter.init(paid)
    with pytest.raises(PermanentDeliveryError, match="MaLoi 04"):  # not paid yet
        adapter.refund(refund_for(paid.reference))
    sim.confirmation({"MaThamChieu": paid.reference})
    with pytest.raises(PermanentDeliveryError, match="MaLoi 04"):
        adapter.refund(refund_for("PAY-NEVER-SEEN"))
    with pytest.raises(PermanentDeliveryError, match="MaLoi 03"):
        adapter.refund(refund_for(paid.reference, amount=575_001))
    refund = refund_for(paid.reference, amount=500_000)
    _, answer = adapter.refund(refund)
    assert answer["MaLoi"] == "00"
    adapter.refund(refund)  # the same REFUND again is fine
    confirm = sim.confirmation({"MaThamChieu": refund.reference})
    assert confirm["LoaiBanTin"] == pm.CONFIRM_REFUND and confirm["MaThamChieuGoc"] == paid.reference
    assert pm.checksum_ok(confirm, SECRET)
    with pytest.raises(PermanentDeliveryError, match="MaLoi 03"):  # 75 000 left to refund
        adapter.refund(refund_for(paid.reference, amount=75_001))
    with pytest.raises(PermanentDeliveryError, match="MaLoi 01"):
        PaymentAdapter(sim.url, partner_code=PARTNER, secret="wrong").refund(refund_for(paid.reference))


# ---------------------------------------------------------------------------------------------- through the hub


def pay(api, pki, sim) -> str:
    reference, _ = initiate(api, pki, sim)
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).status_code == 200
    return reference


def request_refund(api, pki, sim, original: str, amount: int = 75_000) -> tuple[str, str]:
    """The province sends a refund payment.request; the payment adapter sends REFUND. (reference, message id)"""
    hub = api.app.state.hub
    refund = refund_for(original, amount)
    header = EnvelopeHeader(sender=PROVINCE, receiver=PAYMENT, message_type="payment.request",
                            dossier_code=refund.dossier_code)  # fmt: skip
    data = etree.tostring(sign_payload(pki.province.signer, header, packets.to_element(refund)))
    post_accepted(api, data, api.keys[PROVINCE])
    adapter = PaymentAdapter(
        sim.url, partner_code=PARTNER, secret=SECRET, on_initiated=flow_records.initiated_recorder(hub.store.engine)
    )
    receipt = adapter.deliver(worker_request(api, data, adapter))
    assert receipt.detail.startswith(f"REFUND MaLoi=00 MaThamChieu={refund.reference} MaThamChieuGoc={original}")
    row = flow_records.payment(hub.store.engine, refund.reference)
    assert row.kind == "refund" and row.original_reference == original and row.amount == amount
    return refund.reference, header.message_id


def test_refund_routes_a_refund_receipt_and_is_idempotent(api, pki, sim) -> None:
    original = pay(api, pki, sim)
    reference, request_id = request_refund(api, pki, sim, original)
    confirm = sim.confirmation({"MaThamChieu": reference})
    response = callback(api, confirm)
    assert response.status_code == 200 and response.json()["MaLoi"] == "00", response.text
    receipt_id = str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{reference}"))
    routed = trace(api, receipt_id).json()
    assert routed["message_type"] == "payment.receipt" and routed["correlation_id"] == request_id
    assert [d["destination"] for d in routed["deliveries"]] == [PROVINCE]
    assert trace(api, str(uuid.uuid5(ID_NAMESPACE, f"dossier.status:{reference}"))).status_code == 404
    hub = api.app.state.hub
    envelope = hub.store.trace(receipt_id)
    assert envelope is not None
    row = flow_records.payment(hub.store.engine, reference)
    assert row.state == "refunded" and row.bank_transaction_id == confirm["MaGiaoDich"]
    assert flow_records.payment(hub.store.engine, original).state == "paid"
    again = callback(api, confirm)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(trace(api, receipt_id).json()["deliveries"]) == 1
    assert refusals(api) == []


def test_refund_receipt_payload_is_marked_refund(api, pki, sim) -> None:
    original = pay(api, pki, sim)
    reference, _ = request_refund(api, pki, sim, original)
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).status_code == 200
    hub = api.app.state.hub
    receipt_id = str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{reference}"))
    from hub.store.schema import messages

    with hub.store.engine.connect() as conn:
        data = conn.execute(sa.select(messages.c.envelope).where(messages.c.message_id == receipt_id)).scalar_one()
    assert b"<p:kind>refund<" in data and f"<p:originalReference>{original}<".encode() in data


def test_forged_unknown_and_mismatched_refunds_are_refused_and_recorded(api, pki, sim) -> None:
    original = pay(api, pki, sim)
    reference, _ = request_refund(api, pki, sim, original)
    forged = callback(api, sim.confirmation({"MaThamChieu": reference, "forge_checksum": True}))
    assert forged.status_code == 401 and forged.json()["rule"] == "checksum"
    unknown = callback(api, sim.confirmation({"MaThamChieu": reference, "reference": "RF-NOBODY-ASKED"}))
    assert unknown.status_code == 404 and unknown.json()["rule"] == "unknown-reference"
    no_original = callback(api, sim.confirmation({"MaThamChieu": reference, "MaThamChieuGoc": "PAY-NEVER-SEEN"}))
    assert no_original.status_code == 404 and no_original.json()["rule"] == "unknown-original-reference"
    more = callback(api, sim.confirmation({"MaThamChieu": reference, "SoTien": 575_000}))
    assert more.json()["rule"] == "amount-mismatch"
    impostor = callback(api, sim.confirmation({"MaThamChieu": reference, "signer": "impostor"}))
    assert impostor.json()["rule"] == "receipt-signer"
    recorded = refusals(api)
    assert [r["rule"] for r in recorded] == [
        "receipt-signer", "amount-mismatch", "unknown-original-reference", "unknown-reference"
    ]  # fmt: skip  (the forged checksum never authenticated: counted, not recorded)
    assert {r["kind"] for r in recorded} == {"payment.refund"} and {r["connector"] for r in recorded} == {PAYMENT}
    hub = api.app.state.hub
    assert flow_records.payment(hub.store.engine, reference).state == "initiated"
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).status_code == 200  # the real one still works


def test_refunds_above_what_was_paid_are_refused(api, pki, sim) -> None:
    """Two refunds of 400 000 of a 575 000 payment: the platform takes both requests (nothing refunded yet), but
    once the first is confirmed the hub refuses the second's confirmation."""
    original = pay(api, pki, sim)
    first, _ = request_refund(api, pki, sim, original, 400_000)
    second, _ = request_refund(api, pki, sim, original, 400_000)
    assert callback(api, sim.confirmation({"MaThamChieu": first})).status_code == 200
    response = callback(api, sim.confirmation({"MaThamChieu": second}))
    assert response.status_code == 400 and response.json()["rule"] == "refund-exceeds-paid"
    (refusal,) = refusals(api)
    assert refusal["reference"] == second and refusal["rule"] == "refund-exceeds-paid"
    assert flow_records.refunded_total(api.app.state.hub.store.engine, original) == 400_000


def test_a_payment_confirm_for_a_refund_reference_is_refused(api, pki, sim) -> None:
    """A CONFIRM (payment) naming a refund reference, or a CONFIRM_REFUND naming a payment: unknown-reference."""
    original = pay(api, pki, sim)
    reference, _ = request_refund(api, pki, sim, original)
    as_payment = pm.sign({**pm.confirm_message(partner_code=PARTNER, reference=reference, amount=75_000,
                                               transaction_id="FT9", bank_code="VCB", at=AT)}, SECRET)  # fmt: skip
    assert callback(api, as_payment).json()["rule"] == "unknown-reference"


def test_the_worker_payment_adapter_records_initiated_references_in_its_own_store(tmp_path) -> None:
    """``adapters_for(routing, store)``: the payment adapter's hook writes to the store the worker opened,
    not to whatever ``LIENTHONG_DATABASE_URL`` names."""
    from hub import packets
    from hub.exchange.routing import DestinationConfig
    from hub.runtime import adapter_for
    from hub.security.credentials import Credentials
    from hub.store import Store
    from hub.store import flow_records as partner_rows

    store = Store(f"sqlite:///{tmp_path / 'worker.db'}")
    store.migrate()
    cfg = DestinationConfig(
        endpoint="http://127.0.0.1:9/pay", kind="payment", credentials=Credentials(username="LIENTHONG", password="s")
    )
    adapter = adapter_for(cfg, store)
    request = packets.example("payment.request")
    adapter.on_initiated("000.00.00.P01", request, "msg-1", {"UrlThanhToan": "http://pay.example/x"})
    recorded = partner_rows.payment(store.engine, request.reference)
    assert recorded is not None and recorded.dossier_code == request.dossier_code
    store.close()

"""F3, the payment platform as sourced (PARTNER-FORMATS §3; issue 15 points 2, 3 and 4): the adapter against the
strict simulator over real HTTP (profile ``paygov/1.0.6``: one URL per kind, retry classification), the CONFIRM
callback (always HTTP 200: MaLoi 00 with the echoed fields for a sheet-shaped CONFIRM of an initiated payment, the
same answer and no second effect for a repeat; MaLoi 99 for a forged checksum, an unknown reference, another amount,
a failed payment, a receipt that cannot be fetched; junk only counted), the receipt rule (the e-receipt PDF signed
by the registered intermediary, validated with pyHanko, goes to the province with its verification before 6 → 4; one
signed by another key, or unsigned, holds the payment with a named rule), reconciliation (a lost CONFIRM settled by
QUERY after the configured delay, once, by ``reconcile`` and by the workers' schedule), PayGov via LGSP (profile
``paygov/lgsp``) end to end, and refunds (the hub's own protocol): refused for a resolved dossier, a refund receipt
routed, the checks of CONFIRM_REFUND."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from lxml import etree

from adapters.base import PermanentDeliveryError
from adapters.payment import PaymentAdapter
from hub import packets
from hub.devtools.simulators.paygov_lgsp import PayGovLgspSimulator
from hub.devtools.simulators.payment import DEFAULT_PARTNERS, PaymentSimulator
from hub.errors import ReceiptRejected, SpecInvalidError
from hub.exchange.worker import OutboundBuilder
from hub.flows.receipts import sign_receipt, verify_receipt
from hub.flows.reconcile import ReconcileSchedule, reconcile
from hub.flows.settlement import receipt_message_id, status_message_id
from hub.packets.common import FeeLine
from hub.runtime import adapter_for, hub_signer
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import sign_payload
from hub.store import flow_records
from mappings import payment as pm
from tests.support import FAILURE_MODES, hub_client, hub_settings, post_accepted, province_connector, wait_for

HUB, PROVINCE, PORTAL, PAYMENT, PAYGOV = (
    "000.00.00.H00",
    "000.00.00.H12",
    "000.00.00.G22",
    "000.00.00.G05",
    "000.00.00.G06",
)
ADMIN_KEY = "admin-secret-key"
PARTNER = "LIENTHONG"
SECRET = DEFAULT_PARTNERS[PARTNER]
GOLDEN = Path(__file__).parent.parent / "golden" / "payment"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with PaymentSimulator(key_dir=tmp_path_factory.mktemp("bank")) as server:
        yield server


@pytest.fixture(scope="module")
def paygov():
    with PayGovLgspSimulator() as server:
        yield server


def request_for(reference: str | None = None, **changes: Any):
    return packets.example("payment.request").model_copy(
        update={"reference": reference or f"PAY-{time.monotonic_ns() % 10**12}", **changes}
    )


def profiled_adapter(sim: PaymentSimulator, secret: str = SECRET, **kw: Any) -> PaymentAdapter:
    from mappings import profiles

    settings = profiles.resolve(profiles.get_profile(pm.PROFILE), sim.profile_values())
    return PaymentAdapter(sim.url, partner_code=PARTNER, secret=secret, settings=settings, profile=pm.PROFILE,
                          timeout_s=2, **kw)  # fmt: skip


# ---------------------------------------------------------------------------------------------- adapter + simulator


def test_init_query_pay_and_get_bill_over_http_one_url_per_kind(sim) -> None:
    adapter = profiled_adapter(sim)
    assert adapter.urls == {"INIT": sim.url + "/init", "QUERY": sim.url + "/query",
                            "GET_BILL": sim.url + "/get-bill", "REFUND": sim.url + "/refund"}  # fmt: skip
    request = request_for()
    sent, answer = adapter.init(request)
    assert answer["UrlThanhToan"].endswith(request.reference)
    assert sent["SoTien"] == "575000" and sent["PhienBan"] == "1.0.6" and sent["NgonNgu"] == "vi-VN"
    assert pm.query_result(adapter.query(request.reference, sent["ThoiGianGD"])).state == "pending"
    with pytest.raises(PermanentDeliveryError, match="MaLoi 99"):
        adapter.get_bill(request.reference)
    confirm = sim.confirmation({"MaThamChieu": request.reference})
    assert pm.checksum_ok(confirm, SECRET) and confirm["SoTien"] == 575000 and "BienLai" not in confirm
    assert pm.query_result(adapter.query(request.reference, sent["ThoiGianGD"])).state == "paid"
    assert adapter.get_bill(request.reference, confirm["ThoiGianGD"]).is_pdf
    kinds = [(r["LoaiBanTin"]) for r in sim.received()["requests"] if r["MaThamChieu"] == request.reference]
    assert kinds == ["INIT", "QUERY", "GET_BILL", "QUERY", "GET_BILL"] and sim.received()["refused"][-1][
        "LoaiBanTin"
    ] == "GET_BILL"  # fmt: skip


def test_a_reused_reference_for_another_amount_and_a_wrong_secret_are_permanent(sim) -> None:
    with pytest.raises(PermanentDeliveryError, match="MaLoi 99"):
        profiled_adapter(sim, secret="wrong").init(request_for())
    adapter = profiled_adapter(sim)
    request = request_for()
    adapter.init(request)
    adapter.init(request)  # the same INIT again is fine
    other = request.model_copy(update={"amount": 75_000, "fee_lines": request.fee_lines[:1]})
    with pytest.raises(PermanentDeliveryError, match="MaLoi 99"):
        adapter.init(other)


@pytest.mark.parametrize(("mode", "error"), FAILURE_MODES)
def test_failure_modes_are_classified(sim, mode: str, error: type) -> None:
    sim.fail(mode, count=1)
    with pytest.raises(error) as caught:
        profiled_adapter(sim).init(request_for())
    if mode != "4xx":
        assert not isinstance(caught.value, PermanentDeliveryError)


def test_refund_receipt_signature_checks(sim) -> None:
    """Refund receipts (the hub's own protocol) are XML-DSig signed by the bank's registered certificate."""
    from cryptography import x509

    bank = x509.load_pem_x509_certificate(sim.bank_cert_pem.encode())
    doc = b"<BienLai><MaThamChieu>R</MaThamChieu><SoTien>1</SoTien></BienLai>"
    signed = sign_receipt(sim.bank_signer, doc)
    assert verify_receipt(signed, [bank]).findtext("SoTien") == "1"
    for data, rule in ((sign_receipt(sim.impostor_signer, doc), "receipt-signer"),
                       (signed.replace(b"<SoTien>1<", b"<SoTien>9<"), "receipt-signature"),
                       (doc, "receipt-unsigned")):  # fmt: skip
        with pytest.raises(ReceiptRejected) as caught:
            verify_receipt(data, [bank])
        assert caught.value.rule == rule


# ---------------------------------------------------------------------------------------------- the callback


def payment_connector(sim: PaymentSimulator) -> dict[str, Any]:
    return {"code": PAYMENT, "name": "Payment platform", "kind": "payment", "receives": ["payment.request"],
            "endpoint": {"url": sim.url, "transport": "json",
                         "credentials": {"username": PARTNER, "password": SECRET}},
            "profile": "paygov/1.0.6", "profile_values": sim.profile_values(),
            "certificates": [sim.bank_cert_pem], "receipt_signers": [sim.intermediary_cert_pem]}  # fmt: skip


def paygov_connector(paygov: PayGovLgspSimulator) -> dict[str, Any]:
    return {"code": PAYGOV, "name": "PayGov via LGSP", "kind": "payment", "receives": ["payment.request"],
            "endpoint": {"url": paygov.url, "transport": "json",
                         "credentials": {"username": paygov.partner_code, "password": paygov.secret_key,
                                         "token": paygov.token, "lgsp_access_token": paygov.lgsp_access_token}},
            "profile": "paygov/lgsp", "profile_values": paygov.profile_values()}  # fmt: skip


def hub_specs(pki, payment: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        province_connector(pki, sends=["payment.request", "dossier.sync"], receives=["payment.receipt"]),
        {"code": PORTAL, "name": "National portal", "kind": "national_portal", "receives": ["dossier.status"],
         "endpoint": {"url": "http://127.0.0.1:9/api", "transport": "json",
                      "credentials": {"username": "u", "password": "p"}}},
        payment,
    ]  # fmt: skip


@pytest.fixture
def api(tmp_path: Path, pki, sim, migrated_copy):
    migrated_copy(tmp_path / "hub.db")  # hub_settings' store
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    with hub_client(settings, hub_specs(pki, payment_connector(sim))) as client:
        yield client


@pytest.fixture
def paygov_api(tmp_path: Path, pki, paygov, migrated_copy):
    migrated_copy(tmp_path / "hub.db")  # hub_settings' store
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    with hub_client(settings, hub_specs(pki, paygov_connector(paygov))) as client:
        yield client


def envelope(pki, model, receiver: str = PAYMENT) -> tuple[bytes, str]:
    header = EnvelopeHeader(sender=PROVINCE, receiver=receiver, message_type="payment.request",
                            dossier_code=model.dossier_code)  # fmt: skip
    return etree.tostring(sign_payload(pki.province.signer, header, packets.to_element(model))), header.message_id


def deliver(api, data: bytes, destination: str = PAYMENT):
    """What the worker does with the queued envelope: map it, hand it to the connector's adapter (built from its
    profile, recording the initiated reference in the hub's store)."""
    hub = api.app.state.hub
    adapter = adapter_for(hub.runtime.routing.destinations[destination], hub.store)
    builder = OutboundBuilder(hub_signer(hub.runtime.settings), HUB)
    outbound = builder.prepare(data, destination, adapter.partner_format)
    try:
        return adapter.deliver(outbound.request(destination))
    finally:
        adapter.close()


def initiate(api, pki, request=None) -> tuple[str, str]:
    """The province sends a payment.request; the payment adapter INITs it. Returns (reference, message id)."""
    request = request or request_for()
    data, message_id = envelope(pki, request)
    assert post_accepted(api, data, api.keys[PROVINCE])["destinations"] == [PAYMENT]
    receipt = deliver(api, data)
    assert "UrlThanhToan=" in receipt.detail and b"MaXacThuc" in receipt.sent
    sent = json.loads(receipt.sent)  # the body exactly as posted: stamped and checksummed by the adapter
    assert sent["MaDoiTac"] == PARTNER and pm.checksum_ok(sent, SECRET)
    row = flow_records.payment(api.app.state.hub.store.engine, request.reference)
    assert row.init_time == sent["ThoiGianGD"] and row.profile == "paygov/1.0.6" and row.payment_url
    return request.reference, message_id


def callback(api, message: dict | bytes, connector: str = PAYMENT):
    if isinstance(message, bytes):
        return api.post(f"/api/v1/callbacks/payment/{connector}", content=message)
    return api.post(f"/api/v1/callbacks/payment/{connector}", json=message)


def refused(response) -> tuple[int, str | None, str | None]:
    """(HTTP status, MaLoi, the rule header) of a callback's answer."""
    return response.status_code, response.json().get("MaLoi"), response.headers.get("X-Lienthong-Rule")


def refusals(api) -> list[dict]:
    return api.get("/api/v1/partner-refusals", headers={"X-Api-Key": ADMIN_KEY}).json()


def refused_count(connector: str, reason: str) -> float:
    """``lienthong_callbacks_refused_total`` for one label set (the counter is process-wide: compare deltas)."""
    labels = {"connector": connector, "reason": reason}
    return prometheus_client.REGISTRY.get_sample_value("lienthong_callbacks_refused_total", labels) or 0.0


def trace(api, message_id: str):
    return api.get(f"/api/v1/messages/{message_id}", headers={"X-Api-Key": ADMIN_KEY})


def sheet_confirm(reference: str, amount: int = 575000) -> dict[str, Any]:
    """The golden CONFIRM (shaped exactly as the sheet's, no receipt field) for ``reference``, signed."""
    golden = json.loads((GOLDEN / "OC-PI_1602-1621.TH-PC_13-23.CONFIRM.json").read_text(encoding="utf-8"))
    return pm.sign({**golden, "MaThamChieu": reference, "SoTien": amount}, SECRET)


def test_a_sheet_shaped_confirm_is_answered_200_00_with_the_echoed_fields_once(api, pki, sim) -> None:
    """Acceptance: a CONFIRM shaped exactly as the sheet's (no receipt) for an initiated payment is answered 200 MaLoi
    "00" with MaDoiTac and the echoed MaThamChieu, ThoiGianGD, MaXacThuc; the e-receipt fetched with GET_BILL goes to
    the province, status 4 to the portal. A second identical CONFIRM gets the same answer and changes nothing."""
    reference, request_id = initiate(api, pki)
    sim.confirmation({"MaThamChieu": reference})  # the platform has it paid (its GET_BILL then has a receipt)
    confirm = sheet_confirm(reference)
    assert set(confirm) == {*pm.CHECKSUM_FIELDS[pm.CONFIRM], "MaXacThuc"}
    response = callback(api, confirm)
    assert response.status_code == 200 and "X-Lienthong-Rule" not in response.headers, response.text
    assert response.json() == {"MaLoi": "00", "MoTaLoi": "Thành công", "MaDoiTac": PARTNER, "MaThamChieu": reference,
                               "ThoiGianGD": confirm["ThoiGianGD"], "MaXacThuc": confirm["MaXacThuc"]}  # fmt: skip
    receipt = trace(api, receipt_message_id(reference)).json()
    assert receipt["message_type"] == "payment.receipt" and receipt["correlation_id"] == request_id
    assert [d["destination"] for d in receipt["deliveries"]] == [PROVINCE]
    assert [d["destination"] for d in trace(api, status_message_id(reference)).json()["deliveries"]] == [PORTAL]
    hub = api.app.state.hub
    with hub.store.engine.connect() as conn:
        from hub.store.schema import messages

        stored = conn.execute(sa.select(messages.c.envelope).where(
            messages.c.message_id == receipt_message_id(reference))).scalar_one()  # fmt: skip
    document = packets.from_element("payment.receipt", _payload(stored))
    assert document.signed_receipt.startswith(b"%PDF-") and document.bank_transaction_id == confirm["MaGiaoDich"]
    assert document.verification is not None and document.verification.valid
    payment = flow_records.payment(hub.store.engine, reference)
    assert payment.state == "paid" and payment.confirm_time == confirm["ThoiGianGD"]
    bills = [r for r in sim.received()["requests"] if r["LoaiBanTin"] == "GET_BILL" and r["MaThamChieu"] == reference]
    assert [b["ThoiGianGD"] for b in bills] == [confirm["ThoiGianGD"]]

    again = callback(api, confirm)
    assert (again.status_code, again.json()) == (200, response.json())
    assert len(trace(api, receipt_message_id(reference)).json()["deliveries"]) == 1
    assert [
        r for r in sim.received()["requests"] if r["LoaiBanTin"] == "GET_BILL" and r["MaThamChieu"] == reference
    ] == bills
    assert flow_records.payment(hub.store.engine, reference).confirmed_at == payment.confirmed_at
    assert refusals(api) == []


def _payload(envelope: bytes) -> etree._Element:
    from hub.security.envelope import body_payload

    return body_payload(etree.fromstring(envelope))


def test_the_simulator_finds_the_hubs_answer_as_the_platform_expects(api, pki, sim) -> None:
    reference, _ = initiate(api, pki)
    sim.callback_url = str(api.base_url) + f"/api/v1/callbacks/payment/{PAYMENT}"
    try:
        confirm = sim.confirmation({"MaThamChieu": reference})
        answer = callback(api, confirm)
        from hub.devtools.simulators.payment_messages import answer_issues

        assert answer_issues(answer.json(), confirm, answer.status_code) == []
    finally:
        sim.callback_url = None


def test_forged_checksum_is_answered_99_counted_not_stored(api, pki, sim) -> None:
    reference, _ = initiate(api, pki)
    before = refused_count(PAYMENT, "checksum")
    forged = sim.confirmation({"MaThamChieu": reference, "forge_checksum": True})
    response = callback(api, forged)
    assert refused(response) == (200, "99", "checksum")
    assert response.json()["MaXacThuc"] == forged["MaXacThuc"] and response.json()["MoTaLoi"] == "Các lỗi khác"
    assert refusals(api) == []
    assert refused_count(PAYMENT, "checksum") == before + 1
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "initiated"


def test_amount_mismatch_unknown_reference_and_another_transaction_are_refused_and_recorded(api, pki, sim) -> None:
    reference, _ = initiate(api, pki)
    assert refused(callback(api, sim.confirmation({"MaThamChieu": reference, "SoTien": 1000}))) == (
        200, "99", "amount-mismatch")  # fmt: skip
    unknown = callback(api, sim.confirmation({"MaThamChieu": reference, "reference": "PAY-NOBODY-ASKED"}))
    assert refused(unknown) == (200, "99", "unknown-reference")
    real = sim.confirmation({"MaThamChieu": reference})
    assert callback(api, real).json()["MaLoi"] == "00"  # the real one still works
    other = pm.sign({**real, "MaGiaoDich": "FT-SOMETHING-ELSE"}, SECRET)
    assert refused(callback(api, other)) == (200, "99", "already-confirmed")
    assert [r["rule"] for r in refusals(api)] == ["already-confirmed", "unknown-reference", "amount-mismatch"]


def test_a_failed_payment_is_recorded_and_not_settled(api, pki, sim) -> None:
    reference, _ = initiate(api, pki)
    failed = sim.confirmation({"MaThamChieu": reference, "MaLoi": "99"})
    assert refused(callback(api, failed)) == (200, "99", "payment-failed")
    hub = api.app.state.hub
    assert flow_records.payment(hub.store.engine, reference).state == "failed"
    assert trace(api, receipt_message_id(reference)).status_code == 404


def test_a_receipt_that_cannot_be_fetched_refuses_the_confirm_and_reconciliation_settles_it(api, pki, sim) -> None:
    """GET_BILL down: the CONFIRM is answered 99 ``receipt-unavailable`` (recorded) and the payment stays open; the
    next reconciliation QUERYs it, fetches the receipt and settles it."""
    reference, _ = initiate(api, pki)
    confirm = sim.confirmation({"MaThamChieu": reference})
    sim.fail("5xx", count=1)
    assert refused(callback(api, confirm)) == (200, "99", "receipt-unavailable")
    assert [(r["kind"], r["rule"]) for r in refusals(api)] == [("payment.confirm", "receipt-unavailable")]
    hub = api.app.state.hub
    assert flow_records.payment(hub.store.engine, reference).state == "initiated"
    row = flow_records.payment(hub.store.engine, reference)
    results = reconcile(hub.runtime, after_s=60, at=row.created_at + timedelta(seconds=61))
    assert [(r.reference, r.outcome, r.trang_thai) for r in results] == [(reference, "settled", "1")]
    assert [d["destination"] for d in trace(api, receipt_message_id(reference)).json()["deliveries"]] == [PROVINCE]


# ---------------------------------------------------------------------------------------------- the receipt rule


def stored_receipt(api, reference: str):
    """The payment.receipt the hub routed for ``reference`` (from the message log), or ``None``."""
    from hub.store.schema import messages

    with api.app.state.hub.store.engine.connect() as conn:
        stored = conn.execute(sa.select(messages.c.envelope).where(
            messages.c.message_id == receipt_message_id(reference))).scalar_one_or_none()  # fmt: skip
    return None if stored is None else packets.from_element("payment.receipt", _payload(stored))


def test_a_receipt_signed_by_the_intermediary_goes_to_the_province_with_its_verification_then_6_to_4(
    api, pki, sim
) -> None:
    """The receipt rule (Quảng Nam Điều 14.3): GET_BILL's PDF, signed with pyHanko by the demo CA's
    payment-intermediary key registered as the connector's receipt_signers, is validated and goes to the province in
    payment.receipt with the verification; the 6 → 4 dossier.status is routed to the portal with it."""
    from hub.security.pdf_signatures import inspect_pdf, registered

    reference, _ = initiate(api, pki)
    response = callback(api, sim.confirmation({"MaThamChieu": reference}))
    assert (response.json()["MaLoi"], response.headers.get("X-Lienthong-Rule")) == ("00", None)
    receipt = stored_receipt(api, reference)
    checked = receipt.verification
    assert (checked.format, checked.required, checked.valid, checked.rule, checked.signer, checked.signer_name) == (
        "pdf", True, True, None, PAYMENT, "payment-intermediary")  # fmt: skip
    assert checked.covers_whole_document and checked.signatures == 1 and checked.validator.startswith("pyHanko ")
    intermediary = sim.pdf_keys.intermediary.certificate
    assert checked.signer_fingerprint == intermediary.fingerprint(hashes.SHA256()).hex()
    again = inspect_pdf(receipt.signed_receipt, trust=registered(PAYMENT, [intermediary]), signer=PAYMENT,
                        purpose="receipt")  # fmt: skip
    assert again.valid and again.sha256 == checked.sha256
    assert [d["destination"] for d in trace(api, receipt_message_id(reference)).json()["deliveries"]] == [PROVINCE]
    assert [d["destination"] for d in trace(api, status_message_id(reference)).json()["deliveries"]] == [PORTAL]
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "paid"


@pytest.mark.parametrize(("signer", "rule"), [("other", "receipt-signer-not-registered"), ("none", "receipt-unsigned")])
def test_a_receipt_signed_by_another_key_or_unsigned_holds_the_payment_with_a_named_rule(
    api, pki, sim, signer: str, rule: str
) -> None:
    """A receipt signed by a key the same CA issued but nobody registered, or not signed at all (the profile says
    receipts are signed): the CONFIRM is answered 200 MaLoi 00 (the payment happened) naming the rule in
    X-Lienthong-Rule; nothing goes to the province or the portal (no 6 → 4); the payment is held
    (``receipt-rejected``) with one ``payment.receipt`` refusal for operators; reconciliation does not ask about it
    again; a repeated CONFIRM is answered the same and records nothing new."""
    reference, _ = initiate(api, pki)
    confirm = sim.confirmation({"MaThamChieu": reference, "receipt_signer": signer})
    response = callback(api, confirm)
    assert refused(response) == (200, "00", rule)
    assert response.json() == pm.confirm_answer(confirm, code="00", partner_code=PARTNER)
    hub = api.app.state.hub
    assert trace(api, receipt_message_id(reference)).status_code == 404
    assert trace(api, status_message_id(reference)).status_code == 404
    held = flow_records.payment(hub.store.engine, reference)
    assert (held.state, held.confirmed_at) == ("receipt-rejected", None)
    assert held.bank_transaction_id == confirm["MaGiaoDich"]
    (refusal,) = refusals(api)
    assert (refusal["kind"], refusal["rule"], refusal["reference"]) == ("payment.receipt", rule, reference)
    assert reconcile(hub.runtime, after_s=0, at=held.created_at + timedelta(hours=1)) == []
    again = callback(api, confirm)
    assert refused(again) == (200, "00", rule) and again.json() == response.json()
    assert len(refusals(api)) == 1 and trace(api, receipt_message_id(reference)).status_code == 404


def test_a_held_payment_settles_once_the_platform_resends_with_a_receipt_the_intermediary_signed(api, pki, sim) -> None:
    """Held (another key signed the receipt), then the platform re-issues the receipt signed by the registered
    intermediary and resends the CONFIRM: the hub checks again and settles it (receipt to the province, 6 → 4)."""
    reference, _ = initiate(api, pki)
    confirm = sim.confirmation({"MaThamChieu": reference, "receipt_signer": "other"})
    assert refused(callback(api, confirm))[2] == "receipt-signer-not-registered"
    sim.confirmation({"MaThamChieu": reference, "receipt_signer": "intermediary"})  # re-issued by the platform
    resent = callback(api, confirm)
    assert refused(resent) == (200, "00", None)
    assert stored_receipt(api, reference).verification.signer_name == "payment-intermediary"
    assert [d["destination"] for d in trace(api, status_message_id(reference)).json()["deliveries"]] == [PORTAL]
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "paid"
    assert [r["rule"] for r in refusals(api)] == ["receipt-signer-not-registered"]


def test_reconciliation_holds_a_paid_payment_whose_receipt_another_key_signed_and_asks_no_more(api, pki, sim) -> None:
    """The same settlement path for a lost CONFIRM: QUERY says paid, the receipt is another key's → ``held``,
    recorded, nothing routed; the next runs leave it alone (a bad receipt is not fixed by asking again)."""
    reference, _ = initiate(api, pki)
    sim.pay({"MaThamChieu": reference, "lose": True, "receipt_signer": "other"})
    hub = api.app.state.hub
    at = flow_records.payment(hub.store.engine, reference).created_at + timedelta(minutes=20)
    (result,) = reconcile(hub.runtime, after_s=600, at=at)
    assert (result.reference, result.outcome, result.trang_thai) == (reference, "held", "1")
    assert result.detail.startswith("receipt-signer-not-registered")
    assert trace(api, receipt_message_id(reference)).status_code == 404
    assert [(r["kind"], r["rule"]) for r in refusals(api)] == [("payment.receipt", "receipt-signer-not-registered")]
    assert reconcile(hub.runtime, after_s=600, at=at + timedelta(hours=1)) == []
    bills = [r for r in sim.received()["requests"] if r["LoaiBanTin"] == "GET_BILL" and r["MaThamChieu"] == reference]
    assert len(bills) == 1


def test_unauthenticated_callbacks_write_no_row_and_are_counted(api) -> None:
    """50 junk callbacks (unknown connector, garbage, a stranger's partner code), each answered 200 MaLoi 99, leave
    the store as it was; the refusals are counted per rule, unknown connector codes under one ``unknown`` label."""
    counted = [("unknown", "unknown-connector"), (PAYMENT, "malformed"), (PAYMENT, "partner-code")]
    before = [refused_count(*labels) for labels in counted]
    stranger = {"LoaiBanTin": "CONFIRM", "MaDoiTac": "SOMEONE", "MaThamChieu": "PAY-1", "MaXacThuc": "x"}
    for n in range(17):
        assert refused(callback(api, {}, f"000.00.00.X{n:02d}")) == (200, "99", "unknown-connector")
        assert refused(callback(api, b"not json")) == (200, "99", "malformed")
        if n < 16:
            answer = callback(api, stranger)
            assert refused(answer) == (200, "99", "partner-code") and answer.json()["MaXacThuc"] == "x"
    assert refusals(api) == []
    assert [refused_count(*labels) - b for labels, b in zip(counted, before, strict=True)] == [17, 17, 16]


def test_simulator_posts_the_sheets_confirm_to_the_callback_url(sim) -> None:
    """/_pay sends the CONFIRM over real HTTP to callback_url (here a throw-away receiver)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps(pm.confirm_answer(got[-1], code="00", partner_code=PARTNER)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = request_for()
        profiled_adapter(sim).init(request)
        requests.post(sim.base_url + "/_control", json={"callback_url": f"http://127.0.0.1:{server.server_port}/cb"},
                      timeout=5)  # fmt: skip
        answer = requests.post(sim.base_url + "/_pay", json={"MaThamChieu": request.reference, "repeat": 2}, timeout=10)
        assert [(r["status"], r["issues"]) for r in answer.json()["results"]] == [(200, []), (200, [])]
        assert len(got) == 2 and got[0] == got[1] and pm.checksum_ok(got[0], SECRET) and "BienLai" not in got[0]
    finally:
        server.shutdown()
        server.server_close()
        sim.callback_url = None


# ---------------------------------------------------------------------------------------------- reconciliation


def test_a_lost_confirm_is_settled_by_reconciliation_after_the_configured_delay_once(api, pki, sim) -> None:
    """Acceptance: the payer pays but the CONFIRM never arrives. Before the delay reconciliation leaves the payment
    alone; after it, QUERY says TrangThaiGD 1 and the payment is settled exactly as the CONFIRM would have (receipt
    to the province, status 4 to the portal); the next run and the late CONFIRM change nothing."""
    reference, _ = initiate(api, pki)
    lost = sim.pay({"MaThamChieu": reference, "lose": True})["confirm"]
    hub = api.app.state.hub
    created = flow_records.payment(hub.store.engine, reference).created_at
    after = 15 * 60.0
    assert reconcile(hub.runtime, after_s=after, at=created + timedelta(seconds=after - 1)) == []
    assert flow_records.payment(hub.store.engine, reference).state == "initiated"
    results = reconcile(hub.runtime, after_s=after, at=created + timedelta(seconds=after))
    assert [(r.reference, r.outcome, r.trang_thai) for r in results] == [(reference, "settled", "1")]
    queried = [r for r in sim.received()["requests"] if r["LoaiBanTin"] == "QUERY" and r["MaThamChieu"] == reference]
    assert [q["ThoiGianGD"] for q in queried] == [flow_records.payment(hub.store.engine, reference).init_time]
    assert [d["destination"] for d in trace(api, receipt_message_id(reference)).json()["deliveries"]] == [PROVINCE]
    assert [d["destination"] for d in trace(api, status_message_id(reference)).json()["deliveries"]] == [PORTAL]
    settled = flow_records.payment(hub.store.engine, reference)
    assert settled.state == "paid" and settled.bank_transaction_id == lost["MaGiaoDich"]
    assert reconcile(hub.runtime, after_s=after, at=created + timedelta(hours=1)) == []
    late = callback(api, lost)
    assert late.json()["MaLoi"] == "00" and len(trace(api, receipt_message_id(reference)).json()["deliveries"]) == 1


def test_reconciliation_records_pending_and_failed_and_asks_pending_ones_again(api, pki, sim) -> None:
    pending, _ = initiate(api, pki)
    failed, _ = initiate(api, pki)
    sim.pay({"MaThamChieu": failed, "lose": True, "MaLoi": "99"})
    hub = api.app.state.hub
    at = flow_records.payment(hub.store.engine, failed).created_at + timedelta(minutes=20)
    outcomes = {r.reference: (r.outcome, r.trang_thai) for r in reconcile(hub.runtime, after_s=600, at=at)}
    assert outcomes == {pending: ("pending", "3"), failed: ("failed", "4")}
    assert flow_records.payment(hub.store.engine, pending).state == "pending"
    assert flow_records.payment(hub.store.engine, failed).state == "failed"
    assert reconcile(hub.runtime, after_s=600, at=at + timedelta(seconds=30)) == []  # asked again only later
    again = reconcile(hub.runtime, after_s=600, at=at + timedelta(minutes=11))
    assert [(r.reference, r.outcome) for r in again] == [(pending, "pending")]


def test_two_reconciliations_at_once_settle_a_payment_once(api, pki, sim) -> None:
    """Each payment is claimed in the store: of two runs at the same moment, one queries it."""
    reference, _ = initiate(api, pki)
    sim.pay({"MaThamChieu": reference, "lose": True})
    hub = api.app.state.hub
    at = flow_records.payment(hub.store.engine, reference).created_at + timedelta(minutes=20)
    start, outcomes = threading.Barrier(2), []

    def run() -> None:
        start.wait()
        outcomes.extend(r.outcome for r in reconcile(hub.runtime, after_s=600, at=at))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == ["settled"]
    assert len([r for r in sim.received()["requests"] if r["LoaiBanTin"] == "QUERY"
                and r["MaThamChieu"] == reference]) == 1  # fmt: skip


def test_the_workers_schedule_settles_a_lost_confirm_within_the_configured_delay(api, pki, sim) -> None:
    """The schedule a worker runs (``ReconcileSchedule``), with a delay of 1 s and a run every 0.2 s: a payment
    whose CONFIRM is lost is settled once the delay has passed, and not before."""
    reference, _ = initiate(api, pki)
    sim.pay({"MaThamChieu": reference, "lose": True})
    hub = api.app.state.hub
    stop = threading.Event()
    schedule = ReconcileSchedule(hub.runtime, every_s=0.2, after_s=1.0, stop=stop)
    thread = schedule.start()
    try:
        wait_for(lambda: flow_records.payment(hub.store.engine, reference).state == "paid", 15, "the settlement")
    finally:
        stop.set()
        thread.join(10)
    row = flow_records.payment(hub.store.engine, reference)
    waited = (row.confirmed_at - row.created_at).total_seconds()
    assert 1.0 <= waited < 1.0 + 0.2 + 5.0, waited  # the delay, one run's interval, and a generous margin
    assert [d["destination"] for d in trace(api, receipt_message_id(reference)).json()["deliveries"]] == [PROVINCE]


# ---------------------------------------------------------------------------------------------- PayGov via LGSP


def test_paygov_via_lgsp_order_callback_and_receipt(paygov_api, pki, paygov) -> None:
    """Profile paygov/lgsp: the order (Bearer + lgspaccesstoken, every value a string, the checksum) → data.url;
    PayGov's callback answered {error_code: SUCCESSFUL, error_message}, the receipt fetched through the e-receipt
    call (transactionReceipt → PDF) and routed; a forged callback FAILED; a repeat SUCCESSFUL with no second
    effect."""
    hub = paygov_api.app.state.hub
    request = request_for()
    data, _ = envelope(pki, request, PAYGOV)
    header = {"X-Api-Key": paygov_api.keys[PROVINCE]}
    assert (
        paygov_api.post(
            "/api/v1/messages", content=data, headers={**header, "Content-Type": "application/xml"}
        ).status_code
        == 202
    )
    delivered = deliver(paygov_api, data, PAYGOV)
    order = json.loads(delivered.sent)
    assert order["orderId"] == f"{request.agency_code}-{request.dossier_code}-01" and paygov.received()["refused"] == []
    row = flow_records.payment(hub.store.engine, request.reference)
    assert row.partner_reference == order["orderId"] and row.payment_url.startswith(paygov.base_url)
    paygov.callback_url = None
    forged = paygov.pay({"orderId": order["orderId"], "forge_checksum": True})["callback"]
    answer = callback(paygov_api, forged, PAYGOV)
    assert (answer.status_code, answer.json()["error_code"], answer.headers["X-Lienthong-Rule"]) == (
        200, "FAILED", "checksum")  # fmt: skip
    paid = paygov.pay({"orderId": order["orderId"]})["callback"]
    answer = callback(paygov_api, paid, PAYGOV)
    assert answer.status_code == 200 and answer.json() == {
        "error_code": "SUCCESSFUL",
        "error_message": "Confirm transaction",
    }
    assert [
        d["destination"] for d in trace(paygov_api, receipt_message_id(request.reference)).json()["deliveries"]
    ] == [PROVINCE]
    assert flow_records.payment(hub.store.engine, request.reference).state == "paid"
    assert len(paygov.received()["receipts"]) == 1
    # paygov/lgsp: no source shows a signature on PayGov's e-receipt (receipt_signed false): the unsigned PDF goes to
    # the province with a verification that says so
    checked = stored_receipt(paygov_api, request.reference).verification
    assert (checked.format, checked.required, checked.valid, checked.signer) == ("pdf", False, False, PAYGOV)
    assert checked.rule in ("receipt-unsigned", "receipt-not-a-pdf") and checked.reason
    again = callback(paygov_api, paid, PAYGOV)
    assert again.json()["error_code"] == "SUCCESSFUL" and len(paygov.received()["receipts"]) == 1


# ---------------------------------------------------------------------------------------------- refunds


def refund_for(original: str, amount: int = 75_000, reference: str | None = None):
    return request_for(reference or f"RF-{time.monotonic_ns() % 10**12}").model_copy(
        update={"kind": "refund", "original_reference": original, "amount": amount,
                "fee_lines": [FeeLine(code="LP01", name="Lệ phí hoàn trả", amount=amount)],
                "description": "Hoàn phí: cơ quan không giải quyết được hồ sơ"}
    )  # fmt: skip


def pay(api, pki, sim) -> str:
    reference, _ = initiate(api, pki)
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).json()["MaLoi"] == "00"
    return reference


def request_refund(api, pki, original: str, amount: int = 75_000) -> tuple[str, str]:
    """The province sends a refund payment.request; the payment adapter sends REFUND. (reference, message id)"""
    refund = refund_for(original, amount)
    data, message_id = envelope(pki, refund)
    post_accepted(api, data, api.keys[PROVINCE])
    receipt = deliver(api, data)
    assert receipt.detail.startswith(f"REFUND MaLoi=00 MaThamChieu={refund.reference} MaThamChieuGoc={original}")
    row = flow_records.payment(api.app.state.hub.store.engine, refund.reference)
    assert row.kind == "refund" and row.original_reference == original and row.amount == amount
    return refund.reference, message_id


def test_refund_routes_a_refund_receipt_and_is_idempotent(api, pki, sim) -> None:
    original = pay(api, pki, sim)
    reference, request_id = request_refund(api, pki, original)
    confirm = sim.confirmation({"MaThamChieu": reference})
    assert confirm["LoaiBanTin"] == pm.CONFIRM_REFUND and "BienLai" in confirm
    response = callback(api, confirm)
    assert response.status_code == 200 and response.json()["MaLoi"] == "00", response.text
    routed = trace(api, receipt_message_id(reference)).json()
    assert routed["message_type"] == "payment.receipt" and routed["correlation_id"] == request_id
    assert [d["destination"] for d in routed["deliveries"]] == [PROVINCE]
    assert trace(api, status_message_id(reference)).status_code == 404  # the dossier is not resumed
    hub = api.app.state.hub
    row = flow_records.payment(hub.store.engine, reference)
    assert row.state == "refunded" and row.bank_transaction_id == confirm["MaGiaoDich"]
    assert flow_records.payment(hub.store.engine, original).refunded == 75_000
    again = callback(api, confirm)
    assert (again.status_code, again.json()) == (200, response.json())
    assert len(trace(api, receipt_message_id(reference)).json()["deliveries"]) == 1
    assert flow_records.payment(hub.store.engine, original).refunded == 75_000
    from hub.store.schema import messages

    with hub.store.engine.connect() as conn:
        data = conn.execute(sa.select(messages.c.envelope).where(
            messages.c.message_id == receipt_message_id(reference))).scalar_one()  # fmt: skip
    assert b"<p:kind>refund<" in data and f"<p:originalReference>{original}<".encode() in data
    assert refusals(api) == []


def test_forged_unknown_and_mismatched_refunds_are_refused_and_recorded(api, pki, sim) -> None:
    original = pay(api, pki, sim)
    reference, _ = request_refund(api, pki, original)
    assert refused(callback(api, sim.confirmation({"MaThamChieu": reference, "forge_checksum": True})))[2] == "checksum"
    cases = [({"reference": "RF-NOBODY-ASKED"}, "unknown-reference"),
             ({"MaThamChieuGoc": "PAY-NEVER-SEEN"}, "unknown-original-reference"),
             ({"SoTien": 575_000}, "amount-mismatch"), ({"signer": "impostor"}, "receipt-signer")]  # fmt: skip
    for knobs, rule in cases:
        assert refused(callback(api, sim.confirmation({"MaThamChieu": reference, **knobs}))) == (200, "99", rule)
    recorded = refusals(api)
    assert [r["rule"] for r in recorded] == [rule for _, rule in reversed(cases)]
    assert {r["kind"] for r in recorded} == {"payment.refund"} and {r["connector"] for r in recorded} == {PAYMENT}
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "initiated"
    assert callback(api, sim.confirmation({"MaThamChieu": reference})).json()["MaLoi"] == "00"


def test_refunds_above_what_was_paid_are_refused(api, pki, sim) -> None:
    """Two refunds of 400 000 of a 575 000 payment: the platform takes both requests (nothing refunded yet), but
    once the first is confirmed the store refuses the second's confirmation."""
    original = pay(api, pki, sim)
    first, _ = request_refund(api, pki, original, 400_000)
    second, _ = request_refund(api, pki, original, 400_000)
    assert callback(api, sim.confirmation({"MaThamChieu": first})).json()["MaLoi"] == "00"
    assert refused(callback(api, sim.confirmation({"MaThamChieu": second}))) == (200, "99", "refund-exceeds-paid")
    (refusal,) = refusals(api)
    assert refusal["reference"] == second and refusal["rule"] == "refund-exceeds-paid"
    hub = api.app.state.hub
    assert flow_records.payment(hub.store.engine, original).refunded == 400_000
    assert flow_records.payment(hub.store.engine, second).state == "initiated"  # its confirmation rolled back


def test_no_refund_once_the_dossier_is_resolved(api, pki, sim) -> None:
    """Tiền Giang Điều 17.4: a refund request for a dossier at status 9 or 10 is refused at intake
    (``refund-dossier-resolved``); one accepted before the dossier was resolved is not sent by the adapter."""
    original = pay(api, pki, sim)
    hub = api.app.state.hub
    dossier = flow_records.payment(hub.store.engine, original).dossier_code
    refund = refund_for(original)
    data, _ = envelope(pki, refund)
    post_accepted(api, data, api.keys[PROVINCE])  # accepted: the dossier is not resolved yet
    with hub.store.engine.begin() as conn:  # the result was returned meanwhile (status 10)
        from hub.store.schema import dossiers

        assert conn.execute(dossiers.update().where(dossiers.c.code == dossier).values(status=10)).rowcount == 1
    with pytest.raises(PermanentDeliveryError, match="refund-dossier-resolved"):
        deliver(api, data)
    assert not [
        r for r in sim.received()["requests"] if r["LoaiBanTin"] == "REFUND" and r["MaThamChieu"] == refund.reference
    ]
    late, _ = envelope(pki, refund_for(original))
    answer = api.post("/api/v1/messages", content=late,
                      headers={"X-Api-Key": api.keys[PROVINCE], "Content-Type": "application/xml"})  # fmt: skip
    assert answer.status_code == 403 and [e["rule"] for e in answer.json()["errors"]] == ["refund-dossier-resolved"]


# ---------------------------------------------------------------------------------------------- the recorder


def test_the_worker_payment_adapter_records_initiated_references_in_its_own_store(tmp_path, migrated_copy) -> None:
    """``adapters_for(routing, store)``: the payment adapter's hook writes to the store the worker opened,
    not to whatever ``LIENTHONG_DATABASE_URL`` names."""
    from hub.exchange.routing import DestinationConfig
    from hub.security.credentials import Credentials
    from hub.store import Store

    store = Store(f"sqlite:///{migrated_copy(tmp_path / 'worker.db')}")
    store.migrate()
    cfg = DestinationConfig(
        endpoint="http://127.0.0.1:9/pay", kind="payment", credentials=Credentials(username="LIENTHONG", password="s")
    )
    adapter = adapter_for(cfg, store)
    request = packets.example("payment.request")
    adapter.on_initiated("000.00.00.P01", request, "msg-1", {"UrlThanhToan": "http://pay.example/x"},
                         {"init_time": "20251124094700", "profile": None})  # fmt: skip
    recorded = flow_records.payment(store.engine, request.reference)
    assert recorded is not None and recorded.dossier_code == request.dossier_code
    assert recorded.init_time == "20251124094700" and recorded.payment_url == "http://pay.example/x"
    store.close()


# ---------------------------------------------------------------------------------------------- the CLI


def test_hub_payments_reconcile_settles_a_lost_confirm(api, pki, sim, tmp_path: Path) -> None:
    """``hub payments reconcile --json`` as an operator runs it on the hub's store: nothing before the configured
    delay (``LIENTHONG_PAYMENT_RECONCILE_AFTER_MINUTES``), the lost CONFIRM's payment settled with ``--after 0``."""
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.config import get_settings

    reference, _ = initiate(api, pki)
    sim.pay({"MaThamChieu": reference, "lose": True})
    env = {"LIENTHONG_DATABASE_URL": api.settings.database_url, "LIENTHONG_DATA_DIR": str(api.settings.data_dir),
           "LIENTHONG_HUB_CODE": HUB, "LIENTHONG_PAYMENT_RECONCILE_AFTER_MINUTES": "30"}  # fmt: skip

    def run(*args: str):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    early = run("payments", "reconcile", "--json")
    assert early.exit_code == 0 and json.loads(early.stdout) == {"after_minutes": 30.0, "payments": []}
    done = run("payments", "reconcile", "--after", "0", "--json")
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.stdout)["payments"]
    assert (result["reference"], result["outcome"], result["trang_thai"]) == (reference, "settled", "1")
    assert flow_records.payment(api.app.state.hub.store.engine, reference).state == "paid"
    assert "no payment unsettled" in run("payments", "reconcile", "--after", "0").stdout


def test_connector_check_reports_the_payment_profiles_values(api, sim) -> None:
    """``hub connector check`` on payment connectors: the profile's required URLs, the values no source confirms
    and the ones whose emptiness matters; an unusable profile fails, and its adapter says why."""
    from hub.registry.check import run_check
    from hub.registry.spec import parse_spec

    hub = api.app.state.hub
    report = run_check(hub.registry, PAYMENT, probe=False)
    lines = [(i.status, i.message) for i in report.items if i.area == "profile"]
    assert any(s == "ok" and m.startswith("paygov/1.0.6@1 (") for s, m in lines), lines
    warned = {m.split(":")[1].strip() for s, m in lines if s == "warn"}
    assert {"fee_kind", "transient_codes", "unit_name", "beneficiary_account"} <= warned
    assert report.ok
    broken = {
        **payment_connector(sim),
        "code": "000.00.00.G15",
        "profile_values": {"init_url": "init"},
        "certificates": [],
    }
    hub.registry.add(parse_spec(broken), actor="test")
    hub.refresh()
    failed = run_check(hub.registry, "000.00.00.G15", probe=False)
    assert {i.message.split(":")[1].strip() for i in failed.failures} == {"query_url", "get_bill_url"}
    unusable = adapter_for(hub.runtime.routing.destinations["000.00.00.G15"], hub.store)
    assert "needs a value for query_url, get_bill_url" in getattr(unusable, "reason", "")


def test_connector_check_fails_a_payment_connector_whose_signed_receipts_no_certificate_signs(api, sim) -> None:
    """The receipt rule at onboarding: receipt_signers are checked like certificates; none while the profile says
    receipts are signed fails (every receipt would be held); receipt_signed false is warned about."""
    from hub.registry.check import run_check
    from hub.registry.spec import parse_spec

    hub = api.app.state.hub
    fine = run_check(hub.registry, PAYMENT, probe=False)
    (signer,) = [i for i in fine.items if i.area == "receipt-signers"]
    assert signer.status == "ok" and "payment-intermediary" in signer.message
    unsigned = {**payment_connector(sim), "code": "000.00.00.G17", "receipt_signers": [], "certificates": []}
    hub.registry.add(parse_spec(unsigned), actor="test")
    (failure,) = [i for i in run_check(hub.registry, "000.00.00.G17", probe=False).failures
                  if i.area == "receipt-signers"]  # fmt: skip
    assert "no receipt_signers" in failure.message
    relaxed = {**unsigned, "code": "000.00.00.G18",
               "profile_values": {**sim.profile_values(), "receipt_signed": "false"}}  # fmt: skip
    hub.registry.add(parse_spec(relaxed), actor="test")
    report = run_check(hub.registry, "000.00.00.G18", probe=False)
    assert report.ok and [i.status for i in report.items if i.area == "receipt-signers"] == ["warn"]
    with pytest.raises(SpecInvalidError) as refused_spec:
        parse_spec({**province_connector_spec(), "receipt_signers": [sim.intermediary_cert_pem]})
    assert [(i.path, i.rule) for i in refused_spec.value.issues] == [("receipt_signers", "receipt-signers-kind")]


def province_connector_spec() -> dict[str, Any]:
    return {"code": "000.00.00.H19", "name": "Province", "kind": "provincial", "sends": ["payment.request"]}


def test_connector_check_warns_about_a_payment_connector_without_a_profile(api, sim) -> None:
    from hub.registry.check import run_check
    from hub.registry.spec import parse_spec

    hub = api.app.state.hub
    bare = {k: v for k, v in payment_connector(sim).items() if k not in ("profile", "profile_values")}
    hub.registry.add(parse_spec({**bare, "code": "000.00.00.G16", "certificates": []}), actor="test")
    report = run_check(hub.registry, "000.00.00.G16", probe=False)
    (warning,) = [i.message for i in report.warnings if i.area == "profile"]
    assert "paygov/1.0.6" in warning and "paygov/lgsp" in warning

"""One conformance test per payment message kind (issue 15 point 6), against the golden files built from
PARTNER-FORMATS §3 (``tests/golden/payment/``, named after their sources) and the strict simulators on real HTTP:
INIT and its reply, QUERY and its three replies, GET_BILL, CONFIRM and its answer (profile ``paygov/1.0.6``);
PayGov's order, its reply, its callback and the answer (profile ``paygov/lgsp``)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.base import PermanentDeliveryError
from adapters.payment import PaymentAdapter
from hub import packets
from hub.devtools.simulators.payment import PaymentSimulator
from hub.devtools.simulators.payment_messages import answer_issues, init_issues, query_issues
from mappings import paygov_lgsp as pg
from mappings import payment as pm
from mappings import profiles

GOLDEN = Path(__file__).parent.parent / "golden" / "payment"
SECRET, PARTNER = "golden-secret", "LIENTHONG"
AT = datetime(2025, 11, 24, 2, 47, tzinfo=UTC)  # 09:47 in Hà Nội, the golden INIT's time


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


INIT = "TH-PI_10-100.OC-PI_1422-1598.INIT.json"
QUERY = "TH-PC_45-59.TH-PQ_45.QUERY.json"
GET_BILL = "TH-PB_10-15.OC-PI_2295-2296.GET_BILL.json"
CONFIRM = "OC-PI_1602-1621.TH-PC_13-23.CONFIRM.json"
ANSWER = "OC-PU_169-180.TH-PCH_126-131.CONFIRM.answer.json"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with PaymentSimulator(partners={PARTNER: SECRET}, key_dir=tmp_path_factory.mktemp("bank")) as server:
        yield server


def adapter_for(sim: PaymentSimulator, **kw: Any) -> PaymentAdapter:
    settings = profiles.resolve(profiles.get_profile(pm.PROFILE), sim.profile_values())
    return PaymentAdapter(sim.url, partner_code=PARTNER, secret=SECRET, settings=settings, profile=pm.PROFILE,
                          clock=lambda: AT, **kw)  # fmt: skip


def post(sim: PaymentSimulator, kind_path: str, message: dict[str, Any]) -> dict[str, Any]:
    import requests

    return requests.post(f"{sim.url}/{kind_path}", json=message, timeout=5).json()


def resigned(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return pm.sign({**message, **changes}, SECRET)


# ---------------------------------------------------------------------------------------------- INIT


def test_init_is_the_golden_message_and_the_strict_platform_takes_it(sim) -> None:
    """The hub's INIT for the canonical example, stamped at the golden time, is the golden file field for field
    (SoTien a string, PhienBan 1.0.6, NgonNgu vi-VN, the full ThongTinBienLai); the simulator accepts it over HTTP
    and answers MaLoi 00 with UrlThanhToan."""
    request = packets.example("payment.request")
    stamped = pm.stamp(pm.init_message(request), partner_code=PARTNER, at=AT, ip="10.0.0.5")
    assert pm.sign(stamped, SECRET) == golden(INIT)
    assert init_issues(golden(INIT)) == []
    answer = post(sim, "init", golden(INIT))
    assert answer["MaLoi"] == "00" and answer["UrlThanhToan"].endswith(request.reference)


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda m: m.update(SoTien=575000), "SoTien", "type"),
        (lambda m: m.update(NgonNgu="vi"), "NgonNgu", "enum"),
        (lambda m: m.update(PhienBan="1.0.0"), "PhienBan", "enum"),
        (lambda m: m["ThongTinBienLai"].pop("MaDichVu"), "ThongTinBienLai.MaDichVu", "required"),
        (lambda m: m["ThongTinBienLai"].update(TenDonVi=""), "ThongTinBienLai.TenDonVi", "required"),
        (lambda m: m["ThongTinBienLai"]["PhiLePhi"][0].update(LoaiPhiLePhi="Phi"),
         "ThongTinBienLai.PhiLePhi[0].LoaiPhiLePhi", "enum"),
        (lambda m: m["ThongTinBienLai"].pop("DSKhoanNop"), "ThongTinBienLai.DSKhoanNop", "required"),
        (lambda m: m.update(ThoiGianGD="2025-11-24 09:47"), "ThoiGianGD", "pattern"),
    ],
)  # fmt: skip
def test_the_strict_platform_refuses_an_init_the_sources_would_not_send(sim, change, field: str, rule: str) -> None:
    message = copy.deepcopy(golden(INIT))
    change(message)
    assert [(i.field, i.rule) for i in init_issues(message)] == [(field, rule)]
    answer = post(sim, "init", pm.sign(message, SECRET))
    assert answer["MaLoi"] == "99" and field in answer["MoTaLoi"]


def test_init_with_a_wrong_checksum_is_refused(sim) -> None:
    answer = post(sim, "init", {**golden(INIT), "MaXacThuc": "0" * 64})
    assert answer["MaLoi"] == "99" and "MaXacThuc" in answer["MoTaLoi"]
    with pytest.raises(PermanentDeliveryError, match="MaLoi 99"):
        PaymentAdapter(sim.url, partner_code=PARTNER, secret="wrong",
                       settings=profiles.resolve(profiles.get_profile(pm.PROFILE), sim.profile_values()),
                       ).init(packets.example("payment.request"))  # fmt: skip


def test_init_reply_gives_the_payment_url(sim) -> None:
    """The INIT's reply is read as sourced (MaLoi, UrlThanhToan, OC-PI:1392-1393), the adapter's Bearer token sent
    when the connector has one (TH-PS:58-59) and refused without it."""
    reply = golden("OC-PI_1392-1393.INIT.reply.json")
    assert adapter_for(sim)._answer(pm.INIT, json.dumps(reply))["UrlThanhToan"] == reply["UrlThanhToan"]
    with PaymentSimulator(partners={PARTNER: SECRET}, token="tkn") as guarded:
        request = packets.example("payment.request").model_copy(update={"reference": "PAY-TOKEN-1"})
        _, answer = adapter_for(guarded, token="tkn").init(request)
        assert answer["MaLoi"] == "00"
        with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
            adapter_for(guarded).init(request)


# ---------------------------------------------------------------------------------------------- QUERY


def test_query_is_the_golden_message_and_its_replies_read_as_sourced(sim) -> None:
    """QUERY carries the INIT's ThoiGianGD (TH-PQ:45); TrangThaiGD 1/3/4 read as paid/pending/failed (TH-PQ:48-51),
    a paid one with the CONFIRM's fields to settle with; the simulator answers the same shape over HTTP."""
    adapter = adapter_for(sim)
    message = pm.sign(adapter._query_message(pm.QUERY, "PAY-H12-251123-000042", golden(INIT)["ThoiGianGD"]), SECRET)
    assert message == golden(QUERY) and query_issues(message, pm.QUERY) == []
    states = {s: pm.query_result(golden(f"TH-PC_26-44.TH-PQ_48-51.QUERY.reply.{s}.json")) for s in
              ("paid", "pending", "failed")}  # fmt: skip
    assert {s: (r.state, r.trang_thai) for s, r in states.items()} == {
        "paid": ("paid", "1"), "pending": ("pending", "3"), "failed": ("failed", "4")
    }  # fmt: skip
    paid = states["paid"].confirm
    assert paid["MaGiaoDich"] == golden(CONFIRM)["MaGiaoDich"] and pm.amount_of(paid) == 575000
    request = packets.example("payment.request").model_copy(update={"reference": "PAY-QUERY-1"})
    sent, _ = adapter.init(request)
    reply = adapter.query(request.reference, sent["ThoiGianGD"])
    assert set(reply) == set(golden("TH-PC_26-44.TH-PQ_48-51.QUERY.reply.pending.json"))
    assert pm.query_result(reply).state == "pending"
    sim.pay({"MaThamChieu": request.reference, "lose": True})
    assert pm.query_result(adapter.query(request.reference, sent["ThoiGianGD"])).state == "paid"
    sim.confirmation({"MaThamChieu": "PAY-QUERY-1"})  # idempotent: still paid
    failed = request.model_copy(update={"reference": "PAY-QUERY-2"})
    adapter.init(failed)
    sim.pay({"MaThamChieu": failed.reference, "lose": True, "MaLoi": "99"})
    assert pm.query_result(adapter.query(failed.reference)).state == "failed"
    assert post(sim, "query", {**golden(QUERY), "PhienBan": "1.0.0"})["MaLoi"] == "99"


# ---------------------------------------------------------------------------------------------- GET_BILL


def test_get_bill_is_the_golden_message_and_answers_a_pdf_once_paid(sim) -> None:
    adapter = adapter_for(sim)
    message = pm.sign(adapter._query_message(pm.GET_BILL, "PAY-H12-251123-000042", golden(CONFIRM)["ThoiGianGD"]),
                      SECRET)  # fmt: skip
    assert message == golden(GET_BILL) and query_issues(message, pm.GET_BILL) == []
    request = packets.example("payment.request").model_copy(update={"reference": "PAY-BILL-1"})
    adapter.init(request)
    with pytest.raises(PermanentDeliveryError, match="MaLoi 99"):
        adapter.get_bill(request.reference)
    confirm = sim.pay({"MaThamChieu": request.reference, "lose": True})["confirm"]
    bill = adapter.get_bill(request.reference, confirm["ThoiGianGD"])
    assert bill.is_pdf and bill.content_type == "application/pdf" and request.reference.encode() in bill.content


# ---------------------------------------------------------------------------------------------- CONFIRM


def test_the_simulators_confirm_has_exactly_the_sheets_fields(sim) -> None:
    """The simulator sends the CONFIRM the sheet describes (OC-PI:1602-1621; TH-PC:13-23): those fields, SoTien an
    integer, no receipt field; its checksum over the CONFIRM order (OC-PU:182-188)."""
    request = packets.example("payment.request").model_copy(update={"reference": "PAY-CONFIRM-1"})
    adapter_for(sim).init(request)
    confirm = sim.pay({"MaThamChieu": request.reference, "lose": True})["confirm"]
    sheet = golden(CONFIRM)
    assert list(confirm) == list(sheet) and "BienLai" not in confirm
    assert {k: type(v) for k, v in confirm.items()} == {k: type(v) for k, v in sheet.items()}
    assert pm.checksum_ok(sheet, SECRET) and pm.checksum_ok(confirm, pm_secret(sim))


def pm_secret(sim: PaymentSimulator) -> str:
    return sim.partners[PARTNER]


def test_the_confirm_answer_echoes_the_confirm() -> None:
    """The answer (OC-PU:169-180; TH-PCH:126-131): MaLoi, MoTaLoi, MaDoiTac, and the CONFIRM's MaThamChieu,
    ThoiGianGD and MaXacThuc echoed; the simulator's check of an answer finds the golden one right and a 4xx one,
    or one that does not echo, wrong."""
    confirm, answer = golden(CONFIRM), golden(ANSWER)
    assert pm.confirm_answer(confirm, code="00", partner_code=PARTNER) == answer
    assert answer_issues(answer, confirm, 200) == []
    refused = pm.confirm_answer(confirm, code="99", partner_code=PARTNER)
    assert refused["MoTaLoi"] == "Các lỗi khác" and answer_issues(refused, confirm, 200) == []
    wrong = [(i.field, i.rule) for i in answer_issues({**answer, "MaXacThuc": "x"}, confirm, 400)]
    assert wrong == [("HTTP", "status"), ("MaXacThuc", "echo")]


# ---------------------------------------------------------------------------------------------- PayGov via LGSP


def test_paygov_order_is_the_golden_message_and_its_reply_gives_the_url() -> None:
    request = packets.example("payment.request")
    sent = golden("OC-PI_1753-1812.OC-API_147.paygov-order.json")
    settings = {"return_url": sent["returnUrl"], "access_key": sent["accessKey"], "service_code": sent["serviceCode"]}
    order = pg.stamp_order(pg.order_draft(request), request, partner_code="PAYGOV-DEMO", secret_key=SECRET,
                           settings=settings, request_code=sent["requestCode"], ip="10.0.0.5")  # fmt: skip
    assert order == sent and all(isinstance(v, str) for v in order.values())
    assert order["orderId"] == f"{request.agency_code}-{request.dossier_code}-01"
    assert pg.payment_url(golden("OC-API_200-206.paygov-order.reply.json")).startswith("https://")


def test_paygov_callback_and_answer() -> None:
    callback = golden("OC-PI_1699-1751.OC-PT_177-187.paygov-callback.json")
    assert set(callback) == {*pg.CALLBACK_FIELDS}
    keys = {"secret_key": SECRET, "access_key": "paygov-access-key", "partner_code": "PAYGOV-DEMO"}
    assert pg.callback_checksum_ok(callback, **keys)
    assert not pg.callback_checksum_ok({**callback, "amount": "1"}, **keys)
    assert pg.callback_answer(True, "Confirm transaction") == golden("OC-PU_139-144.paygov-callback.answer.json")

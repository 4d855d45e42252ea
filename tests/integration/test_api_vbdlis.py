"""F5 from real-shaped VBDLIS software (profile ``ministry/vbdlis-json``, PARTNER-FORMATS §5): each sourced step
POSTed to ``/api/v{version}/VBDLISs/<action>/{securityCode}`` is answered ``{Result, Message}`` (TH-BR
ProvideToVBLISBaseResponse.cs:20-21), mapped to the canonical ``dossier.status``, run through the status machine
onto the timeline (with its officers, due dates, pause, end and files) and delivered to the province; a wrong
security code, a bad body (a NUL character included, on both databases) or another version is refused with
``Result`` 0 — never a 500; the same body again is one step, another body another step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from prometheus_client import REGISTRY

from hub import packets
from hub.api import create_app
from hub.devtools.sink import SinkServer
from hub.exchange.worker import OutboundBuilder, Worker
from hub.logs import mask_personal
from hub.registry import parse_spec
from hub.runtime import adapters_for, open_broker
from hub.security.envelope import BODY_TAG
from hub.services import HubService
from hub.store import StatusUpdate, Store, flow_records
from hub.xmlparse import parse_xml
from tests.support import hub_settings, running_sink

HUB, VBDLIS, PROVINCE, OTHER = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G11"
ADMIN_KEY = "admin-secret-key"
GOLDEN = Path(__file__).parents[1] / "golden" / "vbdlis"
ANSWER_KEYS = set(json.loads((GOLDEN / "TH-BR_ProvideToVBLISBaseResponse.accepted.json").read_text()))


def request(action: str, dossier: str, **change: Any) -> dict[str, Any]:
    body = json.loads((GOLDEN / f"TH-BR_{action}.request.json").read_text(encoding="utf-8"))
    body = {**body, "SoBienNhan": dossier, **change}
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class Hub:
    client: TestClient
    hub: HubService
    key: str
    other_key: str
    sink: SinkServer

    def step(self, action: str, body: object, *, key: str | None = None, version: str = "1") -> dict[str, Any]:
        content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        response = self.client.post(
            f"/api/v{version}/VBDLISs/{action}/{key or self.key}",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text  # no HTTP status is sourced: Result says it
        answer = response.json()
        assert set(answer) == ANSWER_KEYS and isinstance(answer["Message"], str), answer
        return answer

    def timeline(self, dossier: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/dossiers/{dossier}", headers={"X-Api-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        return response.json()

    def refusals(self) -> list[dict[str, Any]]:
        return flow_records.refusals(self.hub.store.engine, connector=VBDLIS)

    def deliver(self) -> None:
        routing = self.hub.runtime.routing
        builder = OutboundBuilder(self.hub.runtime.signer(), HUB)
        broker = open_broker(self.hub.settings)
        worker = Worker(self.hub.store, broker, routing, builder, adapters_for(routing))
        try:
            for _ in range(20):
                batch = broker.consume(worker.destinations, prefetch=64, timeout_s=0.2)
                if not batch:
                    break
                worker.process_batch(batch)
        finally:
            worker.close()
            broker.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    settings = hub_settings(tmp_path_factory.mktemp("vbdlis"), hub_code=HUB, admin_api_key=ADMIN_KEY)
    with running_sink() as sink, TestClient(create_app(settings)) as client:
        service: HubService = client.app.state.hub

        def register(**spec: Any) -> str:
            _, key = service.registry.add(parse_spec(spec), actor="test")
            assert key is not None
            return key

        key = register(
            code=VBDLIS, name="VBDLIS land registration", kind="ministry", sends=["dossier.status"],
            profile="ministry/vbdlis-json", profile_values={"api_versions": "1"}, handles=[PROVINCE],
        )  # fmt: skip
        other_key = register(  # a ministry connector of another profile: its key is no security code
            code=OTHER, name="Construction software", kind="ministry", sends=["dossier.status"], handles=[PROVINCE],
        )  # fmt: skip
        register(
            code=PROVINCE, name="One-stop system", kind="provincial", receives=["dossier.status"],
            endpoint={"url": sink.url}, retry={"delays_s": [0.2], "jitter": 0},
        )  # fmt: skip
        service.refresh()
        yield Hub(client, service, key, other_key, sink)


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n2", strip_text=True)


def test_every_sourced_step_is_accepted_timelined_and_delivered(hub: Hub) -> None:
    dossier = "000.00.00.H12-251123-0042"  # the goldens' SoBienNhan
    steps = [  # handover 4, supplement 5 (paused), supplement received 4 (new due date), tax 6, handover 4, end 9
        ("ChuyenHoSo", request("ChuyenHoSo", dossier)),
        ("YeuCauBoSungHoSo", request("YeuCauBoSungHoSo", dossier)),
        ("NhanBoSungHoSo", request("NhanBoSungHoSo", dossier)),
        ("GuiKetQuaThue", request("GuiKetQuaThue", dossier)),
        ("ChuyenHoSo", request("ChuyenHoSo", dossier, NgayChuyen="2025-11-28T08:00:00", DanhSachTapTin=None)),
        ("KetThucHoSo", request("KetThucHoSo", dossier)),
    ]
    for action, body in steps:
        answer = hub.step(action, body)
        assert answer["Result"] == 1 and "applied" in answer["Message"], (action, answer)

    timeline = hub.timeline(dossier)
    assert timeline["status"] == 9
    updates = timeline["updates"]
    assert [(u["status"], u["outcome"], u["source"]) for u in updates] == [
        (4, "applied", VBDLIS), (5, "applied", VBDLIS), (4, "applied", VBDLIS), (6, "applied", VBDLIS),
        (4, "applied", VBDLIS), (9, "applied", VBDLIS),
    ]  # fmt: skip
    first, supplement, received, tax, _, end = (u["detail"] for u in updates)
    assert first["step"] == {"actor": "cb.motcua.03", "content": "Chuyển thẩm định hồ sơ đăng ký biến động",
                             "handed_to": "cb.tnmt.07", "partner_state": "2", "sent_back": False}  # fmt: skip
    assert first["step_limit"] == "3" and first["partner_step"] == "ChuyenHoSo"
    assert first["attachments"] == [{"name": "Đơn đăng ký biến động", "url": "https://vbdlis.example.gov.vn/files/"
                                     "don-42.pdf", "file_type": "pdf", "copies": 0, "originals": 1}]  # fmt: skip
    assert supplement["paused"] is True and supplement["step"]["actor"] == "cb.tnmt.07"
    assert received["new_due_at"] == "2025-12-03T10:00:00Z"
    assert tax["partner_step"] == "GuiKetQuaThue" and tax["attachments"][0]["url"].endswith("/1234.pdf")
    assert end["finish_kind"] == 0 and end["attachments"][0]["name"] == "Giấy chứng nhận quyền sử dụng đất"

    hub.deliver()
    with hub.sink.state.lock:
        assert hub.sink.state.received == len(steps)
    last = hub.hub.store.trace(updates[-1]["message_id"], VBDLIS)
    assert last is not None and last.status == "delivered"
    outbound = parse_xml(hub.hub.store.delivery(last.deliveries[0].delivery_id).outbound)
    (payload,) = outbound.find(BODY_TAG)
    assert payload.tag == f"{{{packets.PACKET_NAMESPACE}}}dossierStatus"
    assert c14n(payload) == c14n(parse_xml((GOLDEN / "TH-BR_KetThucHoSo.expected.xml").read_bytes()))

    # The same body again: accepted, applied once (no "conflict" rule: §5 sources none).
    refused = len(hub.refusals())
    again = hub.step("KetThucHoSo", request("KetThucHoSo", dossier))
    assert again["Result"] == 1 and "already received" in again["Message"]
    assert len(hub.refusals()) == refused and len(hub.timeline(dossier)["updates"]) == len(steps)
    # A late handover (TH: "4 unless 5/9/10"): recorded, status kept at 9.
    late = hub.step("ChuyenHoSo", request("ChuyenHoSo", dossier, NgayChuyen="2025-12-02T08:00:00"))
    assert late["Result"] == 1 and "status kept at 9" in late["Message"]
    timeline = hub.timeline(dossier)
    assert timeline["status"] == 9 and len(timeline["updates"]) == len(steps) + 1


def test_two_handovers_on_one_date_only_day_are_both_kept_and_a_resend_is_one(hub: Hub) -> None:
    dossier = "000.00.00.H12-251123-0049"
    day = "2025-11-24T00:00:00"  # .NET date-only: midnight (§5 dates: ISO-8601, an inference)
    a_to_b = request("ChuyenHoSo", dossier, NgayChuyen=day, MaCanBoChuyen="cb.a", MaCanBoNhan="cb.b")
    b_to_c = request("ChuyenHoSo", dossier, NgayChuyen=day, MaCanBoChuyen="cb.b", MaCanBoNhan="cb.c")
    assert hub.step("ChuyenHoSo", a_to_b)["Result"] == 1
    second = hub.step("ChuyenHoSo", b_to_c)
    assert second["Result"] == 1 and "applied" in second["Message"], second
    resend = hub.step("ChuyenHoSo", b_to_c)
    assert resend["Result"] == 1 and "already received" in resend["Message"]
    steps = [(u["detail"]["step"]["actor"], u["detail"]["step"]["handed_to"]) for u in hub.timeline(dossier)["updates"]]
    assert steps == [("cb.a", "cb.b"), ("cb.b", "cb.c")]
    undated = request("ThongBaoNhapSaiThuTuc", dossier)  # no date: dated when received; resent, still one step
    assert hub.step("ThongBaoNhapSaiThuTuc", undated)["Result"] == 1
    assert "already received" in hub.step("ThongBaoNhapSaiThuTuc", undated)["Message"]
    assert len(hub.timeline(dossier)["updates"]) == 3


def test_update_request_sets_received(hub: Hub) -> None:
    dossier = "000.00.00.H12-251123-0043"
    answer = hub.step("YeuCauCapNhatHoSo", request("YeuCauCapNhatHoSo", dossier))
    assert answer["Result"] == 1
    assert hub.timeline(dossier)["status"] == 2  # TH-BR YeuCauCapNhatHoSo handler: 2


def refused_count(rule: str) -> float:
    return REGISTRY.get_sample_value("lienthong_callbacks_refused_total", {"connector": "unknown", "reason": rule}) or 0


def test_a_wrong_security_code_is_refused_counted_and_never_stored(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    body = request("KetThucHoSo", "000.00.00.H12-251123-0044")
    before = refused_count("security-code-unknown"), refused_count("vbdlis-profile"), len(hub.refusals())
    wrong = hub.step("KetThucHoSo", body, key="lt_00000000_not-a-key")
    foreign = hub.step("KetThucHoSo", body, key=hub.other_key)
    assert wrong == foreign == {"Result": 0, "Message": "unknown security code"}
    assert (refused_count("security-code-unknown"), refused_count("vbdlis-profile")) == (before[0] + 1, before[1] + 1)
    assert len(hub.refusals()) == before[2]
    # What the hub logged (the test client's own httpx log names the URL it called, when a test before this one
    # left logging at INFO: that line is the client's, not the hub's).
    hub_log = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("httpx"))
    assert "rule=security-code-unknown" in hub_log and "not-a-key" not in hub_log
    assert (
        hub.client.get("/api/v1/dossiers/000.00.00.H12-251123-0044", headers={"X-Api-Key": ADMIN_KEY}).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("action", "body", "version", "rule", "named"),
    [
        ("KetThucHoSo", {"SoBienNhan": "000.00.00.H12-251123-0045"}, "1", "vbdlis:required", "NgayKetThuc"),
        ("KetThucHoSo", b"{not json", "1", "vbdlis:json", "not JSON"),
        ("KetThucHoSo", b"[" * 20000 + b"]" * 20000, "1", "vbdlis:json", "not JSON"),
        ("KetThucHoSo", ["a list"], "1", "vbdlis:body", "JSON object"),
        ("TiepNhanHoSo", {"SoBienNhan": "000.00.00.H12-251123-0045"}, "1", "vbdlis:action", "action"),
        ("KetThucHoSo", request("KetThucHoSo", "000.00.00.H12-251123-0045"), "2", "vbdlis-version", "version"),
        ("KetThucHoSo", request("KetThucHoSo", "000.00.00.H99-251123-0045"), "1", "dossier-not-yours", "party"),
        ("YeuCauBoSungHoSo", request("YeuCauBoSungHoSo", "000.00.00.H12-251123-0045", LaTamDung="yes"), "1",
         "vbdlis:type", "LaTamDung"),
    ],
)  # fmt: skip
def test_a_bad_step_is_refused_naming_the_field(
    hub: Hub, action: str, body: object, version: str, rule: str, named: str
) -> None:
    answer = hub.step(action, body, version=version)
    assert answer["Result"] == 0 and named in answer["Message"], answer
    assert hub.refusals()[0]["rule"] == rule


def test_an_illegal_transition_is_refused_with_its_reason(hub: Hub) -> None:
    dossier = "000.00.00.H12-251123-0046"
    assert hub.step("KetThucHoSo", request("KetThucHoSo", dossier))["Result"] == 1
    late = hub.step("YeuCauBoSungHoSo", request("YeuCauBoSungHoSo", dossier, NgayChoBoSung="2025-12-02T08:00:00"))
    assert late["Result"] == 0 and "9 DONE -> 5" in late["Message"]
    assert [u["outcome"] for u in hub.timeline(dossier)["updates"]] == ["applied", "rejected"]


@pytest.mark.parametrize(
    ("number", "before", "action", "current"),
    [  # what docs/integrators.md §4 says the status machine refuses (Result 0, rule status-transition)
        ("0061", "YeuCauBoSungHoSo", "KetThucHoSo", "5 SUPPLEMENT_REQUESTED -> 9 DONE"),
        ("0062", "YeuCauBoSungHoSo", "GuiKetQuaThue", "5 SUPPLEMENT_REQUESTED -> 6 FINANCIAL_OBLIGATION_REQUESTED"),
        ("0063", "ChuyenHoSo", "YeuCauCapNhatHoSo", "4 PROCESSING -> 2 RECEIVED"),
        ("0064", "KetThucHoSo", "KetThucHoSo", "9 DONE -> 9 DONE"),
    ],
)
def test_the_steps_the_status_machine_refuses_are_answered_result_0(
    hub: Hub, number: str, before: str, action: str, current: str
) -> None:
    dossier = f"000.00.00.H12-251123-{number}"
    assert hub.step(before, request(before, dossier))["Result"] == 1
    answer = hub.step(action, request(action, dossier, GhiChu="Bước khác", NgayKetThuc="2025-12-05T08:00:00"
                                      if action == "KetThucHoSo" else None))  # fmt: skip
    assert answer["Result"] == 0 and current in answer["Message"], answer
    assert hub.refusals()[0]["rule"] == "status-transition"
    assert hub.timeline(dossier)["updates"][-1]["outcome"] == "rejected"


def test_vbdlis_intake_of_a_whole_dossier_is_not_accepted(hub: Hub) -> None:
    answer = hub.step("TiepNhanHoSoChoMotCua", {"SoBienNhan": "000.00.00.H12-251123-0051", "TinhId": 45})
    assert answer["Result"] == 0 and answer["Message"].startswith("action: 'TiepNhanHoSoChoMotCua' is not one of ")
    assert hub.refusals()[0]["rule"] == "vbdlis:action"


def test_the_security_code_is_masked_in_log_lines() -> None:
    line = '127.0.0.1:5012 - "POST /api/v1/VBDLISs/KetThucHoSo/lt_1a2b3c4d_S3cr3t-value HTTP/1.1" 200'
    assert mask_personal(line) == '127.0.0.1:5012 - "POST /api/v1/VBDLISs/KetThucHoSo/*** HTTP/1.1" 200'


def test_a_step_th_only_logs_keeps_the_status_and_is_delivered_as_a_step(hub: Hub) -> None:
    dossier = "000.00.00.H12-251123-0047"
    unknown = hub.step("ThongBaoNhapSaiThuTuc", request("ThongBaoNhapSaiThuTuc", dossier))
    assert unknown["Result"] == 0 and "no status is known" in unknown["Message"]
    assert hub.step("ChuyenHoSo", request("ChuyenHoSo", dossier))["Result"] == 1
    assert hub.step("ThueChuyenTraHoSoDoSai", request("ThueChuyenTraHoSoDoSai", dossier))["Result"] == 1
    timeline = hub.timeline(dossier)
    assert timeline["status"] == 4
    assert [(u["status"], u["outcome"], u["detail"]["partner_step"]) for u in timeline["updates"]] == [
        (4, "applied", "ChuyenHoSo"), (4, "applied", "ThueChuyenTraHoSoDoSai"),
    ]  # fmt: skip


def test_the_timeline_keeps_step_details_on_both_databases(store: Store) -> None:
    code = "000.00.00.H12-251123-0048"
    at = datetime(2025, 11, 24, 1, 30, tzinfo=UTC)
    detail = {
        "step": {"actor": "cb.tnmt.07", "handed_to": "cb.tnmt.08"}, "paused": True, "step_limit": "2.5",
        "attachments": [{"name": "Đơn", "url": "https://x.example/a.pdf", "copies": 0, "originals": 1}],
    }  # fmt: skip
    (result,) = store.accept_many([{
        "sender": VBDLIS, "message_id": "vbdlis-1", "correlation_id": None, "message_type": "dossier.status",
        "receiver": HUB, "dossier_code": code, "envelope": b"<e/>", "destinations": [PROVINCE],
        "status": StatusUpdate(code, 5, at, VBDLIS, detail),
    }])  # fmt: skip
    assert result.outcome == "accepted"
    (entry,) = store.timeline(code)
    assert (entry.status, entry.outcome, entry.detail) == (5, "applied", detail)


def test_a_nul_character_is_refused_naming_the_field_on_both_databases(store_url: str, tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY, database_url=store_url)
    with TestClient(create_app(settings)) as client:
        service: HubService = client.app.state.hub
        _, key = service.registry.add(parse_spec({
            "code": VBDLIS, "name": "VBDLIS", "kind": "ministry", "sends": ["dossier.status"],
            "profile": "ministry/vbdlis-json", "profile_values": {"api_versions": "1"}, "handles": [PROVINCE],
        }), actor="test")  # fmt: skip
        service.refresh()
        dossier = "000.00.00.H12-251123-0050"
        for field, body in [
            ("SoBienNhan", request("KetThucHoSo", dossier + "\x00")),
            ("GhiChu", request("KetThucHoSo", dossier, GhiChu="a\x00b")),
            ("DanhSachGiayToKetQua/0/TenGiayTo", request("KetThucHoSo", dossier, DanhSachGiayToKetQua=[
                {"TenGiayTo": "GCN\x00", "LinkFile": "https://vbdlis.example.gov.vn/f/a.pdf"}])),
        ]:  # fmt: skip
            response = client.post(f"/api/v1/VBDLISs/KetThucHoSo/{key}", json=body)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "Result": 0, "Message": f"{field}: a NUL character (\\u0000) is not accepted in a step"
            }  # fmt: skip
            (refusal, *_) = flow_records.refusals(service.store.engine, connector=VBDLIS)
            assert (refusal["rule"], refusal["reference"]) == ("nul-character", dossier)  # NUL stripped from it
        assert client.get(f"/api/v1/dossiers/{dossier}", headers={"X-Api-Key": ADMIN_KEY}).status_code == 404

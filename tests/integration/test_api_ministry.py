"""Flow F5 through the front door: a ministry connector with the ``ministry-steps`` profile pushes its own step
messages (``<BuocXuLy>``) in signed envelopes, over REST and SOAP. Each is verified as received, validated and
mapped to the canonical ``dossier.status``, run through the status machine onto the dossier's timeline, logged
raw, and (when applied) delivered to the province in its canonical form."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree

import mappings
from hub import packets
from hub.api import create_app
from hub.devtools.sink import SinkServer
from hub.exchange.worker import OutboundBuilder, Worker
from hub.packets import convert
from hub.registry import parse_spec, run_check
from hub.runtime import adapters_for, open_broker
from hub.security import keys
from hub.security.envelope import BODY_TAG, EnvelopeHeader
from hub.security.signing import Signer, sign_payload
from hub.services import HubService
from hub.xmlparse import parse_xml
from mappings.ministry_steps import NAMESPACE
from tests.support import hub_settings, signed_envelope

HUB, MINISTRY, PROVINCE, OTHER = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G11"
DOSSIER = "000.00.00.H12-251123-0042"
ADMIN_KEY = "admin-secret-key"
PROBLEM = "application/problem+json"
GOLDEN = Path(__file__).parents[1] / "golden" / "ministry_steps"
DOC = (
    "<GiayToKetQua><MaGiayTo>GCN-1</MaGiayTo><TenGiayTo>Giấy chứng nhận</TenGiayTo>"
    "<DuongDan>https://tnmt.example.gov.vn/f/1.pdf</DuongDan></GiayToKetQua>"
)


def step(code: str, at: str, *, documents: str = "") -> etree._Element:
    """A ministry step message; ``at`` is local time yyyyMMddHHmmss."""
    docs = f"<DanhSachGiayToKetQua>{documents}</DanhSachGiayToKetQua>" if documents else ""
    return parse_xml(
        (
            f'<BuocXuLy xmlns="{NAMESPACE}"><MaHoSo>{DOSSIER}</MaHoSo><MaDonVi>{MINISTRY}</MaDonVi>'
            f"<LoaiBuoc>{code}</LoaiBuoc><ThoiDiem>{at}</ThoiDiem><NguoiXuLy>Lê Văn Cường</NguoiXuLy>{docs}"
            "</BuocXuLy>"
        ).encode()
    )


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n2", strip_text=True)


@dataclass
class Hub:
    client: TestClient
    hub: HubService
    ministry_key: str
    other_key: str
    ministry: Signer
    sink: SinkServer
    other: Signer  # one connector, its own certificates: OTHER signs with its own key

    def envelope(self, body: etree._Element, *, sender: str = MINISTRY, message_id: str | None = None) -> bytes:
        signer = self.other if sender == OTHER else self.ministry
        return signed_envelope(signer, sender=sender, receiver=HUB, message_type="dossier.status", payload=body,
                               message_id=message_id or str(uuid.uuid4()), dossier_code=DOSSIER)  # fmt: skip

    def post(self, data: bytes, key: str | None = None):
        return self.client.post(
            "/api/v1/messages",
            content=data,
            headers={"Content-Type": "application/xml", "X-Api-Key": key or self.ministry_key},
        )

    def get(self, path: str):
        return self.client.get(path, headers={"X-Api-Key": ADMIN_KEY})

    def timeline(self) -> dict:
        response = self.get(f"/api/v1/dossiers/{DOSSIER}")
        assert response.status_code == 200, response.text
        return response.json()

    def deliver(self) -> None:
        """Run a worker over what is queued (the province's endpoint is a local sink)."""
        routing = self.hub.runtime.routing
        builder = OutboundBuilder(self.hub.runtime.signer(), HUB)
        broker = open_broker(self.hub.settings)  # a worker's own (the API's broker is its publisher thread's)
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


@pytest.fixture
def hub(tmp_path: Path, pki, sink: SinkServer) -> Iterator[Hub]:
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    cert = pki.ministry.cert_path.read_text()
    other = keys.issue_key("construction", tmp_path / "other-keys", algorithm="ec", code=OTHER)
    with TestClient(create_app(settings)) as client:
        service: HubService = client.app.state.hub

        def register(**spec) -> str:
            _, key = service.registry.add(parse_spec(spec), actor="test")
            return key

        ministry_key = register(
            code=MINISTRY, name="Land registration software", kind="ministry", sends=["dossier.status"],
            mapping={"dossier.status": "ministry-steps"}, certificates=[cert], handles=[PROVINCE],
        )  # fmt: skip
        other_key = register(  # a ministry without the profile: canonical bodies only
            code=OTHER, name="Construction software", kind="ministry", sends=["dossier.status"],
            certificates=[other.cert_path.read_text()], handles=[PROVINCE],
        )  # fmt: skip
        register(
            code=PROVINCE, name="One-stop system", kind="provincial", receives=["dossier.status"],
            endpoint={"url": sink.url}, retry={"delays_s": [0.2], "jitter": 0},
        )  # fmt: skip
        service.refresh()
        yield Hub(client, service, ministry_key, other_key, pki.ministry.signer, sink,
                  Signer.from_files(other.key_path, other.cert_path))  # fmt: skip


def assert_problem(response, status: int, rule: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert rule in [e["rule"] for e in body["errors"]], body
    return body


# ------------------------------------------------------------------------------------------------ the flow


def test_step_messages_are_mapped_timelined_logged_raw_and_delivered_canonical(hub: Hub) -> None:
    sources = sorted(p for p in GOLDEN.glob("*.xml") if not p.name.endswith(".expected.xml"))
    sent: dict[str, tuple[bytes, Path]] = {}
    for source in sources:  # LuanChuyenHoSo 4 → ChoBoSung 5 → DaBoSung 4 → KetThuc 9
        data = hub.envelope(parse_xml(source.read_bytes()))
        response = hub.post(data)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued" and body["status_update"] == "applied" and body["destinations"] == [PROVINCE]
        sent[body["message_id"]] = (data, source)

    timeline = hub.timeline()
    assert timeline["status"] == 9
    assert [(u["status"], u["outcome"], u["source"]) for u in timeline["updates"]] == [
        (4, "applied", MINISTRY), (5, "applied", MINISTRY), (4, "applied", MINISTRY), (9, "applied", MINISTRY),
    ]  # fmt: skip
    assert [u["message_id"] for u in timeline["updates"]] == list(sent)
    assert timeline["updates"][0]["at"].startswith("2025-11-24T03:05:00")  # 10:05 in Hà Nội is 03:05 UTC

    for message_id, (data, _) in sent.items():  # the log keeps the envelope exactly as received
        trace = hub.get(f"/api/v1/messages/{message_id}").json()
        assert trace["digest"] == hashlib.sha256(data).hexdigest()
        assert "status_applied" in [e["state"] for e in trace["events"]]
        delivery = hub.hub.store.delivery(trace["deliveries"][0]["delivery_id"])
        assert delivery.envelope == data

    hub.deliver()
    for message_id, (_, source) in sent.items():  # what the province got is the canonical packet, signed by the hub
        trace = hub.get(f"/api/v1/messages/{message_id}").json()
        assert trace["status"] == "delivered", trace
        outbound = parse_xml(hub.hub.store.delivery(trace["deliveries"][0]["delivery_id"]).outbound)
        (payload,) = outbound.find(BODY_TAG)
        assert payload.tag == f"{{{packets.PACKET_NAMESPACE}}}dossierStatus"
        expected = parse_xml(source.with_name(source.stem + ".expected.xml").read_bytes())
        assert c14n(payload) == c14n(expected)


def test_resend_is_idempotent_and_not_decided_twice(hub: Hub) -> None:
    data = hub.envelope(step("KetThuc", "20251201143000", documents=DOC), message_id="tnmt-0001")
    first, again = hub.post(data), hub.post(data)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["duplicate"] is True and again.json()["status_update"] is None
    assert len(hub.timeline()["updates"]) == 1  # 9 -> 9 would have been an illegal transition


def test_illegal_transition_is_422_and_nothing_is_queued(hub: Hub) -> None:
    assert hub.post(hub.envelope(step("KetThuc", "20251201143000", documents=DOC))).status_code == 202
    queued = sum(q["pending"] for q in hub.get("/api/v1/queues").json())
    refused = hub.envelope(step("ChoBoSung", "20251202090000"), message_id="tnmt-late-0001")
    body = assert_problem(hub.post(refused), 422, "status-transition")
    assert body["message_id"] == "tnmt-late-0001"
    assert "9 DONE -> 5 SUPPLEMENT_REQUESTED" in body["detail"]
    assert "9 DONE -> 5 SUPPLEMENT_REQUESTED" in body["errors"][0]["message"]
    assert sum(q["pending"] for q in hub.get("/api/v1/queues").json()) == queued
    assert hub.get("/api/v1/messages/tnmt-late-0001").status_code == 404  # not stored
    timeline = hub.timeline()
    assert timeline["status"] == 9
    assert (timeline["updates"][-1]["status"], timeline["updates"][-1]["outcome"]) == (5, "rejected")
    assert timeline["updates"][-1]["message_id"] == "tnmt-late-0001"


def test_stale_update_is_recorded_and_not_routed(hub: Hub) -> None:
    assert hub.post(hub.envelope(step("LuanChuyenHoSo", "20251125100000"))).status_code == 202
    late = hub.post(hub.envelope(step("ChoBoSung", "20251124100000"), message_id="tnmt-stale-0001"))
    assert late.status_code == 202, late.text
    assert late.json() == {
        "message_id": "tnmt-stale-0001", "status": "accepted", "duplicate": False, "destinations": [],
        "status_update": "stale", "warnings": [],
    }  # fmt: skip
    trace = hub.get("/api/v1/messages/tnmt-stale-0001").json()
    assert trace["deliveries"] == [] and "status_stale" in [e["state"] for e in trace["events"]]
    timeline = hub.timeline()
    assert timeline["status"] == 4
    assert [u["outcome"] for u in timeline["updates"]] == ["stale", "applied"]  # in time order
    hub.deliver()
    with hub.sink.state.lock:
        assert hub.sink.state.received == 1  # only the applied update reached the province


def test_canonical_status_still_accepted_from_a_ministry_with_the_profile(hub: Hub) -> None:
    response = hub.post(hub.envelope(packets.to_element(packets.example("dossier.status"))))
    assert response.status_code == 202, response.text
    assert hub.timeline()["updates"][0]["outcome"] == "applied"


def test_invalid_step_messages_are_422_with_the_ministry_paths(hub: Hub) -> None:
    body = assert_problem(hub.post(hub.envelope(step("KetThuc", "20251201143000"))), 422, "ministry:results-required")
    assert body["errors"][0]["path"] == "/envelope/body/BuocXuLy/DanhSachGiayToKetQua"
    assert_problem(hub.post(hub.envelope(step("KetThuc", "20251231250000", documents=DOC))), 422, "xsd:pattern")
    signed = hub.envelope(step("ChoBoSung", "20251201143000"))
    tampered = signed.replace(f"<MaHoSo>{DOSSIER}".encode(), b"<MaHoSo>000.00.00.H12-251123-0043")
    assert tampered != signed
    assert_problem(hub.post(tampered), 422, "signature-digest")  # the signature covers the body as received
    assert hub.get(f"/api/v1/dossiers/{DOSSIER}").status_code == 404


def test_header_and_body_must_name_the_same_dossier(hub: Hub) -> None:
    header = EnvelopeHeader(
        sender=MINISTRY, receiver=HUB, message_type="dossier.status", dossier_code="000.00.00.H12-251123-0043"
    )
    data = etree.tostring(sign_payload(hub.ministry, header, step("ChoBoSung", "20251201143000")))
    assert_problem(hub.post(data), 422, "dossier-code-matches-body")


def test_a_connector_without_the_profile_cannot_send_step_messages(hub: Hub) -> None:
    data = hub.envelope(step("ChoBoSung", "20251201143000"), sender=OTHER)
    body = assert_problem(hub.post(data, hub.other_key), 422, "root-element")
    assert body["errors"][0]["path"] == "/envelope/body/BuocXuLy"


def test_soap_push_of_a_step_message(hub: Hub) -> None:
    data = hub.envelope(step("LuanChuyenHoSo", "20251124100500"), message_id="tnmt-soap-0001")
    soap = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ex="urn:lienthong:exchange:1">'
        f"<soap:Header><ex:ApiKey>{hub.ministry_key}</ex:ApiKey></soap:Header><soap:Body><ex:SubmitEnvelopeRequest>"
        f"<ex:SignedEnvelope>{base64.b64encode(data).decode()}</ex:SignedEnvelope>"
        "</ex:SubmitEnvelopeRequest></soap:Body></soap:Envelope>"
    )
    response = hub.client.post("/soap/exchange", content=soap.encode(), headers={"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    answer = parse_xml(response.content)
    assert answer.findtext(".//{urn:lienthong:exchange:1}Status") == "queued"
    assert answer.findtext(".//{urn:lienthong:exchange:1}Destination") == PROVINCE
    timeline = hub.timeline()
    assert [(u["status"], u["outcome"], u["message_id"]) for u in timeline["updates"]] == [
        (4, "applied", "tnmt-soap-0001")
    ]
    assert hub.get("/api/v1/messages/tnmt-soap-0001").json()["digest"] == hashlib.sha256(data).hexdigest()

    def push(envelope: bytes):
        request = soap.replace(base64.b64encode(data).decode(), base64.b64encode(envelope).decode())
        return hub.client.post("/soap/exchange", content=request.encode(), headers={"Content-Type": "text/xml"})

    assert push(hub.envelope(step("KetThuc", "20251201143000", documents=DOC))).status_code == 200
    response = push(hub.envelope(step("ChoBoSung", "20251202090000"), message_id="tnmt-soap-0002"))
    fault = parse_xml(response.content)  # SOAP 1.1: a fault is HTTP 500, soap:Client for a refusal
    assert response.status_code == 500 and fault.findtext(".//faultcode") == "soap:Client"
    assert fault.findtext(".//{urn:lienthong:exchange:1}Status") == "422"
    assert fault.findtext(".//{urn:lienthong:exchange:1}Rule") == "status-transition"
    assert fault.findtext(".//{urn:lienthong:exchange:1}MessageId") == "tnmt-soap-0002"
    assert [u["outcome"] for u in hub.timeline()["updates"]] == ["applied", "applied", "rejected"]


def test_connector_check_maps_a_step_example(hub: Hub, tmp_path: Path) -> None:
    example = tmp_path / "buoc.xml"
    example.write_bytes(etree.tostring(step("KetThuc", "20251201143000", documents=DOC)))
    spec = parse_spec(
        {
            "code": "000.00.00.G12", "name": "Health software", "kind": "ministry", "sends": ["dossier.status"],
            "mapping": {"dossier.status": "ministry-steps"}, "examples": {"dossier.status": [str(example)]},
        },
        base_dir=tmp_path,
    )  # fmt: skip
    hub.hub.registry.add(spec, actor="test")
    report = run_check(hub.hub.registry, "000.00.00.G12", probe=False)
    messages = [(i.status, i.area, i.message) for i in report.items]
    assert not [m for m in messages if m[1] in ("example", "mapping") and m[0] == "fail"], messages
    assert any("mapped to canonical with profile 'ministry-steps'" in m[2] for m in messages), messages


def test_intake_decodes_a_body_once_whether_mapped_or_canonical(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation, the dossier-code check and the status machine share one decoding of the body."""
    mapped: list[object] = []
    original = mappings.inbound_mapping("ministry-steps", "dossier.status")
    assert original is not None
    counted = dataclasses.replace(original, to_canonical=lambda e: mapped.append(e) or original.to_canonical(e))
    monkeypatch.setitem(mappings._INBOUND["ministry-steps"], "dossier.status", counted)
    monkeypatch.setitem(mappings._BY_ROOT, ("dossier.status", original.root), counted)
    assert hub.post(hub.envelope(step("LuanChuyenHoSo", "20251125100000"))).status_code == 202
    assert len(mapped) == 1

    decoded: list[object] = []
    real_decode = convert.codec.decode
    monkeypatch.setattr(convert.codec, "decode", lambda *a: decoded.append(a) or real_decode(*a))
    canonical = packets.example("dossier.status").model_copy(
        update={"dossier_code": DOSSIER, "status": 5, "source_system": OTHER}
    )
    response = hub.post(hub.envelope(packets.to_element(canonical), sender=OTHER), key=hub.other_key)
    assert response.status_code == 202, response.text
    assert len(decoded) == 1

"""Signed results (issue 16.5; Quảng Nam Điều 16.3) end to end in one process: a ministry registered with
``result_signers`` pushes finished steps (``KetThuc``) whose result PDFs its simulator serves over HTTP on
127.0.0.1; the worker fetches each one and checks its signature with pyHanko before it delivers the update to the
province (a sink). A result signed by anyone else, unsigned, changed, missing or not the document named is held: a
dead letter whose reason is the rule, listed by ``GET /api/v1/dead-letters`` (what the operator page shows); the
province never gets it. Replaying it checks again; once the ministry serves a properly signed document, it goes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.api import create_app
from hub.devtools.pdf_documents import DemoPdfKeys, append_change, demo_pdf_keys, minimal_pdf, signed_result_pdf
from hub.devtools.simulators import MinistrySimulator, MinistryStep, ResultDocument, VbdlisSimulator
from hub.devtools.sink import SinkServer
from hub.exchange.worker import OutboundBuilder, Worker
from hub.registry import parse_spec, run_check
from hub.runtime import open_broker
from hub.services import HubService
from tests.support import HUB, MINISTRY, PROVINCE, hub_settings

VBDLIS = "000.00.00.G13"
ADMIN_KEY = "admin-secret-key"
GOLDEN = Path(__file__).parents[1] / "golden" / "vbdlis"
FINISHED_AT = datetime(2025, 12, 1, 7, 30, tzinfo=UTC)


def dossier(n: int) -> str:
    return f"{PROVINCE}-251123-{n:04d}"


@dataclass
class Hub:
    client: TestClient
    hub: HubService
    ministry: MinistrySimulator
    ministry_key: str
    sink: SinkServer
    signers: DemoPdfKeys

    def finish(self, n: int, result: ResultDocument) -> str:
        """The ministry's KetThuc step for dossier ``n`` with ``result``; its message id once accepted."""
        step = MinistryStep(dossier_code=dossier(n), step="KetThuc", at=FINISHED_AT, actor="Lê Văn Cường",
                            results=[result])  # fmt: skip
        response = self.client.post(
            "/api/v1/messages", content=self.ministry.envelope(step),
            headers={"Content-Type": "application/xml", "X-Api-Key": self.ministry_key},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status_update"] == "applied" and body["destinations"] == [PROVINCE]  # accepted, not refused
        return body["message_id"]

    def get(self, path: str):
        response = self.client.get(path, headers={"X-Api-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        return response.json()

    def deliver(self) -> None:
        """A worker over what is queued, with the adapters the runtime builds (the result check in front)."""
        runtime = self.hub.runtime
        broker = open_broker(self.hub.settings)  # a worker's own (the API's broker is its publisher thread's)
        worker = Worker(self.hub.store, broker, runtime.routing, OutboundBuilder(runtime.signer(), HUB),
                        runtime.adapters())  # fmt: skip
        try:
            for _ in range(20):
                batch = broker.consume(worker.destinations, prefetch=64, timeout_s=0.2)
                if not batch:
                    break
                worker.process_batch(batch)
        finally:
            worker.close()
            broker.close()

    def open_dead_letters(self) -> dict[str, dict]:
        return {d["message_id"]: d for d in self.get("/api/v1/dead-letters")}

    def delivered(self, message_id: str) -> bool:
        return message_id in self.sink.state.first_seen


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> DemoPdfKeys:
    """The demo's PDF signers, made once for the module (three RSA-2048 keys, ~0.5 s of CPU): tests only sign
    with them."""
    return demo_pdf_keys(tmp_path_factory.mktemp("pdf-keys"), agency_code=MINISTRY)


@pytest.fixture
def hub(tmp_path: Path, pki, sink: SinkServer, signers: DemoPdfKeys, migrated_copy) -> Iterator[Hub]:
    migrated_copy(tmp_path / "hub.db")  # hub_settings' store
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    with (
        MinistrySimulator(code=MINISTRY, signer=pki.ministry.signer, hub_code=HUB) as ministry,
        TestClient(create_app(settings)) as client,
    ):
        service: HubService = client.app.state.hub
        _, ministry_key = service.registry.add(parse_spec({
            "code": MINISTRY, "name": "Land registration software", "kind": "ministry", "sends": ["dossier.status"],
            "mapping": {"dossier.status": "ministry-steps"}, "certificates": [pki.ministry.cert_path.read_text()],
            "handles": [PROVINCE], "result_signers": [signers.agency.cert_pem],
            "result_hosts": [f"127.0.0.1:{ministry.port}"],  # its document host, named exactly (it is loopback)
        }), actor="test")  # fmt: skip
        service.registry.add(parse_spec({
            "code": PROVINCE, "name": "One-stop system", "kind": "provincial", "receives": ["dossier.status"],
            "endpoint": {"url": sink.url}, "retry": {"delays_s": [0.2], "jitter": 0},
        }), actor="test")  # fmt: skip
        service.refresh()
        assert ministry_key is not None
        yield Hub(client, service, ministry, ministry_key, sink, signers)


def test_a_result_signed_by_the_registered_agency_is_forwarded(hub: Hub) -> None:
    result = hub.ministry.signed_result(dossier(1), hub.signers.agency, with_digest=True)
    message_id = hub.finish(1, result)
    hub.deliver()
    assert hub.delivered(message_id)
    assert hub.get(f"/api/v1/messages/{message_id}")["status"] == "delivered"
    assert hub.ministry.received()["documents_fetched"] == [f"{dossier(1)}-KQ-1.pdf"]  # the hub did fetch it
    assert hub.open_dead_letters() == {}


def test_results_that_fail_the_check_are_held_with_the_rule_and_shown_to_operators(hub: Hub) -> None:
    agency, other = hub.signers.agency, hub.signers.other
    good = signed_result_pdf(dossier(9), agency)
    documents = {  # dossier number → (the document the ministry serves, or None: nothing there; the rule)
        2: (signed_result_pdf(dossier(2), other), "result-signer-not-registered"),
        3: (minimal_pdf("Ket qua", ["chua ky"]), "result-unsigned"),
        4: (append_change(signed_result_pdf(dossier(4), agency)), "result-signature-invalid"),
        5: (b"\xff\xd8\xff\xe0\x00\x10JFIF scan of the paper result", "result-not-a-pdf"),
        6: (None, "result-unavailable"),
    }
    held: dict[str, str] = {}
    for n, (data, _) in documents.items():
        url = hub.ministry.publish(f"kq-{n}.pdf", data) if data is not None else hub.ministry.base_url + "/documents/x"
        held[hub.finish(n, ResultDocument(code="KQ", name="Giấy chứng nhận", url=url))] = documents[n][1]
    named_wrongly = hub.ministry.publish("kq-7.pdf", good)  # a signed result, but not the one the step names
    held[hub.finish(7, ResultDocument(code="KQ", name="GCN", url=named_wrongly, sha256="0" * 64))] = (
        "result-digest-mismatch"
    )

    hub.deliver()
    dead = hub.open_dead_letters()  # GET /api/v1/dead-letters: the operator page's dead-letter panel
    assert {message_id: d["reason"] for message_id, d in dead.items()} == held
    for message_id in held:
        assert not hub.delivered(message_id)
        letter = dead[message_id]
        assert letter["destination"] == PROVINCE and letter["sender"] == MINISTRY
        assert letter["dossier_code"] is not None and letter["message_type"] == "dossier.status"
        trace = hub.get(f"/api/v1/messages/{message_id}")
        assert trace["status"] == "dead"
        assert any(letter["reason"] in (e.get("detail") or "") for e in trace["events"])
    assert "other-signer" in dead[next(m for m, r in held.items() if r == "result-signer-not-registered")]["last_error"]
    # the dossier's status was applied all the same: the ministry finished it; only the forwarding is held
    assert hub.get(f"/api/v1/dossiers/{dossier(2)}")["status"] == 9


def test_a_replay_checks_again_and_goes_once_the_ministry_fixed_the_document(hub: Hub) -> None:
    url = hub.ministry.publish("kq-8.pdf", signed_result_pdf(dossier(8), hub.signers.other))
    message_id = hub.finish(8, ResultDocument(code="KQ", name="Giấy chứng nhận", url=url))
    hub.deliver()
    first = hub.open_dead_letters()[message_id]
    assert first["reason"] == "result-signer-not-registered"

    def replay(dead_letter_id: int) -> None:
        response = hub.client.post(f"/api/v1/dead-letters/{dead_letter_id}/replay", headers={"X-Api-Key": ADMIN_KEY})
        assert response.status_code == 202, response.text

    replay(first["id"])  # an operator replays without the document being fixed: held again, not forwarded
    hub.deliver()
    again = hub.open_dead_letters()[message_id]
    assert again["id"] != first["id"] and again["reason"] == "result-signer-not-registered"
    assert not hub.delivered(message_id)

    fixed = signed_result_pdf(dossier(8), hub.signers.agency)
    assert hub.ministry.publish("kq-8.pdf", fixed) == url  # the ministry re-signs the file at the same link
    replay(again["id"])
    hub.deliver()
    assert hub.delivered(message_id) and message_id not in hub.open_dead_letters()


def test_a_ministry_without_result_signers_is_not_checked_and_connector_check_says_so(hub: Hub) -> None:
    def result_signer_items() -> list[tuple[str, str]]:
        report = run_check(hub.hub.registry, MINISTRY, probe=False)
        return [(i.status, i.message) for i in report.items if i.area == "result-signers"]

    ((status, message),) = result_signer_items()
    assert status == "ok" and message.startswith("competent-agency (") and "key policy met" in message
    spec = hub.hub.registry.get(MINISTRY)
    assert spec is not None
    data = spec.spec.model_dump() | {"result_signers": [], "certificates": list(spec.spec.certificates)}
    hub.hub.registry.add(parse_spec(data), actor="test")
    hub.hub.refresh()
    message_id = hub.finish(10, ResultDocument(code="KQ", name="GCN", url=hub.ministry.base_url + "/documents/none"))
    hub.deliver()
    assert hub.delivered(message_id)
    assert hub.ministry.received()["documents_fetched"] == []
    ((status, message),) = result_signer_items()
    assert status == "warn" and "forwarded unchecked" in message


def test_vbdlis_result_files_are_checked_the_same_way(hub: Hub) -> None:
    """VBDLIS's ``KetThucHoSo`` (PARTNER-FORMATS §5, TH-BR) links its result files in ``DanhSachGiayToKetQua``
    (``LinkFile``): the connector's ``result_signers`` apply to them as to the XML steps' results."""
    with VbdlisSimulator() as vbdlis:
        _, key = hub.hub.registry.add(parse_spec({
            "code": VBDLIS, "name": "VBDLIS land registration", "kind": "ministry", "sends": ["dossier.status"],
            "profile": "ministry/vbdlis-json", "profile_values": {"api_versions": "1"}, "handles": [PROVINCE],
            "result_signers": [hub.signers.agency.cert_pem], "result_hosts": [f"127.0.0.1:{vbdlis.port}"],
        }), actor="test")  # fmt: skip
        hub.hub.refresh()
        golden = json.loads((GOLDEN / "TH-BR_KetThucHoSo.request.json").read_text(encoding="utf-8"))
        for n, signer in ((11, hub.signers.agency), (12, hub.signers.other)):
            link = vbdlis.publish(f"gcn-{n}.pdf", signed_result_pdf(dossier(n), signer))
            files = [{**golden["DanhSachGiayToKetQua"][0], "LinkFile": link}]
            body = {**golden, "SoBienNhan": dossier(n), "DanhSachGiayToKetQua": files}
            answer = hub.client.post(f"/api/v1/VBDLISs/KetThucHoSo/{key}", json=body).json()
            assert answer["Result"] == 1, answer
        hub.deliver()
        dead = {d["dossier_code"]: d for d in hub.open_dead_letters().values()}
        assert set(dead) == {dossier(12)} and dead[dossier(12)]["reason"] == "result-signer-not-registered"
        assert dead[dossier(12)]["sender"] == VBDLIS
        assert sorted(vbdlis.received()["documents_fetched"]) == ["gcn-11.pdf", "gcn-12.pdf"]
        assert len(hub.sink.state.first_seen) == 1  # only the agency-signed result reached the province


def spec_of(hub: Hub) -> dict:
    """The ministry's registered spec, as a declaration to change and add again."""
    connector = hub.hub.registry.get(MINISTRY)
    assert connector is not None
    return connector.spec.model_dump() | {"certificates": list(connector.spec.certificates)}


def result_host_items(hub: Hub) -> list[tuple[str, str]]:
    """What ``hub connector check`` says of the ministry's result hosts."""
    report = run_check(hub.hub.registry, MINISTRY, probe=False)
    return [(i.status, i.message) for i in report.items if i.area == "result-hosts"]


def test_a_result_link_to_a_host_the_ministry_may_not_use_is_held_without_being_requested(hub: Hub) -> None:
    """A link is a request the hub makes for the ministry (SSRF): only the hosts of its ``result_hosts`` are asked,
    an internal address only when named exactly there. Elsewhere the update is held as ``result-host-not-allowed``
    with nothing requested; once an admin lists the host, a replay fetches and checks it as usual."""
    port = hub.ministry.port
    hub.hub.registry.add(parse_spec({**spec_of(hub), "result_hosts": []}), actor="test")  # no endpoint, none listed
    assert result_host_items(hub) == [("warn", "no result_hosts and no endpoint: every result link is held "
                                               "(result-host-not-allowed); list the hosts that serve its result files")]
    hub.hub.registry.add(parse_spec({**spec_of(hub), "result_hosts": [f"127.0.0.1:{port}"]}), actor="test")
    hub.hub.refresh()
    signed = hub.ministry.publish("kq-13.pdf", signed_result_pdf(dossier(13), hub.signers.agency))
    links = {13: signed.replace("127.0.0.1", "localhost"),  # the same server, by a name result_hosts does not give
             14: "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
             15: hub.sink.url}  # another service on the same host: the province's own inbox  # fmt: skip
    held = {n: hub.finish(n, ResultDocument(code="KQ", name="GCN", url=url)) for n, url in links.items()}
    hub.deliver()
    dead = hub.open_dead_letters()
    assert {dead[m]["reason"] for m in held.values()} == {"result-host-not-allowed"}
    assert all("result_hosts" in dead[m]["last_error"] for m in held.values())
    assert hub.ministry.received()["documents_fetched"] == [] and hub.sink.state.received == 0

    # the endpoint's host is the default, but a default never opens an internal address: named exactly, it does
    data = spec_of(hub)
    hub.hub.registry.add(parse_spec(data | {"result_hosts": [], "endpoint": {"url": f"http://localhost:{port}/in"}}),
                         actor="test")  # fmt: skip
    hub.hub.refresh()
    assert result_host_items(hub) == [("ok", "result links fetched only from its endpoint's host localhost (the "
                                       "default; an internal address only once result_hosts names the host)")]
    replayed = hub.client.post(f"/api/v1/dead-letters/{dead[held[13]]['id']}/replay", headers={"X-Api-Key": ADMIN_KEY})
    assert replayed.status_code == 202, replayed.text
    hub.deliver()
    again = hub.open_dead_letters()[held[13]]
    assert again["reason"] == "result-host-not-allowed" and "internal address" in again["last_error"]

    hub.hub.registry.add(parse_spec(data | {"result_hosts": [f"localhost:{port}"]}), actor="test")
    hub.hub.refresh()
    assert result_host_items(hub) == [("ok", f"result links fetched only from localhost:{port}")]
    replayed = hub.client.post(f"/api/v1/dead-letters/{again['id']}/replay", headers={"X-Api-Key": ADMIN_KEY})
    assert replayed.status_code == 202, replayed.text
    hub.deliver()
    assert hub.delivered(held[13]) and hub.ministry.received()["documents_fetched"] == ["kq-13.pdf"]
    assert {held[14], held[15]} <= set(hub.open_dead_letters())


def test_a_held_result_is_resent_by_the_ministry_that_set_9_with_the_re_signed_file(hub: Hub) -> None:
    """The way forward from a held result whose step declared its MaBam: a replay can never pass (the re-signed
    file's bytes are not the declared hash), so the ministry re-sends its finished step with the new file and its new
    digest — the sender that set 9 restating 9 with new result documents is an amendment, applied and routed again;
    the same step sent again is still refused (who else may not: ``tests/unit/test_status_machine.py``)."""
    wrong = hub.ministry.signed_result(dossier(30), hub.signers.other, with_digest=True)
    held_id = hub.finish(30, wrong)
    hub.deliver()
    assert hub.open_dead_letters()[held_id]["reason"] == "result-signer-not-registered"
    fixed = hub.ministry.signed_result(dossier(30), hub.signers.agency, with_digest=True)  # re-signed, same URL
    assert fixed.url == wrong.url and fixed.sha256 != wrong.sha256

    def resend(results: list[ResultDocument]):
        step = MinistryStep(dossier_code=dossier(30), step="KetThuc", at=FINISHED_AT.replace(hour=9),
                            actor="Lê Văn Cường", results=results)  # fmt: skip
        return hub.client.post("/api/v1/messages", content=hub.ministry.envelope(step),
                               headers={"Content-Type": "application/xml", "X-Api-Key": hub.ministry_key})  # fmt: skip

    same = resend([wrong])
    assert same.status_code == 422 and "9 DONE -> 9 DONE" in same.json()["errors"][0]["message"], same.text
    again = resend([fixed])
    assert again.status_code == 202, again.text
    assert again.json()["status_update"] == "applied" and again.json()["destinations"] == [PROVINCE]
    hub.deliver()
    assert hub.delivered(again.json()["message_id"]) and not hub.delivered(held_id)
    assert hub.get(f"/api/v1/messages/{again.json()['message_id']}")["status"] == "delivered"
    updates = hub.get(f"/api/v1/dossiers/{dossier(30)}")["updates"]
    assert [(u["status"], u["outcome"]) for u in updates] == [(9, "applied"), (9, "rejected"), (9, "applied")]
    assert "restated by" in updates[-1]["reason"] and "(amended)" in updates[-1]["reason"]

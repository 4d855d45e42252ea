"""The partner simulators over real HTTP: each one's protocol, what it keeps (``/_received``), and its failure
modes (down, slow, 5xx, 4xx, malformed; for a count or a period); the provincial and ministry systems pushing
signed envelopes to a real hub API (uvicorn in a thread) by REST and by SOAP (zeep)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from hub import packets
from hub.api import create_app
from hub.devtools.simulators import (
    DEFAULT_PORTS,
    MinistrySimulator,
    MinistryStep,
    NationalPortalSimulator,
    ProvincialSimulator,
    ResultDocument,
    SimulatorServer,
    VbdlisSimulator,
    running,
    send,
    signed_envelope,
    start_all,
)
from hub.security.keys import issue_key
from hub.security.signing import Signer
from mappings import ministry_steps
from tests.support import HUB, MINISTRY, PROVINCE, free_port, free_port_block, hub_settings, register, wait_for
from tests.support import signed_envelope as sign_envelope

STEP_MINISTRY = "000.00.00.G11"
DOSSIER = packets.examples.DOSSIER_CODE


# ---------------------------------------------------------------- failure modes, on every simulator


def _protocol_request(sim: SimulatorServer, client: httpx.Client) -> httpx.Response:
    if isinstance(sim, NationalPortalSimulator):
        return client.post(sim.login_url, json={"username": "lienthong", "password": "lienthong-demo"},
                           headers={"dstcode": sim.dstcode})  # fmt: skip
    if isinstance(sim, VbdlisSimulator):
        return client.post(sim.url + "tiepnhan", json={"SoBienNhan": 1})
    return client.post(sim.url, content=b"<not-an-envelope/>", headers={"X-Message-Id": "x"})


def _healthy(sim: SimulatorServer, response: httpx.Response) -> bool:
    if isinstance(sim, NationalPortalSimulator):
        return response.status_code == 200 and response.json()["error_code"] == 0
    if isinstance(sim, VbdlisSimulator):  # a refused call is answered data 0 by VBDLIS itself
        return response.status_code == 200 and response.json()["data"] == 0
    return response.status_code == 400 and "error" in response.json()  # answered by the inbox itself


@pytest.fixture(params=["national_portal", "provincial", "ministry", "ministry_vbdlis"])
def sim(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    cls = {"national_portal": NationalPortalSimulator, "provincial": ProvincialSimulator,
           "ministry": MinistrySimulator, "ministry_vbdlis": VbdlisSimulator}[request.param]  # fmt: skip
    with cls() as server:
        yield server


def test_failure_modes_for_a_count(sim: SimulatorServer) -> None:
    with httpx.Client(timeout=5) as client:
        assert _healthy(sim, _protocol_request(sim, client))
        for mode, status in (("5xx", 503), ("4xx", 400)):
            answer = client.post(f"{sim.base_url}/_control", json={"mode": mode, "count": 2})
            assert answer.status_code == 200 and answer.json()["mode"] == mode
            assert [_protocol_request(sim, client).status_code for _ in range(2)] == [status, status]
            assert _healthy(sim, _protocol_request(sim, client))
        client.post(f"{sim.base_url}/_control", json={"mode": "5xx", "status": 502, "count": 1})
        assert _protocol_request(sim, client).status_code == 502

        client.post(f"{sim.base_url}/_control", json={"mode": "malformed", "count": 1})
        malformed = _protocol_request(sim, client)
        assert malformed.status_code == 200
        with pytest.raises(ValueError):
            malformed.json()

        client.post(f"{sim.base_url}/_control", json={"mode": "down", "count": 1})
        with pytest.raises(httpx.TransportError):
            _protocol_request(sim, client)
        assert _healthy(sim, _protocol_request(sim, client))

        client.post(f"{sim.base_url}/_control", json={"mode": "slow", "delay_ms": 300, "count": 1})
        started = time.monotonic()
        assert _healthy(sim, _protocol_request(sim, client))
        assert time.monotonic() - started >= 0.29

        assert client.post(f"{sim.base_url}/_control", json={"mode": "flood"}).status_code == 400
        assert client.get(f"{sim.base_url}/_received").status_code == 200  # never failed


def test_failure_for_a_period_then_healed(sim: SimulatorServer) -> None:
    with httpx.Client(timeout=5) as client:
        client.post(f"{sim.base_url}/_control", json={"mode": "5xx", "seconds": 0.4})
        assert _protocol_request(sim, client).status_code == 503
        assert _protocol_request(sim, client).status_code == 503
        time.sleep(0.5)
        assert _healthy(sim, _protocol_request(sim, client))
        client.post(f"{sim.base_url}/_control", json={"mode": "down"})  # until told otherwise
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                _protocol_request(sim, client)
        client.post(f"{sim.base_url}/_control", json={"mode": "ok"})
        assert _healthy(sim, _protocol_request(sim, client))


def test_start_all_on_given_ports() -> None:
    ports = {kind: 0 for kind in DEFAULT_PORTS}
    with running(ports, options={"national_portal": {"variant": "dvcqg/proxy"}}) as sims:
        assert set(sims) == {"national_portal", "provincial", "ministry", "ministry_vbdlis", "population_db",
                             "postal", "payment", "sms_gateway"}  # fmt: skip
        for sim in sims.values():
            assert httpx.get(f"{sim.base_url}/_received").status_code == 200
        assert sims["national_portal"].received()["variant"] == "dvcqg/proxy"
        assert sims["provincial"].url.endswith("/inbox") and sims["ministry_vbdlis"].url.endswith("/vbdlis/")
    with pytest.raises(ValueError, match="dvcqg/opencps"):
        start_all({kind: 0 for kind in DEFAULT_PORTS}, options={"national_portal": {"variant": "dvcqg/soap"}})


# ---------------------------------------------------------------- envelope partners


def _hub_envelope(pki, message_id: str | None = None, signer=None) -> tuple[str, bytes]:
    message_id = message_id or str(uuid.uuid4())
    return message_id, sign_envelope(signer or pki.hub.signer, sender=HUB, receiver=PROVINCE,
                                     message_type="dossier.status", message_id=message_id, dossier_code=DOSSIER)


def test_provincial_inbox_verifies_dedupes_and_keeps(pki) -> None:
    with ProvincialSimulator(trust=pki.ca_cert) as province, httpx.Client(timeout=5) as client:
        message_id, data = _hub_envelope(pki)
        headers = {"Content-Type": "application/xml", "X-Message-Id": message_id}
        first = client.post(province.url, content=data, headers=headers)
        assert first.status_code == 200 and first.json() == {"received": message_id, "duplicate": False}
        again = client.post(province.url, content=data, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        tampered = data.replace(b"<p:status>4", b"<p:status>9")
        assert client.post(province.url, content=tampered, headers=headers).status_code == 403
        impostor_id, forged = _hub_envelope(pki, signer=pki.impostor.signer)
        refused = client.post(province.url, content=forged, headers={"X-Message-Id": impostor_id})
        assert refused.status_code == 403
        assert client.post(province.url, content=data, headers={"X-Message-Id": "other"}).status_code == 400
        assert client.post(province.url, content=data).status_code == 400  # no X-Message-Id

        seen = client.get(f"{province.base_url}/_received").json()
        assert (seen["received"], seen["duplicates"], seen["rejected"]) == (2, 1, 3)
        (kept,) = seen["messages"]
        assert kept["message_id"] == message_id and kept["verified"] is True
        assert kept["message_type"] == "dossier.status" and kept["sender"] == HUB and kept["dossier_code"] == DOSSIER
        status = packets.from_element("dossier.status", province.payloads("dossier.status")[0])
        assert status == packets.example("dossier.status")


def test_inbox_without_trust_keeps_unverified(pki) -> None:
    with MinistrySimulator() as ministry:
        message_id, data = _hub_envelope(pki)
        assert httpx.post(ministry.url, content=data, headers={"X-Message-Id": message_id}).status_code == 200
        assert ministry.received()["messages"][0]["verified"] is False


# ---------------------------------------------------------------- pushing to a real hub (REST and SOAP)


@dataclass
class LiveHub:
    url: str
    keys: dict[str, str]
    step_signer: Signer  # STEP_MINISTRY's own key (one connector, its own certificates)


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory, pki) -> Iterator[LiveHub]:
    root = tmp_path_factory.mktemp("live-hub")
    port = free_port()
    settings = hub_settings(root, hub_code=HUB, admin_api_key="admin-key", log_level="WARNING",
                            public_url=f"http://127.0.0.1:{port}")  # the WSDL's address  # fmt: skip
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 20, "the hub API to start")
    assert server.started, "the hub API did not start"
    step = issue_key("step-ministry", root / "step-keys", algorithm="ec", code=STEP_MINISTRY)
    keys = register(app.state.hub, (
        {"code": MINISTRY, "name": "Land registration", "kind": "ministry", "sends": ["dossier.status"],
         "handles": [PROVINCE], "certificates": [pki.ministry.cert_path.read_text()]},
        {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": ["dossier.sync"],
         "receives": ["dossier.status"], "endpoint": {"url": "http://127.0.0.1:9/inbox"},
         "certificates": [pki.province.cert_path.read_text()]},
        {"code": STEP_MINISTRY, "name": "Land registration (own step format)", "kind": "ministry",
         "sends": ["dossier.status"], "mapping": {"dossier.status": "ministry-steps"},
         "handles": [PROVINCE], "certificates": [step.cert_path.read_text()]},
        {"code": "000.00.00.G22", "name": "Cổng DVCQG", "kind": "national_portal",
         "receives": ["dossier.sync", "dossier.status"],
         "endpoint": {"url": "http://127.0.0.1:9/api", "transport": "json",
                      "credentials": {"username": "lienthong", "password": "lienthong-demo"}}},
    ))  # fmt: skip
    try:
        yield LiveHub(f"http://127.0.0.1:{port}", keys, Signer.from_files(step.key_path, step.cert_path))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_ministry_pushes_by_rest_and_soap(live_hub: LiveHub, pki) -> None:
    with MinistrySimulator(code=MINISTRY, signer=pki.ministry.signer, hub_url=live_hub.url,
                           api_key=live_hub.keys[MINISTRY], hub_code=HUB) as ministry:  # fmt: skip
        step = packets.example("dossier.status")
        rest = ministry.push(step, transport="rest")
        assert rest.status == 202, rest.body
        both = ["000.00.00.G22", PROVINCE]
        assert rest.body["message_id"] == rest.message_id and sorted(rest.body["destinations"]) == both
        soap = ministry.push(step.model_copy(update={"status": 5}), transport="soap")
        assert soap.status == 200 and soap.body["status"] == "queued" and sorted(soap.body["destinations"]) == both
        # The same signed bytes again: idempotent on both transports.
        data = ministry.envelope(step)
        first = ministry.push(data)
        assert ministry.push(data).body["message_id"] == first.message_id
        assert ministry.push(data, transport="soap").body["duplicate"] is True
        # A step the hub refuses (a sender not allowed to send dossier.sync) comes back with the reason.
        refused = ministry.push(packets.example("dossier.sync"), transport="soap")
        assert refused.status == 403 and "fault" in refused.body
        # Over HTTP, for a simulator in another process.
        answer = httpx.post(f"{ministry.base_url}/_push", json={"transport": "rest",
                            "status": step.model_dump(mode="json")}, timeout=10)  # fmt: skip
        assert answer.status_code == 200 and answer.json()["status"] == 202
        assert [p["transport"] for p in ministry.received()["pushed"]] == ["rest", "soap", "rest", "rest", "soap",
                                                                           "soap", "rest"]  # fmt: skip
        assert httpx.post(f"{ministry.base_url}/_push", json={"status": {"x": 1}}).status_code == 400


def test_provincial_sends_signed_envelopes(live_hub: LiveHub, pki) -> None:
    with ProvincialSimulator(code=PROVINCE, signer=pki.province.signer, hub_url=live_hub.url,
                             api_key=live_hub.keys[PROVINCE], hub_code=HUB) as province:  # fmt: skip
        # A dossier of its own: the ministry test before moved the example's dossier to 4 and 5, from which the
        # example's 10 is not a legal transition (one status machine for every source).
        sync = packets.example("dossier.sync").model_copy(update={"dossier_code": "000.00.00.H12-251123-0777"})
        answer = province.submit(sync)
        assert answer.status == 202 and answer.accepted, answer.body
        data = signed_envelope(pki.province.signer, sender=PROVINCE, receiver=HUB, payload=sync)
        assert send(data, live_hub.keys[PROVINCE], live_hub.url).status == 202
        assert send(data, "lt_00000000_wrong", live_hub.url).status == 401


def _finished_step() -> MinistryStep:
    return MinistryStep(
        dossier_code=DOSSIER,
        step="KetThuc",
        at=datetime(2025, 12, 5, 9, 0, tzinfo=UTC),
        actor="Trần Thị Bình",
        title="Chuyên viên",
        department="Phòng Quản lý đô thị",
        content="Hoàn thành thẩm định, trình ký giấy phép",
        results=[ResultDocument(code="KQ-GPXD", name="Giấy phép xây dựng số 123/GPXD",
                                url="https://dvc.example.gov.vn/files/giay-phep.pdf", sha256="ab" * 32)],
    )  # fmt: skip


def test_ministry_step_format_is_the_ministry_xsd() -> None:
    element = _finished_step().to_element("000.00.00.G10")
    assert ministry_steps.schema().validate(element), ministry_steps.schema().error_log
    status = ministry_steps.to_canonical(element)
    assert (status.status, status.source_system, status.at) == (9, "000.00.00.G10", datetime(2025, 12, 5, 9, 0,
                                                                                              tzinfo=UTC))  # fmt: skip
    assert element.findtext("{urn:lienthong:ministry:1}ThoiDiem") == "20251205160000"  # local time
    assert status.attachments[0].sha256 == "ab" * 32


def test_ministry_pushes_its_own_step_format(live_hub: LiveHub, pki) -> None:
    code = "000.00.00.H12-251124-0001"  # a dossier of its own: the hub checks the status machine
    handover = _finished_step().model_copy(update={"dossier_code": code, "step": "LuanChuyenHoSo", "results": []})
    with MinistrySimulator(code=STEP_MINISTRY, signer=live_hub.step_signer, hub_url=live_hub.url,
                           api_key=live_hub.keys[STEP_MINISTRY], hub_code=HUB) as ministry:  # fmt: skip
        rest = ministry.push(handover, transport="rest")
        assert rest.status == 202, rest.body
        soap = ministry.push(handover.model_copy(update={"step": "ChoBoSung"}), transport="soap")
        assert soap.status == 200 and soap.body["status"] == "queued", soap.body
        step = {**handover.model_dump(mode="json"), "step": "DaBoSung"}
        answer = httpx.post(f"{ministry.base_url}/_push", json={"step": step}, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == 202, answer.text
        done = ministry.push(_finished_step().model_copy(update={"dossier_code": code}))
        assert done.status == 202, done.body


def test_default_ports_are_distinct() -> None:
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS)
    assert Path(__file__).exists()


def test_hub_simulate_serves_until_sigterm() -> None:
    import signal
    import subprocess
    import sys

    # The default ports shifted onto a block of free ones (clear of a `hub simulate` already running, and of the
    # ports other tests' servers are given: a fixed shift collided with them once in a suite run)
    low, high = min(DEFAULT_PORTS.values()), max(DEFAULT_PORTS.values())
    offset = free_port_block(high - low + 1) - low
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "hub"), "simulate", "--port-offset", str(offset)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        portal = f"http://127.0.0.1:{DEFAULT_PORTS['national_portal'] + offset}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{portal}/_received", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert f"{portal}/api" in output and "national_portal" in output and "simulators stopped" in output

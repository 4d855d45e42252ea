"""The HTTP API with FastAPI's test client: intake with every error status, idempotency, ACLs through the
connector registry, certificate and API-key rotation, traces, timelines, operations endpoints and the SOAP entry."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from pydantic import SecretStr

from hub import packets
from hub.api import create_app
from hub.config import Settings
from hub.registry import parse_spec
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload
from hub.services import HubService

HUB, MINISTRY, PROVINCE, PORTAL = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G22"
DOSSIER = packets.examples.DOSSIER_CODE
ADMIN_KEY, OPERATOR_KEY = "admin-secret-key", "operator-secret-key"
PROBLEM = "application/problem+json"


def pem(path: Path) -> str:
    return path.read_text()


@dataclass
class Api:
    client: TestClient
    hub: HubService
    keys: dict[str, str]
    ministry: Signer
    province: Signer

    def envelope(
        self,
        *,
        signer: Signer | None = None,
        sender: str = MINISTRY,
        receiver: str = PROVINCE,
        message_type: str = "dossier.status",
        message_id: str | None = None,
        payload=None,
    ) -> bytes:
        header = EnvelopeHeader(
            sender=sender,
            receiver=receiver,
            message_type=message_type,
            message_id=message_id or str(uuid.uuid4()),
            dossier_code=DOSSIER if message_type.startswith("dossier.") else None,
        )
        body = payload if payload is not None else packets.to_element(packets.example(message_type))
        return etree.tostring(sign_payload(signer or self.ministry, header, body))

    def post(self, data: bytes, key: str | None = "ministry", content_type: str = "application/xml", **kw):
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["X-Api-Key"] = self.keys.get(key, key)
        return self.client.post("/api/v1/messages", content=data, headers=headers, **kw)

    def get(self, path: str, key: str = "admin", **kw):
        return self.client.get(path, headers={"X-Api-Key": self.keys.get(key, key)}, **kw)


def register(hub: HubService, **spec) -> str | None:
    _, key = hub.registry.add(parse_spec(spec), actor="test")
    hub.refresh()
    return key


@pytest.fixture
def api(tmp_path: Path, pki) -> Iterator[Api]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        data_dir=tmp_path / "var",
        hub_code=HUB,
        admin_api_key=ADMIN_KEY,
        operator_api_key=OPERATOR_KEY,
        operator_name="operator.an",
        max_message_bytes=64 * 1024,
        log_format="console",
    )
    with TestClient(create_app(settings)) as client:
        hub: HubService = client.app.state.hub
        ministry_key = register(
            hub,
            code=MINISTRY,
            name="Land registration software",
            kind="ministry",
            sends=["dossier.status"],
            certificates=[pem(pki.ministry.cert_path)],
        )
        province_key = register(
            hub,
            code=PROVINCE,
            name="One-stop system",
            kind="provincial",
            sends=["dossier.sync"],
            receives=["dossier.status"],
            endpoint={"url": "http://127.0.0.1:9/inbox"},
            certificates=[pem(pki.province.cert_path)],
        )
        yield Api(
            client,
            hub,
            {"ministry": ministry_key, "province": province_key, "admin": ADMIN_KEY, "operator": OPERATOR_KEY},
            pki.ministry.signer,
            pki.province.signer,
        )


def assert_problem(response, status: int, rule: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "errors"} <= set(body)
    assert all({"path", "rule", "message"} <= set(e) for e in body["errors"])
    if rule is not None:
        assert rule in [e["rule"] for e in body["errors"]], body
    return body


# ------------------------------------------------------------------------------------------------ intake


def test_accepted_then_traced_and_on_the_dossier_timeline(api: Api) -> None:
    data = api.envelope()
    response = api.post(data)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["duplicate"] is False and body["destinations"] == [PROVINCE]
    message_id = body["message_id"]
    assert response.headers["location"] == f"/api/v1/messages/{message_id}"

    trace = api.get(f"/api/v1/messages/{message_id}", "ministry").json()
    assert trace["sender"] == MINISTRY and trace["message_type"] == "dossier.status"
    assert [e["state"] for e in trace["events"]][:3] == ["received", "validated", "queued"]
    assert all(e["at"] for e in trace["events"])
    assert trace["deliveries"][0]["destination"] == PROVINCE

    for key in ("admin", "operator", "province"):  # the destination sees the dossier it receives messages about
        timeline = api.get(f"/api/v1/dossiers/{DOSSIER}", key)
        assert timeline.status_code == 200, (key, timeline.text)
        assert [m["message_id"] for m in timeline.json()["messages"]] == [message_id]
    assert_problem(api.get("/api/v1/dossiers/000.00.00.H12-250101-9999"), 404, "unknown-dossier")


def test_text_xml_and_charset_are_accepted(api: Api) -> None:
    assert api.post(api.envelope(), content_type="text/xml; charset=utf-8").status_code == 202


def test_resend_is_idempotent_and_other_content_is_409(api: Api) -> None:
    data = api.envelope(message_id="ministry-0001")
    first, again = api.post(data), api.post(data)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["duplicate"] is True and again.json()["message_id"] == "ministry-0001"
    assert again.json()["status"] == first.json()["status"]
    other = api.envelope(message_id="ministry-0001", payload=packets.to_element(packets.example("dossier.status")))
    assert other != data  # a new createdAt/signature: other bytes under the same id
    body = assert_problem(api.post(other), 409, "idempotency-conflict")
    assert body["message_id"] == "ministry-0001"
    trace = api.get("/api/v1/messages/ministry-0001").json()
    assert [e["state"] for e in trace["events"]].count("received") == 1


def test_401_without_or_with_an_unknown_key(api: Api) -> None:
    assert_problem(api.post(api.envelope(), key=None), 401, "api-key-required")
    assert_problem(api.post(api.envelope(), key="lt_deadbeef_not-a-real-key"), 401, "api-key-unknown")
    assert_problem(api.post(api.envelope(), key="nonsense"), 401)
    assert_problem(api.client.get("/api/v1/queues"), 401)


def test_415_wrong_media_type(api: Api) -> None:
    assert_problem(api.post(api.envelope(), content_type="application/json"), 415, "media-type")
    assert_problem(api.post(api.envelope(), content_type=""), 415)


def test_413_too_large_by_length_and_by_body(api: Api) -> None:
    big = b"<a>" + b"x" * (70 * 1024) + b"</a>"
    assert_problem(api.post(big), 413, "max-message-bytes")

    def chunks():  # no Content-Length: refused while reading
        for _ in range(70):
            yield b"x" * 1024

    assert_problem(api.post(chunks()), 413)


def test_400_malformed_xml_and_dtds(api: Api) -> None:
    assert_problem(api.post(b"<envelope><unclosed></envelope>"), 400, "xml-wellformed")
    assert_problem(api.post(b""), 400)
    laughs = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>'
    assert_problem(api.post(laughs), 400, "xml-no-dtd")
    xxe = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    assert_problem(api.post(xxe), 400, "xml-no-dtd")
    assert_problem(api.post(b"<a>" * 100 + b"</a>" * 100), 400, "xml-max-depth")


def test_422_tampered_unsigned_and_invalid(api: Api) -> None:
    tampered = api.envelope(message_id="tampered-1").replace(b"<p:status>4</p:status>", b"<p:status>9</p:status>")
    body = assert_problem(api.post(tampered), 422, "signature-digest")
    assert body["message_id"] == "tampered-1"
    unsigned = etree.tostring(etree.fromstring(api.envelope()))
    root = etree.fromstring(unsigned)
    root.remove(root[-1])
    assert_problem(api.post(etree.tostring(root)), 422, "signature-required")
    invalid_payload = packets.to_element(packets.example("dossier.status"))
    invalid_payload.find("{urn:lienthong:packet:1}status").text = "42"
    assert_problem(api.post(api.envelope(payload=invalid_payload)), 422)
    assert_problem(api.post(b"<not-an-envelope/>"), 422, "envelope-root")


def test_403_acl_denials_through_the_registry(api: Api) -> None:
    # a type the ministry is not granted
    assert_problem(api.post(api.envelope(message_type="dossier.sync")), 403, "type-not-granted")
    # the province replays the ministry's (validly signed) envelope with its own key
    assert_problem(api.post(api.envelope(), key="province"), 403, "sender-is-caller")
    # the ministry signs as the province (its own key, another sender)
    assert_problem(api.post(api.envelope(sender=PROVINCE)), 403, "sender-is-caller")
    # a receiver that does not take this type
    assert_problem(api.post(api.envelope(receiver=PORTAL)), 403, "receiver-accepts-type")
    # staff keys do not submit envelopes
    assert_problem(api.post(api.envelope(), key="admin"), 403, "sender-is-caller")


def test_a_connector_can_sign_only_with_its_pinned_certificates(api: Api, pki) -> None:
    # The province's certificate comes from the trusted CA, but it is not pinned for the ministry.
    forged = api.envelope(signer=api.province)
    assert_problem(api.post(forged), 422, "certificate-pinned")
    assert_problem(api.post(api.envelope(signer=pki.impostor.signer)), 422, "certificate-pinned")


def test_certificate_rotation(api: Api, pki, tmp_path: Path) -> None:
    new = keys.issue_key("ministry-2026", pki.ca_dir, algorithm="ec")
    new_signer = Signer.from_files(new.key_path, new.cert_path)
    assert_problem(api.post(api.envelope(signer=new_signer)), 422, "certificate-pinned")
    api.hub.registry.add_certificate(MINISTRY, new.cert_path.read_bytes(), actor="test")
    api.hub.refresh()
    assert api.post(api.envelope(signer=new_signer)).status_code == 202  # both valid
    assert api.post(api.envelope()).status_code == 202
    assert api.hub.registry.remove_certificate(MINISTRY, pem(pki.ministry.cert_path), actor="test")
    api.hub.refresh()
    assert_problem(api.post(api.envelope()), 422, "certificate-pinned")  # old removed
    assert api.post(api.envelope(signer=new_signer)).status_code == 202


def test_api_key_rotation(api: Api) -> None:
    new_key = api.hub.registry.rotate_key(MINISTRY, actor="test")
    assert_problem(api.post(api.envelope()), 401)
    assert api.post(api.envelope(), key=new_key).status_code == 202


def test_bad_input_never_gets_a_5xx(api: Api) -> None:
    bodies = [
        b"\xff\xfe\x00garbage",
        b"<?xml version='1.0' encoding='nope'?><a/>",
        b"<a xmlns:x='1'><x:b/></a>",
        b"<env:envelope xmlns:env='urn:lienthong:envelope:1'/>",
        "<a>ệ</a>".encode("utf-16"),
        b"<env:envelope xmlns:env='urn:lienthong:envelope:1'><env:header/><ds:Signature "
        b"xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/></env:envelope>",
    ]
    for body in bodies:
        response = api.post(body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    assert_problem(api.client.get("/api/v1/nothing-here"), 404)
    assert_problem(api.client.delete("/api/v1/messages"), 405)
    assert_problem(api.get("/api/v1/dead-letters?limit=zero", "operator"), 422)


# ------------------------------------------------------------------------------------------------ reading


def test_trace_is_readable_by_its_sender_and_staff_only(api: Api) -> None:
    message_id = api.post(api.envelope()).json()["message_id"]
    assert api.get(f"/api/v1/messages/{message_id}", "ministry").status_code == 200
    assert api.get(f"/api/v1/messages/{message_id}", "operator").status_code == 200
    assert_problem(api.get(f"/api/v1/messages/{message_id}", "province"), 404, "unknown-message")
    assert_problem(api.get("/api/v1/messages/no-such-id", "admin"), 404)
    assert_problem(api.client.get(f"/api/v1/messages/{message_id}"), 401)


def test_connectors_endpoints(api: Api, pki) -> None:
    listed = api.get("/api/v1/connectors", "admin").json()
    assert {c["code"] for c in listed} == {MINISTRY, PROVINCE}
    assert "api_key" not in listed[0]
    assert_problem(api.get("/api/v1/connectors", "ministry"), 403, "role-required")

    spec = f"""
code: {PORTAL}
name: Cổng DVCQG
kind: national_portal
receives: [dossier.status]
endpoint: {{url: "http://127.0.0.1:9/portal"}}
"""
    headers = {"X-Api-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    created = api.client.post("/api/v1/connectors", content=spec.encode(), headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == PORTAL and created.json()["api_key"].startswith("lt_")
    # Routing follows at once: the ministry's status now goes to the portal too.
    assert set(api.post(api.envelope()).json()["destinations"]) == {PROVINCE, PORTAL}
    again = api.client.post("/api/v1/connectors", content=spec.encode(), headers=headers)
    assert again.status_code == 200 and again.json()["api_key"] is None
    assert [a.actor for a in api.hub.registry.audit(PORTAL)] == ["admin"]

    bad = api.client.post(
        "/api/v1/connectors", json={"code": "nope", "kind": "bank", "sends": ["x.y"]}, headers={"X-Api-Key": ADMIN_KEY}
    )
    body = assert_problem(bad, 422)
    assert len(body["errors"]) >= 3  # every problem at once
    assert_problem(
        api.client.post(
            "/api/v1/connectors", content=b"{oops", headers={"X-Api-Key": ADMIN_KEY, "Content-Type": "application/json"}
        ),
        400,
        "json",
    )
    assert_problem(
        api.client.post(
            "/api/v1/connectors",
            content=spec.encode(),
            headers={"X-Api-Key": OPERATOR_KEY, "Content-Type": "application/yaml"},
        ),
        403,
    )
    assert_problem(
        api.client.post(
            "/api/v1/connectors", content=spec.encode(), headers={"X-Api-Key": ADMIN_KEY, "Content-Type": "text/plain"}
        ),
        415,
    )


def test_posted_connectors_refuse_alias_bombs_and_file_paths(api: Api) -> None:
    """An admin-posted YAML alias bomb is a 422 at once; an example path is refused alike whether it exists."""
    headers = {"X-Api-Key": ADMIN_KEY, "Content-Type": "application/yaml"}
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = api.client.post("/api/v1/connectors", content="\n".join(lines).encode(), headers=headers)
    assert assert_problem(bomb, 422, "yaml-alias")["errors"][0]["path"] == "/"
    answers = []
    for path in ("/etc/hostname", "/nonexistent/example.xml"):
        spec = {"code": PORTAL, "name": "x", "kind": "ministry", "sends": ["dossier.status"],
                "examples": {"dossier.status": [path]}}  # fmt: skip
        answer = api.client.post("/api/v1/connectors", json=spec, headers={"X-Api-Key": ADMIN_KEY})
        answers.append(assert_problem(answer, 422, "example-path")["errors"])
    assert answers[0] == answers[1]


def test_queues_dead_letters_and_replay_with_the_operator_key(api: Api) -> None:
    message_id = api.post(api.envelope()).json()["message_id"]
    queues = api.get("/api/v1/queues", "operator").json()
    assert queues[0]["destination"] == PROVINCE and queues[0]["pending"] == 1
    assert_problem(api.get("/api/v1/queues", "ministry"), 403)

    store = api.hub.store
    trace = store.trace(message_id, MINISTRY)
    delivery_id = trace.deliveries[0].delivery_id
    store.start_attempts([delivery_id])
    dead_id = store.record_dead(delivery_id, reason="rejected", error="HTTP 400 from partner")
    (dead,) = api.get("/api/v1/dead-letters", "operator").json()
    assert dead["id"] == dead_id and dead["message_id"] == message_id and dead["reason"] == "rejected"
    assert_problem(api.get("/api/v1/dead-letters", "province"), 403)
    assert_problem(
        api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers={"X-Api-Key": api.keys["ministry"]}), 403
    )

    replayed = api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers={"X-Api-Key": OPERATOR_KEY})
    assert replayed.status_code == 202, replayed.text
    assert replayed.json() == {
        "dead_letter_id": dead_id,
        "message_id": message_id,
        "destination": PROVINCE,
        "replayed_by": "operator.an",
        "status": "queued",
    }
    events = api.get(f"/api/v1/messages/{message_id}", "operator").json()["events"]
    assert [e["actor"] for e in events if e["state"] == "replayed"] == ["operator.an"]
    assert api.get("/api/v1/dead-letters", "operator").json() == []
    assert len(api.get("/api/v1/dead-letters?include_replayed=true", "operator").json()) == 1
    assert_problem(api.client.post(f"/api/v1/dead-letters/{dead_id}/replay", headers={"X-Api-Key": ADMIN_KEY}), 409)
    assert_problem(api.client.post("/api/v1/dead-letters/999999/replay", headers={"X-Api-Key": ADMIN_KEY}), 404)


def test_health_readiness_and_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "broker": "ok"}
    api.post(api.envelope())
    api.post(api.envelope(), key=None)
    api.post(api.envelope(message_type="dossier.sync"))
    text = api.client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).text
    assert f'lienthong_accepted_total{{channel="rest",connector="{MINISTRY}"}}' in text
    assert 'lienthong_rejected_total{connector="unknown",reason="unauthenticated"}' in text
    assert f'lienthong_rejected_total{{connector="{MINISTRY}",reason="forbidden"}}' in text
    assert "lienthong_accept_seconds_bucket" in text
    assert f'lienthong_pending{{connector="{PROVINCE}"}}' in text
    assert "lienthong_delivered_total" in text or "# TYPE lienthong_delivered counter" in text


def test_metrics_need_the_metrics_or_a_staff_key_unless_public(api: Api, monkeypatch) -> None:
    assert_problem(api.client.get("/metrics"), 401, "api-key-required")
    assert_problem(api.client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401, "api-key-unknown")
    assert_problem(api.client.get("/metrics", headers={"X-Api-Key": api.keys["ministry"]}), 401, "api-key-unknown")
    assert_problem(api.client.get("/metrics", headers={"Authorization": f"Basic {ADMIN_KEY}"}), 401)
    monkeypatch.setattr(api.hub.settings, "metrics_api_key", SecretStr("scrape-key"))
    for headers in ({"Authorization": "Bearer scrape-key"}, {"X-Api-Key": "scrape-key"}, {"X-Api-Key": ADMIN_KEY}):
        response = api.client.get("/metrics", headers=headers)
        assert response.status_code == 200 and "lienthong_accepted" in response.text, headers
    monkeypatch.setattr(api.hub.settings, "metrics_public", True)
    assert api.client.get("/metrics").status_code == 200


def test_readyz_reports_an_unreachable_broker(api: Api, monkeypatch) -> None:
    def down(*_a, **_k):
        raise ConnectionError("broker down")

    monkeypatch.setattr(api.hub.broker._broker, "stats", down)
    body = assert_problem(api.client.get("/readyz"), 503)
    assert "broker" in body["detail"]


def test_openapi_documents_every_endpoint_and_its_errors(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/messages",
        "/api/v1/messages/{message_id}",
        "/api/v1/dossiers/{code}",
        "/api/v1/connectors",
        "/api/v1/queues",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{dead_letter_id}/replay",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    submit = paths["/api/v1/messages"]["post"]
    assert {"202", "400", "401", "403", "409", "413", "415", "422"} <= set(submit["responses"])
    assert "application/xml" in submit["requestBody"]["content"]
    problem = submit["responses"]["422"]["content"][PROBLEM]
    assert problem["schema"]["$ref"] == "#/components/schemas/Problem" and problem["example"]["errors"]
    assert "Problem" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-Api-Key"


# ------------------------------------------------------------------------------------------------ SOAP

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def soap_request(operation: str, inner: str, api_key: str | None) -> bytes:
    header = f"<soap:Header><ex:ApiKey>{api_key}</ex:ApiKey></soap:Header>" if api_key else ""
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:ex="urn:lienthong:exchange:1">{header}'
        f"<soap:Body><ex:{operation}>{inner}</ex:{operation}></soap:Body></soap:Envelope>"
    ).encode()


def test_soap_wsdl_address_comes_from_configuration_not_the_host_header(api: Api, monkeypatch) -> None:
    def location(**headers: str) -> str | None:
        response = api.client.get("/soap/exchange?wsdl", headers=headers)
        assert response.status_code == 200
        (address,) = etree.fromstring(response.content).iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
        return address.get("location")

    assert location() == location(Host="attacker.example") == "http://127.0.0.1:8000/soap/exchange"
    monkeypatch.setattr(api.hub.settings, "public_url", "https://lienthong.example.gov.vn/")
    assert location(Host="attacker.example") == "https://lienthong.example.gov.vn/soap/exchange"


def test_soap_submit_status_and_faults(api: Api) -> None:
    data = base64.b64encode(api.envelope(message_id="soap-0001")).decode()
    body = soap_request("SubmitEnvelopeRequest", f"<ex:SignedEnvelope>{data}</ex:SignedEnvelope>", api.keys["ministry"])
    response = api.client.post("/soap/exchange", content=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    answer = etree.fromstring(response.content)
    assert answer.findtext(".//{urn:lienthong:exchange:1}MessageId") == "soap-0001"
    assert answer.findtext(".//{urn:lienthong:exchange:1}Status") == "queued"

    status = api.client.post(
        "/soap/exchange",
        content=soap_request("GetMessageStatusRequest", "<ex:MessageId>soap-0001</ex:MessageId>", api.keys["ministry"]),
    )
    assert etree.fromstring(status.content).findtext(".//{urn:lienthong:exchange:1}Sender") == MINISTRY

    def fault_of(response) -> tuple[str, list[str]]:
        assert response.status_code == 500 and response.headers["content-type"].startswith("text/xml")
        root = etree.fromstring(response.content)
        rules = [r.text for r in root.iter("{urn:lienthong:exchange:1}Rule")]
        return root.findtext(f".//{{{SOAP}}}Fault/faultcode"), rules

    assert fault_of(api.client.post("/soap/exchange", content=body.replace(api.keys["ministry"].encode(), b"x"))) == (
        "soap:Client",
        ["api-key-unknown"],
    )
    tampered = base64.b64encode(api.envelope().replace(b"<p:status>4", b"<p:status>9")).decode()
    code, rules = fault_of(
        api.client.post(
            "/soap/exchange",
            content=soap_request(
                "SubmitEnvelopeRequest", f"<ex:SignedEnvelope>{tampered}</ex:SignedEnvelope>", api.keys["ministry"]
            ),
        )
    )
    assert (code, rules) == ("soap:Client", ["signature-digest"])
    assert fault_of(api.client.post("/soap/exchange", content=b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"))[1] == [
        "xml-no-dtd"
    ]
    assert fault_of(
        api.client.post(
            "/soap/exchange",
            content=soap_request(
                "SubmitEnvelopeRequest", "<ex:SignedEnvelope>***</ex:SignedEnvelope>", api.keys["ministry"]
            ),
        )
    )[1] == ["base64"]
    # The key may come in the HTTP header instead of the SOAP header.
    again = api.client.post(
        "/soap/exchange",
        content=soap_request("SubmitEnvelopeRequest", f"<ex:SignedEnvelope>{data}</ex:SignedEnvelope>", None),
        headers={"X-Api-Key": api.keys["ministry"]},
    )
    assert etree.fromstring(again.content).findtext(".//{urn:lienthong:exchange:1}Duplicate") == "true"

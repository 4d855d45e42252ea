"""The HTTP API with FastAPI's test client: intake with every error status, idempotency, ACLs through the
connector registry, certificate and API-key rotation, traces, timelines, operations endpoints and the SOAP entry."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from pydantic import SecretStr

from broker.base import BrokerUnavailable
from hub import packets
from hub.api import create_app
from hub.api.limits import BodyLimits
from hub.api.problems import ApiProblem
from hub.api.routes import soap
from hub.config import Settings
from hub.registry import parse_spec
from hub.runtime import open_broker
from hub.security import keys
from hub.security.envelope import EnvelopeHeader, build_envelope, peek_header
from hub.security.signing import Signer, sign_payload
from hub.services import HubService
from tests.support import wait_for

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
        max_callback_bytes=8 * 1024,
        max_form_bytes=4 * 1024,
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
            handles=[PROVINCE],  # the dossiers the province receives: it may update them
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

    for key in ("admin", "operator", "ministry"):  # staff, and the sender, see the message on the timeline
        timeline = api.get(f"/api/v1/dossiers/{DOSSIER}", key)
        assert timeline.status_code == 200, (key, timeline.text)
        assert [m["message_id"] for m in timeline.json()["messages"]] == [message_id]
    routed = api.get(f"/api/v1/dossiers/{DOSSIER}", "province").json()  # party, but not the message's sender
    assert [u["message_id"] for u in routed["updates"]] == [message_id] and routed["messages"] == []
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


OVERSIZED = (  # path, the API key a request needs to get as far as reading its body, a size over the limit, rule
    ("/api/v1/messages", "ministry", 65 * 1024, "max-message-bytes"),
    ("/api/v1/lookups", "province", 65 * 1024, "max-message-bytes"),
    ("/api/v1/connectors", "admin", 300 * 1024, "max-connector-spec-bytes"),
    ("/api/v1/callbacks/payment/000.00.00.P01", None, 9 * 1024, "max-callback-bytes"),
    ("/login", None, 5 * 1024, "max-form-bytes"),
    ("/logout", None, 5 * 1024, "max-form-bytes"),
    ("/api/v1/dead-letters/1/replay", "admin", 5 * 1024, "max-form-bytes"),
)


def test_a_declared_body_over_the_limit_is_refused_before_the_route_runs(api: Api, monkeypatch) -> None:
    def never(*_args, **_kwargs):
        raise AssertionError("an oversized request reached the route")

    monkeypatch.setattr(HubService, "authenticate", never)  # authenticated or not: refused before any lookup
    monkeypatch.setattr("hub.api.routes.payments.payment_service", never)
    for path, _, size, rule in OVERSIZED:
        response = api.client.post(path, content=b"x" * size, headers={"Content-Type": "application/xml"})
        body = assert_problem(response, 413, rule)
        assert body["instance"] == path


def test_a_body_without_length_is_refused_once_it_passes_the_limit(api: Api) -> None:
    for path, key, size, rule in OVERSIZED:

        def chunks(n: int = size):  # no Content-Length: counted as it streams
            for _ in range(n // 1024):
                yield b"x" * 1024

        headers = {"Content-Type": "application/xml"} | ({"X-Api-Key": api.keys[key]} if key else {})
        if path == "/api/v1/connectors":
            headers["Content-Type"] = "application/yaml"
        response = api.client.post(path, content=chunks(), headers=headers)
        if path.endswith("/replay"):  # this route never reads its body: nothing to count
            assert response.status_code == 404, response.text
            continue
        assert_problem(response, 413, rule)


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


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_datetime_utc_cannot_represent_is_a_422_not_a_500(api: Api, at: str) -> None:
    header = EnvelopeHeader(sender=MINISTRY, receiver=PROVINCE, message_type="dossier.status", dossier_code=DOSSIER)
    envelope = build_envelope(header, packets.to_element(packets.example("dossier.status")))
    envelope.find("{urn:lienthong:envelope:1}header/{urn:lienthong:envelope:1}createdAt").text = at
    body = assert_problem(api.post(etree.tostring(api.ministry.sign(envelope))), 422, "datetime-range")
    assert [e["path"] for e in body["errors"]] == ["/envelope/header/createdAt"]

    payload = packets.to_element(packets.example("dossier.status"))
    payload.find("{urn:lienthong:packet:1}at").text = at
    body = assert_problem(api.post(api.envelope(payload=payload)), 422, "datetime-range")
    assert [e["path"] for e in body["errors"]] == ["/envelope/body/dossierStatus/at"]


def _dated(api: Api, created_at: dt.datetime) -> bytes:
    header = EnvelopeHeader(sender=MINISTRY, receiver=PROVINCE, message_type="dossier.status", dossier_code=DOSSIER,
                            created_at=created_at)  # fmt: skip
    return etree.tostring(sign_payload(api.ministry, header, packets.to_element(packets.example("dossier.status"))))


def test_created_at_outside_the_connectors_window_is_refused(api: Api) -> None:
    now = dt.datetime.now(dt.UTC)
    for created_at, rule in ((dt.datetime(2001, 1, 1, tzinfo=dt.UTC), "message-stale"),
                             (dt.datetime(2099, 1, 1, tzinfo=dt.UTC), "message-future"),
                             (now - dt.timedelta(days=8), "message-stale"),
                             (now + dt.timedelta(minutes=10), "message-future")):  # fmt: skip
        body = assert_problem(api.post(_dated(api, created_at)), 422, rule)
        assert body["errors"][0]["path"] == "/envelope/header/createdAt"
    # the default window: 7 days back, 5 minutes ahead
    assert api.post(_dated(api, now - dt.timedelta(days=6))).status_code == 202
    assert api.post(_dated(api, now + dt.timedelta(minutes=4))).status_code == 202
    # a connector's own window
    spec = api.hub.registry.get(MINISTRY).spec.model_dump(exclude={"certificates"})
    spec["certificates"] = [c.pem for c in api.hub.registry.get(MINISTRY).certificates]
    register(api.hub, **{**spec, "freshness": {"max_age_s": 60, "max_ahead_s": 0}})
    assert_problem(api.post(_dated(api, now - dt.timedelta(minutes=2))), 422, "message-stale")
    assert_problem(api.post(_dated(api, now + dt.timedelta(seconds=30))), 422, "message-future")
    assert api.post(_dated(api, now - dt.timedelta(seconds=30))).status_code == 202


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


# ------------------------------------------------------------------------------------------------ dossier ownership

OTHER_MINISTRY, OTHER_PROVINCE = "000.00.00.G11", "000.00.00.H13"


def status_of(source: str, **changes) -> etree._Element:
    return packets.to_element(packets.example("dossier.status").model_copy(update={"source_system": source, **changes}))


def register_other(api: Api, pki, code: str = OTHER_MINISTRY, **spec) -> Signer:
    """Another connector, with its own key from the test CA (naming its code, pinned for it); its signer."""
    issued = keys.issue_key(f"other-{code}", pki.ca_dir, algorithm="ec", code=code)
    spec = {"name": "Other software", "kind": "ministry", "sends": ["dossier.status"], **spec}
    key = register(api.hub, code=code, certificates=[pem(issued.cert_path)], **spec)
    assert key is not None
    api.keys[code] = key
    return Signer.from_files(issued.key_path, issued.cert_path)


def test_a_status_from_a_connector_not_party_to_the_dossier_is_403_and_nothing_is_stored(api: Api, pki) -> None:
    other = register_other(api, pki)
    data = api.envelope(signer=other, sender=OTHER_MINISTRY, payload=status_of(OTHER_MINISTRY))
    body = assert_problem(api.post(data, OTHER_MINISTRY), 403, "dossier-not-yours")
    assert body["errors"][0]["path"] == "/envelope/body/dossierCode" and body["message_id"]
    # without a dossier code in the header, the body's decides just the same
    header = EnvelopeHeader(sender=OTHER_MINISTRY, receiver=PROVINCE, message_type="dossier.status")
    bare = etree.tostring(sign_payload(other, header, status_of(OTHER_MINISTRY)))
    assert_problem(api.post(bare, OTHER_MINISTRY), 403, "dossier-not-yours")
    assert api.hub.store.dossier_messages(DOSSIER) == [] and api.hub.store.timeline(DOSSIER) == []
    assert api.hub.store.dossier(DOSSIER) is None


def test_being_routed_a_message_about_a_dossier_makes_a_connector_party(api: Api, pki) -> None:
    other = register_other(api, pki, receives=["dossier.sync"], endpoint={"url": "http://127.0.0.1:9/inbox"})
    status = api.envelope(signer=other, sender=OTHER_MINISTRY, payload=status_of(OTHER_MINISTRY))
    assert_problem(api.post(status, OTHER_MINISTRY), 403, "dossier-not-yours")
    sync = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync")
    assert api.post(sync, "province").json()["destinations"] == [OTHER_MINISTRY]  # the province's first sync
    assert api.post(status, OTHER_MINISTRY).status_code == 202


def test_only_the_province_that_created_a_dossier_syncs_it(api: Api, pki) -> None:
    register_other(api, pki, receives=["dossier.sync"], endpoint={"url": "http://127.0.0.1:9/inbox"})
    other_province = register_other(api, pki, OTHER_PROVINCE, kind="provincial", sends=["dossier.sync"])
    first = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync")
    assert api.post(first, "province").status_code == 202
    again = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync")
    assert api.post(again, "province").status_code == 202
    other = api.envelope(signer=other_province, sender=OTHER_PROVINCE, receiver=HUB, message_type="dossier.sync")
    assert_problem(api.post(other, OTHER_PROVINCE), 403, "dossier-not-yours")
    assert {m.sender for m in api.hub.store.dossier_messages(DOSSIER)} == {PROVINCE}


def test_source_system_must_be_the_senders_registered_unit(api: Api) -> None:
    data = api.envelope(payload=status_of(PROVINCE))  # the ministry speaking for the province
    body = assert_problem(api.post(data), 403, "source-is-sender")
    assert [(e["path"], e["rule"]) for e in body["errors"]] == [("/envelope/body/sourceSystem", "source-is-sender")]
    assert api.hub.store.dossier_messages(DOSSIER) == [] and api.hub.store.timeline(DOSSIER) == []


def test_a_connector_reads_only_its_dossiers_and_of_them_its_own_messages(api: Api, pki) -> None:
    register_other(api, pki)  # party to nothing
    received = packets.example("dossier.sync").model_copy(update={"status": 2, "finished_at": None,
                                                                     "returned_at": None})  # fmt: skip
    sync = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync",
                        payload=packets.to_element(received))  # fmt: skip
    register_other(api, pki, PORTAL, kind="national_portal", sends=[], receives=["dossier.sync"],
                   endpoint={"url": "http://127.0.0.1:9/api"})  # fmt: skip
    synced = api.post(sync, "province").json()["message_id"]
    status = api.post(api.envelope()).json()["message_id"]  # the ministry (handling system) → the province
    with api.hub.store.transaction() as conn:  # the ministry's message failed at the province's endpoint
        conn.exec_driver_sql(
            "UPDATE deliveries SET last_error = 'refused: secret detail' "
            "WHERE message_pk = (SELECT id FROM messages WHERE message_id = ?)",
            (status,),
        )

    def timeline(key: str) -> dict:
        response = api.get(f"/api/v1/dossiers/{DOSSIER}", key)
        assert response.status_code == 200, (key, response.text)
        return response.json()

    everything = timeline("admin")
    assert [m["message_id"] for m in everything["messages"]] == [synced, status]
    assert sorted(u["message_id"] for u in everything["updates"]) == sorted([synced, status])
    assert "secret detail" in str(everything)
    for key, own in (("province", [synced]), ("ministry", [status]), (PORTAL, [])):
        seen = timeline(key)
        assert [m["message_id"] for m in seen["messages"]] == own, key
        assert seen["updates"] == everything["updates"]  # the whole status history, in time order
    assert "secret detail" in str(timeline("ministry"))  # its own message's deliveries, as its trace shows them
    assert "secret detail" not in str(timeline(PORTAL)) and "secret detail" not in str(timeline("province"))
    # not party: the same 404 as an unknown dossier, so codes cannot be probed
    hidden = api.get(f"/api/v1/dossiers/{DOSSIER}", OTHER_MINISTRY)
    unknown = api.get(f"/api/v1/dossiers/{DOSSIER[:-4]}9999", OTHER_MINISTRY)
    for response in (hidden, unknown):
        assert_problem(response, 404, "unknown-dossier")
    assert hidden.json()["errors"] == unknown.json()["errors"]


def test_a_connector_can_sign_only_with_its_pinned_certificates(api: Api, pki) -> None:
    # The province's certificate comes from the trusted CA, but it is not pinned for the ministry.
    forged = api.envelope(signer=api.province)
    assert_problem(api.post(forged), 422, "certificate-pinned")
    assert_problem(api.post(api.envelope(signer=pki.impostor.signer)), 422, "certificate-pinned")


def test_a_connector_without_pins_signs_only_with_a_ca_certificate_naming_its_code(api: Api) -> None:
    ca_dir = api.hub.settings.data_dir / "keys"  # the hub's trusted CA (LIENTHONG_TRUST_DIR's default)
    other = keys.issue_key("someone", ca_dir, algorithm="ec", code=MINISTRY)
    own = keys.issue_key("portal", ca_dir, algorithm="ec", code=PORTAL)
    portal_key = register(api.hub, code=PORTAL, name="Portal", kind="national_portal", sends=["dossier.status"],
                          handles=[PROVINCE])  # fmt: skip
    # the ministry's certificate is pinned for the ministry (and names it): never for another connector
    stolen = api.envelope(sender=PORTAL)
    assert_problem(api.post(stolen, key=portal_key), 422, "certificate-pinned-elsewhere")
    # a certificate of the trusted CA for another code, pinned for nobody
    signer = Signer.from_files(other.key_path, other.cert_path)
    assert_problem(api.post(api.envelope(signer=signer, sender=PORTAL), key=portal_key), 422, "certificate-subject")
    signer = Signer.from_files(own.key_path, own.cert_path)
    accepted = api.post(api.envelope(signer=signer, sender=PORTAL, payload=status_of(PORTAL)), key=portal_key)
    assert accepted.status_code == 202, accepted.text


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


def test_registering_the_hubs_code_or_anothers_certificate_is_a_422(api: Api, pki) -> None:
    headers = {"X-Api-Key": ADMIN_KEY}
    hub = {"code": HUB, "name": "Not the hub", "kind": "ministry", "sends": ["dossier.status"]}
    body = assert_problem(api.client.post("/api/v1/connectors", json=hub, headers=headers), 422, "code-is-hub")
    assert body["errors"][0]["path"] == "code"
    stolen = {"code": PORTAL, "name": "Portal", "kind": "national_portal",
              "certificates": [pem(pki.ministry.cert_path)]}  # fmt: skip
    assert_problem(api.client.post("/api/v1/connectors", json=stolen, headers=headers), 422,
                   "certificate-pinned-elsewhere")  # fmt: skip
    assert {c.code for c in api.hub.registry.list()} == {MINISTRY, PROVINCE}


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


def test_dead_letters_are_paged_with_a_total_and_a_next_link(api: Api) -> None:
    """The list stays an array; the total and the next page travel in X-Total-Count and Link (rel="next")."""
    store = api.hub.store
    dead_ids = []
    for _ in range(5):
        message_id = api.post(api.envelope()).json()["message_id"]
        delivery_id = store.trace(message_id, MINISTRY).deliveries[0].delivery_id
        store.start_attempts([delivery_id])
        dead_ids.append(store.record_dead(delivery_id, reason="rejected", error="HTTP 400 from partner"))
    seen, url, totals = [], "/api/v1/dead-letters?limit=2", set()
    while url:
        page = api.get(url, "operator")
        assert page.status_code == 200, page.text
        seen += [d["id"] for d in page.json()]
        totals.add(page.headers["x-total-count"])
        link = page.headers.get("link")
        url = link[link.index("/api/") : link.index(">")] if link else ""
        if len(seen) == 2:  # a dead letter arriving between pages does not shift the next page
            message_id = api.post(api.envelope()).json()["message_id"]
            delivery_id = store.trace(message_id, MINISTRY).deliveries[0].delivery_id
            store.start_attempts([delivery_id])
            dead_ids.append(store.record_dead(delivery_id, reason="rejected", error="HTTP 400 from partner"))
    assert seen == dead_ids and totals == {"5", "6"}
    closed = store.close_dead_letter(dead_ids[0], actor="an", reason="handled by phone")
    assert closed.closed_by == "an"
    assert api.get("/api/v1/dead-letters?limit=1", "operator").headers["x-total-count"] == "5"
    assert api.get("/api/v1/dead-letters?state=closed", "operator").headers["x-total-count"] == "1"
    bad = assert_problem(api.get("/api/v1/dead-letters?cursor=not-ours", "operator"), 400, "cursor")
    assert bad["errors"][0]["path"] == "/query/cursor"


def test_a_partner_refusal_echoing_the_applicant_is_kept_listed_and_logged_masked(api: Api) -> None:
    """The portal's error text names the applicant (any case, no accents) and their ID: the dead letter, the
    delivery's last error, the trace and the worker's log line keep them masked; the operator still reads why."""
    import io
    import logging

    from adapters.base import Adapter, OutboundRequest, PermanentDeliveryError
    from hub.exchange.worker import OutboundBuilder, Worker
    from hub.logs import JsonFormatter

    class Refusing(Adapter):
        def deliver(self, request: OutboundRequest):
            raise PermanentDeliveryError("HTTP 400: ho so cua ong NGUYEN VAN AN (CCCD 001090001234) khong hop le")

    register(api.hub, code=PORTAL, name="National portal", kind="national_portal", receives=["dossier.sync"],
             endpoint={"url": "http://127.0.0.1:9/portal"})  # fmt: skip
    data = api.envelope(signer=api.province, sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
    message_id = api.post(data, "province").json()["message_id"]
    runtime = api.hub.runtime
    broker = open_broker(api.hub.settings)  # a worker's own (the API's broker is its publisher thread's)
    worker = Worker(runtime.store, broker, runtime.routing, OutboundBuilder(runtime.signer(), HUB),
                    {PORTAL: Refusing()})  # fmt: skip
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("hub.exchange.worker")
    logger.addHandler(handler)
    try:
        worker.process_batch(broker.consume([PORTAL], prefetch=10, timeout_s=2))
    finally:
        logger.removeHandler(handler)
        worker.close()
        broker.close()
    (dead,) = api.get("/api/v1/dead-letters", "operator").json()
    trace = api.get(f"/api/v1/messages/{message_id}", "operator").json()
    texts = [dead["last_error"], trace["deliveries"][0]["last_error"], *(e["detail"] for e in trace["events"]),
             *(d.last_error for d in api.hub.store.dead_letters()), stream.getvalue()]  # fmt: skip
    assert "khong hop le" in dead["last_error"] and "N***** V** A*" in dead["last_error"]
    assert "********1234" in dead["last_error"] and "rejected" in stream.getvalue()
    assert not [t for t in texts if "NGUYEN VAN AN" in t or "001090001234" in t]


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
    """``/readyz`` says what the publisher thread's pings saw, without calling the broker itself."""
    assert api.client.get("/readyz").json()["checks"] == {"store": "ok", "broker": "ok"}
    calls = []

    def down(*_a, **_k):
        calls.append(threading.current_thread().name)
        raise BrokerUnavailable("broker down")

    monkeypatch.setattr(api.hub.publisher.broker, "ping", down)
    monkeypatch.setattr(api.hub.publisher.broker, "stats", down)
    monkeypatch.setattr(api.hub.publisher, "ping_every_s", 0.05)
    wait_for(lambda: api.client.get("/readyz").status_code == 503, 5, "the publisher to see the broker down")
    body = assert_problem(api.client.get("/readyz"), 503)
    assert body["detail"] == "broker: down"
    assert set(calls) == {"publisher"}  # only the publisher thread called the broker


def test_a_store_that_cannot_be_reached_is_a_503_naming_the_message(api: Api, monkeypatch) -> None:
    """The commit fails for want of the store: 503 problem+json with Retry-After and the message id, answered as
    a handled error; a driver error that escaped the store, on any route, is a 503 too — never a 500."""
    import sqlalchemy.exc

    from hub.errors import StoreUnavailableError

    def down(*_a, **_k):
        raise StoreUnavailableError("the store's database is unavailable: connection refused")

    monkeypatch.setattr(api.hub.store, "accept_many", down)
    data = api.envelope()
    message_id = peek_header(etree.fromstring(data)).message_id
    body = assert_problem(response := api.post(data), 503, "store-unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert body["message_id"] == message_id
    assert api.hub.store.trace(body["message_id"], MINISTRY) is None  # nothing was stored
    monkeypatch.undo()
    assert api.post(data).status_code == 202  # the same envelope, once the store is back

    def lost(*_a, **_k):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(api.hub.store, "trace", lost)
    response = api.get(f"/api/v1/messages/{body['message_id']}")
    assert_problem(response, 503, "store-unavailable")
    assert "retry-after" in response.headers and response.headers.get("connection") != "close"


def test_intake_does_not_wait_for_a_broker_that_hangs(api: Api, monkeypatch) -> None:
    """The publisher thread is stuck in the broker (RabbitMQ's reconnect loop): requests are still answered at
    once, ``/readyz`` says the broker is down, and what was accepted meanwhile is left to the relay."""
    release = threading.Event()

    def hang(*_a, **_k):
        release.wait(30)
        raise BrokerUnavailable("cannot connect to RabbitMQ")

    monkeypatch.setattr(api.hub.publisher.broker, "publish", hang)
    monkeypatch.setattr(api.hub.publisher, "stalled_s", 0.2)
    try:
        started = time.perf_counter()
        ids = [api.post(api.envelope()).json()["message_id"] for _ in range(5)]
        assert time.perf_counter() - started < 5  # each would otherwise wait for the hanging publish
        wait_for(lambda: api.client.get("/readyz").status_code == 503, 5, "readyz to see the stuck broker")
        assert api.client.get("/readyz").json()["detail"] == "broker: down"
    finally:
        release.set()
    wait_for(lambda: api.hub.publisher.state().ok is False, 5, "the failed publish to be seen")
    unpublished = {p.message_id for p in api.hub.store.unpublished()}
    assert set(ids) <= unpublished  # in the store for the relay
    assert api.post(api.envelope()).status_code == 202  # dropped from memory at once while the broker is down


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
EXCHANGE = "urn:lienthong:exchange:1"


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
    dtd = b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"  # authenticated before it is parsed
    assert fault_of(api.client.post("/soap/exchange", content=dtd))[1] == ["api-key-required"]
    assert fault_of(api.client.post("/soap/exchange", content=dtd, headers={"X-Api-Key": api.keys["ministry"]}))[1] == [
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


def test_soap_authenticates_before_it_parses(api: Api, monkeypatch) -> None:
    parsed = []
    real_parse = soap.parse_xml
    monkeypatch.setattr(soap, "parse_xml", lambda data, limits: parsed.append(len(data)) or real_parse(data, limits))
    padding = "<ex:Pad>" + "x" * (40 * 1024) + "</ex:Pad>"
    unknown = soap_request("GetMessageStatusRequest", padding, "lt_00000000_unknown")
    without = soap_request("GetMessageStatusRequest", padding, None)
    for body, rule in ((unknown, "api-key-unknown"), (without, "api-key-required")):
        response = api.client.post("/soap/exchange", content=body, headers={"Content-Type": "text/xml"})
        assert response.status_code == 500
        assert [r.text for r in etree.fromstring(response.content).iter(f"{{{EXCHANGE}}}Rule")] == [rule]
    assert parsed == []  # refused from the SOAP header alone
    known = soap_request("GetMessageStatusRequest", "<ex:MessageId>none</ex:MessageId>", api.keys["ministry"])
    response = api.client.post("/soap/exchange", content=known, headers={"X-Api-Key": "lt_00000000_unknown"})
    assert [r.text for r in etree.fromstring(response.content).iter(f"{{{EXCHANGE}}}Rule")] == ["unknown-message"]
    assert parsed == [len(known)]  # the SOAP header's key wins over the HTTP header's, as before


def test_a_body_slower_than_the_body_timeout_is_refused_with_408(tmp_path: Path) -> None:
    seen: list[int] = []

    async def route(scope, receive, send) -> None:
        try:
            while (message := await receive())["more_body"]:
                seen.append(len(message["body"]))
        except ApiProblem as exc:
            seen.append(exc.status)
            raise

    async def trickle() -> dict:
        await asyncio.sleep(0.05 if len(seen) < 2 else 30)
        return {"type": "http.request", "body": b"x", "more_body": True}

    limits = BodyLimits(route, Settings(data_dir=tmp_path, body_timeout_s=0.5))
    scope = {"type": "http", "path": "/api/v1/messages", "headers": [(b"transfer-encoding", b"chunked")]}
    started = time.monotonic()
    with pytest.raises(ApiProblem) as refused:
        asyncio.run(limits(scope, trickle, None))
    assert refused.value.status == 408 and refused.value.errors[0].rule == "body-timeout"
    assert seen == [1, 1, 408] and time.monotonic() - started < 10

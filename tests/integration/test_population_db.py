"""F2, the population database: golden mappings, the SOAP simulator over real HTTP, the zeep adapter's retry
classification, and the synchronous lookup API (audit rows, refusal without purpose, timeout and 502)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import date
from pathlib import Path

import pytest
import requests
from lxml import etree

from adapters.base import OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.population_db import LookupTimeoutError, PopulationDbAdapter
from hub import packets
from hub.devtools.simulators.population_db import PopulationDbSimulator
from hub.errors import MappingError
from hub.packets.citizen import CitizenLookup, CitizenRecord, LookupResult
from hub.registry import parse_spec
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, TrustStore, sign_payload
from hub.store import flow_records
from mappings import outbound_mapping
from mappings import population_db as pdb
from tests.support import hub_client, hub_settings, signed_envelope, wait_for

GOLDEN = Path(__file__).parents[1] / "golden" / "population_db"
HUB, PROVINCE, POPULATION = "000.00.00.H00", "000.00.00.H12", "000.00.00.G06"
ADMIN_KEY = "admin-secret-key"
DOSSIER = "000.00.00.H12-251123-0042"


def lookup(**changes) -> CitizenLookup:
    base = CitizenLookup(
        request_id="TC-1",
        procedure_code="1.009994",
        officer_id="CB-H12-0031",
        dossier_code=DOSSIER,
        purpose="Xác minh khi tiếp nhận hồ sơ",
        personal_id="001090001234",
        full_name="Nguyễn Văn An",
        birth_date=date(1990, 5, 17),
    )
    return base.model_copy(update=changes)


def _golden(name: str, value: object) -> object:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- golden mappings


def test_golden_request_with_birth_date() -> None:
    request = pdb.to_request(packets.example("citizen.lookup"), integration_code=HUB)
    assert request == _golden("request-birth-date.json", request)
    assert list(request) == ["MaYeuCau", "MaDVC", "MaTichHop", "MaCanBo", "SoDinhDanh", "HoVaTen", "NgayThangNamSinh"]
    assert request["NgayThangNamSinh"] == {"NgayThangNam": "19990417"}


def test_golden_request_with_old_id_and_birth_year() -> None:
    model = lookup(personal_id=None, old_id="201234567", birth_date=None, birth_year=1990)
    request = pdb.to_request(model, integration_code=HUB)
    assert request == _golden("request-old-id-birth-year.json", request)
    assert request["SoCMND"] == "201234567" and "SoDinhDanh" not in request
    assert request["NgayThangNamSinh"] == {"Nam": "1990"}


@pytest.mark.parametrize("case", ["found", "not-found", "mismatch"])
def test_golden_replies(case: str) -> None:
    reply = json.loads((GOLDEN / f"reply-{case}.json").read_text(encoding="utf-8"))
    record = pdb.from_reply(reply)
    dumped = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped == _golden(f"record-{case}.json", dumped)
    packets.validate_element("citizen.record", packets.to_element(record))


def test_found_reply_is_lossless_and_fields_are_listed() -> None:
    record = packets.example("citizen.record")
    assert isinstance(record, CitizenRecord) and record.citizen is not None
    reply = {
        "MaYeuCau": record.request_id,
        "MaKetQua": "0",
        "CongdanCollection": {"CongDan": [pdb.congdan_of(record.citizen)]},
    }
    assert pdb.from_reply(reply) == record
    assert pdb.returned_fields(record) == [
        "personalId", "familyName", "middleName", "givenName", "gender", "birthDate", "hometown",
        "permanentAddress", "currentAddress", "householdHead",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "reply",
    [
        {"MaYeuCau": "x", "MaKetQua": "9"},
        {"MaKetQua": "1"},
        {"MaYeuCau": "x", "MaKetQua": "0"},
        {"MaYeuCau": "x", "MaKetQua": "0", "CongdanCollection": {"CongDan": [{"SoDinhDanh": "1"}]}},
    ],
)
def test_unmappable_replies(reply: dict) -> None:
    with pytest.raises(MappingError):
        pdb.from_reply(reply)


# ---------------------------------------------------------------------------------------------- simulator + adapter


@pytest.fixture(scope="module")
def sim():
    with PopulationDbSimulator() as server:
        yield server


@pytest.fixture(scope="module")
def adapter(sim):
    made = PopulationDbAdapter(sim.url, integration_code=HUB, timeout_s=0.5)
    yield made
    made.close()


def test_wsdl_is_served_with_the_simulators_address(sim) -> None:
    wsdl = requests.get(sim.wsdl_url, timeout=5).content
    root = etree.fromstring(wsdl)
    address = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == sim.url
    assert root.get("targetNamespace") == "http://dancuquocgia.bca"


def test_found_not_found_and_mismatch_over_soap(sim, adapter) -> None:
    found = adapter.lookup(lookup(full_name="  nguyễn  VĂN an "))
    assert found.result is LookupResult.FOUND and found.citizen is not None
    assert found.citizen.current_address.province_code == "49"
    assert adapter.lookup(lookup(personal_id="001090009999")).result is LookupResult.NOT_FOUND
    mismatch = adapter.lookup(lookup(birth_date=date(1990, 5, 18)))
    assert mismatch.result is LookupResult.MISMATCH and mismatch.citizen is None
    assert adapter.lookup(lookup(full_name="Nguyễn Văn Ân")).result is LookupResult.MISMATCH
    by_year = adapter.lookup(lookup(birth_date=None, birth_year=1990))
    assert by_year.result is LookupResult.FOUND
    seen = sim.received()["lookups"]
    assert [x["MaKetQua"] for x in seen] == ["0", "1", "2", "2", "0"]
    assert seen[0]["SoDinhDanh"] == "********1234" and seen[0]["MaTichHop"] == HUB


def test_a_queued_lookup_is_sent_as_mapped_and_the_exact_soap_envelope_is_reported(sim, adapter) -> None:
    """``deliver``: the worker mapped the request (``MaTichHop`` left to the adapter); ``sent`` is the SOAP
    envelope exactly as posted, so the message log can prove what left the hub."""
    model = lookup()
    mapping = outbound_mapping(pdb.KIND, "citizen.lookup")
    assert mapping is not None and mapping.to_partner(model)["MaTichHop"] is None
    request = OutboundRequest("000.00.00.G06", "m-1", "citizen.lookup", b"<signed/>",
                              payload=mapping.to_partner(model), model=model)  # fmt: skip
    receipt = adapter.deliver(request)
    assert receipt.detail.startswith("TraCuuThongTinCongDan result=found") and receipt.sent_type.startswith("text/xml")
    sent = etree.fromstring(receipt.sent)
    assert sent.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert sent.findtext(".//{*}MaTichHop") == HUB and sent.findtext(".//{*}MaYeuCau") == model.request_id
    assert sim.received()["lookups"][-1]["MaTichHop"] == HUB
    with pytest.raises(PermanentDeliveryError, match="takes no"):
        adapter.deliver(OutboundRequest("000.00.00.G06", "m-2", "dossier.sync", b"<signed/>"))


def test_client_built_once(adapter) -> None:
    client = adapter.client
    adapter.lookup(lookup())
    adapter.lookup(lookup())
    assert adapter.client is client


def test_soap_faults(sim, adapter) -> None:
    sim.control({"fault": 1})
    with pytest.raises(TransientDeliveryError, match="soap:Server"):
        adapter.lookup(lookup())
    raw = requests.post(sim.url, data=b"<notsoap/>", headers={"Content-Type": "text/xml"}, timeout=5)
    assert raw.status_code == 500 and b"soap:Client" in raw.content
    assert adapter.lookup(lookup()).result is LookupResult.FOUND  # healed


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("5xx", TransientDeliveryError),
        ("down", TransientDeliveryError),
        ("malformed", TransientDeliveryError),
        ("4xx", PermanentDeliveryError),
        ("slow", LookupTimeoutError),
    ],
)
def test_failure_modes_are_classified(sim, adapter, mode: str, error: type) -> None:
    sim.fail(mode, count=1, delay_ms=1500)
    with pytest.raises(error) as caught:
        adapter.lookup(lookup())
    assert "001090001234" not in str(caught.value)
    if mode != "4xx":
        assert not isinstance(caught.value, PermanentDeliveryError)


# ---------------------------------------------------------------------------------------------- the API


@pytest.fixture
def api(tmp_path: Path, pki, sim):
    specs = [
        {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": ["citizen.lookup"],
         "certificates": [pki.province.cert_path.read_text()]},
        {"code": POPULATION, "name": "Population DB", "kind": "population_db", "receives": ["citizen.lookup"],
         "endpoint": {"url": sim.url, "transport": "soap"}, "timeout_s": 5},
    ]  # fmt: skip
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY, lookup_timeout_s=1.0)
    with hub_client(settings, specs) as client:
        client.province_key = client.keys[PROVINCE]  # type: ignore[attr-defined]
        yield client


def signed_lookup(pki, payload: etree._Element | None = None, model: CitizenLookup | None = None) -> bytes:
    body = payload if payload is not None else packets.to_element(model or lookup())
    return signed_envelope(pki.province.signer, sender=PROVINCE, receiver=HUB, message_type="citizen.lookup",
                           payload=body, message_id=str(uuid.uuid4()), dossier_code=DOSSIER)  # fmt: skip


def post(api, data: bytes):
    return api.post(
        "/api/v1/lookups", content=data, headers={"Content-Type": "application/xml", "X-Api-Key": api.province_key}
    )


def audit(api) -> list[dict]:
    return api.get("/api/v1/lookups", headers={"X-Api-Key": ADMIN_KEY}).json()


def test_lookup_answers_a_hub_signed_record_and_is_audited(api, pki) -> None:
    data = signed_lookup(pki)
    response = post(api, data)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["x-lookup-result"] == "found"
    trust = TrustStore.from_path(api.settings.data_dir / "keys")
    verified = EnvelopeVerifier(trust).verify(response.content)
    assert verified.header.message_type == "citizen.record" and verified.header.sender == HUB
    assert verified.header.receiver == PROVINCE and verified.header.dossier_code == DOSSIER
    record = packets.from_element("citizen.record", verified.payload)
    assert record.result is LookupResult.FOUND and record.citizen.given_name == "An"
    (row,) = audit(api)
    assert row["requester"] == PROVINCE and row["officer_id"] == "CB-H12-0031" and row["dossier_code"] == DOSSIER
    assert row["procedure_code"] == "1.009994" and row["purpose"].startswith("Xác minh")
    assert row["result"] == "found" and row["subject"] == "********1234" and "householdHead" in row["fields"]
    # data minimisation: the message log keeps the lookup, and of the record only its digest and fields
    message_id = verified.header.correlation_id
    trace = api.get(f"/api/v1/messages/{message_id}", headers={"X-Api-Key": ADMIN_KEY}).json()
    answered = [e for e in trace["events"] if e["state"] == "answered"]
    assert answered and row["record_digest"] in answered[0]["detail"] and "fields=personalId" in answered[0]["detail"]
    assert (
        api.get(f"/api/v1/messages/{verified.header.message_id}", headers={"X-Api-Key": ADMIN_KEY}).status_code == 404
    )


def test_not_found_and_mismatch_are_answered_and_audited(api, pki) -> None:
    assert post(api, signed_lookup(pki, model=lookup(personal_id="001090009999"))).headers["x-lookup-result"] == (
        "not_found"
    )
    assert post(api, signed_lookup(pki, model=lookup(full_name="Trần Văn B"))).headers["x-lookup-result"] == "mismatch"
    assert [r["result"] for r in audit(api)] == ["mismatch", "not_found"]
    assert all(r["fields"] == [] for r in audit(api))


@pytest.mark.parametrize(
    ("element", "rule"),
    [("purpose", "lookup-purpose-required"), ("officerId", "lookup-officer-required"),
     ("dossierCode", "lookup-dossier-required")],
)  # fmt: skip
def test_lookup_without_officer_dossier_or_purpose_is_refused(api, pki, element: str, rule: str) -> None:
    payload = packets.to_element(lookup())
    payload.remove(payload.find(f"{{urn:lienthong:packet:1}}{element}"))
    response = post(api, signed_lookup(pki, payload=payload))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    assert errors[0]["rule"] == rule and element in errors[0]["path"]
    (row,) = audit(api)
    assert row["result"] == "refused" and rule in row["detail"]


def test_blank_purpose_is_refused(api, pki) -> None:
    payload = packets.to_element(lookup())
    payload.find("{urn:lienthong:packet:1}purpose").text = "   "
    response = post(api, signed_lookup(pki, payload=payload))
    assert response.status_code == 422 and response.json()["errors"][0]["rule"] == "lookup-purpose-required"


def test_slow_population_db_is_a_504_not_a_hang(api, pki, sim) -> None:
    before = len(sim.received()["lookups"])
    sim.fail("slow", count=1, delay_ms=3000)
    response = post(api, signed_lookup(pki))
    assert response.status_code == 504, response.text
    assert response.json()["errors"][0]["rule"] == "partner-timeout"
    assert audit(api)[0]["result"] == "timeout"
    # the hub stopped waiting, the call did not: let it land here, not in a later test's count
    wait_for(lambda: len(sim.received()["lookups"]) > before, 10, "the slow lookup to reach the simulator")


def test_population_db_down_or_faulting_is_a_502(api, pki, sim) -> None:
    sim.fail("down", count=1)
    response = post(api, signed_lookup(pki))
    assert response.status_code == 502 and response.json()["errors"][0]["rule"] == "partner-unavailable"
    sim.control({"fault": 1})
    assert post(api, signed_lookup(pki)).status_code == 502
    assert [r["result"] for r in audit(api)] == ["error", "error"]
    assert all("001090001234" not in r["detail"] for r in audit(api))


def test_lookup_needs_the_grant_and_a_valid_signature(api, pki) -> None:
    header = EnvelopeHeader(sender=PROVINCE, receiver=HUB, message_type="citizen.lookup", dossier_code=DOSSIER)
    forged = etree.tostring(sign_payload(pki.impostor.signer, header, packets.to_element(lookup())))
    assert post(api, forged).status_code == 422
    assert (
        api.post("/api/v1/lookups", content=signed_lookup(pki), headers={"Content-Type": "application/xml"}).status_code
        == 401
    )


def test_keep_citizen_records_policy_logs_the_reply(api, pki) -> None:
    hub = api.app.state.hub
    spec = hub.registry.require(POPULATION).spec
    hub.registry.add(parse_spec({**spec.stored(), "policy": {"keep_citizen_records": True}}), actor="test")
    hub.refresh()
    response = post(api, signed_lookup(pki))
    reply_id = response.headers["x-message-id"]
    trace = api.get(f"/api/v1/messages/{reply_id}", headers={"X-Api-Key": ADMIN_KEY})
    assert trace.status_code == 200 and trace.json()["message_type"] == "citizen.record"
    assert flow_records.lookups(hub.store.engine)[0]["result"] == "found"


# ---------------------------------------------------------------------------------------------- the one door


def test_a_lookup_is_refused_on_the_asynchronous_intake_rest_and_soap(api, pki, sim) -> None:
    """Personal data only through the audited door: a citizen.lookup posted to ``/api/v1/messages`` or SOAP is
    403 (rule ``lookup-through-lookups``), nothing is queued, the population DB is not asked."""
    asked = len(sim.received()["lookups"])
    data = signed_lookup(pki)
    rest = api.post(
        "/api/v1/messages", content=data, headers={"Content-Type": "application/xml", "X-Api-Key": api.province_key}
    )
    assert rest.status_code == 403, rest.text
    assert [e["rule"] for e in rest.json()["errors"]] == ["lookup-through-lookups"]
    assert "/api/v1/lookups" in rest.json()["errors"][0]["message"]
    inner = f"<ex:SignedEnvelope>{base64.b64encode(data).decode()}</ex:SignedEnvelope>"
    soap = api.post(
        "/soap/exchange",
        content=(
            '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ex="urn:lienthong:exchange:1">'
            f"<soap:Header><ex:ApiKey>{api.province_key}</ex:ApiKey></soap:Header>"
            f"<soap:Body><ex:SubmitEnvelopeRequest>{inner}</ex:SubmitEnvelopeRequest></soap:Body></soap:Envelope>"
        ).encode(),
        headers={"Content-Type": "text/xml"},
    )
    root = etree.fromstring(soap.content)
    assert root.findtext(".//faultcode") == "soap:Client"
    assert [r.text for r in root.iter("{urn:lienthong:exchange:1}Rule")] == ["lookup-through-lookups"]
    assert [r.text for r in root.iter("{urn:lienthong:exchange:1}Status")] == ["403"]
    message_id = etree.fromstring(data).findtext(".//{*}messageId")
    assert api.get(f"/api/v1/messages/{message_id}", headers={"X-Api-Key": ADMIN_KEY}).status_code == 404
    assert len(sim.received()["lookups"]) == asked
    assert post(api, data).status_code == 200  # the door itself still answers it


def test_a_repeated_lookup_is_answered_from_the_first_answer_and_audited_as_a_repeat(api, pki, sim) -> None:
    """The same request (id and content) again: the first answer's very bytes, the population DB not asked
    again, an audit row ``repeat`` with what was disclosed; after a failure the repeat does ask (nothing kept)."""
    data = signed_lookup(pki)
    asked = len(sim.received()["lookups"])
    first, again = post(api, data), post(api, data)
    assert first.status_code == again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["x-message-id"] == first.headers["x-message-id"]
    assert again.headers["x-lookup-result"] == "found"
    assert len(sim.received()["lookups"]) == asked + 1
    repeat, found = audit(api)
    assert (repeat["result"], found["result"]) == ("repeat", "found")
    assert repeat["message_id"] == found["message_id"] and repeat["record_digest"] == found["record_digest"]
    assert repeat["fields"] == found["fields"] and "result=found" in repeat["detail"]
    assert repeat["subject"] == "********1234" and repeat["officer_id"] == "CB-H12-0031"
    # same id, other content: still a conflict, not an answer
    other = signed_envelope(pki.province.signer, sender=PROVINCE, receiver=HUB, message_type="citizen.lookup",
                            payload=packets.to_element(lookup(purpose="Khác")), message_id=found["message_id"],
                            dossier_code=DOSSIER)  # fmt: skip
    assert post(api, other).status_code == 409
    # a lookup that failed is asked again when repeated
    sim.fail("down", count=1)
    failing = signed_lookup(pki)
    assert post(api, failing).status_code == 502
    assert post(api, failing).status_code == 200
    assert [r["result"] for r in audit(api)[:2]] == ["found", "error"]


def test_a_population_db_error_echoing_the_citizen_is_audited_and_logged_masked(api, pki, monkeypatch, caplog) -> None:
    """The population DB's error text names the citizen: the audit row, the trace and the log lines keep it
    masked."""
    import logging

    from adapters.base import TransientDeliveryError

    def failing(self, request):
        raise TransientDeliveryError("soap:Server công dân NGUYỄN VĂN AN, 001090001234: lỗi hệ thống")

    monkeypatch.setattr(PopulationDbAdapter, "lookup", failing)
    with caplog.at_level(logging.INFO):
        response = post(api, signed_lookup(pki))
    assert response.status_code == 502
    (row,) = audit(api)
    trace = api.get(f"/api/v1/messages/{row['message_id']}", headers={"X-Api-Key": ADMIN_KEY}).json()
    from hub.logs import MaskingFormatter

    lines = [MaskingFormatter().format(r) for r in caplog.records]
    texts = [row["detail"], response.text, *(e["detail"] for e in trace["events"]), *lines]
    assert "N***** V** A*" in row["detail"] and any("lỗi hệ thống" in line for line in lines)
    assert not [t for t in texts if "NGUYỄN VĂN AN" in t or "001090001234" in t]

"""F2, the population database: both connector profiles (``c06/lgsp`` through the provincial LGSP, ``c06/direct``
with zeep) against the strict simulator over real HTTP — found / not found, tokens, officers and ``AuthHash``, the
retry classification — and the synchronous lookup API (audit rows, refusal without purpose, minimisation by the
connector's policy, timeout and 502). The golden formats: ``tests/unit/test_mapping_population_db.py`` and
``test_population_db_conformance.py``."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date
from pathlib import Path

import pytest
import requests
from lxml import etree

from adapters.base import OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.population_db import LookupTimeoutError, PopulationDbAdapter, TokenRefusedError
from adapters.population_db_direct import DirectPopulationDbAdapter
from adapters.population_db_lgsp import LgspPopulationDbAdapter
from adapters.registry import UnusableAdapter, build_adapter
from hub import packets
from hub.devtools.simulators.population_db import PopulationDbSimulator, demo_credentials
from hub.exchange.routing import DestinationConfig
from hub.packets.citizen import CitizenLookup, LookupResult
from hub.registry import parse_spec
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, TrustStore, sign_payload
from hub.store import flow_records
from mappings import outbound_mapping
from mappings import population_db as pdb
from tests.support import hub_client, hub_settings, signed_envelope, wait_for

HUB, PROVINCE, POPULATION = "000.00.00.H00", "000.00.00.H12", "000.00.00.G06"
ADMIN_KEY = "admin-secret-key"
DOSSIER = "000.00.00.H12-251123-0042"
PROFILES = ("c06/lgsp", "c06/direct")


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


def destination(
    sim: PopulationDbSimulator,
    profile: str | None,
    timeout_s: float = 0.5,
    credentials: dict | None = None,
    **values: str,
) -> DestinationConfig:
    """A population DB connector's destination reaching ``sim`` as ``profile`` says."""
    if profile == "c06/lgsp":
        return DestinationConfig(endpoint=sim.adapter_url, transport="soap", kind="population_db",
                                 credentials=credentials or demo_credentials(), timeout_s=timeout_s, profile=profile,
                                 profile_values={**sim.profile_values(), **values})  # fmt: skip
    return DestinationConfig(endpoint=sim.direct_url, transport="soap", kind="population_db", timeout_s=timeout_s,
                             profile=profile, profile_values=values)  # fmt: skip


def adapter_for(sim: PopulationDbSimulator, profile: str | None, **values: str) -> PopulationDbAdapter:
    made = build_adapter(destination(sim, profile, **values))
    assert isinstance(made, PopulationDbAdapter), getattr(made, "reason", made)
    return made


# ---------------------------------------------------------------------------------------------- simulator + adapters


@pytest.fixture(scope="module")
def sim():
    with PopulationDbSimulator() as server:
        yield server


@pytest.fixture(scope="module", params=PROFILES)
def adapter(request, sim):
    made = adapter_for(sim, request.param)
    yield made
    made.close()


def test_the_registry_builds_the_profiles_adapter(sim) -> None:
    assert isinstance(adapter_for(sim, "c06/lgsp"), LgspPopulationDbAdapter)
    assert isinstance(adapter_for(sim, "c06/direct"), DirectPopulationDbAdapter)
    assert isinstance(adapter_for(sim, None), DirectPopulationDbAdapter)  # no profile: the sourced defaults
    no_credentials = destination(sim, "c06/lgsp").model_copy(update={"credentials": None})
    unusable = build_adapter(no_credentials)
    assert isinstance(unusable, UnusableAdapter) and "AccessKey" in unusable.reason
    bad = build_adapter(destination(sim, "c06/direct", name_format="lower"))
    assert isinstance(bad, UnusableAdapter) and "name_format" in bad.reason


def test_wsdl_is_served_with_the_simulators_address(sim) -> None:
    wsdl = requests.get(sim.wsdl_url, timeout=5).content
    root = etree.fromstring(wsdl)
    address = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == sim.direct_url
    assert root.get("targetNamespace") == "http://dancuquocgia.bca"


def test_found_and_not_found(sim, adapter) -> None:
    """Found when ID, name and birth date (or year) match; not found (no CongDan) otherwise — the name compared
    as the service does, without case, spacing or diacritics (the hub sends it so, FE:382)."""
    before = len(sim.received()["lookups"])
    found = adapter.lookup(lookup(full_name="  nguyễn  VĂN an "))
    assert found.result is LookupResult.FOUND and found.citizen is not None
    assert (found.citizen.family_name, found.citizen.middle_name, found.citizen.given_name) == ("Nguyễn", "Văn", "An")
    assert found.citizen.current_address.province_code == "49" and found.citizen.household_head.relationship == "Chủ hộ"
    assert adapter.lookup(lookup(personal_id="001090009999")).result is LookupResult.NOT_FOUND
    mismatch = adapter.lookup(lookup(birth_date=date(1990, 5, 18)))
    assert mismatch.result is LookupResult.NOT_FOUND and mismatch.citizen is None
    assert adapter.lookup(lookup(full_name="Trần Văn An")).result is LookupResult.NOT_FOUND
    assert adapter.lookup(lookup(birth_date=None, birth_year=1990)).result is LookupResult.FOUND
    by_old_id = adapter.lookup(lookup(personal_id=None, old_id="012345678"))
    assert by_old_id.result is LookupResult.FOUND and by_old_id.citizen.personal_id == "001090001234"
    seen = sim.received()["lookups"][before:]
    assert [x["result"] for x in seen] == ["found", "not_found", "not_found", "not_found", "found", "found"]
    route = "lgsp" if isinstance(adapter, LgspPopulationDbAdapter) else "direct"
    assert {x["route"] for x in seen} == {route}
    assert seen[0]["SoDinhDanh"] == "********1234" and seen[0]["MaTichHop"] == "037"  # FE:378
    assert seen[-1]["id"] == "SoCMND"


def test_a_year_only_citizen_with_the_full_name_in_ten(adapter) -> None:
    record = adapter.lookup(lookup(personal_id="079200009876", full_name="Lê Châu", birth_date=None, birth_year=2000))
    assert record.citizen is not None and record.citizen.birth_year == 2000
    assert (record.citizen.family_name, record.citizen.given_name) == ("Lê", "Châu")


def test_a_queued_lookup_is_sent_as_the_profile_maps_it(sim, adapter) -> None:
    """``deliver``: the worker mapped the lookup with the sourced defaults; the adapter sends it as its profile says
    and reports the envelope exactly as posted, so the message log can prove what left the hub."""
    model = lookup()
    mapping = outbound_mapping(pdb.KIND, "citizen.lookup")
    assert mapping is not None and mapping.to_partner(model)["MaTichHop"] == "037"
    request = OutboundRequest(POPULATION, "m-1", "citizen.lookup", b"<signed/>",
                              payload=mapping.to_partner(model), model=model)  # fmt: skip
    receipt = adapter.deliver(request)
    assert receipt.detail.startswith("TraCuuThongTinCongDan result=found")
    sent = etree.fromstring(receipt.sent)
    assert sent.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert sent.findtext(".//{http://dancuquocgia.bca}MaTichHop") == "037"
    assert sent.findtext(".//{http://dancuquocgia.bca}HoVaTen") == "NGUYEN VAN AN"
    if isinstance(adapter, LgspPopulationDbAdapter):
        assert receipt.sent == pdb.request_envelope(pdb.to_request(model)) and receipt.sent_type == "application/xml"
    else:
        assert receipt.sent_type.startswith("text/xml")
    assert sim.received()["lookups"][-1]["MaYeuCau"] == model.request_id
    with pytest.raises(PermanentDeliveryError, match="takes no"):
        adapter.deliver(OutboundRequest(POPULATION, "m-2", "dossier.sync", b"<signed/>"))


def test_the_lgsp_token_is_reused_and_fetched_again_when_refused() -> None:
    """One token for many calls (OC-QL:60-75 reads no expiry); a call answered 401 fetches a new one, once."""
    with PopulationDbSimulator() as server:
        made = adapter_for(server, "c06/lgsp")
        assert made.lookup(lookup()).result is LookupResult.FOUND
        assert made.lookup(lookup()).result is LookupResult.FOUND
        assert server.received()["tokens"] == 1
        server.control({"expire_tokens": True})
        assert made.lookup(lookup()).result is LookupResult.FOUND
        received = server.received()
        assert received["tokens"] == 2 and [r["status"] for r in received["refusals"]] == [401]


def test_a_refused_lgsp_token_is_named_and_the_secret_never_shown() -> None:
    with PopulationDbSimulator() as server:
        made = build_adapter(
            destination(server, "c06/lgsp", credentials=demo_credentials() | {"password": "not-the-secret"})
        )
        assert isinstance(made, LgspPopulationDbAdapter)
        with pytest.raises(TokenRefusedError, match="refused a token") as caught:
            made.lookup(lookup())
        assert "not-the-secret" not in str(caught.value) and not isinstance(caught.value, PermanentDeliveryError)
        (refusal,) = server.received()["refusals"]
        assert refusal["route"] == "token" and refusal["status"] == 401


def test_officers_file_gives_macanbo_and_authhash(tmp_path: Path) -> None:
    """OC-QL2:96-125, 180-188: MaCanBo from the officer table, AuthHash = Base64(keyName:keyPass); an officer the
    table lacks is refused before anything is sent; a wrong AuthHash is the LGSP's refusal (permanent)."""
    officers = tmp_path / "officers.json"
    officers.write_text(json.dumps({
        "CB-H12-0031": {"MaCanBo": "canbo.h12.031", "keyName": "cb031", "keyPass": "pw-031"},
        "CB-H12-0032": {"MaCanBo": "canbo.h12.032", "keyName": "cb032", "keyPass": "wrong"},
    }))  # fmt: skip
    with PopulationDbSimulator(officers={"canbo.h12.031": ("cb031", "pw-031"),
                                         "canbo.h12.032": ("cb032", "pw-032")}) as server:  # fmt: skip
        made = adapter_for(server, "c06/lgsp", officers_file=str(officers))
        assert made.lookup(lookup()).result is LookupResult.FOUND
        assert server.received()["lookups"][-1]["MaCanBo"] == "canbo.h12.031"
        assert base64.b64decode(made.officer("CB-H12-0031").auth_hash or "") == b"cb031:pw-031"
        asked = len(server.received()["lookups"])
        with pytest.raises(PermanentDeliveryError, match="CB-H12-9999 has no MaCanBo"):
            made.lookup(lookup(officer_id="CB-H12-9999"))
        with pytest.raises(PermanentDeliveryError, match="HTTP 403"):
            made.lookup(lookup(officer_id="CB-H12-0032"))
        assert len(server.received()["lookups"]) == asked
        assert "pw-031" not in repr(made.officer("CB-H12-0031"))


@pytest.mark.parametrize(
    ("values", "reason"),
    [({"integration_code": "LIENTHONG"}, "MaTichHop"), ({"name_format": "as-given"}, "HoVaTen")],
)
def test_a_request_the_service_refuses_is_permanent(sim, values: dict, reason: str) -> None:
    """The simulator refuses what the sources never send (MaTichHop other than "037", a name with diacritics):
    a soap:Client fault, never retried."""
    for profile in PROFILES:
        with pytest.raises(PermanentDeliveryError, match=f"soap:Client.*{reason}"):
            adapter_for(sim, profile, **values).lookup(lookup())


def test_soap_server_fault_is_transient_and_heals(sim, adapter) -> None:
    adapter.lookup(lookup())  # a token in hand (the LGSP route)
    sim.control({"fault": 1})
    with pytest.raises(TransientDeliveryError, match="soap:Server"):
        adapter.lookup(lookup())
    assert adapter.lookup(lookup()).result is LookupResult.FOUND


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
    adapter.lookup(lookup())  # a token in hand: the failure hits the call
    sim.fail(mode, count=1, delay_ms=1500)
    with pytest.raises(error) as caught:
        adapter.lookup(lookup())
    assert "001090001234" not in str(caught.value)
    if mode != "4xx":
        assert not isinstance(caught.value, PermanentDeliveryError)
    sim.heal()


# ---------------------------------------------------------------------------------------------- the API


@pytest.fixture
def api(tmp_path: Path, pki, sim):
    specs = [
        {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": ["citizen.lookup"],
         "certificates": [pki.province.cert_path.read_text()]},
        {"code": POPULATION, "name": "Population DB", "kind": "population_db", "receives": ["citizen.lookup"],
         "endpoint": {"url": sim.adapter_url, "transport": "soap", "credentials": demo_credentials()},
         "profile": "c06/lgsp", "profile_values": sim.profile_values(), "timeout_s": 5},
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
    # what a one-stop officer needs, nothing else the population DB answered (SoCMND, DanToc, Cha, Me, VoChong…)
    assert record.citizen.household_head is not None and record.citizen.permanent_address is not None
    assert (record.citizen.old_id, record.citizen.father, record.citizen.spouse) == (None, None, None)
    assert b"012345678" not in response.content and "Bảo".encode() not in response.content
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


def test_not_found_is_answered_and_audited(api, pki) -> None:
    """No CongDan — an unknown ID, or a name or birth date the population DB does not match — is not found."""
    assert post(api, signed_lookup(pki, model=lookup(personal_id="001090009999"))).headers["x-lookup-result"] == (
        "not_found"
    )
    assert post(api, signed_lookup(pki, model=lookup(full_name="Trần Văn B"))).headers["x-lookup-result"] == (
        "not_found"
    )
    assert [r["result"] for r in audit(api)] == ["not_found", "not_found"]
    assert all(r["fields"] == [] for r in audit(api))


def test_the_connectors_policy_decides_the_extra_fields(api, pki) -> None:
    """``policy.extra_citizen_fields`` lets named fields beyond the officer's needs through (here the parents);
    the others stay out, and the audit lists what was disclosed."""
    hub = api.app.state.hub
    spec = hub.registry.require(POPULATION).spec
    policy = {"extra_citizen_fields": ["father", "mother"]}
    hub.registry.add(parse_spec({**spec.stored(), "policy": policy}), actor="test")
    hub.refresh()
    response = post(api, signed_lookup(pki))
    verified = EnvelopeVerifier(TrustStore.from_path(api.settings.data_dir / "keys")).verify(response.content)
    citizen = packets.from_element("citizen.record", verified.payload).citizen
    assert citizen.father.full_name == "Nguyễn Văn Bảo" and citizen.mother.old_id == "151234567"
    assert (citizen.spouse, citizen.old_id, citizen.ethnicity) == (None, None, None)
    (row,) = audit(api)
    assert row["fields"][-2:] == ["father", "mother"] and "spouse" not in row["fields"]


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
    assert post(api, signed_lookup(pki)).status_code == 200  # the LGSP token in hand: the slow one is the lookup
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

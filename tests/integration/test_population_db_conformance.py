"""Conformance of the population database's messages, one test per message kind — token, request, reply found,
reply not found: the golden files (``tests/golden/population_db``, built from PARTNER-FORMATS.md §2 and named after
their sources), the strict simulator (over real HTTP on 127.0.0.1) and the hub's adapters say the same. Then what
the simulator refuses, as the real LGSP or service would (the sources are strict there: OC-QL:52-75,
OC-QL2:197-245, OC-API:540-578, FE:378-391)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from lxml import etree

from adapters.base import OutboundRequest
from adapters.population_db import PopulationDbAdapter
from adapters.population_db_direct import DirectPopulationDbAdapter
from adapters.registry import build_adapter
from hub import packets
from hub.devtools.simulators.population_db import LgspAccount, Person, PopulationDbSimulator
from hub.exchange.routing import DestinationConfig
from hub.packets.citizen import CitizenLookup, LookupResult
from mappings import population_db as pdb

GOLDEN = Path(__file__).parents[1] / "golden" / "population_db"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
REQUEST = "OC-QL2_197-245.TraCuuThongTinCongDan.request.xml"
FOUND = "FE_400-405.TH-CDD_5-87.reply.found.xml"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


GOLDEN_TOKEN_JSON = golden("OC-QL_52-57.lgspaccesstoken.json").rstrip(b"\n")
GOLDEN_HEADER = base64.b64encode(GOLDEN_TOKEN_JSON).decode()
ACCOUNT = LgspAccount(*json.loads(GOLDEN_TOKEN_JSON).values())


def structure(element: etree._Element) -> object:
    """An element's shape and texts by local name (namespaces and prefixes aside, as the sources read it)."""
    return pdb.element_dict(element)


def golden_congdan() -> dict:
    (congdan,) = pdb.reply_citizens(etree.fromstring(golden(FOUND)))
    return congdan


@pytest.fixture(scope="module")
def sim():
    """The simulator with the golden account and the golden reply's citizen as its population."""
    with PopulationDbSimulator(account=ACCOUNT, population=(Person("Nguyễn Văn An", golden_congdan()),)) as server:
        yield server


@pytest.fixture
def token(sim) -> str:
    """A token for the golden account (the simulator forgets them when it is reset after each test)."""
    answer = httpx.post(sim.adapter_url + sim.token_path, content=golden("OC-QL_60-75.token.request.form").strip(),
                        headers=_form_headers())  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def _form_headers(header: str | None = GOLDEN_HEADER) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if header is not None:
        headers["lgspaccesstoken"] = header
    return headers


def _call_headers(token: str, **changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "Authorization": f"Bearer {token}", "lgspaccesstoken": GOLDEN_HEADER, "Content-Type": "application/xml",
    }  # fmt: skip
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


def _lgsp_adapter(sim) -> PopulationDbAdapter:
    values = json.loads(GOLDEN_TOKEN_JSON)
    made = build_adapter(DestinationConfig(
        endpoint=sim.adapter_url, transport="soap", kind="population_db", profile="c06/lgsp",
        credentials={"username": values["AccessKey"], "password": values["SecretKey"]},
        profile_values=sim.profile_values(), timeout_s=5,
    ))  # fmt: skip
    assert isinstance(made, PopulationDbAdapter), getattr(made, "reason", made)
    return made


def _direct_adapter(sim) -> PopulationDbAdapter:
    made = build_adapter(DestinationConfig(endpoint=sim.direct_url, transport="soap", kind="population_db",
                                           profile="c06/direct", timeout_s=5))  # fmt: skip
    assert isinstance(made, DirectPopulationDbAdapter)
    return made


def _lookup(**changes) -> CitizenLookup:
    model = packets.example("citizen.lookup")
    assert isinstance(model, CitizenLookup)
    return model.model_copy(update=changes)


# ---------------------------------------------------------------------------------------------- one per kind


def test_conformance_token(sim) -> None:
    """Token (OC-QL:52-75): the golden form and ``lgspaccesstoken`` get an answer shaped as the golden one; the
    adapter's own token request (header built from its credentials and profile values) is the same and accepted."""
    answer = httpx.post(sim.adapter_url + sim.token_path, content=golden("OC-QL_60-75.token.request.form").strip(),
                        headers=_form_headers())  # fmt: skip
    assert answer.status_code == 200
    assert set(answer.json()) == set(json.loads(golden("OC-QL_60-75.token.reply.json")))
    adapter = _lgsp_adapter(sim)
    assert base64.b64decode(adapter._access_token) == GOLDEN_TOKEN_JSON
    issued = sim.received()["tokens"]
    assert adapter.token.get() and sim.received()["tokens"] == issued + 1


def test_conformance_request(sim, token: str) -> None:
    """Request (OC-QL2:197-245; OC-API:540-578): the golden envelope posted as the LGSP call is answered; the LGSP
    adapter posts exactly the golden bytes for the hub's example lookup; zeep's envelope (``c06/direct``) is
    accepted too."""
    answer = httpx.post(sim.adapter_url + sim.lookup_path, content=golden(REQUEST).strip(),
                        headers=_call_headers(token))  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    model = _lookup()
    mapped = pdb.to_request(model)
    receipt = _lgsp_adapter(sim).deliver(OutboundRequest("G06", "m-1", "citizen.lookup", b"", payload=mapped,
                                                         model=model))  # fmt: skip
    assert receipt.sent == golden(REQUEST).rstrip(b"\n")
    direct = _direct_adapter(sim).deliver(OutboundRequest("G06", "m-2", "citizen.lookup", b"", payload=mapped,
                                                          model=model))  # fmt: skip
    zeep_body = etree.fromstring(direct.sent).find(f"{SOAP}Body")  # zeep writes no empty Header
    assert structure(zeep_body) == structure(etree.fromstring(golden(REQUEST)).find(f"{SOAP}Body"))
    assert [x["result"] for x in sim.received()["lookups"][-3:]] == ["found", "found", "found"]


def test_conformance_reply_found(sim, token: str) -> None:
    """Reply found (FE:400-405; TH-CDD:5-87): the simulator answers the golden request with the golden reply's shape
    (``Body/CongdanCollection/CongDan``, no wrapper); both adapters map it to the golden record."""
    answer = httpx.post(sim.adapter_url + sim.lookup_path, content=golden(REQUEST).strip(),
                        headers=_call_headers(token))  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert structure(etree.fromstring(answer.content)) == structure(etree.fromstring(golden(FOUND)))
    expected = json.loads(golden("FE_400-405.TH-CDD_5-87.reply.found.record.json"))
    for adapter in (_lgsp_adapter(sim), _direct_adapter(sim)):
        record = adapter.lookup(_lookup()).minimised()
        assert record.model_dump(mode="json", by_alias=True, exclude_none=True) == expected
        assert record.citizen is not None and record.citizen.given_name == "An"


@pytest.mark.parametrize("shape", ["FE_481-489.reply.not-found.xml", "FE_481-489.reply.not-found.empty-body.xml"])
def test_conformance_reply_not_found(sim, token: str, shape: str) -> None:
    """Reply not found (FE:481-489): no CongDan, or no CongdanCollection; the simulator answers either shape and both
    adapters read it as ``not_found``."""
    sim.control({"not_found_body": "empty-body" if "empty-body" in shape else "empty-collection"})
    try:
        unknown = golden(REQUEST).replace(b"001099012345", b"001099099999")
        answer = httpx.post(sim.adapter_url + sim.lookup_path, content=unknown.strip(), headers=_call_headers(token))
        assert answer.status_code == 200
        assert structure(etree.fromstring(answer.content)) == structure(etree.fromstring(golden(shape)))
        for adapter in (_lgsp_adapter(sim), _direct_adapter(sim)):
            record = adapter.lookup(_lookup(personal_id="001099099999"))
            assert record.result is LookupResult.NOT_FOUND and record.citizen is None
    finally:
        sim.control({"not_found_body": "empty-collection"})


# ---------------------------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"lgspaccesstoken": None}, None, 401),  # no header
        ({"lgspaccesstoken": base64.b64encode(b'{"AccessKey":"AK-LIENTHONG-0001"}').decode()}, None, 401),
        ({"lgspaccesstoken": "not base64!"}, None, 401),
        ({}, b"grant_type=password", 400),
        ({"Content-Type": "application/json"}, b'{"grant_type": "client_credentials"}', 400),
    ],
)
def test_the_token_endpoint_refuses_what_the_source_would_not_send(sim, headers: dict, body, status: int) -> None:
    sent = {**_form_headers(), **headers}
    answer = httpx.post(sim.adapter_url + sim.token_path, content=body or b"grant_type=client_credentials",
                        headers={k: v for k, v in sent.items() if v is not None})  # fmt: skip
    assert answer.status_code == status and "access_token" not in answer.json()


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"Authorization": None}, 401),
        ({"Authorization": "Bearer not-issued"}, 401),
        ({"lgspaccesstoken": None}, 401),
        ({"SOAPAction": '""'}, 400),
        ({"Content-Type": "text/xml"}, 415),
        ({"Content-Type": "application/json"}, 415),
    ],
)
def test_the_lgsp_call_refuses_missing_or_wrong_headers(sim, token: str, changes: dict, status: int) -> None:
    answer = httpx.post(sim.adapter_url + sim.lookup_path, content=golden(REQUEST).strip(),
                        headers=_call_headers(token, **changes))  # fmt: skip
    assert answer.status_code == status


def test_opencps_s_internal_holder_is_not_the_body(sim, token: str) -> None:
    """OC-API:548-552: ``{accessToken, lgspAccessToken, data}`` is OpenCPS's holder, not what the LGSP takes."""
    holder = json.dumps({"accessToken": f"Bearer {token}", "lgspAccessToken": GOLDEN_HEADER,
                         "data": golden(REQUEST).decode()}).encode()  # fmt: skip
    answer = httpx.post(sim.adapter_url + sim.lookup_path, content=holder, headers=_call_headers(token))
    assert answer.status_code == 500 and b"soap:Client" in answer.content


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"<qldc:MaYeuCau>TC-20251123-000117</qldc:MaYeuCau><qldc:MaDVC>1.009994</qldc:MaDVC>",
         b"<qldc:MaDVC>1.009994</qldc:MaDVC><qldc:MaYeuCau>TC-20251123-000117</qldc:MaYeuCau>", "thứ tự"),
        (b"<qldc:MaCanBo>CB-H12-0031</qldc:MaCanBo>", b"", "thứ tự"),
        (b"<qldc:MaCanBo>CB-H12-0031</qldc:MaCanBo>", b"<qldc:MaCanBo></qldc:MaCanBo>", "MaCanBo"),
        (b"<qldc:MaTichHop>037</qldc:MaTichHop>", b"<qldc:MaTichHop>LIENTHONG</qldc:MaTichHop>", "MaTichHop"),
        (b"NGUYEN VAN AN", "NGUYỄN VĂN AN".encode(), "HoVaTen"),
        (b"NGUYEN VAN AN", b"Nguyen Van An", "HoVaTen"),
        (b"001099012345", b"00109901234", "12"),
        (b"</qldc:SoDinhDanh>", b"</qldc:SoDinhDanh><qldc:SoCMND>012987654</qldc:SoCMND>", "đúng một"),
        (b"<qldc:HoVaTen>", b"<qldc:StaffEmail>cb@h12.gov.vn</qldc:StaffEmail><qldc:HoVaTen>", "StaffEmail"),
        (b"<qldc:HoVaTen>NGUYEN VAN AN</qldc:HoVaTen>", b"<HoVaTen>NGUYEN VAN AN</HoVaTen>", "namespace"),
        (b"1999-04-17", b"17/04/1999", "NgayThangNam"),
        (b"<qldc:SoDinhDanh>001099012345</qldc:SoDinhDanh><qldc:HoVaTen>",
         b"<qldc:HoVaTen>", "SoDinhDanh hoặc SoCMND"),
        (b"qldc:TraCuuThongTinCongDan>", b"qldc:XacMinhTinhTrangHonNhan>", "không được mô phỏng"),
        (b"soapenv:Envelope", b"soapenv:Letter", "SOAP 1.1"),
    ],
)  # fmt: skip
def test_a_request_the_service_would_not_accept_is_a_client_fault(sim, token: str, old, new, reason: str) -> None:
    body = golden(REQUEST).strip()
    assert old in body
    answer = httpx.post(sim.adapter_url + sim.lookup_path, content=body.replace(old, new),
                        headers=_call_headers(token))  # fmt: skip
    assert answer.status_code == 500
    fault = etree.fromstring(answer.content).find(f"{SOAP}Body/{SOAP}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soap:Client"
    assert reason in (fault.findtext("faultstring") or "")


def test_the_direct_service_takes_soap_1_1_only(sim) -> None:
    body = golden(REQUEST).strip()
    assert httpx.post(sim.direct_url, content=body, headers={"Content-Type": "application/xml"}).status_code == 415
    answer = httpx.post(sim.direct_url, content=body, headers={"Content-Type": "text/xml"})
    assert answer.status_code == 500 and b"SOAPAction" in answer.content
    ok = httpx.post(sim.direct_url, content=body, headers={"Content-Type": "text/xml", "SOAPAction": '""'})
    assert ok.status_code == 200 and b"CongDan" in ok.content

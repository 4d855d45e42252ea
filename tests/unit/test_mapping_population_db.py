"""The population database's messages as the sources build and read them (PARTNER-FORMATS.md §2), against the
golden files of ``tests/golden/population_db`` (named after their sources): the request OpenCPS posts, the
``lgspaccesstoken`` header, and the replies (found, found with the full name in ``Ten``, not found both ways)
mapped to the canonical ``citizen.record``."""

from __future__ import annotations

import base64
import json
import os
from datetime import date
from pathlib import Path
from typing import get_args

import pytest
from lxml import etree

from adapters.population_db_lgsp import lgsp_access_token
from hub import packets
from hub.errors import MappingError
from hub.packets.citizen import EXTRA_CITIZEN_FIELDS, CitizenLookup, CitizenRecord, Gender, LookupResult
from hub.registry.spec import ExtraCitizenField
from mappings import outbound_mapping
from mappings import population_db as pdb
from mappings.profiles import ProfileValueError, get_profile, resolve

GOLDEN = Path(__file__).parents[1] / "golden" / "population_db"
REQUEST = "OC-QL2_197-245.TraCuuThongTinCongDan.request.xml"
REQUEST_OLD_ID = "OC-QL2_197-245.TraCuuThongTinCongDan.request.old-id-year.xml"
FOUND = "FE_400-405.TH-CDD_5-87.reply.found.xml"
FOUND_TEN = "FE_119-240.TH-CDD_5-69.reply.found.full-name-in-Ten.xml"
NOT_FOUND = "FE_481-489.reply.not-found.xml"
EMPTY_BODY = "FE_481-489.reply.not-found.empty-body.xml"


def golden_bytes(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def golden_record(name: str, value: object) -> object:
    """The expected canonical record kept next to the reply (written when missing or with UPDATE_GOLDEN)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return json.loads(path.read_text(encoding="utf-8"))


def reply(name: str) -> list[dict]:
    return pdb.reply_citizens(etree.fromstring(golden_bytes(name)))


def lookup_for(name: str, **changes) -> CitizenLookup:
    """The hub's example lookup, about the citizen of the golden reply ``name``."""
    model = packets.example("citizen.lookup")
    assert isinstance(model, CitizenLookup)
    (congdan,) = reply(name)
    return model.model_copy(update={"personal_id": congdan["SoDinhDanh"], **changes})


def dumped(record: CitizenRecord) -> dict:
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------------------------------------- request


def test_the_request_is_the_envelope_opencps_posts() -> None:
    """OC-QL2:197-245: soapenv/qldc, empty Header, the leading elements in order, MaTichHop "037", HoVaTen upper case
    without diacritics, NgayThangNam yyyy-MM-dd (FE:362-368) — byte for byte."""
    request = pdb.to_request(packets.example("citizen.lookup"))
    assert list(request)[:5] == ["MaYeuCau", "MaDVC", "MaTichHop", "MaCanBo", "SoDinhDanh"]
    assert pdb.request_envelope(request) == golden_bytes(REQUEST).rstrip(b"\n")


def test_the_old_id_and_birth_year_request() -> None:
    model = packets.example("citizen.lookup").model_copy(update={
        "request_id": "TC-20251123-000118", "personal_id": None, "old_id": "201234567", "full_name": "Trần Thị Bình",
        "birth_date": None, "birth_year": 1985,
    })  # fmt: skip
    assert pdb.request_envelope(pdb.to_request(model)) == golden_bytes(REQUEST_OLD_ID).rstrip(b"\n")


def test_the_worker_maps_a_queued_lookup_with_the_sourced_defaults() -> None:
    mapping = outbound_mapping(pdb.KIND, "citizen.lookup")
    assert mapping is not None
    assert mapping.to_partner(packets.example("citizen.lookup")) == pdb.to_request(packets.example("citizen.lookup"))


def test_the_lgspaccesstoken_header_is_base64_of_the_compact_json() -> None:
    """OC-QL:52-57: Base64 of {AccessKey, SecretKey, AppName, PartnerCode, PartnerCodeCus}, in that order."""
    expected = golden_bytes("OC-QL_52-57.lgspaccesstoken.json").rstrip(b"\n")
    values = json.loads(expected)
    assert list(values) == ["AccessKey", "SecretKey", "AppName", "PartnerCode", "PartnerCodeCus"]
    header = lgsp_access_token(values)
    assert base64.b64decode(header) == expected


@pytest.mark.parametrize(
    ("name", "form", "expected"),
    [
        ("Nguyễn Văn An", "upper-ascii", "NGUYEN VAN AN"),
        ("  đặng   thị  Ngọc  Ánh ", "upper-ascii", "DANG THI NGOC ANH"),
        ("Đỗ Quỳnh Hương", "upper-ascii-compact", "DOQUYNHHUONG"),
        ("Nguyễn  Văn An", "as-given", "Nguyễn Văn An"),
        ("Lưu Ỷ Lan", "upper-ascii", "LUU Y LAN"),
    ],
)
def test_names_are_normalised_as_fe_does(name: str, form: str, expected: str) -> None:
    """FE:382, 599-611: diacritics stripped (Đ → D), upper case; FE's convertString also strips whitespace."""
    assert pdb.normalise_name(name, form) == expected


def test_profile_values_shape_the_request() -> None:
    settings = resolve(get_profile("c06/direct"), {
        "integration_code": "037", "service_codes": "1.009994:2.002176, 1.000001:2.000001",
        "name_format": "upper-ascii-compact", "birth_date_format": "yyyyMMdd",
    })  # fmt: skip
    options = pdb.RequestOptions.from_profile(settings)
    request = pdb.to_request(packets.example("citizen.lookup"), options, officer_code="canbo.h12")
    assert request["MaDVC"] == "2.002176" and request["MaCanBo"] == "canbo.h12"
    assert request["HoVaTen"] == "NGUYENVANAN" and request["NgayThangNamSinh"] == {"NgayThangNam": "19990417"}
    other = packets.example("citizen.lookup").model_copy(update={"procedure_code": "1.999999"})
    with pytest.raises(MappingError, match="no MaDVC"):  # OpenCPS refuses an unmapped service (OC-QL2:180-188)
        pdb.to_request(other, options)


@pytest.mark.parametrize(
    "values",
    [{"name_format": "lower"}, {"birth_date_format": "dd/MM/yyyy"}, {"service_codes": "1.009994"},
     {"integration_code": " "}],
)  # fmt: skip
def test_unusable_profile_values_are_refused(values: dict) -> None:
    with pytest.raises(ProfileValueError):
        pdb.RequestOptions.from_profile(values)


# ---------------------------------------------------------------------------------------------- reply


def test_the_sheets_reply_gives_a_record_with_the_name_parts() -> None:
    """Acceptance: a reply shaped as the sheet's (no wrapper, HoVaTen{Ho, ChuDem, Ten}) → a citizen.record with the
    name parts; minimised as by default, it is the hub's citizen.record example."""
    record = pdb.from_reply(reply(FOUND), lookup_for(FOUND)).minimised()
    assert record.result is LookupResult.FOUND and record.citizen is not None
    citizen = record.citizen
    assert (citizen.family_name, citizen.middle_name, citizen.given_name) == ("Nguyễn", "Văn", "An")
    assert citizen.gender is Gender.MALE and citizen.birth_date == date(1999, 4, 17)
    assert record == packets.example("citizen.record")
    assert dumped(record) == golden_record("FE_400-405.TH-CDD_5-87.reply.found.record.json", dumped(record))
    packets.validate_element("citizen.record", packets.to_element(record))


def test_every_sourced_field_is_read_and_only_a_policy_keeps_the_extras() -> None:
    """SoCMND, DanToc, QuocTich, Cha, Me (VoChong empty: none) are read; a policy naming every extra field keeps
    them; religion, marital status, blood group, birth registration place, representative and household book
    never reach the record."""
    full = pdb.from_reply(reply(FOUND), lookup_for(FOUND))
    record = full.minimised(EXTRA_CITIZEN_FIELDS)
    assert record == full
    assert dumped(record) == golden_record("FE_400-405.TH-CDD_5-87.reply.found.record.all-fields.json", dumped(record))
    citizen = record.citizen
    assert citizen is not None and citizen.old_id == "012987654" and citizen.nationality == "VN"
    assert citizen.father is not None and citizen.father.personal_id == "001065004321"
    assert citizen.mother is not None and citizen.mother.old_id is None and citizen.spouse is None
    text = json.dumps(dumped(record), ensure_ascii=False)
    for never in ("HK-48-0012345", "UBND xã Vân Hà", '"04"'):
        assert never not in text
    packets.validate_element("citizen.record", packets.to_element(record))
    assert pdb.returned_fields(full.minimised(["father"]))[-1] == "father"


def test_the_policy_literals_are_the_packets_extra_fields() -> None:
    assert get_args(ExtraCitizenField) == EXTRA_CITIZEN_FIELDS


def test_a_full_name_in_ten_and_a_birth_year_only() -> None:
    """FE and TH show HoVaTen.Ten as the full name: a Ten of several words starting with Ho is split, family name
    first, given name last; GioiTinh empty is 'other'; only Nam → birthYear; unnamed elements ignored."""
    record = pdb.from_reply(reply(FOUND_TEN), lookup_for(FOUND_TEN))
    citizen = record.citizen
    assert citizen is not None
    assert (citizen.family_name, citizen.middle_name, citizen.given_name) == ("Lê", "Thị Minh", "Châu")
    assert citizen.gender is Gender.OTHER and citizen.birth_date is None and citizen.birth_year == 2000
    assert citizen.current_address is not None and citizen.current_address.ward_code is None
    name = "FE_119-240.TH-CDD_5-69.reply.found.full-name-in-Ten.record.json"
    assert dumped(record) == golden_record(name, dumped(record))
    packets.validate_element("citizen.record", packets.to_element(record))


@pytest.mark.parametrize("name", [NOT_FOUND, EMPTY_BODY])
def test_no_congdan_is_not_found(name: str) -> None:
    """FE:481-489: no CongDan, or no CongdanCollection at all, is "not found"."""
    record = pdb.from_reply(reply(name), lookup_for(FOUND))
    assert record.result is LookupResult.NOT_FOUND and record.citizen is None
    assert record.request_id == packets.example("citizen.lookup").request_id
    packets.validate_element("citizen.record", packets.to_element(record))


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ({"Ho": "Nguyễn", "ChuDem": "Văn", "Ten": "An"}, ("Nguyễn", "Văn", "An")),
        ({"Ho": "Nguyễn", "Ten": "Ngọc Anh"}, ("Nguyễn", None, "Ngọc Anh")),  # a two-word given name
        ({"Ten": "Trần Thị Bình"}, ("Trần", "Thị", "Bình")),
        ({"Ho": "NGUYỄN", "ChuDem": "VĂN", "Ten": "NGUYỄN VĂN AN"}, ("NGUYỄN", "VĂN", "AN")),
        ("Lê Văn Cường", ("Lê", "Văn", "Cường")),
    ],
)
def test_name_parts(value: object, parts: tuple) -> None:
    assert pdb.name_parts(value) == parts


def _envelope(body: str) -> etree._Element:
    return etree.fromstring(
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body></s:Envelope>'
    )


@pytest.mark.parametrize(
    "body",
    [
        # the wrapper the hub once invented: no source shows one
        '<TraCuuThongTinCongDanResponse xmlns="http://dancuquocgia.bca"><MaYeuCau>x</MaYeuCau><MaKetQua>0</MaKetQua>'
        "</TraCuuThongTinCongDanResponse>",
    ],
)
def test_a_body_that_is_no_sourced_reply_is_refused(body: str) -> None:
    with pytest.raises(MappingError, match="not CongdanCollection"):
        pdb.reply_citizens(_envelope(body))
    with pytest.raises(MappingError, match=r"not a SOAP 1\.1 envelope"):
        pdb.reply_citizens(etree.fromstring(b"<CongdanCollection/>"))


def _congdan(**changes) -> dict:
    (congdan,) = reply(FOUND)
    return {**congdan, **changes}


@pytest.mark.parametrize(
    ("citizens", "match"),
    [
        ([_congdan(), _congdan()], "2 CongDan"),
        ([_congdan(SoDinhDanh="001099099999")], "another SoDinhDanh"),
        ([_congdan(SoDinhDanh="")], "another SoDinhDanh"),
        ([_congdan(HoVaTen={"ChuDem": "Văn"})], "lacks Ho or Ten"),
        ([_congdan(NgayThangNamSinh={"NgayThangNam": "17/04/1999"})], "not yyyyMMdd"),
        ([_congdan(NgayThangNamSinh={})], "no NgayThangNamSinh"),
        ([_congdan(ThuongTru={"MaTinhThanh": "480"})], "does not map"),
    ],
)
def test_replies_that_cannot_be_mapped(citizens: list, match: str) -> None:
    with pytest.raises(MappingError, match=match):
        pdb.from_reply(citizens, lookup_for(FOUND))

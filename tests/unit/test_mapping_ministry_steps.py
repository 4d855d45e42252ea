"""Profile ``ministry-steps``: golden files (ministry ``<BuocXuLy>`` in, canonical ``<dossierStatus>`` out, both
checked in under ``tests/golden/ministry_steps``), the step table, local time → UTC, and the errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

import mappings
from hub import packets
from hub.errors import PacketInvalidError
from hub.packets.dossier import DossierStatusUpdate
from hub.registry import KNOWN_PROFILES
from hub.xmlparse import parse_xml
from mappings import ministry_steps

GOLDEN = Path(__file__).parents[1] / "golden" / "ministry_steps"
INPUTS = sorted(p for p in GOLDEN.glob("*.xml") if not p.name.endswith(".expected.xml"))
NS = ministry_steps.NAMESPACE


def c14n(data: bytes) -> bytes:
    return etree.tostring(parse_xml(data), method="c14n2", strip_text=True)


def step(code: str = "LuanChuyenHoSo", at: str = "20251124100500", *, extra: str = "", documents: str = "") -> bytes:
    docs = f"<DanhSachGiayToKetQua>{documents}</DanhSachGiayToKetQua>" if documents else ""
    return (
        f'<BuocXuLy xmlns="{NS}"><MaHoSo>000.00.00.H12-251123-0042</MaHoSo><MaDonVi>000.00.00.G10</MaDonVi>'
        f"<LoaiBuoc>{code}</LoaiBuoc><ThoiDiem>{at}</ThoiDiem><NguoiXuLy>Trần Thị Bình</NguoiXuLy>{extra}{docs}"
        "</BuocXuLy>"
    ).encode()


DOC = (
    "<GiayToKetQua><MaGiayTo>GCN-1</MaGiayTo><TenGiayTo>Giấy chứng nhận</TenGiayTo>"
    "<DuongDan>https://tnmt.example.gov.vn/f/1.pdf</DuongDan></GiayToKetQua>"
)


def test_there_is_a_golden_pair_for_every_step() -> None:
    codes = {parse_xml(p.read_bytes()).findtext(f"{{{NS}}}LoaiBuoc") for p in INPUTS}
    assert codes == set(ministry_steps.step_table()) == {"LuanChuyenHoSo", "ChoBoSung", "DaBoSung", "KetThuc"}
    for path in INPUTS:
        assert path.with_name(path.stem + ".expected.xml").is_file(), path


@pytest.mark.parametrize("source", INPUTS, ids=lambda p: p.stem)
def test_golden(source: Path) -> None:
    expected = source.with_name(source.stem + ".expected.xml").read_bytes()
    model = ministry_steps.to_canonical(parse_xml(source.read_bytes()))
    assert isinstance(model, DossierStatusUpdate)
    assert c14n(packets.to_xml(model)) == c14n(expected)
    assert packets.validate_xml("dossier.status", expected) == []  # the expected output is a valid canonical packet
    assert ministry_steps.schema().validate(parse_xml(source.read_bytes()))  # the input is valid against the XSD


def test_step_table_is_the_data_file_and_matches_the_xsd() -> None:
    table = {code: (rule.status, rule.results_required) for code, rule in ministry_steps.step_table().items()}
    assert table == {
        "LuanChuyenHoSo": (4, False), "ChoBoSung": (5, False), "DaBoSung": (4, False), "KetThuc": (9, True),
    }  # fmt: skip
    xsd = etree.parse(str(Path(ministry_steps.__file__).parents[1] / "schemas" / "ministry-step.xsd"))
    enum = xsd.xpath(
        "//xs:simpleType[@name='LoaiBuoc']//xs:enumeration/@value",
        namespaces={"xs": "http://www.w3.org/2001/XMLSchema"},
    )
    assert set(enum) == set(table)


def test_local_time_becomes_utc() -> None:
    assert ministry_steps.local_to_utc("20251127001500") == datetime(2025, 11, 26, 17, 15, tzinfo=UTC)
    model = ministry_steps.to_canonical(parse_xml(step(at="20260101000000", extra="<HanXuLy>20260102235959</HanXuLy>")))
    assert model.at == datetime(2025, 12, 31, 17, 0, tzinfo=UTC)
    assert model.step_due == datetime(2026, 1, 2, 16, 59, 59, tzinfo=UTC)


def test_to_canonical_is_pure() -> None:
    element = parse_xml(GOLDEN.joinpath("4_ket_thuc.xml").read_bytes())
    before = etree.tostring(element)
    assert ministry_steps.to_canonical(element) == ministry_steps.to_canonical(element)
    assert etree.tostring(element) == before


def issues_of(data: bytes) -> list[tuple[str, str]]:
    with pytest.raises(PacketInvalidError) as caught:
        ministry_steps.to_canonical(parse_xml(data))
    return [(i.path, i.rule) for i in caught.value.issues]


def test_ket_thuc_needs_its_result_documents() -> None:
    assert issues_of(step("KetThuc")) == [("/BuocXuLy/DanhSachGiayToKetQua", "ministry:results-required")]
    assert ministry_steps.to_canonical(parse_xml(step("KetThuc", documents=DOC))).status == 9


def test_errors_name_the_ministry_elements() -> None:
    assert issues_of(step("DaXong")) == [("/BuocXuLy/LoaiBuoc", "xsd:enumeration")]
    assert issues_of(step(at="2025-11-24 10:05")) == [("/BuocXuLy/ThoiDiem", "xsd:pattern")]
    assert issues_of(step(at="20250231100500")) == [("/BuocXuLy/ThoiDiem", "ministry:time")]  # no 31 February
    bad_date = step().replace(b"251123-0042", b"250231-0042")
    assert issues_of(bad_date) == [("/BuocXuLy/MaHoSo", "dossier-code")]
    missing = step().replace(b"<NguoiXuLy>Tr\xe1\xba\xa7n Th\xe1\xbb\x8b B\xc3\xacnh</NguoiXuLy>", b"")
    assert [rule for _, rule in issues_of(missing)] == ["xsd:element-content"]
    assert issues_of(b'<dossierStatus xmlns="urn:lienthong:packet:1"/>') == [("/dossierStatus", "root-element")]


def test_registered_as_a_known_profile() -> None:
    assert "ministry-steps" in KNOWN_PROFILES and "canonical" in KNOWN_PROFILES
    mapping = mappings.inbound_mapping("ministry-steps", "dossier.status")
    assert mapping is ministry_steps.MAPPING and mapping.root == f"{{{NS}}}BuocXuLy"
    assert mappings.inbound_mapping("canonical", "dossier.status") is None
    assert mappings.inbound_mapping("ministry-steps", "dossier.sync") is None
    assert mappings.inbound_for_root("dossier.status", mapping.root) is mapping



"""The simulators speak the partners' sourced formats (../shared/PARTNER-FORMATS.md §1 national portal, §5 VBDLIS)
and strictly: a record lacking a field the sources always send, or of the wrong type, is refused naming the field;
records built field by field from the sheet (tests/golden/simulators, named by source) are accepted."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.devtools.partner_http import PartnerRequestHandler
from hub.devtools.simulators import NationalPortalSimulator, StepRefusedError, VbdlisSimulator
from hub.devtools.simulators.portal_records import checked_fields, record_issues, schema
from hub.devtools.simulators.vbdlis_steps import STEPS

GOLDEN = Path(__file__).parents[1] / "golden" / "simulators"
OC_RECORD = "dvcqg-DongBoHoSoMC.opencps.OC-DV-149-322.json"
FULL_RECORD = "dvcqg-DongBoHoSoMC.all-fields.OC-DV-149-322.TH-SI-36-221.TH-SS-114-339.json"
PROGRESS = "dvcqg-CapNhatTienDoHoSoMC.OC-DV-507-524.TH-SI-88-99.json"
UNIT = "000.00.00.H12"

# The sheet's field table, copied by hand from PARTNER-FORMATS.md §1 (not from the schema it checks).
SHEET_SYNC_FIELDS = {
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "ChuHoSo", "LoaiDoiTuong", "MaDoiTuong", "ThongTinKhac",
    "Email", "Fax", "SoDienThoai", "TrichYeuHoSo", "GhiChu", "ThongTinTra", "NgayTiepNhan", "NgayHenTra", "NgayTra",
    "NgayKetThucXuLy", "TrangThaiHoSo", "HinhThuc", "DonViXuLy", "KenhThucHien", "SoGiayToChuHoSo", "NgayNopHoSo",
    "NgayTuChoi", "NoiNopHoSo", "HoSoCoThanhPhanSoHoa", "TaiKhoanDuocXacThucVoiVNeID", "DuocThanhToanTrucTuyen",
    "DinhDanhCHS", "DSKetNoiCSDL", "TaiLieuNop", "DanhSachLePhi", "DanhSachTepDinhKemKhac", "DanhSachHoSoBoSung",
    "DanhSachGiayToKetQua",
}  # fmt: skip
SHEET_SYNC_OPTIONAL = {"ChuHoSo", "MaDoiTuong", "ThongTinKhac", "Fax", "GhiChu", "ThongTinTra", "NgayTra",
                       "NgayKetThucXuLy"}  # fmt: skip
SHEET_TH_ONLY = {"KenhThucHien", "SoGiayToChuHoSo", "NgayNopHoSo", "NgayTuChoi", "NoiNopHoSo", "HoSoCoThanhPhanSoHoa",
                 "TaiKhoanDuocXacThucVoiVNeID", "DuocThanhToanTrucTuyen", "DinhDanhCHS", "DSKetNoiCSDL"}  # fmt: skip
SHEET_PROGRESS_FIELDS = {"MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai",
                         "NgayBatDau", "NgayKetThucTheoQuyDinh"}  # fmt: skip


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the field list


def test_the_checked_field_list_is_the_sheets() -> None:
    """The schemas name exactly the sheet's fields; required = always sent by both sources; both goldens pass."""
    for service, fields in (("DongBoHoSoMC", SHEET_SYNC_FIELDS), ("CapNhatTienDoHoSoMC", SHEET_PROGRESS_FIELDS)):
        checked = checked_fields(service)
        print(f"\n{service}: required {', '.join(checked['required'])}")
        print(f"{service}: typed {', '.join(checked['typed'])}")
        assert set(schema(service)["properties"]) == fields
    assert set(checked_fields("DongBoHoSoMC")["required"]) == SHEET_SYNC_FIELDS - SHEET_SYNC_OPTIONAL - SHEET_TH_ONLY
    assert set(checked_fields("CapNhatTienDoHoSoMC")["required"]) == {"MaHoSo", "NguoiXuLy", "ThoiDiemXuLy",
                                                                      "NoiDungXuLy", "TrangThai"}  # fmt: skip
    assert record_issues("DongBoHoSoMC", golden(OC_RECORD)) == []
    full = golden(FULL_RECORD)
    assert record_issues("DongBoHoSoMC", full) == []
    assert SHEET_SYNC_FIELDS <= set(full)  # the full golden carries every field of the sheet
    assert record_issues("CapNhatTienDoHoSoMC", golden(PROGRESS)) == []


# ---------------------------------------------------------------- national portal, dvcqg/opencps


class PortalClient:
    """Calls the simulator the way the sheet says a client does (dstcode on every call, top-level parameters)."""

    def __init__(self, portal: NationalPortalSimulator) -> None:
        self.portal = portal
        self.http = httpx.Client(timeout=5, headers={"dstcode": portal.dstcode})
        answer = self.http.post(portal.login_url, json={"username": "lienthong", "password": "lienthong-demo"})
        self.session = answer.json()["session"]

    def call(self, service: str, *, share: bool = False, **params: Any) -> dict[str, Any]:
        url = self.portal.share_url if share else self.portal.integration_url
        body = {"session": self.session, "madonvi": UNIT, "service": service, **params}
        response = self.http.post(url, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def sync(self, records: list[Any], updating: bool = False) -> dict[str, Any]:
        return self.call("DongBoHoSoMC", isUpdating="True" if updating else "False", data=records)


@pytest.fixture
def portal() -> Iterator[NationalPortalSimulator]:
    with NationalPortalSimulator(dstcode="DST-TEST") as sim:
        yield sim


@pytest.fixture
def client(portal: NationalPortalSimulator) -> Iterator[PortalClient]:
    c = PortalClient(portal)
    yield c
    c.http.close()


def test_opencps_login_and_dstcode_on_every_call(portal: NationalPortalSimulator) -> None:
    login = {"username": "lienthong", "password": "lienthong-demo"}
    with httpx.Client(timeout=5) as http:
        assert http.post(portal.login_url, json=login).status_code == 403  # no dstcode, even at login
        assert http.post(portal.login_url, json=login, headers={"dstcode": "OTHER"}).status_code == 403
        wrong = http.post(portal.login_url, json={**login, "password": "x"}, headers={"dstcode": "DST-TEST"}).json()
        assert isinstance(wrong["error_code"], int) and wrong["error_code"] != 0 and "session" not in wrong
        answer = http.post(portal.login_url, json=login, headers={"dstcode": "DST-TEST"}).json()
        assert set(answer) == {"session", "error_code"} and answer["error_code"] == 0  # an int at login (OC-DV:1130)
        call = {"session": answer["session"], "madonvi": UNIT, "service": "TraCuuHoSo", "mahoso": "X"}
        assert http.post(portal.integration_url, json=call).status_code == 403  # a call without dstcode
        found = http.post(portal.integration_url, json=call, headers={"dstcode": "DST-TEST"}).json()
        assert found == {"result": []}  # not on the portal; result only (OC-DV:1933-1944)
        forged = http.post(portal.integration_url, json={**call, "session": "forged"}, headers={"dstcode": "DST-TEST"})
        assert forged.json()["error_code"] == portal.session_code
        portal.expire_sessions()
        expired = http.post(portal.integration_url, json=call, headers={"dstcode": "DST-TEST"}).json()
        assert expired["error_code"] == portal.session_code
    seen = portal.received()
    assert seen["logins"] == 1 and seen["dstcodes"][:3] == [None, "OTHER", "DST-TEST"]
    assert all("session" not in c for c in seen["calls"])


def test_opencps_dossier_services(portal: NationalPortalSimulator, client: PortalClient) -> None:
    record, progress = golden(OC_RECORD), golden(PROGRESS)
    code = record["MaHoSo"]
    unknown = client.sync([record], updating=True)
    assert unknown["error_code"] == "-1" and unknown["message"] == f"Hồ sơ {code} không tồn tại"
    assert client.call("CapNhatTienDoHoSoMC", data=[progress])["error_code"] == "-1"  # no such dossier yet
    assert client.sync([record]) == {"error_code": "0", "message": "Thành công"}
    assert client.call("TraCuuHoSo", mahoso=code)["result"] == [record]  # top-level lower-case mahoso
    old_style = client.call("TraCuuHoSo", data={"MaHoSo": code})
    assert old_style["error_code"] == "-1" and "mahoso" in old_style["message"]
    again = client.sync([record])
    assert again["error_code"] == "-1" and "đã tồn tại" in again["message"]
    assert client.sync([{**record, "TrangThaiHoSo": "4"}], updating=True)["error_code"] == "0"
    assert client.call("DongBoHoSoMC", data=[record])["error_code"] == "-1"  # no isUpdating
    assert client.call("DongBoHoSoMC", isUpdating=False, data=[record])["error_code"] == "-1"  # not "False"
    assert client.call("CapNhatTienDoHoSoMC", data=[progress])["error_code"] == "0"
    assert client.call("CapNhatTienDoHoSoMC", data=[progress])["error_code"] == "0"  # redelivered: kept once
    eleven = client.call("CapNhatTienDoHoSoMC", data=[progress] * 11)
    assert eleven["error_code"] == "-1" and "10" in eleven["message"]  # at most 10 a call (TH-SS)
    seen = portal.received()
    assert seen["records"][code]["TrangThaiHoSo"] == progress["TrangThai"] and len(seen["progress"][code]) == 1
    updating = [c["isUpdating"] for c in seen["calls"] if c["service"] == "DongBoHoSoMC"]
    assert updating == ["True", "False", "False", "True", None, False]

    # lookups answer result only, as the sources read them (OC-DV:1933-1944); an option adds error_code
    assert set(client.call("TraCuuHoSo", mahoso=code)) == {"result"}
    portal.control({"error_code_style": "int", "query_error_code": True})
    assert client.call("TraCuuHoSo", mahoso=code)["error_code"] == 0
    portal.control({"error_code_style": "00"})
    assert client.call("TraCuuHoSo", mahoso=code)["error_code"] == "00"
    portal.control({"query_error_code": False})
    portal.reject_next(1)
    assert client.sync([record], updating=True)["error_code"] == "-1"
    assert client.sync([record], updating=True)["error_code"] == "00"


def _without(record: dict[str, Any], field: str) -> dict[str, Any]:
    copied = copy.deepcopy(record)
    del copied[field]
    return copied


def _set(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(record)
    target = copied
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return copied


FULL = golden(FULL_RECORD)
REFUSED_SYNC = {
    "missing TenLinhVuc": (_without(FULL, "TenLinhVuc"), "data[0].TenLinhVuc"),
    "missing DonViXuLy": (_without(FULL, "DonViXuLy"), "data[0].DonViXuLy"),
    "missing the list DanhSachGiayToKetQua": (_without(FULL, "DanhSachGiayToKetQua"), "data[0].DanhSachGiayToKetQua"),
    "Gia as an int": (_set(FULL, "DanhSachLePhi.0.Gia", 75000), "data[0].DanhSachLePhi[0].Gia"),
    "TrangThaiHoSo as a number": (_set(FULL, "TrangThaiHoSo", 9), "data[0].TrangThaiHoSo"),
    "LoaiDoiTuong as a number": (_set(FULL, "LoaiDoiTuong", 1), "data[0].LoaiDoiTuong"),
    "SoLuong as a string": (_set(FULL, "DanhSachTepDinhKemKhac.0.SoLuong", "2"), "data[0].DanhSachTepDinhKemKhac[0]"
                            ".SoLuong"),
    "a personal ID in MaDoiTuong": (_set(FULL, "MaDoiTuong", "001085012345"), "data[0].MaDoiTuong"),
    "an old 9-digit ID in MaDoiTuong": (_set(FULL, "MaDoiTuong", "123456789"), "data[0].MaDoiTuong"),
    "an agency code in DonViXuLy": (_set(FULL, "DonViXuLy", "000.00.00.H12"), "data[0].DonViXuLy"),
    "an ISO date": (_set(FULL, "NgayHenTra", "2025-12-08"), "data[0].NgayHenTra"),
    "status 11": (_set(FULL, "TrangThaiHoSo", "11"), "data[0].TrangThaiHoSo"),
    "IsDeleted as a bool": (_set(FULL, "TaiLieuNop.0.IsDeleted", False), "data[0].TaiLieuNop[0].IsDeleted"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED_SYNC))
def test_opencps_refuses_a_record_not_as_sourced(portal: NationalPortalSimulator, client: PortalClient,
                                                 case: str) -> None:  # fmt: skip
    record, field = REFUSED_SYNC[case]
    answer = client.sync([golden(OC_RECORD), record])
    assert answer["error_code"] == "-1" and field.replace("data[0]", "data[1]") in answer["message"], answer
    assert portal.received()["records"] == {}  # all or nothing


def test_opencps_progress_record_checks(client: PortalClient) -> None:
    record, progress = golden(OC_RECORD), golden(PROGRESS)
    assert client.sync([record])["error_code"] == "0"
    for broken, field in ((_without(progress, "NguoiXuLy"), "NguoiXuLy"),
                          (_set(progress, "NguoiXuLy", "x" * 51), "NguoiXuLy"),
                          (_set(progress, "TrangThai", 4), "TrangThai"),
                          (_set(progress, "ThoiDiemXuLy", "2025-11-24T09:15:00"), "ThoiDiemXuLy")):  # fmt: skip
        answer = client.call("CapNhatTienDoHoSoMC", data=[broken])
        assert answer["error_code"] == "-1" and f"data[0].{field}" in answer["message"], answer
    extra = {**progress, "MaDonViXuLy": UNIT, "NgayBatDau": ""}  # a field the sheet does not name: allowed
    assert client.call("CapNhatTienDoHoSoMC", data=[extra])["error_code"] == "0"


def test_opencps_accepts_every_sourced_field_and_unknown_ones(portal: NationalPortalSimulator,
                                                              client: PortalClient) -> None:  # fmt: skip
    full = {**golden(FULL_RECORD), "DiaChiKhac": "a field the sheet does not name"}
    assert client.sync([full])["error_code"] == "0"
    assert portal.received()["records"][full["MaHoSo"]] == full


def test_a_dossier_already_on_the_portal(portal: NationalPortalSimulator, client: PortalClient) -> None:
    record = golden(OC_RECORD)
    portal.seed({"MaHoSo": record["MaHoSo"], "TrangThaiHoSo": "1"})
    assert client.call("TraCuuHoSo", mahoso=record["MaHoSo"])["result"] == [{"MaHoSo": record["MaHoSo"],
                                                                          "TrangThaiHoSo": "1"}]  # fmt: skip
    assert "đã tồn tại" in client.sync([record])["message"]
    assert client.sync([record], updating=True)["error_code"] == "0"


def test_catalogue_and_tech_id(client: PortalClient) -> None:
    assert set(client.call("LayDanhSachTTHC", share=True)) == {"result"}  # result only (OC-DV:1252-1259)
    procedures = client.call("LayDanhSachTTHC", share=True)["result"]
    assert {"MATTHC": "1.009994", "TENTTHC": "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ"} in procedures
    units = client.call("LayDanhMucCoQuan", share=True)["result"]
    assert units and all(set(u) == {"MADONVI", "TENDONVI", "CAPDONVI"} for u in units)
    fields = client.call("LayDanhMucLinhVuc", share=True)["result"]
    assert fields and all(set(f) == {"MALINHVUC", "TENLINHVUC", "MANGANH"} for f in fields)
    (procedure,) = client.call("LayThuTuc", maTTHC="1.009994")["result"]
    assert {"TENTTHC", "LINHVUCTHUCHIEN", "CACHTHUCTHUCHIEN", "THANHPHANHOSO"} <= set(procedure)
    assert set(procedure["LINHVUCTHUCHIEN"][0]) == {"MALINHVUC", "TENLINHVUC"}
    assert client.call("LayThuTuc", maTTHC="9.999999")["result"] == []
    assert client.call("LayDanhSachTTHC")["error_code"] == "-1"  # a share service at the integration endpoint
    assert client.call("LayThuTuc", share=True, maTTHC="1.009994")["error_code"] == "-1"
    tech = client.call("TraCuuTechID", provider="wso2is", mstorcmnd="001085012345")
    assert tech == {"result": [{"TECHNICALID": "8f1c2d3e-demo-0001"}]}  # result only (OC-DV:2937-2953)
    assert client.call("TraCuuTechID", provider="wso2is", mstorcmnd="000000000000")["result"] == []
    assert client.call("TraCuuTechID", provider="vneid", mstorcmnd="001085012345")["error_code"] == "-1"


# ---------------------------------------------------------------- national portal, dvcqg/proxy


def test_proxy_variant() -> None:
    record = golden(FULL_RECORD)  # a TH-style code (5 digits, TH-SS:219)
    progress = {**golden(PROGRESS), "MaHoSo": record["MaHoSo"]}
    with NationalPortalSimulator(variant="dvcqg/proxy") as proxy, httpx.Client(timeout=5) as http:
        inserted = http.post(proxy.proxy_url("insert"), json=[record]).json()  # a bare array, no session
        assert inserted["error_code"] == "0" and "thành công" in inserted["message"]
        exists = http.post(proxy.proxy_url("insert"), json=[record]).json()
        assert exists["error_code"] == "3" and "đã tồn tại" in exists["message"]  # TH-SS:497-510
        assert http.post(proxy.proxy_url("update"), json=[record]).json()["error_code"] == "0"
        assert http.post(proxy.proxy_url("progress"), json=[progress]).json()["error_code"] == "0"
        wrapped = http.post(proxy.proxy_url("insert"), json={"data": [record]}).json()
        assert wrapped["error_code"] == "-1"
        broken = http.post(proxy.proxy_url("update"), json=[_set(record, "DanhSachLePhi.0.Gia", 1)]).json()
        assert broken["error_code"] == "-1" and "data[0].DanhSachLePhi[0].Gia" in broken["message"]
        assert http.post(proxy.url + "x", json=[record]).status_code == 404
        seen = proxy.received()
        assert seen["variant"] == "dvcqg/proxy" and seen["progress"][record["MaHoSo"]] == [progress]
        assert [c["isUpdating"] for c in seen["calls"]][:3] == ["False", "False", "True"]


@pytest.mark.parametrize("case", list(REFUSED_SYNC))
def test_proxy_refuses_a_record_not_as_sourced(case: str) -> None:
    record, field = REFUSED_SYNC[case]
    with NationalPortalSimulator(variant="dvcqg/proxy") as proxy:
        answer = httpx.post(proxy.proxy_url("insert"), json=[record], timeout=5).json()
        assert answer["error_code"] == "-1" and field in answer["message"], answer
        assert proxy.received()["records"] == {}


# ---------------------------------------------------------------- VBDLIS


class _FakeProvince(PartnerRequestHandler):
    """Stands in for the hub's VBDLIS endpoint: records each request, answers ``server.answer``."""

    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, json.loads(body)))
        self.send_body(200, json.dumps(self.server.answer).encode())


@pytest.fixture
def province() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeProvince)
    server.seen, server.answer = [], {"Result": 1, "Message": "Thành công"}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("action", list(STEPS))
def test_vbdlis_sends_each_sourced_step(province: Any, action: str) -> None:
    body = golden(f"vbdlis-{action}.TH-BR-{action}Request.json")
    hub_url = f"http://127.0.0.1:{province.server_address[1]}"
    with VbdlisSimulator(hub_url=hub_url, version="2", security_code="s3cret") as vbdlis:
        result = vbdlis.send(action, body)
        assert result.accepted and result.well_formed
        assert province.seen == [(f"/api/v2/VBDLISs/{action}/s3cret", body)]  # TH-BV:3, TH-BC:64-176
        assert vbdlis.received()["pushed"][0]["url"].endswith(f"/{action}/***")  # the secret is not kept


@pytest.mark.parametrize(
    ("action", "field", "value"),
    [
        ("ChuyenHoSo", "SoBienNhan", None),
        ("ChuyenHoSo", "HanXuLy", "3"),
        ("YeuCauBoSungHoSo", "LaTamDung", None),
        ("YeuCauBoSungHoSo", "LaTamDung", "true"),
        ("NhanBoSungHoSo", "NgayHenTraMoi", "20251210170000"),
        ("KetThucHoSo", "TrangThaiKetThuc", "0"),
        ("KetThucHoSo", "DanhSachGiayToKetQua", [{"TenGiayTo": "GCN", "LinkFile": "https://x"}]),
        ("GuiKetQuaThue", "DanhSachThongBaoThue", [{"HoTenChu": "A"}]),
        ("TiepNhanHoSoChoMotCua", "TinhId", "38"),
    ],
)
def test_vbdlis_will_not_send_a_step_not_as_sourced(province: Any, action: str, field: str, value: Any) -> None:
    body = golden(f"vbdlis-{action}.TH-BR-{action}Request.json")
    broken = {k: v for k, v in body.items() if k != field} if value is None else {**body, field: value}
    with VbdlisSimulator(hub_url=f"http://127.0.0.1:{province.server_address[1]}") as vbdlis:
        with pytest.raises(StepRefusedError) as refused:
            vbdlis.send(action, broken)
        assert any(issue.startswith(field) for issue in refused.value.issues), refused.value.issues
        assert province.seen == []
        assert vbdlis.send(action, broken, strict=False).accepted  # sent anyway, to test the hub's refusals


def test_vbdlis_push_over_http_and_a_malformed_answer(province: Any) -> None:
    body = golden("vbdlis-YeuCauCapNhatHoSo.TH-BR-YeuCauCapNhatHoSoRequest.json")
    with VbdlisSimulator(hub_url=f"http://127.0.0.1:{province.server_address[1]}") as vbdlis:
        answer = httpx.post(f"{vbdlis.base_url}/_push", json={"action": "YeuCauCapNhatHoSo", "body": body}).json()
        assert answer["status"] == 200 and answer["answer"] == {"Result": 1, "Message": "Thành công"}
        refused = httpx.post(f"{vbdlis.base_url}/_push", json={"action": "KetThucHoSo", "body": body})
        assert refused.status_code == 400 and "NgayKetThuc: thiếu trường bắt buộc" in refused.json()["issues"]
        province.answer = {"message_id": "x", "status": "queued"}  # the hub's old 202 answer
        result = vbdlis.send("YeuCauCapNhatHoSo", body)
        assert not result.well_formed and not result.accepted


def test_vbdlis_answers_province_calls() -> None:
    tiepnhan = golden("vbdlis-province-tiepnhan.TH-BS-42.TH-BT-4-79.json")
    code = tiepnhan["SoBienNhan"]
    with VbdlisSimulator() as vbdlis, httpx.Client(timeout=5) as http:
        early = http.post(vbdlis.url + "capnhattrangthaibosunghoso", json={"SoBienNhan": code}).json()
        assert early["data"] == 0 and early["status"]["success"] is False  # never received
        answer = http.post(vbdlis.url + "tiepnhan", json=tiepnhan).json()
        assert answer["data"] == 1 and set(answer["status"]) == {"success", "code", "type", "time", "message"}
        for operation in ("capnhattrangthaibosunghoso", "capnhattrangthaitraketquahoso", "phanhoihososaiketqua"):
            assert http.post(vbdlis.url + operation, json={"SoBienNhan": code}).json()["data"] == 1
        broken_calls = [
            (_set(tiepnhan, "TinhId", "38"), "TinhId"),
            (_without(tiepnhan, "NgayHenTra"), "NgayHenTra"),
            (_set(tiepnhan, "DanhSachGiayToDinhKem.0.TapTin.data", "not base64!"), "TapTin.data"),
            (_set(tiepnhan, "DanhSachGiayToDinhKem.0.TapTin", "https://link"), "TapTin"),
        ]
        for broken, field in broken_calls:
            refused = http.post(vbdlis.url + "tiepnhan", json=broken).json()
            assert refused["data"] == 0 and field in refused["status"]["message"], refused
        seen = vbdlis.received()
        kept = seen["dossiers"][code]["DanhSachGiayToDinhKem"][0]["TapTin"]["data"]
        assert kept == "<24 Base64 characters>"
        assert [c["data"] for c in seen["calls"]] == [0, 1, 1, 1, 1, 0, 0, 0, 0]

"""The land registration software's (VBDLIS) messages as ``../shared/PARTNER-FORMATS.md`` §5 gives them, with a
strict check of each: the VBDLIS simulator refuses to send a step that lacks a sourced field or has the wrong
type, and refuses a province call the same way.

Source: the Thanh Hóa system only (no primary source): the province's endpoints per step, their request classes
(TH-BR ``*Request.cs``; TH-BC:64-176), file descriptors {TenGiayTo, KieuFile, LinkFile, SoBanSao, SoBanChinh}; the
province → VBDLIS calls ``tiepnhan``, ``capnhattrangthaibosunghoso``, ``capnhattrangthaitraketquahoso``,
``phanhoihososaiketqua`` (TH-BS:42, 76, 110, 144) with files inline {TenGiayTo, SoBanChinh, SoBanSao, TapTin{name,
data = Base64}} (TH-BT:4-79). Dates are .NET DateTime in JSON, ISO 8601 (an inference of the sheet).

Types the sheet gives: strings, ``HanXuLy`` a number, ``TinhId``/``HuyenId``/``XaId`` integers. Types INFERRED
from the .NET names (marked ``INFERRED``): ``La…`` flags booleans, ``TrangThaiKetThuc`` an integer (0 = result),
``SoBanSao``/``SoBanChinh`` integers; ``MaTrangThai``'s type is not known (a string or an integer is accepted).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?$")

# kinds: str, date, int, number, bool, code (str or int), files (descriptors), inline_files, tax_notices, object
Fields = dict[str, str]

#: VBDLIS → province, per action: (required, optional) fields and their kinds (TH-BR *Request.cs).
STEPS: dict[str, tuple[Fields, Fields]] = {
    "ChuyenHoSo": (  # handover (our old LuanChuyenHoSo)
        {"SoBienNhan": "str", "MaCanBoChuyen": "str", "MaCanBoNhan": "str", "MaTrangThai": "code"},
        {
            "LaTrangThaiChuyenLai": "bool",
            "NoiDungXuLy": "str",
            "NgayChuyen": "date",
            "HanXuLy": "number",
            "DanhSachTapTin": "files",
        },
    ),
    "YeuCauBoSungHoSo": (  # waiting for a supplement (ChoBoSung); LaTamDung: the clock is paused
        {"SoBienNhan": "str", "NgayChoBoSung": "date", "MaCanBoXuLy": "str", "LaTamDung": "bool"},
        {"GhiChu": "str", "TapTin": "files"},
    ),
    "NhanBoSungHoSo": (  # supplement received (DaBoSung) with the new appointment date
        {"SoBienNhan": "str", "NgayNhanBoSung": "date", "NgayHenTraMoi": "date"},
        {"GhiChu": "str", "TapTin": "files"},
    ),
    "KetThucHoSo": (  # finished (KetThuc); TrangThaiKetThuc 0 = a result, else returned/withdrawn
        {"SoBienNhan": "str", "NgayKetThuc": "date", "MaCanBoXuLy": "str", "TrangThaiKetThuc": "int"},
        {"GhiChu": "str", "DanhSachGiayToKetQua": "files"},
    ),
    "GuiKetQuaThue": (
        {"SoBienNhan": "str"},
        {"NguoiXuLy": "str", "NgayCoKetQuaThue": "date", "GhiChu": "str", "DanhSachThongBaoThue": "tax_notices"},
    ),
    "YeuCauCapNhatHoSo": ({}, {"SoBienNhan": "str", "MaCanBoXuLy": "str", "GhiChu": "str"}),
    "TiepNhanHoSoChoMotCua": (
        {
            "SoBienNhan": "str",
            "TinhId": "int",
            "HuyenId": "int",
            "XaId": "int",
            "NguoiTiepNhan": "str",
            "NgayTiepNhan": "date",
            "NgayHenTra": "date",
            "ThongTinNguoiNopDon": "object",
            "ThongTinQuyTrinh": "object",
            "DanhSachGiayToDinhKem": "files",
        },
        {"DiaChiTaiSan": "str", "ThongTinThuaDat": "object"},
    ),
    "ThongBaoNhapSaiThuTuc": ({"SoBienNhan": "str"}, {"MaCanBoXuLy": "str", "GhiChu": "str"}),
    "ThueChuyenTraHoSoDoSai": ({"SoBienNhan": "str"}, {"GhiChu": "str"}),
}

#: Province → VBDLIS (TH-BS:42, 76, 110, 144). ``tiepnhan`` carries the dossier (fields as TiepNhanHoSoChoMotCua,
#: files inline); the sheet gives no fields for the other three beyond the key, SoBienNhan.
PROVINCE_CALLS: dict[str, tuple[Fields, Fields]] = {
    "tiepnhan": (
        {
            "SoBienNhan": "str",
            "TinhId": "int",
            "HuyenId": "int",
            "XaId": "int",
            "NguoiTiepNhan": "str",
            "NgayTiepNhan": "date",
            "NgayHenTra": "date",
            "ThongTinNguoiNopDon": "object",
            "ThongTinQuyTrinh": "object",
            "DanhSachGiayToDinhKem": "inline_files",
        },
        {"DiaChiTaiSan": "str", "ThongTinThuaDat": "object"},
    ),
    "capnhattrangthaibosunghoso": ({"SoBienNhan": "str"}, {}),
    "capnhattrangthaitraketquahoso": ({"SoBienNhan": "str"}, {}),
    "phanhoihososaiketqua": ({"SoBienNhan": "str"}, {}),
}

FILE_DESCRIPTOR = {"TenGiayTo": "str", "KieuFile": "str", "LinkFile": "str", "SoBanSao": "int", "SoBanChinh": "int"}
TAX_NOTICE = {"HoTenChu": "str", "LoaiThue": "str", "SoThongBaoThue": "str", "DuongDanThongBaoThue": "str"}


def step_issues(action: str, body: object) -> list[str]:
    """Why ``body`` is not a sourced VBDLIS → province ``action`` message (empty: it is)."""
    if action not in STEPS:
        return [f"{action}: không phải bước VBDLIS đã biết ({', '.join(STEPS)})"]
    return _issues(body, *STEPS[action])


def province_call_issues(operation: str, body: object) -> list[str]:
    """Why ``body`` is not a sourced province → VBDLIS ``operation`` call (empty: it is)."""
    return _issues(body, *PROVINCE_CALLS[operation])


def _issues(body: object, required: Fields, optional: Fields, prefix: str = "") -> list[str]:
    if not isinstance(body, dict):
        return [f"{prefix or 'body'}: phải là đối tượng JSON"]
    issues = [f"{prefix}{name}: thiếu trường bắt buộc" for name in required if body.get(name) is None]
    for name, kind in {**required, **optional}.items():
        value = body.get(name)
        if value is not None:
            issues.extend(_kind_issues(f"{prefix}{name}", kind, value))
    return issues


def _kind_issues(path: str, kind: str, value: Any) -> list[str]:
    if kind == "files":
        items = value if isinstance(value, list) else [value]
        return [i for n, item in enumerate(items) for i in _issues(item, FILE_DESCRIPTOR, {}, f"{path}[{n}].")]
    if kind == "inline_files":
        if not isinstance(value, list):
            return [f"{path}: phải là danh sách"]
        return [i for n, item in enumerate(value) for i in _inline_file_issues(f"{path}[{n}]", item)]
    if kind == "tax_notices":
        if not isinstance(value, list):
            return [f"{path}: phải là danh sách"]
        return [i for n, item in enumerate(value) for i in _issues(item, TAX_NOTICE, {}, f"{path}[{n}].")]
    ok = {
        "str": isinstance(value, str),
        "date": isinstance(value, str) and bool(ISO_DATETIME.match(value)),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "code": isinstance(value, str | int) and not isinstance(value, bool),
        "object": isinstance(value, dict),
    }[kind]
    names = {"str": "chuỗi", "date": "ngày giờ ISO 8601", "int": "số nguyên", "number": "số", "bool": "true/false",
             "code": "mã (chuỗi hoặc số)", "object": "đối tượng"}  # fmt: skip
    return [] if ok else [f"{path}: phải là {names[kind]}"]


def _inline_file_issues(path: str, item: object) -> list[str]:
    issues = _issues(item, {"TenGiayTo": "str", "SoBanChinh": "int", "SoBanSao": "int", "TapTin": "object"}, {},
                     f"{path}.")  # fmt: skip
    file = item.get("TapTin") if isinstance(item, dict) else None
    if isinstance(file, dict):
        issues += _issues(file, {"name": "str", "data": "str"}, {}, f"{path}.TapTin.")
        if isinstance(file.get("data"), str):
            try:
                base64.b64decode(file["data"], validate=True)
            except (binascii.Error, ValueError):
                issues.append(f"{path}.TapTin.data: không phải Base64")
    return issues

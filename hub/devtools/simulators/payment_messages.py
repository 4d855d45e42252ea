"""How the payment platform simulator checks what the province sends and what it answers a CONFIRM with, built
field by field from ``../shared/PARTNER-FORMATS.md`` §3 and never from the hub's own mapping, so a message the
hub gets wrong is refused as the real platform would.

Strict where the sources are: INIT's every field a string (``SoTien`` too: OC-PI:1429; TH-PI:14), ``PhienBan``
"1.0.6" and ``NgonNgu`` "vi-VN" (TH-PI:10-35), ``MaTienTe`` "VND", ``ThoiGianGD`` ``yyyyMMddHHmmss``; the full
``ThongTinBienLai`` (OC-PI:1466-1598; TH-PI:40-100): ``MaDichVu`` "1"/"2" (OC sends an int: accepted),
``MaDonVi``/``TenDonVi``/``MaHoSo`` not empty when it is 2 (OC-PI:1474 "bb khi madichvu = 2"), the payer's
``NoiDungThanhToan``/``HoTenNguoiNop``/``SoCMNDNguoiNop`` not empty (OC-PI:1579 "bb"; TH-PS:121),
``PhiLePhi`` items with ``LoaiPhiLePhi`` "1"/"2" (OC-PT:103-104), ``DSKhoanNop`` items ``{NoiDung, SoTien}``.
QUERY and GET_BILL (TH-PC:45-59; TH-PB:10-15): their five fields, strings. Fields the sources do not name are
allowed (real messages carry more). A CONFIRM answer (OC-PU:169-180; TH-PCH:126-131): MaLoi "00"/"99", MoTaLoi,
MaDoiTac, MaThamChieu, ThoiGianGD and the CONFIRM's MaXacThuc echoed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERSION = "1.0.6"  # TH-PI:10-35
LANGUAGE = "vi-VN"  # TH-PI:10-35
TIME = re.compile(r"^(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$")
DIGITS = re.compile(r"^[0-9]+$")

INIT_FIELDS = (
    "LoaiBanTin",
    "PhienBan",
    "MaDoiTac",
    "MaThamChieu",
    "SoTien",
    "LoaiHinhThanhToan",
    "MaKenhThanhToan",
    "MaThietBi",
    "NgonNgu",
    "MaTienTe",
    "MaNganHang",
    "ThongTinGiaoDich",
    "ThoiGianGD",
    "Ip",
    "MaXacThuc",
)  # OC-PI:1422-1462; TH-PI:10-35
QUERY_FIELDS = ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD", "MaXacThuc")  # TH-PC:45-59
BILL_NAMES = (
    "MaDVC",
    "TenDVC",
    "MaTTHC",
    "TenTTHC",
    "MaDonVi",
    "TenDonVi",
    "MaHoSo",
    "TKThuHuong",
    "MaNHThuHuong",
    "TenTKThuHuong",
    "MaLoaiHinhThuPhat",
    "TenLoaiHinhThuPhat",
    "MaCoQuanQD",
    "TenCoQuanQD",
    "KhoBac",
    "NgayQD",
    "SoQD",
    "ThoiGianViPham",
    "DiaDiemViPham",
    "TenNguoiViPham",
    "NoiDungThanhToan",
    "HoTenNguoiNop",
    "SoCMNDNguoiNop",
    "DiaChiNguoiNop",
)  # OC-PI:1466-1598; TH-PI:40-100
BILL_OPTIONAL = ("HuyenNguoiNop", "TinhNguoiNop", "TaiKhoanThuNSNN")  # "kbb" (not required), OC-PI:1594-1596
REQUIRED_FOR_FEES = ("MaDonVi", "TenDonVi", "MaHoSo")  # "bb khi madichvu = 2", OC-PI:1474-1478
#: "bb" (OC-PI:1579-1583); TH fills SoCMNDNguoiNop with "000000000" when the payer has none (TH-PS:121)
PAYER_REQUIRED = ("NoiDungThanhToan", "HoTenNguoiNop", "SoCMNDNguoiNop")
FEE_KINDS = ("1", "2")  # LoaiPhiLePhi: phí, lệ phí (OC-PT:103-104)
ANSWER_FIELDS = ("MaLoi", "MoTaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD", "MaXacThuc")  # OC-PU:169-180


@dataclass(frozen=True)
class MessageIssue:
    """One reason the platform refuses a message: ``field`` is its path (``ThongTinBienLai.PhiLePhi[0].SoTien``)."""

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _string(issues: list[MessageIssue], data: Mapping[str, Any], name: str, where: str = "") -> str | None:
    path = f"{where}{name}"
    if name not in data:
        issues.append(MessageIssue(path, "required", "thiếu trường bắt buộc"))
        return None
    value = data[name]
    if not isinstance(value, str):
        issues.append(MessageIssue(path, "type", f"phải là chuỗi (string), không phải {type(value).__name__}"))
        return None
    return value


def _amount(issues: list[MessageIssue], data: Mapping[str, Any], name: str, where: str, *, number_ok: bool) -> None:
    value = data.get(name)
    path = f"{where}{name}"
    if name not in data:
        issues.append(MessageIssue(path, "required", "thiếu trường bắt buộc"))
    elif isinstance(value, bool) or not (isinstance(value, str) or (number_ok and isinstance(value, int))):
        issues.append(MessageIssue(path, "type", "phải là chuỗi (string) số tiền"))
    elif not DIGITS.fullmatch(str(value)):
        issues.append(MessageIssue(path, "pattern", "phải là số tiền nguyên (đồng)"))


def _equals(issues: list[MessageIssue], value: str | None, name: str, expected: str) -> None:
    if value is not None and value != expected:
        issues.append(MessageIssue(name, "enum", f"giá trị {value!r} không hợp lệ (phải là {expected!r})"))


def _time(issues: list[MessageIssue], value: str | None, name: str = "ThoiGianGD") -> None:
    if value is not None and not TIME.fullmatch(value):
        issues.append(MessageIssue(name, "pattern", "sai định dạng (yyyyMMddHHmmss)"))


def init_issues(message: Mapping[str, Any]) -> list[MessageIssue]:
    """Every reason the platform refuses an INIT (the checksum is checked apart, with the partner's secret)."""
    issues: list[MessageIssue] = []
    values = {name: _string(issues, message, name) for name in INIT_FIELDS if name != "SoTien"}
    _amount(issues, message, "SoTien", "", number_ok=False)
    _equals(issues, values["LoaiBanTin"], "LoaiBanTin", "INIT")
    _equals(issues, values["PhienBan"], "PhienBan", VERSION)
    _equals(issues, values["NgonNgu"], "NgonNgu", LANGUAGE)
    _equals(issues, values["MaTienTe"], "MaTienTe", "VND")
    _time(issues, values["ThoiGianGD"])
    reference = values["MaThamChieu"]
    if reference is not None and not 0 < len(reference) <= 255:  # TH-PC:52-53 (MaxLength 255)
        issues.append(MessageIssue("MaThamChieu", "length", "độ dài 1–255 ký tự"))
    bill = message.get("ThongTinBienLai")
    if not isinstance(bill, Mapping):
        issues.append(
            MessageIssue("ThongTinBienLai", "required" if bill is None else "type", "thiếu thông tin biên lai")
        )
        return issues
    issues.extend(_bill_issues(bill))
    return issues


def _bill_issues(bill: Mapping[str, Any]) -> list[MessageIssue]:
    issues: list[MessageIssue] = []
    where = "ThongTinBienLai."
    service = bill.get("MaDichVu")
    if "MaDichVu" not in bill:
        issues.append(MessageIssue(f"{where}MaDichVu", "required", "thiếu trường bắt buộc"))
    elif isinstance(service, bool) or str(service) not in ("1", "2") or not isinstance(service, str | int):
        issues.append(MessageIssue(f"{where}MaDichVu", "enum", f"giá trị {service!r} không hợp lệ (1 hoặc 2)"))
    values = {name: _string(issues, bill, name, where) for name in BILL_NAMES}
    for name in BILL_OPTIONAL:
        if name in bill and not isinstance(bill[name], str):
            issues.append(MessageIssue(f"{where}{name}", "type", "phải là chuỗi (string)"))
    required = [*PAYER_REQUIRED, *(REQUIRED_FOR_FEES if str(service) == "2" else ())]
    for name in required:
        if values.get(name) == "":
            issues.append(MessageIssue(f"{where}{name}", "required", "không được để trống"))
    fees = bill.get("PhiLePhi")
    if not isinstance(fees, list) or not fees:
        issues.append(MessageIssue(f"{where}PhiLePhi", "required", "phải là danh sách không rỗng"))
    else:
        for n, fee in enumerate(fees):
            at = f"{where}PhiLePhi[{n}]."
            if not isinstance(fee, Mapping):
                issues.append(MessageIssue(at[:-1], "type", "phải là đối tượng"))
                continue
            kind = _string(issues, fee, "LoaiPhiLePhi", at)
            if kind is not None and kind not in FEE_KINDS:
                issues.append(
                    MessageIssue(f"{at}LoaiPhiLePhi", "enum", f"giá trị {kind!r} không hợp lệ (1 phí, 2 lệ phí)")
                )
            _string(issues, fee, "MaPhiLePhi", at)
            _string(issues, fee, "TenPhiLePhi", at)
            _amount(issues, fee, "SoTien", at, number_ok=True)  # TH a string, OC a long (OC-PI:1559)
    items = bill.get("DSKhoanNop")
    if not isinstance(items, list):
        issues.append(MessageIssue(f"{where}DSKhoanNop", "required", "phải là danh sách"))
    else:
        for n, item in enumerate(items):
            at = f"{where}DSKhoanNop[{n}]."
            if not isinstance(item, Mapping):
                issues.append(MessageIssue(at[:-1], "type", "phải là đối tượng"))
                continue
            _string(issues, item, "NoiDung", at)
            _amount(issues, item, "SoTien", at, number_ok=False)
    return issues


def query_issues(message: Mapping[str, Any], kind: str) -> list[MessageIssue]:
    """Every reason the platform refuses a QUERY or GET_BILL (TH-PC:45-59; TH-PB:10-15)."""
    issues: list[MessageIssue] = []
    values = {name: _string(issues, message, name) for name in QUERY_FIELDS}
    _equals(issues, values["LoaiBanTin"], "LoaiBanTin", kind)
    _equals(issues, values["PhienBan"], "PhienBan", VERSION)
    _time(issues, values["ThoiGianGD"])
    return issues


def answer_issues(answer: object, confirm: Mapping[str, Any], status: int | None) -> list[MessageIssue]:
    """Every way the province's answer to a CONFIRM differs from what the platform expects: HTTP 200 (OC-PA:293-306),
    ``MaLoi`` "00"/"99", ``MoTaLoi``, ``MaDoiTac``, and ``MaThamChieu``, ``ThoiGianGD``, ``MaXacThuc`` echoed."""
    issues: list[MessageIssue] = []
    if status != 200:
        issues.append(MessageIssue("HTTP", "status", f"HTTP {status}, not 200"))
    if not isinstance(answer, Mapping):
        return [*issues, MessageIssue("", "type", "the answer is not a JSON object")]
    for name in ANSWER_FIELDS:
        _string(issues, answer, name)
    code = answer.get("MaLoi")
    if isinstance(code, str) and code not in ("00", "99"):
        issues.append(MessageIssue("MaLoi", "enum", f"{code!r} is neither 00 nor 99"))
    for name in ("MaThamChieu", "ThoiGianGD", "MaXacThuc"):
        if isinstance(answer.get(name), str) and answer[name] != str(confirm.get(name, "")):
            issues.append(MessageIssue(name, "echo", f"{answer[name]!r} is not the CONFIRM's {confirm.get(name)!r}"))
    return issues

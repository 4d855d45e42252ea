"""The national portal simulator's procedure catalogue: demo data and the sourced answers of the catalogue services,
for the simulator to serve (``catalogue_answer``) so that ``hub catalogue sync`` runs against it.

Services and shapes as the fact sheet has them (PARTNER-FORMATS §1): at ``share_endpoint`` ``LayDanhSachTTHC`` →
``result[{MATTHC, TENTTHC}]`` (OC-DV:1252-1259), ``LayDanhMucCoQuan`` → ``result[{MADONVI, TENDONVI, CAPDONVI}]``
(OC-DV:534-558), ``LayDanhMucLinhVuc`` → ``result[{MALINHVUC, TENLINHVUC, MANGANH}]`` (OC-DV:712-741); at
``integration_endpoint`` ``LayThuTuc`` with ``maTTHC`` → ``result[0]`` with TENTTHC, LINHVUCTHUCHIEN[{MALINHVUC,
TENLINHVUC}], CACHTHUCTHUCHIEN, THANHPHANHOSO (OC-DV:171-186, 2503-2760). Every call also carries ``session`` and
``madonvi`` (OC-DV:1670-1676), which the simulator checks itself. ``error_code`` is answered as the string "0"
(TH-SI:33; OC-DV:2142 parses a string). The data are demo values (the canonical examples' procedure and unit),
not real catalogue entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.packets.examples import AGENCY_CODE, PROCEDURE_CODE

LIST_SERVICES = ("LayDanhSachTTHC", "LayDanhMucCoQuan", "LayDanhMucLinhVuc")  # at share_endpoint
PROCEDURE_SERVICE = "LayThuTuc"  # at integration_endpoint
CALL_KEYS = frozenset({"session", "madonvi", "service"})

FIELDS = [
    {"MALINHVUC": "XAY-DUNG", "TENLINHVUC": "Hoạt động xây dựng", "MANGANH": "XD"},
    {"MALINHVUC": "HO-TICH", "TENLINHVUC": "Hộ tịch", "MANGANH": "TP"},
    {"MALINHVUC": "DAT-DAI", "TENLINHVUC": "Đất đai", "MANGANH": "TNMT"},
]
PROCEDURES = {
    PROCEDURE_CODE: ("Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ", FIELDS[0]),
    "1.001193": ("Đăng ký khai sinh", FIELDS[1]),
    "1.004227": ("Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất", FIELDS[2]),
}
UNITS = [
    {"MADONVI": AGENCY_CODE, "TENDONVI": "UBND tỉnh (hệ thống một cửa, dữ liệu mẫu)", "CAPDONVI": "2"},
    {"MADONVI": "000.00.00.G10", "TENDONVI": "Văn phòng đăng ký đất đai (dữ liệu mẫu)", "CAPDONVI": "2"},
]


def procedure_record(code: str) -> dict[str, Any] | None:
    """LayThuTuc's ``result[0]`` for ``code`` (``None``: not in the demo catalogue)."""
    found = PROCEDURES.get(code)
    if found is None:
        return None
    name, field = found
    return {
        "MATTHC": code,
        "TENTTHC": name,
        "LINHVUCTHUCHIEN": [{"MALINHVUC": field["MALINHVUC"], "TENLINHVUC": field["TENLINHVUC"]}],
        "CACHTHUCTHUCHIEN": [],
        "THANHPHANHOSO": [],
    }


def catalogue_answer(service: str, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The answer to a catalogue call (its session and madonvi already checked by the simulator), or ``None`` when
    ``service`` is no catalogue service. A call with other parameters than the sources send is refused
    (``error_code`` "-1", the simulator's choice: no refusal code is sourced)."""
    if service in LIST_SERVICES:
        if set(request) != CALL_KEYS:
            return _refused(f"{service} takes no parameters: {sorted(set(request) - CALL_KEYS)}")
        rows = {"LayDanhSachTTHC": [{"MATTHC": c, "TENTTHC": n} for c, (n, _) in PROCEDURES.items()],
                "LayDanhMucCoQuan": UNITS, "LayDanhMucLinhVuc": FIELDS}[service]  # fmt: skip
        return {"error_code": "0", "message": "", "result": rows}
    if service == PROCEDURE_SERVICE:
        if set(request) != CALL_KEYS | {"maTTHC"}:
            return _refused(f"LayThuTuc takes maTTHC only: {sorted(set(request) - CALL_KEYS)}")
        record = procedure_record(str(request["maTTHC"]))
        return {"error_code": "0", "message": "", "result": [] if record is None else [record]}
    return None


def _refused(message: str) -> dict[str, Any]:
    return {"error_code": "-1", "message": message}

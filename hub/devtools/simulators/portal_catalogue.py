"""The procedure catalogue the national portal simulator serves: ``LayDanhSachTTHC``, ``LayDanhMucCoQuan``,
``LayDanhMucLinhVuc`` (share endpoint) and ``LayThuTuc`` (integration endpoint).

The SHAPES are sourced (../shared/PARTNER-FORMATS.md §1): ``result[{MATTHC, TENTTHC}]`` (OC-DV:1252-1259),
``[{MADONVI, TENDONVI, CAPDONVI}]`` (OC-DV:534-558), ``[{MALINHVUC, TENLINHVUC, MANGANH}]`` (OC-DV:712-741), and
``LayThuTuc`` → ``result[0]`` with ``TENTTHC``, ``LINHVUCTHUCHIEN[{MALINHVUC, TENLINHVUC}]``, ``CACHTHUCTHUCHIEN``
(fees, durations), ``THANHPHANHOSO`` (OC-DV:171-186, 2503-2760).

Every VALUE below is INVENTED for the demo (codes, names, unit levels, fees, durations), and so are the item
shapes inside ``CACHTHUCTHUCHIEN`` and ``THANHPHANHOSO``, which the sources do not detail. Pass your own
``Catalogue`` to the simulator to serve other values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hub.packets.examples import AGENCY_CODE, PROCEDURE_CODE


def _procedure(code: str, name: str, field_code: str, field_name: str, days: str, fee: str,
               documents: list[str]) -> dict[str, Any]:  # fmt: skip
    """One LayThuTuc ``result[0]`` (sourced keys; invented inner shapes, marked in the module docstring)."""
    return {
        "MATTHC": code,
        "TENTTHC": name,
        "LINHVUCTHUCHIEN": [{"MALINHVUC": field_code, "TENLINHVUC": field_name}],
        "CACHTHUCTHUCHIEN": [  # invented inner shape: channel, duration, fee
            {
                "KENH": "1",
                "THOIGIAN": [
                    {
                        "THOIGIANGIAIQUYET": days,
                        "DONVITINH": "Ngày làm việc",
                        "PHILEPHI": [{"MAPHILEPHI": "LP01", "TENPHILEPHI": "Lệ phí", "SOTIEN": fee}],
                    }
                ],
            },
        ],
        "THANHPHANHOSO": [  # invented inner shape: one case with its documents
            {
                "TRUONGHOP": "Trường hợp chung",
                "GIAYTO": [
                    {"MAGIAYTO": f"GT{i:02d}", "TENGIAYTO": d, "SOBANCHINH": "1", "SOBANSAO": "0"}
                    for i, d in enumerate(documents, 1)
                ],
            },
        ],
    }


@dataclass
class Catalogue:
    """Procedures (each a ``LayThuTuc`` ``result[0]``), units and fields the simulator serves."""

    procedures: list[dict[str, Any]] = field(default_factory=list)
    units: list[dict[str, str]] = field(default_factory=list)
    fields: list[dict[str, str]] = field(default_factory=list)

    def procedure_list(self) -> list[dict[str, str]]:
        """``LayDanhSachTTHC``'s ``result``."""
        return [{"MATTHC": p["MATTHC"], "TENTTHC": p["TENTTHC"]} for p in self.procedures]

    def procedure(self, code: str) -> dict[str, Any] | None:
        """``LayThuTuc``'s ``result[0]`` for ``code`` (a copy), or None."""
        found = next((p for p in self.procedures if p["MATTHC"] == code), None)
        return copy.deepcopy(found)


def demo_catalogue() -> Catalogue:
    """A small catalogue with invented values (see the module docstring); the procedure, its field and the unit
    of the hub's packet examples are in it, so the demo's dossiers name a procedure the catalogue knows."""
    return Catalogue(
        procedures=[
            _procedure(
                PROCEDURE_CODE,
                "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
                "XAY-DUNG",
                "Hoạt động xây dựng",
                "15",
                "75000",
                ["Đơn đề nghị cấp giấy phép xây dựng", "Bản vẽ thiết kế xây dựng"],
            ),
            _procedure(
                "1.001193",
                "Đăng ký khai sinh",
                "HO-TICH",
                "Hộ tịch",
                "1",
                "0",
                ["Tờ khai đăng ký khai sinh", "Giấy chứng sinh"],
            ),
            _procedure(
                "1.004227",
                "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất",
                "DAT-DAI",
                "Đất đai",
                "10",
                "50000",
                ["Đơn đăng ký biến động đất đai", "Bản gốc Giấy chứng nhận đã cấp"],
            ),
        ],
        units=[
            {"MADONVI": AGENCY_CODE, "TENDONVI": "Ủy ban nhân dân tỉnh (demo)", "CAPDONVI": "1"},
            {"MADONVI": "000.01.00.H12", "TENDONVI": "Sở Xây dựng (demo)", "CAPDONVI": "2"},
            {"MADONVI": "000.02.00.H12", "TENDONVI": "Văn phòng Đăng ký đất đai (demo)", "CAPDONVI": "2"},
        ],
        fields=[
            {"MALINHVUC": "XAY-DUNG", "TENLINHVUC": "Hoạt động xây dựng", "MANGANH": "XD"},
            {"MALINHVUC": "HO-TICH", "TENLINHVUC": "Hộ tịch", "MANGANH": "TP"},
            {"MALINHVUC": "DAT-DAI", "TENLINHVUC": "Đất đai", "MANGANH": "TNMT"},
        ],
    )

"""Canonical ``dossier.sync`` / ``dossier.status`` → the real national portal's records (profiles ``dvcqg/*``).

Built field by field from the partner fact sheet (``PARTNER-FORMATS.md`` §1; each field cites its source): a
``DongBoHoSoMC`` record with every field OpenCPS sends (OC-DV:149-322) plus the newer ones the Thanh Hóa code sends
(TH-SS:114-339), and a ``CapNhatTienDoHoSoMC`` record with exactly the sourced progress fields (OC-DV:507-524;
TH-SI:88-99). Portal conventions: every scalar is a string (``SoLuong``/``LoaiGiayTo`` of the other papers are
integers, TH-SI); dates ``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, ``""`` when unknown (OC-DV:129-147; TH-SS:250-303).

What the mapping cannot know is left for the adapter, which has the connector's profile values and the portal:
``DonViXuLy`` ``""`` when the packet names no unit (the adapter sends the profile's ``unit_name``), ``MaDoiTuong``
``""`` when the packet has no portal account id (the adapter asks ``TraCuuTechID``). ``MaDoiTuong`` is never a
personal ID: that goes to ``SoGiayToChuHoSo`` and ``DinhDanhCHS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from pydantic import BaseModel

from hub.packets.dossier import DossierStatusUpdate, DossierSync
from mappings import OutboundMapping, register_outbound
from mappings.national_portal import RecordIssue, _field_path, to_portal_time

KIND = "dvcqg"

SERVICE_SYNC = "DongBoHoSoMC"  # OC-DV:2104-2108, 2133-2140
SERVICE_PROGRESS = "CapNhatTienDoHoSoMC"  # OC-DV:2146-2150, 2178-2182
SERVICE_LOOKUP = "TraCuuHoSo"  # OC-DV:1933-1944, 1988-1995
SERVICE_TECHID = "TraCuuTechID"  # OC-DV:2937-2953

#: The fields of a ``DongBoHoSoMC`` record as OpenCPS builds it (OC-DV:149-322), in its order: what a record of
#: ours must carry at least (the conformance test checks it).
OPENCPS_SYNC_FIELDS: tuple[str, ...] = (
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "ChuHoSo", "LoaiDoiTuong", "MaDoiTuong",
    "ThongTinKhac", "Email", "Fax", "SoDienThoai", "TrichYeuHoSo", "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo",
    "NgayTra", "ThongTinTra", "HinhThuc", "NgayKetThucXuLy", "DonViXuLy", "GhiChu",
    "TaiLieuNop", "DanhSachLePhi", "DanhSachTepDinhKemKhac", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua",
)  # fmt: skip
#: The newer fields only the Thanh Hóa code sends (TH-SS:123-124, 271, 305-337, 412-419), which we send too.
TH_SYNC_FIELDS: tuple[str, ...] = (
    "KenhThucHien", "SoGiayToChuHoSo", "NgayNopHoSo", "NgayTuChoi", "NoiNopHoSo", "HoSoCoThanhPhanSoHoa",
    "TaiKhoanDuocXacThucVoiVNeID", "DuocThanhToanTrucTuyen", "DinhDanhCHS",
)  # fmt: skip
#: The progress record's fields, exactly (OC-DV:507-524; TH-SI:88-99).
PROGRESS_FIELDS: tuple[str, ...] = (
    "MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai", "NgayBatDau",
    "NgayKetThucTheoQuyDinh",
)  # fmt: skip
#: The free-text DongBoHoSoMC fields (OC-DV:149-322) the profile value ``status_reason_field`` may name for a
#: synced dossier's reason (no source names the field that carries it).
REASON_FIELDS: tuple[str, ...] = ("GhiChu", "ThongTinKhac", "TrichYeuHoSo", "ThongTinTra")
#: TH cuts NguoiXuLy at 50 characters (TH-SS:363-368).
OFFICER_MAX = 50


def portal_date(value: datetime | None) -> str:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, ``""`` when unknown (OC-DV:129-147; TH-SS:250-303)."""
    return "" if value is None else to_portal_time(value)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _flag(value: bool | None) -> str:
    return "1" if value else "0"


def dossier_record(sync: DossierSync) -> dict[str, Any]:
    """A canonical ``dossier.sync`` as one ``DongBoHoSoMC`` record (OC-DV:149-322; TH-SS:114-339)."""
    applicant = sync.applicant
    id_number = applicant.personal_id or applicant.old_id
    record: dict[str, Any] = {
        "MaHoSo": sync.dossier_code,
        "MaTTHC": sync.procedure_code,
        "TenTTHC": sync.procedure_name,
        "MaLinhVuc": _text(sync.field_code),
        "TenLinhVuc": _text(sync.field_name),
        "ChuHoSo": applicant.name,
        "LoaiDoiTuong": str(applicant.type),  # "1" citizen, "2" business; TH "3", "4" (TH-SS:251-265)
        # the portal account's TechID, never an ID number (OC-DV:196-205); "" → the adapter asks TraCuuTechID
        "MaDoiTuong": _text(applicant.portal_account_id),
        "ThongTinKhac": _text(sync.other_info),
        "Email": _text(applicant.email),
        "Fax": _text(applicant.fax),
        "SoDienThoai": _text(applicant.phone),
        "TrichYeuHoSo": _text(sync.summary),
        "NgayTiepNhan": portal_date(sync.received_at),
        "NgayHenTra": portal_date(sync.due_at),
        "TrangThaiHoSo": str(sync.status),  # TH-SEED:610-619 codes, the canonical ones
        "NgayTra": portal_date(sync.returned_at),
        "ThongTinTra": _text(sync.return_info),
        "HinhThuc": "1" if sync.result_by_post else "0",  # "0" direct, "1" postal (OC-DV:216-220)
        "NgayKetThucXuLy": portal_date(sync.finished_at),
        "DonViXuLy": _text(sync.receiving_unit_name),  # the unit's NAME (OC-DV:222); "" → the profile's unit_name
        "GhiChu": _text(sync.note),
        # TH only (TH-SS:123-124, 271, 412-419)
        "KenhThucHien": str(sync.channel),
        "SoGiayToChuHoSo": _text(id_number),
        "NgayNopHoSo": portal_date(sync.submitted_at),
        "NgayTuChoi": portal_date(sync.rejected_at),
        "NoiNopHoSo": _text(sync.submission_place),  # TH sends "2"; its meaning is not sourced
        "HoSoCoThanhPhanSoHoa": _flag(any(d.digitised for d in sync.documents)),
        "TaiKhoanDuocXacThucVoiVNeID": _flag(applicant.vneid_verified),  # TH sends "0"
        "DuocThanhToanTrucTuyen": str(sync.online_payment or 0),  # "0"; "1" paid online; "3" not
        # [{LoaiDinhDanh "1" 12-digit / "2" 9-digit, SoDinhDanh}] (TH-SS:305-337); TH's placeholder "000000001"
        # for an unknown ID is not copied: no ID, no entry
        "DinhDanhCHS": [{"LoaiDinhDanh": "1" if applicant.personal_id else "2", "SoDinhDanh": id_number}]
        if id_number
        else [],
        # OC-DV:304-309; TH-SI:76-87
        "TaiLieuNop": [
            {
                "TepDinhKemId": _text(d.file_id),
                "TenTepDinhKem": d.name,
                "IsDeleted": "False",
                "MaThanhPhanHoSo": d.component_code,
                "DuongDanTaiTepTin": d.url,
                "DuocSoHoa": _flag(d.digitised),
                "DuocTaiSuDung": str(d.reuse or 0),
                "DuocLayTuKhoDMQG": _flag(d.from_national_repository),
                "MaKetQuaThayThe": _text(d.replaces_result_code),
            }
            for d in sync.documents
        ],
        # TH-SI:100-107, TH-SS:148: Gia is a string
        "DanhSachLePhi": [
            {
                "TenPhiLePhi": f.name,
                "MaPhiLePhi": f.code,
                "HinhThucThu": _text(f.collection),
                "Gia": str(f.amount),
                "LoaiPhiLePhi": _text(f.kind),  # "1" phí / "2" lệ phí (OC-PT:103-104)
            }
            for f in sync.fees
        ],
        # SoLuong and LoaiGiayTo are integers (TH-SI)
        "DanhSachTepDinhKemKhac": [
            {"TenGiayTo": p.name, "SoLuong": p.count, "LoaiGiayTo": p.paper_type} for p in sync.other_papers
        ],
        # TH-SI:187-203; the items of DanhSachGiayToBoSung / DanhSachLePhiBoSung are not described: sent empty
        "DanhSachHoSoBoSung": [
            {
                "HoSoBoSungId": s.supplement_id,
                "NguoiYeuCauBoSung": _text(s.requested_by),
                "NoiDungBoSung": _text(s.content),
                "NgayBoSung": portal_date(s.requested_at),
                "NguoiTiepNhanBoSung": _text(s.received_by),
                "ThongTinTiepNhan": _text(s.receipt_info),
                "NgayTiepNhanBoSung": portal_date(s.received_at),
                "TrangThaiBoSung": _text(s.status),
                "DanhSachGiayToBoSung": [],
                "DanhSachLePhiBoSung": [],
                "NgayHenTraTruoc": portal_date(s.previous_due_at),
                "NgayHenTraMoi": portal_date(s.new_due_at),
            }
            for s in sync.supplements
        ],
        # OC-DV:297-301; TH adds MaGiayToKetQua (TH-SI:213-221)
        "DanhSachGiayToKetQua": [
            {
                "TenGiayTo": r.name,
                "MaThanhPhanHoSo": _text(r.component_code),
                "GiayToId": _text(r.document_id),
                "DuongDanTepTinKetQua": r.url,
                "MaGiayToKetQua": r.code,
            }
            for r in sync.results
        ],
    }
    return record


def joined(*texts: str | None) -> str:
    """The non-empty texts joined with " — " (a step's content and its reason in one portal text field)."""
    return " — ".join(t.strip() for t in texts if t and t.strip())


def progress_record(update: DossierStatusUpdate) -> dict[str, Any]:
    """A canonical ``dossier.status`` as one ``CapNhatTienDoHoSoMC`` record: exactly the sourced fields
    (OC-DV:507-524; TH-SI:88-99). A rejection (3), withdrawal (7), stop (8) or correction travels as its status
    (``TrangThai``), its date (``ThoiDiemXuLy``, the update's ``at``) and its reason after the step's content in
    ``NoiDungXuLy``: the progress record has no other field for them (``NgayTuChoi`` is a DongBoHoSoMC field,
    carried by the dossier.sync's ``rejectedAt``)."""
    step = update.step
    return {
        "MaHoSo": update.dossier_code,
        "NguoiXuLy": step.actor[:OFFICER_MAX],  # ≤50 characters (TH-SS:363-368)
        "ChucDanh": _text(step.title),
        "ThoiDiemXuLy": portal_date(update.at),
        "PhongBanXuLy": _text(step.department),
        "NoiDungXuLy": joined(step.content, update.reason),
        "TrangThai": str(update.status),
        "NgayBatDau": "",  # OC sends "" (OC-DV:507-524)
        "NgayKetThucTheoQuyDinh": portal_date(update.step_due),
    }


class DvcqgCall(NamedTuple):
    """What a ``dvcqg/*`` adapter sends for one canonical packet: the service and its one ``data`` record.

    ``status_reason``: why a synced dossier was not received, withdrawn or stopped (``statusReason``). No source
    names the DongBoHoSoMC field for it, so the adapter puts it where the profile value ``status_reason_field``
    says (unsourced)."""

    service: str
    record: dict[str, Any]
    status_reason: str = ""


class DvcqgCalls(NamedTuple):
    """Several calls a ``dvcqg/*`` adapter makes for one canonical packet, in order (``supplement_calls``)."""

    calls: tuple[DvcqgCall, ...]


def is_supplement_step(update: DossierStatusUpdate) -> bool:
    """Whether a ``dossier.status`` changes what the dossier's record says beyond the progress record's fields: a
    supplement requested (5), or a new due date (a supplement received, VBDLIS NgayHenTraMoi)."""
    return update.status == 5 or update.new_due_at is not None


def supplement_calls(update: DossierStatusUpdate, dossier: DossierSync) -> DvcqgCalls:
    """A supplement step for the portal: its ``CapNhatTienDoHoSoMC`` progress record (OC-DV:507-524), then the
    dossier's ``DongBoHoSoMC`` record as it now stands — ``dossier`` is the provincial system's latest sync with the
    supplement rounds (``DanhSachHoSoBoSung``: NgayHenTraTruoc, NgayHenTraMoi, TH-SI:187-203), the current due date
    (``NgayHenTra``) and status the hub knows — since only that record carries them: the progress record's fields are
    exactly the sourced ones, none of them a supplement's."""
    return DvcqgCalls(
        (DvcqgCall(SERVICE_PROGRESS, progress_record(update)), DvcqgCall(SERVICE_SYNC, dossier_record(dossier)))
    )


def to_dvcqg(model: BaseModel) -> DvcqgCall:
    """The portal service and record for a canonical packet (``TypeError`` for other types)."""
    if isinstance(model, DossierSync):
        return DvcqgCall(SERVICE_SYNC, dossier_record(model), _text(model.status_reason).strip())
    if isinstance(model, DossierStatusUpdate):
        return DvcqgCall(SERVICE_PROGRESS, progress_record(model))
    raise TypeError(f"the national portal takes dossier.sync and dossier.status, not {type(model).__name__}")


OUTBOUND = {t: register_outbound(OutboundMapping(KIND, t, to_dvcqg)) for t in ("dossier.sync", "dossier.status")}


# ---------------------------------------------------------------- the answer's error_code


def error_code_text(value: object) -> str | None:
    """``error_code`` as text whatever its JSON type: OC-DV parses a string to an int (OC-DV:2142) and reads an
    int at login (OC-DV:1130), TH sends the string "0" (TH-SI:33); ``None`` when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def is_success(code: str, success_codes: Mapping[str, str]) -> bool:
    """Whether ``code`` means success in the profile's ``error_code`` table ("0"; "00", OC-DV23:1577), compared
    as numbers too ("000" is 0, as OC-DV's parse to int reads it)."""
    if success_codes.get(code) == "success":
        return True
    try:
        number = int(code)
    except ValueError:
        return False
    return any(meaning == "success" and _as_int(c) == number for c, meaning in success_codes.items())


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


# ---------------------------------------------------------------- the sourced JSON schemas

SCHEMA_FILES = {
    SERVICE_SYNC: "DongBoHoSoMC.schema.json",
    SERVICE_PROGRESS: "CapNhatTienDoHoSoMC.schema.json",
    "request": "request.schema.json",
    "reply": "reply.schema.json",
}


@cache
def portal_schema(name: str) -> dict[str, Any]:
    """A sourced JSON schema of ``schemas/national-portal/`` by service name (or ``"request"``, ``"reply"``)."""
    text = resources.files("schemas").joinpath("national-portal", SCHEMA_FILES[name]).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = portal_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_record(service: str, record: Any) -> list[RecordIssue]:
    """Every violation of the sourced schema of ``service``'s record (or ``"request"``/``"reply"``), stably
    ordered ([] = valid)."""
    errors = sorted(_validator(service).iter_errors(record), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [RecordIssue(_field_path(e), str(e.validator), e.message) for e in errors]

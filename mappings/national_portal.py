"""Canonical ``dossier.sync`` / ``dossier.status`` ⇄ the national portal's (Cổng DVCQG) JSON records.

Pure functions over the field tables below: ``dossier_to_portal`` builds one record of ``DongBoHoSoMC``'s
``data`` list, ``status_to_progress`` one record of ``CapNhatTienDoHoSoMC``'s; ``portal_to_dossier`` and
``progress_to_status`` read them back (lossless except sub-second precision, which the portal's dates drop).
The records are checked by this format's JSON schemas in ``schemas/national-portal/hub-v1/`` (``validate_record``).

This is the hub's own portal format, spoken to a national portal connector without a partner profile; the real
portal's record, as the sources describe it, is ``mappings.dvcqg`` (profiles ``dvcqg/opencps``, ``dvcqg/proxy``).

Conventions of the portal, kept here: codes (status, channel, applicant type) are strings (``"2"``); dates are
``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh local time (canonical times are UTC); amounts are whole đồng (integers);
the three lists of a dossier record are always present, possibly empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from mappings import OutboundMapping, register_outbound

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    PORTAL_TZ: tzinfo = ZoneInfo("Asia/Ho_Chi_Minh")
except (ImportError, ZoneInfoNotFoundError):  # no tz database on this machine: Vietnam has no DST since 1975
    PORTAL_TZ = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")

PORTAL_TIME_FORMAT = "%Y%m%d%H%M%S"

SERVICE_SYNC = "DongBoHoSoMC"
SERVICE_PROGRESS = "CapNhatTienDoHoSoMC"
SERVICE_LOOKUP = "TraCuuHoSo"

# The portal's error codes (``error_code`` of every answer; the adapter and the simulator share them).
OK = 0
INVALID_SESSION = 1
VALIDATION_ERROR = 2
ALREADY_EXISTS = 3
NOT_FOUND = 4
UNKNOWN_SERVICE = 5
UNIT_NOT_ALLOWED = 6
LOGIN_FAILED = 7
BAD_REQUEST = 8
INTERNAL_ERROR = 99
#: Which service carries which canonical message type.
SERVICE_FOR_TYPE: dict[str, str] = {"dossier.sync": SERVICE_SYNC, "dossier.status": SERVICE_PROGRESS}


class FieldMap(NamedTuple):
    """One portal field: its name, the canonical field it comes from (dotted path), and how it is converted."""

    portal: str
    canonical: str
    kind: str  # text | code (int <-> "N") | time (UTC datetime <-> local yyyyMMddHHmmss) | amount (int)


class ListMap(NamedTuple):
    """A portal list field built from a canonical list, item by item with ``fields``."""

    portal: str
    canonical: str
    fields: tuple[FieldMap, ...]


# ---------------------------------------------------------------- field tables (DongBoHoSoMC)

DOSSIER_FIELDS: tuple[FieldMap, ...] = (
    FieldMap("MaHoSo", "dossier_code", "text"),
    FieldMap("MaTTHC", "procedure_code", "text"),
    FieldMap("TenTTHC", "procedure_name", "text"),
    FieldMap("MaLinhVuc", "field_code", "text"),
    FieldMap("DonViXuLy", "receiving_unit", "text"),
    FieldMap("ChuHoSo", "applicant.name", "text"),
    FieldMap("LoaiDoiTuong", "applicant.type", "code"),
    FieldMap("MaDoiTuong", "applicant.personal_id", "text"),
    FieldMap("SoDienThoai", "applicant.phone", "text"),
    FieldMap("Email", "applicant.email", "text"),
    FieldMap("DiaChi", "applicant.address", "text"),
    FieldMap("KenhThucHien", "channel", "code"),
    FieldMap("NgayNopHoSo", "submitted_at", "time"),
    FieldMap("NgayTiepNhan", "received_at", "time"),
    FieldMap("NgayHenTra", "due_at", "time"),
    FieldMap("NgayKetThucXuLy", "finished_at", "time"),
    FieldMap("NgayTra", "returned_at", "time"),
    FieldMap("TrangThaiHoSo", "status", "code"),
)

DOSSIER_LISTS: tuple[ListMap, ...] = (
    ListMap(
        "TaiLieuNop",
        "documents",
        (
            FieldMap("MaThanhPhanHoSo", "component_code", "text"),
            FieldMap("TenTepDinhKem", "name", "text"),
            FieldMap("DuongDanTaiTepTin", "url", "text"),
            FieldMap("MaKiemTra", "sha256", "text"),
        ),
    ),
    ListMap(
        "DanhSachLePhi",
        "fees",
        (
            FieldMap("MaPhiLePhi", "code", "text"),
            FieldMap("TenPhiLePhi", "name", "text"),
            FieldMap("Gia", "amount", "amount"),
        ),
    ),
    ListMap(
        "DanhSachGiayToKetQua",
        "results",
        (
            FieldMap("MaGiayTo", "code", "text"),
            FieldMap("TenGiayTo", "name", "text"),
            FieldMap("DuongDanTepTinKetQua", "url", "text"),
        ),
    ),
)

# ---------------------------------------------------------------- field tables (CapNhatTienDoHoSoMC)

PROGRESS_FIELDS: tuple[FieldMap, ...] = (
    FieldMap("MaHoSo", "dossier_code", "text"),
    FieldMap("NguoiXuLy", "step.actor", "text"),
    FieldMap("ChucDanh", "step.title", "text"),
    FieldMap("ThoiDiemXuLy", "at", "time"),
    FieldMap("PhongBanXuLy", "step.department", "text"),
    FieldMap("NoiDungXuLy", "step.content", "text"),
    FieldMap("TrangThai", "status", "code"),
    FieldMap("NgayBatDau", "at", "time"),
    FieldMap("NgayKetThucTheoQuyDinh", "step_due", "time"),
    FieldMap("MaDonViXuLy", "source_system", "text"),
)

PROGRESS_LISTS: tuple[ListMap, ...] = (
    ListMap(
        "DanhSachTepDinhKem",
        "attachments",
        (
            FieldMap("TenTepDinhKem", "name", "text"),
            FieldMap("DuongDanTaiTepTin", "url", "text"),
            FieldMap("MaKiemTra", "sha256", "text"),
        ),
    ),
)


# ---------------------------------------------------------------- times


def to_portal_time(value: datetime) -> str:
    """An aware datetime as the portal's local ``yyyyMMddHHmmss`` (Asia/Ho_Chi_Minh)."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime cannot be placed in Asia/Ho_Chi_Minh; give it a time zone")
    return value.astimezone(PORTAL_TZ).strftime(PORTAL_TIME_FORMAT)


def from_portal_time(text: str) -> datetime:
    """The portal's local ``yyyyMMddHHmmss`` as an aware UTC datetime."""
    try:
        return datetime.strptime(text, PORTAL_TIME_FORMAT).replace(tzinfo=PORTAL_TZ).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):  # OverflowError: year 1 local is before year 1 in UTC
        raise MappingError(f"{text!r} is not a yyyyMMddHHmmss date") from None


# ---------------------------------------------------------------- the table-driven converter

_OUT: dict[str, Callable[[Any], Any]] = {
    "text": lambda v: v,
    "code": lambda v: str(int(v)),
    "time": to_portal_time,
    "amount": int,
}


def _in_code(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MappingError(f"{value!r} is not a numeric code") from None


_IN = {"text": lambda v: v, "code": _in_code, "time": from_portal_time, "amount": _in_code}


def _get(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part)
    return value


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _record(data: Mapping[str, Any], fields: Sequence[FieldMap], lists: Sequence[ListMap]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for field in fields:
        value = _get(data, field.canonical)
        if value is not None:
            record[field.portal] = _OUT[field.kind](value)
    for list_map in lists:
        record[list_map.portal] = [_record(item, list_map.fields, ()) for item in data.get(list_map.canonical) or ()]
    return record


def _canonical(record: Mapping[str, Any], fields: Sequence[FieldMap], lists: Sequence[ListMap]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in fields:
        value = record.get(field.portal)
        if value is not None and value != "":
            _put(data, field.canonical, _IN[field.kind](value))
    for list_map in lists:
        items = record.get(list_map.portal) or []
        if not isinstance(items, list):
            raise MappingError(f"{list_map.portal} must be a list")
        data[list_map.canonical] = [_canonical(item, list_map.fields, ()) for item in items]
    return data


# ---------------------------------------------------------------- public mapping functions


def dossier_to_portal(sync: DossierSync) -> dict[str, Any]:
    """A canonical ``dossier.sync`` as one ``DongBoHoSoMC`` record."""
    return _record(sync.model_dump(), DOSSIER_FIELDS, DOSSIER_LISTS)


def portal_to_dossier(record: Mapping[str, Any]) -> DossierSync:
    """A ``DongBoHoSoMC`` record read back as a canonical ``dossier.sync`` (raises ``MappingError``/
    ``pydantic.ValidationError``)."""
    return DossierSync.model_validate(_canonical(record, DOSSIER_FIELDS, DOSSIER_LISTS))


def status_to_progress(update: DossierStatusUpdate) -> dict[str, Any]:
    """A canonical ``dossier.status`` as one ``CapNhatTienDoHoSoMC`` record."""
    return _record(update.model_dump(), PROGRESS_FIELDS, PROGRESS_LISTS)


def progress_to_status(record: Mapping[str, Any]) -> DossierStatusUpdate:
    """A ``CapNhatTienDoHoSoMC`` record read back as a canonical ``dossier.status``."""
    return DossierStatusUpdate.model_validate(_canonical(record, PROGRESS_FIELDS, PROGRESS_LISTS))


class PortalRecord(NamedTuple):
    """What the national portal adapter sends for one canonical packet: the service and its one ``data`` record."""

    service: str
    record: dict[str, Any]


def to_portal(model: BaseModel) -> PortalRecord:
    """The portal service and record for a canonical packet (``TypeError`` for types the portal does not take);
    the national portal's outbound mapping for both types."""
    if isinstance(model, DossierSync):
        return PortalRecord(SERVICE_SYNC, dossier_to_portal(model))
    if isinstance(model, DossierStatusUpdate):
        return PortalRecord(SERVICE_PROGRESS, status_to_progress(model))
    raise TypeError(f"the national portal takes dossier.sync and dossier.status, not {type(model).__name__}")


KIND = "national_portal"
OUTBOUND = {t: register_outbound(OutboundMapping(KIND, t, to_portal)) for t in ("dossier.sync", "dossier.status")}


# ---------------------------------------------------------------- the portal's JSON schemas

#: The hub's own portal format (before partner profiles) keeps its schemas apart: ``schemas/national-portal/``
#: itself describes the sourced record (``mappings.dvcqg``).
LEGACY_SCHEMA_DIR = "hub-v1"
SCHEMA_FILES = {
    SERVICE_SYNC: "DongBoHoSoMC.schema.json",
    SERVICE_PROGRESS: "CapNhatTienDoHoSoMC.schema.json",
    "request": "request.schema.json",
}


@cache
def portal_schema(name: str) -> dict[str, Any]:
    """A JSON schema of ``schemas/national-portal/`` by service name (or ``"request"``)."""
    folder = resources.files("schemas").joinpath("national-portal", LEGACY_SCHEMA_DIR)
    text = folder.joinpath(SCHEMA_FILES[name]).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator, FormatChecker

    schema = portal_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


class RecordIssue(NamedTuple):
    """One schema violation: the field path (``TaiLieuNop[0].MaKiemTra``), the rule and the message."""

    field: str
    rule: str
    message: str


def _field_path(error) -> str:
    parts = list(error.absolute_path)
    if error.validator == "required":  # the missing property is named in the message, not the path
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "/"


def validate_record(service: str, record: Any) -> list[RecordIssue]:
    """Every violation of ``service``'s record schema, in a stable order ([] = valid)."""
    errors = sorted(_validator(service).iter_errors(record), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [RecordIssue(_field_path(e), str(e.validator), e.message) for e in errors]

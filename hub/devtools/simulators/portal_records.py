"""How the national portal simulator checks a record: the simulator's own JSON Schemas
(``schemas/national-portal/portal-sim-*.schema.json``), built field by field from ``../shared/PARTNER-FORMATS.md``
§1 (DongBoHoSoMC: OC-DV:149-322, TH-SI:36-75, TH-SS:114-339; CapNhatTienDoHoSoMC: OC-DV:507-524, TH-SI:88-99) and
never from the hub's own mapping, so that a record the hub gets wrong is refused as a real portal would.

Strict where the sources are: every named scalar a string; the fields both OpenCPS and the Thanh Hóa system always
send are required; the nested lists' items typed as sourced (``Gia`` a string, ``SoLuong``/``LoaiGiayTo``
integers); ``MaDoiTuong`` never a 9/12-digit personal ID; ``DonViXuLy`` a name, never an agency code; dates
``yyyyMMddHHmmss`` or ""; statuses 1..10. Fields the schema does not name are allowed (real records carry more).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SERVICE_SYNC = "DongBoHoSoMC"  # OC-DV:2104-2108
SERVICE_PROGRESS = "CapNhatTienDoHoSoMC"  # OC-DV:2146-2150
RECORD_SERVICES = (SERVICE_SYNC, SERVICE_PROGRESS)
MAX_PROGRESS_RECORDS = 10  # TH sends at most 10 progress records per call (TH-SS:528-627)

_SCHEMA_FILES = {
    SERVICE_SYNC: "portal-sim-DongBoHoSoMC.schema.json",
    SERVICE_PROGRESS: "portal-sim-CapNhatTienDoHoSoMC.schema.json",
}

# What a refusal says about the field it names (the portal's messages are Vietnamese; their wording is ours).
_NOT_MESSAGES = {
    "MaDoiTuong": "là mã tài khoản (TechID) trên Cổng, không phải số định danh cá nhân",
    "DonViXuLy": "là tên đơn vị xử lý, không phải mã đơn vị",
}


@dataclass(frozen=True)
class RecordIssue:
    """One reason a record is refused: ``field`` is its path (``data[0].DanhSachLePhi[0].Gia``)."""

    field: str
    rule: str
    message: str


@cache
def schema(service: str) -> dict[str, Any]:
    """The simulator's schema of one record of ``service``."""
    text = resources.files("schemas").joinpath("national-portal", _SCHEMA_FILES[service]).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(service: str) -> Draft202012Validator:
    return Draft202012Validator(schema(service))


def checked_fields(service: str) -> dict[str, list[str]]:
    """The fields a record of ``service`` is checked for: ``{"required": [...], "typed": [...]}`` (top level;
    nested lists as ``List[].Field``)."""
    definition = schema(service)
    typed: list[str] = []
    for name, spec in definition["properties"].items():
        typed.append(name)
        item = spec.get("items", {}) if spec.get("type") == "array" else {}
        typed.extend(f"{name}[].{field}" for field in item.get("properties", {}))
    return {"required": list(definition["required"]), "typed": typed}


def record_issues(service: str, record: object, index: int = 0) -> list[RecordIssue]:
    """Every reason the portal refuses ``record`` (the ``index``-th of the call's ``data``), most relevant first."""
    prefix = f"data[{index}]"
    errors = sorted(_validator(service).iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path])
    return [_issue(prefix, error) for error in errors]


def _issue(prefix: str, error: ValidationError) -> RecordIssue:
    path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    name = str(error.absolute_path[-1]) if error.absolute_path else ""
    rule = str(error.validator)
    if rule == "required":
        # one error per missing property, its name quoted in the message ("'MaHoSo' is a required property")
        named = [f for f in error.validator_value if error.message.startswith(repr(f))]
        field = f"{path}.{named[0]}" if named else path
        return RecordIssue(field, rule, f"{field}: thiếu trường bắt buộc")
    if rule == "type":
        kind = {"string": "chuỗi (string)", "integer": "số nguyên", "array": "danh sách", "object": "đối tượng"}
        return RecordIssue(path, rule, f"{path}: phải là {kind.get(str(error.validator_value), error.validator_value)}")
    if rule == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return RecordIssue(path, rule, f"{path}: giá trị {error.instance!r} không hợp lệ (cho phép: {allowed})")
    if rule == "not" or (rule == "allOf" and name in _NOT_MESSAGES):
        return RecordIssue(path, "not", f"{path}: {_NOT_MESSAGES.get(name, 'giá trị không hợp lệ')}")
    if rule == "pattern":
        hint = " (ngày giờ yyyyMMddHHmmss hoặc rỗng)" if "(19|20)" in str(error.validator_value) else ""
        return RecordIssue(path, rule, f"{path}: sai định dạng{hint}")
    if rule == "maxLength":
        return RecordIssue(path, rule, f"{path}: dài quá {error.validator_value} ký tự")
    return RecordIssue(path, rule, f"{path}: không hợp lệ ({error.message})")

"""Mapping between the canonical ``citizen.lookup`` / ``citizen.record`` and the population DB's SOAP messages
(``schemas/population-db.wsdl``, namespace ``http://dancuquocgia.bca``, operation ``TraCuuThongTinCongDan``).

Pure functions on plain dicts (what zeep takes as keyword arguments and what ``zeep.helpers.serialize_object``
gives back), so they are golden-tested without a network.

- ``to_request(lookup, integration_code=…)``: ``MaYeuCau`` = request id, ``MaDVC`` = procedure code,
  ``MaTichHop`` = the hub's integration code with the population DB, ``MaCanBo`` = officer id, ``SoDinhDanh``
  (12 digits) or ``SoCMND`` (9), ``HoVaTen``, ``NgayThangNamSinh`` = ``{NgayThangNam: yyyyMMdd}`` or ``{Nam: yyyy}``.
- ``from_reply(reply)``: ``MaKetQua`` ``0`` found (one ``CongdanCollection/CongDan``), ``1`` not found, ``2``
  mismatch (the ID exists but the name or birth date differs: no personal data is returned); any other code
  raises ``MappingError``. ``GioiTinh`` ``1`` male, ``2`` female, anything else other.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.citizen import Citizen, CitizenLookup, CitizenRecord, Gender, HouseholdHead, LookupResult
from hub.packets.common import Address
from mappings import OutboundMapping, register_outbound

NAMESPACE = "http://dancuquocgia.bca"
OPERATION = "TraCuuThongTinCongDan"

FOUND, NOT_FOUND, MISMATCH = "0", "1", "2"
RESULTS = {FOUND: LookupResult.FOUND, NOT_FOUND: LookupResult.NOT_FOUND, MISMATCH: LookupResult.MISMATCH}
GENDERS = {"1": Gender.MALE, "2": Gender.FEMALE}
GENDER_CODES = {Gender.MALE: "1", Gender.FEMALE: "2", Gender.OTHER: "0"}
ADDRESS_FIELDS = (("hometown", "QueQuan"), ("permanent_address", "ThuongTru"), ("current_address", "NoiOHienTai"))


# ---------------------------------------------------------------------------------------------- request


def to_request(lookup: BaseModel, *, integration_code: str | None = None) -> dict[str, Any]:
    """The ``TraCuuThongTinCongDan`` request for a canonical lookup (element order as in the WSDL); the outbound
    mapping of ``citizen.lookup``, ``MaTichHop`` left for the adapter when no ``integration_code`` is given."""
    if not isinstance(lookup, CitizenLookup):
        raise TypeError(f"the population DB takes citizen.lookup, not {type(lookup).__name__}")
    request: dict[str, Any] = {
        "MaYeuCau": lookup.request_id,
        "MaDVC": lookup.procedure_code,
        "MaTichHop": integration_code,
        "MaCanBo": lookup.officer_id,
    }
    if lookup.personal_id is not None:
        request["SoDinhDanh"] = lookup.personal_id
    else:
        request["SoCMND"] = lookup.old_id
    request["HoVaTen"] = lookup.full_name
    request["NgayThangNamSinh"] = (
        {"NgayThangNam": lookup.birth_date.strftime("%Y%m%d")}
        if lookup.birth_date is not None
        else {"Nam": f"{lookup.birth_year:04d}"}
    )
    return request


# ---------------------------------------------------------------------------------------------- reply


def _birth_date(value: Any) -> date:
    text = (value or {}).get("NgayThangNam") if isinstance(value, dict) else None
    if not isinstance(text, str) or len(text) != 8 or not text.isdigit():
        raise MappingError(f"NgayThangNamSinh/NgayThangNam {text!r} is not yyyyMMdd")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise MappingError(f"NgayThangNamSinh/NgayThangNam {text!r}: {exc}") from None


def _address(value: Any) -> Address | None:
    if not isinstance(value, dict) or not value.get("MaTinhThanh"):
        return None
    return Address(
        province_code=value["MaTinhThanh"],
        district_code=value.get("MaQuanHuyen") or None,
        ward_code=value.get("MaPhuongXa") or None,
        detail=value.get("ChiTiet") or None,
    )


def _household_head(value: Any) -> HouseholdHead | None:
    if not isinstance(value, dict) or not value.get("HoVaTen"):
        return None
    return HouseholdHead(
        full_name=value["HoVaTen"],
        personal_id=value.get("SoDinhDanh") or None,
        relationship=value.get("QuanHe") or None,
    )


def citizen_from(congdan: dict[str, Any]) -> Citizen:
    """One ``CongDan`` element (as a dict) → the canonical ``Citizen``."""
    try:
        return Citizen(
            personal_id=congdan["SoDinhDanh"],
            family_name=congdan["Ho"],
            middle_name=congdan.get("ChuDem") or None,
            given_name=congdan["Ten"],
            gender=GENDERS.get(str(congdan.get("GioiTinh")), Gender.OTHER),
            birth_date=_birth_date(congdan.get("NgayThangNamSinh")),
            **{field: _address(congdan.get(element)) for field, element in ADDRESS_FIELDS},
            household_head=_household_head(congdan.get("ChuHo")),
        )
    except KeyError as exc:
        raise MappingError(f"CongDan has no {exc.args[0]}") from None
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        if isinstance(exc, MappingError):
            raise
        raise MappingError(f"CongDan does not map to a citizen record: {exc}") from None


def from_reply(reply: dict[str, Any]) -> CitizenRecord:
    """The ``TraCuuThongTinCongDanResponse`` (as a dict) → ``citizen.record``."""
    code = str(reply.get("MaKetQua", ""))
    result = RESULTS.get(code)
    if result is None:
        raise MappingError(f"unknown MaKetQua {code!r}: {reply.get('MoTaKetQua') or ''}".strip())
    request_id = reply.get("MaYeuCau")
    if not isinstance(request_id, str) or not request_id:
        raise MappingError("the reply has no MaYeuCau")
    citizen = None
    if result is LookupResult.FOUND:
        people = (reply.get("CongdanCollection") or {}).get("CongDan") or []
        if isinstance(people, dict):
            people = [people]
        if len(people) != 1:
            raise MappingError(f"MaKetQua 0 with {len(people)} CongDan elements (expected one)")
        citizen = citizen_from(people[0])
    return CitizenRecord(request_id=request_id, result=result, citizen=citizen)


def congdan_of(citizen: Citizen) -> dict[str, Any]:
    """The reverse of ``citizen_from`` (the simulator answers with it; it also proves the mapping lossless)."""
    out: dict[str, Any] = {"SoDinhDanh": citizen.personal_id, "Ho": citizen.family_name}
    if citizen.middle_name:
        out["ChuDem"] = citizen.middle_name
    out["Ten"] = citizen.given_name
    out["GioiTinh"] = GENDER_CODES[citizen.gender]
    out["NgayThangNamSinh"] = {"NgayThangNam": citizen.birth_date.strftime("%Y%m%d")}
    for field, element in ADDRESS_FIELDS:
        address = getattr(citizen, field)
        if address is not None:
            out[element] = {
                k: v
                for k, v in (
                    ("MaTinhThanh", address.province_code),
                    ("MaQuanHuyen", address.district_code),
                    ("MaPhuongXa", address.ward_code),
                    ("ChiTiet", address.detail),
                )
                if v is not None
            }
    head = citizen.household_head
    if head is not None:
        out["ChuHo"] = {
            k: v
            for k, v in (("HoVaTen", head.full_name), ("SoDinhDanh", head.personal_id), ("QuanHe", head.relationship))
            if v is not None
        }
    return out


def returned_fields(record: CitizenRecord) -> list[str]:
    """The citizen fields a record discloses (element names), for the audit and the minimised message log."""
    if record.citizen is None:
        return []
    dumped = record.citizen.model_dump(by_alias=True, exclude_none=True)
    return list(dumped)


def strip_none(value: Any) -> Any:
    """A zeep-serialised reply without ``None`` members (zeep fills every optional element in)."""
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


KIND = "population_db"
OUTBOUND = register_outbound(OutboundMapping(KIND, "citizen.lookup", to_request))

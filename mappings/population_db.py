"""The population database's ``TraCuuThongTinCongDan`` (CSDL quốc gia về dân cư, C06) ↔ ``citizen.lookup`` /
``citizen.record``, as the sources build and read it (``../shared/PARTNER-FORMATS.md`` §2). Pure: no I/O.

Request (``to_request``, ``request_envelope``): the elements in the order OpenCPS writes them — ``MaYeuCau``,
``MaDVC``, ``MaTichHop``, ``MaCanBo``, ``SoDinhDanh`` first, then the rest (OC-QL2:197-245) — in a SOAP 1.1
envelope whose body element is the operation in ``http://dancuquocgia.bca`` (OC-QL2:200-206):

- ``MaYeuCau`` the lookup's request id (FE sends a timestamp, TH a prefix and seconds: any unique id);
- ``MaDVC`` the procedure's code, or its national service code from the profile's ``service_codes`` table, an
  unmapped procedure then refused as OpenCPS does (OC-QL2:180-188);
- ``MaTichHop`` the profile's ``integration_code``, ``"037"`` by default (FE:378; TH-CFG:6);
- ``MaCanBo`` the officer's code with the LGSP (the adapter's officer table) or the lookup's officer id;
- ``SoDinhDanh`` (12 digits) **or** ``SoCMND`` (9) (FE:387-391);
- ``HoVaTen`` upper case, diacritics stripped (FE:382, 599-611) — ``name_format``;
- ``NgayThangNamSinh`` with the child ``NgayThangNam`` (OC-QL:132-135) in the profile's ``birth_date_format``
  (FE builds ``yyyy-MM-dd``, FE:362-368), or ``Nam`` (yyyy) when only the year is known.

Reply (``reply_citizens``, ``from_reply``): ``Envelope/Body/CongdanCollection/CongDan``, no wrapper and no result
code; no ``CongDan`` (or no ``CongdanCollection``) is "not found" (FE:400-405, 481-489; TH-CDD:71-87). A
``CongDan`` (TH-CDD:5-69; FE:119-240) is read whole — ``HoVaTen{Ho, ChuDem, Ten}``, ``GioiTinh`` (1 male, 2 female,
FE:135), ``NgayThangNamSinh{NgayThangNam yyyyMMdd, Nam}``, the addresses ``QueQuan``/``ThuongTru``/``NoiOHienTai``
``{MaTinhThanh, MaQuanHuyen, MaPhuongXa, ChiTiet}``, ``SoCMND``, ``DanToc``, ``QuocTich``, the relatives ``Cha``,
``Me``, ``VoChong`` ``{HoVaTen, QuocTich, SoDinhDanh, SoCMND}``, ``ChuHo{HoVaTen, QuanHe, SoDinhDanh, SoCMND}`` — and
mapped to the canonical ``Citizen``: what a one-stop officer needs, plus the ``EXTRA_CITIZEN_FIELDS`` the
connector's policy may keep (``CitizenRecord.minimised``). ``TonGiao``, ``TinhTrangHonNhan``, ``NhomMau``,
``NoiDangKyKhaiSinh``, ``NguoiDaiDien``, ``SoSoHoKhau`` and any element no source names never leave this module.
Elements are matched by local name: the namespace of the reply's elements is not sourced.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from lxml import etree
from pydantic import BaseModel, ValidationError

from hub.errors import MappingError
from hub.packets.citizen import Citizen, CitizenLookup, CitizenRecord, Gender, HouseholdHead, LookupResult, Relative
from hub.packets.common import Address
from mappings import OutboundMapping, register_outbound
from mappings.profiles import ProfileValueError

KIND = "population_db"
NAMESPACE = "http://dancuquocgia.bca"  # OC-QL2:200-206; PARTNER-FORMATS §2
OPERATION = "TraCuuThongTinCongDan"  # OC-QC:6
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1 (OC-QL2:200)
#: The elements OpenCPS writes first, in this order; the rest follow (OC-QL2:197-245).
LEADING_ELEMENTS = ("MaYeuCau", "MaDVC", "MaTichHop", "MaCanBo", "SoDinhDanh")
DEFAULT_INTEGRATION_CODE = "037"  # FE:378; TH-CFG:6
NAME_FORMATS = ("upper-ascii", "upper-ascii-compact", "as-given")  # FE:382, 599-611
BIRTH_DATE_FORMATS = {"yyyy-MM-dd": "%Y-%m-%d", "yyyyMMdd": "%Y%m%d"}  # FE:362-368; FE:529-534
GENDERS = {"1": Gender.MALE, "2": Gender.FEMALE}  # FE:135
ADDRESS_FIELDS = (("hometown", "QueQuan"), ("permanent_address", "ThuongTru"), ("current_address", "NoiOHienTai"))
RELATIVE_FIELDS = (("father", "Cha"), ("mother", "Me"), ("spouse", "VoChong"))
_PERSONAL_ID, _OLD_ID, _CODE = re.compile(r"[0-9]{12}"), re.compile(r"[0-9]{9}"), re.compile(r"[A-Za-z0-9]{1,20}")


# ---------------------------------------------------------------------------------------------- options


def _pairs(text: str, key: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        left, sep, right = (part.strip() for part in item.partition(":"))
        if not sep or not left or not right:
            raise ProfileValueError(f"{key}: {item!r} is not <procedure code>:<MaDVC>", (key,))
        pairs[left] = right
    return pairs


@dataclass(frozen=True)
class RequestOptions:
    """A connector's constants for the request (its profile values ``integration_code``, ``service_codes``,
    ``name_format``, ``birth_date_format``); the defaults are the sourced ones."""

    integration_code: str = DEFAULT_INTEGRATION_CODE
    service_codes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    name_format: str = "upper-ascii"
    birth_date_format: str = "yyyy-MM-dd"

    @classmethod
    def from_profile(cls, values: Mapping[str, str]) -> RequestOptions:
        """The options of a profile's values (``ProfileSettings``); ``ProfileValueError`` for an unusable one."""
        code = values.get("integration_code", DEFAULT_INTEGRATION_CODE).strip()
        if not code:
            raise ProfileValueError("integration_code: MaTichHop cannot be empty", ("integration_code",))
        name_format = values.get("name_format", "upper-ascii").strip()
        if name_format not in NAME_FORMATS:
            raise ProfileValueError(f"name_format: {name_format!r} is not one of {', '.join(NAME_FORMATS)}",
                                    ("name_format",))  # fmt: skip
        date_format = values.get("birth_date_format", "yyyy-MM-dd").strip()
        if date_format not in BIRTH_DATE_FORMATS:
            known = ", ".join(BIRTH_DATE_FORMATS)
            raise ProfileValueError(f"birth_date_format: {date_format!r} is not one of {known}", ("birth_date_format",))
        return cls(
            integration_code=code,
            service_codes=MappingProxyType(_pairs(values.get("service_codes", ""), "service_codes")),
            name_format=name_format,
            birth_date_format=date_format,
        )

    def service_code(self, procedure_code: str) -> str:
        """``MaDVC`` for a procedure: from ``service_codes`` when the table is set (an unmapped procedure is refused,
        as OpenCPS refuses it, OC-QL2:180-188), else the procedure's own code."""
        if not self.service_codes:
            return procedure_code
        found = self.service_codes.get(procedure_code)
        if found is None:
            raise MappingError(f"procedure {procedure_code} has no MaDVC in the connector's service_codes")
        return found


DEFAULT_OPTIONS = RequestOptions()


# ---------------------------------------------------------------------------------------------- request


def strip_diacritics(text: str) -> str:
    """``text`` without Vietnamese diacritics, ``đ``/``Đ`` as ``d``/``D`` (what FE's convertString does, FE:599-611,
    for every combining mark)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def normalise_name(name: str, name_format: str = "upper-ascii") -> str:
    """``HoVaTen`` as the profile sends it: ``upper-ascii`` (upper case, no diacritics, single spaces; FE:382),
    ``upper-ascii-compact`` (the same without whitespace, as FE's convertString also strips it, FE:611) or
    ``as-given`` (spacing tidied only)."""
    tidy = " ".join(name.split())
    if name_format == "as-given":
        return tidy
    folded = strip_diacritics(tidy).upper()
    return folded.replace(" ", "") if name_format == "upper-ascii-compact" else folded


def to_request(
    lookup: BaseModel, options: RequestOptions = DEFAULT_OPTIONS, *, officer_code: str | None = None
) -> dict[str, Any]:
    """The ``TraCuuThongTinCongDan`` request of a canonical lookup, elements in the sourced order (a dict keeps it);
    the outbound mapping of ``citizen.lookup`` (sourced defaults; the adapter maps again with its profile's
    options and the officer's ``MaCanBo``). ``MappingError`` for a procedure ``service_codes`` does not map."""
    if not isinstance(lookup, CitizenLookup):
        raise TypeError(f"the population DB takes citizen.lookup, not {type(lookup).__name__}")
    request: dict[str, Any] = {
        "MaYeuCau": lookup.request_id,
        "MaDVC": options.service_code(lookup.procedure_code),
        "MaTichHop": options.integration_code,
        "MaCanBo": officer_code or lookup.officer_id,
    }
    if lookup.personal_id is not None:
        request["SoDinhDanh"] = lookup.personal_id
    else:
        request["SoCMND"] = lookup.old_id
    request["HoVaTen"] = normalise_name(lookup.full_name, options.name_format)
    if lookup.birth_date is not None:
        birth = {"NgayThangNam": lookup.birth_date.strftime(BIRTH_DATE_FORMATS[options.birth_date_format])}
    else:
        birth = {"Nam": f"{lookup.birth_year:04d}"}
    request["NgayThangNamSinh"] = birth
    return request


def _fill(parent: etree._Element, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        child = etree.SubElement(parent, f"{{{NAMESPACE}}}{key}")
        if isinstance(value, Mapping):
            _fill(child, value)
        else:
            child.text = str(value)


def request_envelope(request: Mapping[str, Any], operation: str = OPERATION) -> bytes:
    """The SOAP 1.1 envelope OpenCPS posts (OC-QL2:197-245): ``soapenv:Envelope`` with an empty ``Header``, the
    ``Body`` holding ``qldc:<operation>`` whose children, in ``request``'s order, are all in the namespace."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV, "qldc": NAMESPACE})
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    _fill(etree.SubElement(body, f"{{{NAMESPACE}}}{operation}"), request)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=False)


# ---------------------------------------------------------------------------------------------- reply


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def element_dict(element: etree._Element) -> Any:
    """An element as plain data, by local name: text for a leaf, a dict of its children otherwise (a repeated child
    becomes a list)."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        name, value = _local(child), element_dict(child)
        if name in out:
            out[name] = [*out[name], value] if isinstance(out[name], list) else [out[name], value]
        else:
            out[name] = value
    return out


def soap_body(envelope: etree._Element) -> etree._Element:
    """The ``Body`` of a SOAP 1.1 envelope; ``MappingError`` when ``envelope`` is none."""
    if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MappingError(f"the reply is not a SOAP 1.1 envelope (root {_local(envelope) or envelope.tag!r})")
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        raise MappingError("the reply's SOAP envelope has no Body")
    return body


def soap_fault(envelope: etree._Element) -> tuple[str, str] | None:
    """``(faultcode, faultstring)`` when ``envelope``'s Body is a SOAP 1.1 fault, else ``None``."""
    if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
        return None
    fault = envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if fault is None:
        return None
    return (fault.findtext("faultcode") or "").strip(), (fault.findtext("faultstring") or "").strip()


def reply_citizens(envelope: etree._Element) -> list[dict[str, Any]]:
    """The ``CongDan`` elements of a reply envelope, as plain data: ``Body/CongdanCollection/CongDan`` (FE:400-405;
    TH-CDD:71-87). A Body without ``CongdanCollection``, or a collection without ``CongDan``, holds none (FE:481-489);
    a Body holding anything else is not a reply (``MappingError``)."""
    body = soap_body(envelope)
    children = [c for c in body if isinstance(c.tag, str)]
    if not children:
        return []
    collection = next((c for c in children if _local(c) == "CongdanCollection"), None)
    if collection is None:
        raise MappingError(f"the reply's Body holds {_local(children[0])}, not CongdanCollection")
    found = []
    for child in collection:
        if isinstance(child.tag, str) and _local(child) == "CongDan":
            value = element_dict(child)
            found.append(value if isinstance(value, dict) else {})
    return found


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    """A code or ID kept only when it has the shape the canonical packet takes (an extra field never fails a
    lookup: it is left out instead)."""
    text = _text(value)
    return text if pattern.fullmatch(text) else None


def name_parts(value: Any) -> tuple[str, str | None, str]:
    """(family, middle, given) of ``HoVaTen``. The parts are ``Ho``, ``ChuDem``, ``Ten``; but FE and TH both show
    ``Ten`` as the full name (FE:119-240; TH-CD ``FullName = HoVaTen.Ten``), so a ``Ten`` of several words that
    starts with ``Ho`` (or comes without one) is read as the full name, family name first, given name last. A
    ``HoVaTen`` given as text (as relatives' are) is read the same way."""
    if isinstance(value, str):
        ho, dem, ten = "", "", value
    elif isinstance(value, dict):
        ho, dem, ten = (" ".join(_text(value.get(k)).split()) for k in ("Ho", "ChuDem", "Ten"))
    else:
        raise MappingError("CongDan has no HoVaTen")
    words = ten.split()
    if len(words) > 1 and (not ho or words[0].casefold() == ho.split()[0].casefold()):
        return words[0], " ".join(words[1:-1]) or None, words[-1]
    if not ho or not ten:
        raise MappingError("CongDan's HoVaTen lacks Ho or Ten")
    return ho, dem or None, ten


def _birth(value: Any) -> dict[str, Any]:
    """``birth_date`` from ``NgayThangNam`` (yyyyMMdd, FE:529-534), else ``birth_year`` from ``Nam``."""
    value = value if isinstance(value, dict) else {}
    text, year = _text(value.get("NgayThangNam")), _text(value.get("Nam"))
    if text:
        if len(text) != 8 or not text.isdigit():
            raise MappingError(f"NgayThangNamSinh/NgayThangNam {text!r} is not yyyyMMdd")
        try:
            return {"birth_date": date(int(text[:4]), int(text[4:6]), int(text[6:]))}
        except ValueError as exc:
            raise MappingError(f"NgayThangNamSinh/NgayThangNam {text!r}: {exc}") from None
    if len(year) == 4 and year.isdigit():
        return {"birth_year": int(year)}
    raise MappingError("CongDan has no NgayThangNamSinh (NgayThangNam or Nam)")


def _address(value: Any) -> Address | None:
    if not isinstance(value, dict) or not _text(value.get("MaTinhThanh")):
        return None
    return Address(
        province_code=_text(value["MaTinhThanh"]),
        district_code=_text(value.get("MaQuanHuyen")) or None,
        ward_code=_text(value.get("MaPhuongXa")) or None,
        detail=_text(value.get("ChiTiet")) or None,
    )


def _household_head(value: Any) -> HouseholdHead | None:
    if not isinstance(value, dict) or not _text(value.get("HoVaTen")):
        return None
    return HouseholdHead(
        full_name=_text(value["HoVaTen"]),
        personal_id=_matching(value.get("SoDinhDanh"), _PERSONAL_ID),
        relationship=_text(value.get("QuanHe")) or None,
    )


def _relative(value: Any) -> Relative | None:
    if not isinstance(value, dict) or not _text(value.get("HoVaTen")):
        return None
    return Relative(
        full_name=_text(value["HoVaTen"]),
        personal_id=_matching(value.get("SoDinhDanh"), _PERSONAL_ID),
        old_id=_matching(value.get("SoCMND"), _OLD_ID),
        nationality=_matching(value.get("QuocTich"), _CODE),
    )


def citizen_from(congdan: Mapping[str, Any]) -> Citizen:
    """One ``CongDan`` (as plain data) → the canonical ``Citizen``, every extra field filled where the reply has it
    (the connector's policy drops them later, ``CitizenRecord.minimised``)."""
    personal_id = _text(congdan.get("SoDinhDanh"))
    if not personal_id:
        raise MappingError("CongDan has no SoDinhDanh")
    family, middle, given = name_parts(congdan.get("HoVaTen"))
    try:
        return Citizen(
            personal_id=personal_id,
            family_name=family,
            middle_name=middle,
            given_name=given,
            gender=GENDERS.get(_text(congdan.get("GioiTinh")), Gender.OTHER),
            **_birth(congdan.get("NgayThangNamSinh")),
            **{name: _address(congdan.get(element)) for name, element in ADDRESS_FIELDS},
            household_head=_household_head(congdan.get("ChuHo")),
            old_id=_matching(congdan.get("SoCMND"), _OLD_ID),
            ethnicity=_matching(congdan.get("DanToc"), _CODE),
            nationality=_matching(congdan.get("QuocTich"), _CODE),
            **{name: _relative(congdan.get(element)) for name, element in RELATIVE_FIELDS},
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise MappingError(f"CongDan does not map to a citizen record: {problems}") from None


def from_reply(citizens: list[dict[str, Any]], lookup: CitizenLookup) -> CitizenRecord:
    """The ``citizen.record`` answering ``lookup`` from the reply's ``CongDan`` elements: none → ``not_found``, one
    → ``found`` (it must be the citizen asked about: its ``SoDinhDanh``, or ``SoCMND`` for an old-ID lookup), more
    → ``MappingError`` (the sources read one, TH-CDD:71-87)."""
    if not citizens:
        return CitizenRecord(request_id=lookup.request_id, result=LookupResult.NOT_FOUND)
    if len(citizens) > 1:
        raise MappingError(f"the reply holds {len(citizens)} CongDan elements (expected one)")
    (congdan,) = citizens
    asked, key = (lookup.personal_id, "SoDinhDanh") if lookup.personal_id else (lookup.old_id, "SoCMND")
    if _text(congdan.get(key)) != asked:
        raise MappingError(f"the reply's CongDan has another {key} than the one asked about")
    return CitizenRecord(request_id=lookup.request_id, result=LookupResult.FOUND, citizen=citizen_from(congdan))


def returned_fields(record: CitizenRecord) -> list[str]:
    """The citizen fields a record discloses (element names), for the audit and the minimised message log."""
    if record.citizen is None:
        return []
    return list(record.citizen.model_dump(by_alias=True, exclude_none=True))


def strip_none(value: Any) -> Any:
    """A zeep-serialised reply as plain data: no ``None`` members (zeep fills every optional element in) and no
    ``_raw_elements`` (the elements the WSDL does not name, which real replies may carry)."""
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None and k != "_raw_elements"}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


OUTBOUND = register_outbound(OutboundMapping(KIND, "citizen.lookup", to_request))

"""How the population database simulator checks what it receives, written from ``../shared/PARTNER-FORMATS.md`` §2
alone (never from the hub's adapter or mapping), so that a request the hub gets wrong is refused as the real
service, or the LGSP in front of it, would.

Strict where the sources agree:

- the body is a SOAP 1.1 envelope whose Body holds ``TraCuuThongTinCongDan`` in ``http://dancuquocgia.bca``, each
  child in that namespace (OC-QL2:197-245);
- ``MaYeuCau``, ``MaDVC``, ``MaTichHop``, ``MaCanBo`` come first, in that order, then ``SoDinhDanh`` when it is sent
  ("some key must order by this", OC-QL2:197-245); no element the sources do not send (OpenCPS strips its own
  keys before forwarding, OC-QL2:96-103);
- ``MaTichHop`` is the integration code the service knows ("037", FE:378; TH-CFG:6); ``MaDVC`` and ``MaCanBo`` are
  never empty (OpenCPS refuses to send without them, OC-QL2:180-188);
- ``SoDinhDanh`` (12 digits) **or** ``SoCMND`` (9), never both (FE:387-391);
- ``HoVaTen`` upper case without diacritics (FE:382, 599-611; spaces allowed or not, as FE strips them);
- ``NgayThangNamSinh`` holds ``NgayThangNam`` (``yyyy-MM-dd`` as FE builds it, FE:362-368, or ``yyyyMMdd`` as replies
  carry it, FE:529-534) or ``Nam`` (yyyy) (OC-QL:132-135).

The ``lgspaccesstoken`` header: Base64 of a JSON object with exactly ``AccessKey``, ``SecretKey``, ``AppName``,
``PartnerCode``, ``PartnerCodeCus`` (OC-QL:52-57).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1
NAMESPACE = "http://dancuquocgia.bca"  # PARTNER-FORMATS §2
OPERATION = "TraCuuThongTinCongDan"
#: Operations the service has besides the lookup (OC-QC:6-30): named, not simulated.
OTHER_OPERATIONS = frozenset({
    "XacMinhThongTinNhanThan", "CungCapThongTinCongDan", "XacThucThongTinCongDan", "XacMinhThongTinNguoiGiamHo",
    "XacMinhThongTinChuHo", "XacMinhThongTinNoiOHienTai", "CungCapThongTinHoGiaDinh", "CungCapThongTinNhomMau",
    "XacMinhTinhTrangHonNhan", "XacMinhTinhTrangChetMatTich",
})  # fmt: skip
LEADING = ("MaYeuCau", "MaDVC", "MaTichHop", "MaCanBo")  # OC-QL2:197-245
ELEMENTS = frozenset({*LEADING, "SoDinhDanh", "SoCMND", "HoVaTen", "NgayThangNamSinh"})
ACCESS_TOKEN_KEYS = ("AccessKey", "SecretKey", "AppName", "PartnerCode", "PartnerCodeCus")  # OC-QL:52-57
_NAME = re.compile(r"[A-Z]+( ?[A-Z]+)*")
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")


class Refused(Exception):
    """A request the service would not accept; ``str()`` is the (Vietnamese) reason it answers with."""


@dataclass(frozen=True)
class LookupRequest:
    """A ``TraCuuThongTinCongDan`` request that passed the checks."""

    fields: dict[str, str]
    birth_date: str | None  # yyyyMMdd
    birth_year: str | None

    @property
    def id_number(self) -> tuple[str, str]:
        """("SoDinhDanh" | "SoCMND", the number)."""
        if self.fields.get("SoDinhDanh"):
            return "SoDinhDanh", self.fields["SoDinhDanh"]
        return "SoCMND", self.fields["SoCMND"]


def fold_name(name: str) -> str:
    """A name as the service compares it: no diacritics (Đ as D), upper case, no whitespace — whichever of FE's forms
    (FE:599-611) or the written name it is given."""
    decomposed = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c) and not c.isspace()).upper()


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _birth(element: etree._Element) -> tuple[str | None, str | None]:
    children = [c for c in element if isinstance(c.tag, str)]
    if len(children) != 1 or etree.QName(children[0]).namespace != NAMESPACE:
        raise Refused("NgayThangNamSinh phải có đúng một trong NgayThangNam hoặc Nam")
    child, text = children[0], (children[0].text or "").strip()
    if _local(child) == "Nam":
        if not re.fullmatch(r"[0-9]{4}", text):
            raise Refused(f"Nam {text!r} không đúng định dạng yyyy")
        return None, text
    if _local(child) != "NgayThangNam":
        raise Refused(f"NgayThangNamSinh không có phần tử {_local(child)}")
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).strftime("%Y%m%d"), None
        except ValueError:
            continue
    raise Refused(f"NgayThangNam {text!r} không đúng định dạng yyyy-MM-dd hoặc yyyyMMdd")


def lookup_request(
    root: etree._Element, *, integration_codes: frozenset[str], strict_names: bool = True
) -> LookupRequest:
    """The checked request of a posted envelope, or ``Refused`` saying why the service refuses it."""
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise Refused("Yêu cầu không phải SOAP 1.1 Envelope")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    operations = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(operations) != 1:
        raise Refused("SOAP Body phải chứa đúng một thao tác")
    operation = operations[0]
    name = etree.QName(operation)
    if name.namespace != NAMESPACE:
        raise Refused(f"Thao tác {name.localname} không thuộc namespace {NAMESPACE}")
    if name.localname in OTHER_OPERATIONS:
        raise Refused(f"Thao tác {name.localname} không được mô phỏng")
    if name.localname != OPERATION:
        raise Refused(f"Không có thao tác {name.localname}")
    children = [c for c in operation if isinstance(c.tag, str)]
    names = [_local(c) for c in children]
    for child in children:
        if etree.QName(child).namespace != NAMESPACE:
            raise Refused(f"Phần tử {_local(child)} không thuộc namespace {NAMESPACE}")
        if _local(child) not in ELEMENTS:
            raise Refused(f"Phần tử {_local(child)} không được chấp nhận")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise Refused(f"Phần tử lặp lại: {', '.join(repeated)}")
    if tuple(names[: len(LEADING)]) != LEADING:
        raise Refused(f"Các phần tử đầu phải theo thứ tự {', '.join(LEADING)}; nhận được {', '.join(names[:4])}")
    if "SoDinhDanh" in names and names.index("SoDinhDanh") != len(LEADING):
        raise Refused("SoDinhDanh phải đứng ngay sau MaCanBo")
    fields = {_local(c): (c.text or "").strip() for c in children if _local(c) != "NgayThangNamSinh"}
    for required in (*LEADING, "HoVaTen"):
        if not fields.get(required):
            raise Refused(f"Thiếu trường bắt buộc {required}")
    if fields["MaTichHop"] not in integration_codes:
        raise Refused(f"MaTichHop {fields['MaTichHop']!r} không được cấp phép")
    personal_id, old_id = fields.get("SoDinhDanh", ""), fields.get("SoCMND", "")
    if bool(personal_id) == bool(old_id):
        raise Refused("Phải có đúng một trong SoDinhDanh hoặc SoCMND")
    if personal_id and not re.fullmatch(r"[0-9]{12}", personal_id):
        raise Refused("SoDinhDanh phải gồm 12 chữ số")
    if old_id and not re.fullmatch(r"[0-9]{9}", old_id):
        raise Refused("SoCMND phải gồm 9 chữ số")
    if strict_names and not _NAME.fullmatch(fields["HoVaTen"]):
        raise Refused("HoVaTen phải viết hoa, không dấu")
    birth = operation.find(f"{{{NAMESPACE}}}NgayThangNamSinh")
    if birth is None:
        raise Refused("Thiếu trường bắt buộc NgayThangNamSinh")
    birth_date, birth_year = _birth(birth)
    return LookupRequest(fields, birth_date, birth_year)


def access_token_values(header: str | None) -> dict[str, Any]:
    """The members of an ``lgspaccesstoken`` header, or ``Refused``: Base64 of a JSON object with exactly the five
    keys of OC-QL:52-57, each a string."""
    if not header:
        raise Refused("thiếu header lgspaccesstoken")
    try:
        values = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        raise Refused("lgspaccesstoken không phải Base64 của JSON") from None
    if not isinstance(values, dict) or set(values) != set(ACCESS_TOKEN_KEYS):
        raise Refused(f"lgspaccesstoken phải có đúng các khóa {', '.join(ACCESS_TOKEN_KEYS)}")
    if not all(isinstance(v, str) for v in values.values()):
        raise Refused("các giá trị của lgspaccesstoken phải là chuỗi")
    return values

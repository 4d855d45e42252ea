"""The population database simulator (CSDL quốc gia về dân cư, C06), speaking both ways the hub reaches it, built
from ``../shared/PARTNER-FORMATS.md`` §2 (the checks in ``population_db_checks``), never from the hub's adapter.

Through the provincial LGSP (profile ``c06/lgsp``), under ``adapter_url`` (= ``url``, ``…/lgsp``):

- ``POST {adapter_url}{token_path}`` (form ``grant_type=client_credentials``, header ``lgspaccesstoken`` = Base64 of
  ``{AccessKey, SecretKey, AppName, PartnerCode, PartnerCodeCus}`` matching its account, OC-QL:52-75) →
  ``{"access_token": …}``, the only member the sources read; a token lives ``token_ttl_s`` (the simulator's own).
- ``POST {adapter_url}{lookup_path}`` with ``Authorization: Bearer <token>``, the same ``lgspaccesstoken``,
  ``Content-Type: application/xml`` and no ``SOAPAction`` (OC-API:540-578); with ``officers`` configured, the
  ``AuthHash`` of the request's ``MaCanBo`` (OC-QL2:96-125).

Directly (profile ``c06/direct``): ``POST {direct_url}`` (``…/dancu``) as SOAP 1.1 (``text/xml``, a ``SOAPAction``
header), ``GET {direct_url}?wsdl`` → ``schemas/population-db.wsdl`` pointing at it.

Both answer a checked ``TraCuuThongTinCongDan`` with ``Envelope/Body/CongdanCollection``: one ``CongDan`` with every
field of the sheet when the ID, the name (folded: no diacritics, case or spaces) and the birth date or year match,
none otherwise — not found (FE:400-405, 481-489; TH-CDD:5-87). ``/_control {"not_found_body": "empty-body"}``
answers "not found" with an empty Body instead (FE reads both as not found).

Refusals — the sources list none, so their shapes are the simulator's: the token endpoint answers HTTP 400/401
with an OAuth-style ``{"error", "error_description"}``; a call without a valid token or ``lgspaccesstoken`` HTTP 401,
with a ``SOAPAction`` HTTP 400, another content type HTTP 415, a wrong ``AuthHash`` HTTP 403; a request the
service refuses (``population_db_checks.lookup_request``) a ``soap:Client`` fault (HTTP 500); ``/_control
{"fault": N}`` the next N lookups a ``soap:Server`` fault; ``{"expire_tokens": true}`` forgets every token issued.

The population is synthetic (``POPULATION``: invented people, IDs with real province prefixes).
``GET /_received`` → ``{"lookups": [{route, MaYeuCau, MaDVC, MaTichHop, MaCanBo, id (SoDinhDanh | SoCMND), SoDinhDanh
(the number, masked), result}],
"tokens": n, "refusals": [{route, status, reason}], "faults": n}``.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

from lxml import etree

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.devtools.simulators.population_db_checks import (
    ACCESS_TOKEN_KEYS,
    NAMESPACE,
    SOAP_ENV,
    LookupRequest,
    Refused,
    access_token_values,
    fold_name,
    lookup_request,
)
from hub.errors import LienthongError
from hub.logs import mask_ids
from hub.xmlparse import parse_xml

_NS = f"{{{NAMESPACE}}}"


@dataclass(frozen=True)
class LgspAccount:
    """What the LGSP issued to a province (OC-QL:52-57); AccessKey/SecretKey are the connector's credentials."""

    access_key: str = "lienthong-access"
    secret_key: str = "lienthong-secret-demo"  # noqa: S105 - the simulator's demo secret
    app_name: str = "LIENTHONG"
    partner_code: str = "000.00.00.H12"
    partner_code_cus: str = ""

    def values(self) -> dict[str, str]:
        return dict(zip(ACCESS_TOKEN_KEYS, (self.access_key, self.secret_key, self.app_name, self.partner_code,
                                             self.partner_code_cus), strict=True))  # fmt: skip


DEMO_ACCOUNT = LgspAccount()


@dataclass(frozen=True)
class Person:
    """One citizen as C06 holds them: the ``CongDan`` it answers (TH-CDD:5-69 order) and the name it matches on."""

    full_name: str
    congdan: dict[str, Any]


def _address(province: str, district: str = "", ward: str = "", detail: str = "") -> dict[str, str]:
    return {"MaTinhThanh": province, "MaQuanHuyen": district, "MaPhuongXa": ward, "ChiTiet": detail,
            "QuocGia": "VN"}  # fmt: skip


def _relative(name: str, personal_id: str = "", old_id: str = "") -> dict[str, str]:
    return {"HoVaTen": name, "QuocTich": "VN", "SoDinhDanh": personal_id, "SoCMND": old_id}


#: A small synthetic population, every CongDan field of the sheet filled (TH-CDD:5-69; FE:119-240).
POPULATION: tuple[Person, ...] = (
    Person("Nguyễn Văn An", {
        "SoDinhDanh": "001090001234", "SoCMND": "012345678",
        "HoVaTen": {"Ho": "Nguyễn", "ChuDem": "Văn", "Ten": "An"},
        "GioiTinh": "1", "DanToc": "01", "TonGiao": "00", "TinhTrangHonNhan": "2", "NhomMau": "01",
        "NgayThangNamSinh": {"NgayThangNam": "19900517", "Nam": "1990"},
        "NoiDangKyKhaiSinh": _address("34", "336", "12418", "UBND xã Thử Nghiệm"),
        "QuocTich": "VN",
        "QueQuan": _address("34", "336", "12418"),
        "ThuongTru": _address("01", "001", "00004", "12 Phố Thử Nghiệm"),
        "NoiOHienTai": _address("49", "502", "20305", "5 Đường Mẫu, Tam Kỳ"),
        "Cha": _relative("Nguyễn Văn Bảo", "034060001111"),
        "Me": _relative("Phạm Thị Cúc", "", "151234567"),
        "VoChong": _relative("Trần Thị Dung", "049192002222"),
        "NguoiDaiDien": _relative(""),
        "ChuHo": {"HoVaTen": "Nguyễn Văn An", "QuanHe": "Chủ hộ", "SoDinhDanh": "001090001234",
                  "SoCMND": "012345678"},
        "SoSoHoKhau": "HK-01-000123",
    }),
    Person("Trần Thị Bình", {
        "SoDinhDanh": "049185004321", "SoCMND": "",
        "HoVaTen": {"Ho": "Trần", "ChuDem": "Thị", "Ten": "Bình"},
        "GioiTinh": "2", "DanToc": "01", "TonGiao": "00", "TinhTrangHonNhan": "2", "NhomMau": "00",
        "NgayThangNamSinh": {"NgayThangNam": "19851102", "Nam": "1985"},
        "QuocTich": "VN",
        "QueQuan": _address("49", "503"),
        "ThuongTru": _address("49", "502", "20305", "Tổ 3"),
        "NoiOHienTai": _address("49", "502", "20305", "Tổ 3"),
        "VoChong": _relative("Lê Văn Cường", "049080007777"),
        "ChuHo": {"HoVaTen": "Lê Văn Cường", "QuanHe": "Vợ", "SoDinhDanh": "049080007777", "SoCMND": ""},
        "SoSoHoKhau": "HK-49-004321",
    }),
    # HoVaTen.Ten holding the full name, as FE and TH display it (PARTNER-FORMATS §2: "split uncertain"), the sex
    # not recorded and only the birth year known.
    Person("Lê Châu", {
        "SoDinhDanh": "079200009876", "SoCMND": "",
        "HoVaTen": {"Ho": "Lê", "ChuDem": "", "Ten": "Lê Châu"},
        "GioiTinh": "", "DanToc": "01", "QuocTich": "VN",
        "NgayThangNamSinh": {"NgayThangNam": "", "Nam": "2000"},
        "NoiOHienTai": _address("79", "760", "", "Phường Thử, TP. Mẫu"),
    }),
)  # fmt: skip


def _fill(parent: etree._Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        child = etree.SubElement(parent, _NS + key)
        if isinstance(value, dict):
            _fill(child, value)
        else:
            child.text = str(value)


def reply_envelope(congdan: dict[str, Any] | None, *, empty_body: bool = False) -> bytes:
    """``Envelope/Body/CongdanCollection[/CongDan]``; for none, an empty collection or (``empty_body``) an empty
    Body (FE:400-405, 481-489)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "dc": NAMESPACE})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    if congdan is not None or not empty_body:
        collection = etree.SubElement(body, _NS + "CongdanCollection")
        if congdan is not None:
            _fill(etree.SubElement(collection, _NS + "CongDan"), congdan)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def soap_fault(code: str, message: str) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class PopulationDbSimulator(SimulatorServer):
    """The population DB on 127.0.0.1: ``url`` (= ``adapter_url``) is the LGSP's base, ``direct_url`` the SOAP
    service; ``profile_values()`` and ``account`` are what a ``c06/lgsp`` connector needs to reach it."""

    name: ClassVar[str] = "population_db"
    path: ClassVar[str] = "/lgsp"
    token_path: ClassVar[str] = "/getToken"  # noqa: S105 - a path; a deployment gets it from its LGSP (unsourced)
    lookup_path: ClassVar[str] = "/dancu/TraCuuThongTinCongDan"
    direct_path: ClassVar[str] = "/dancu"

    def __init__(
        self,
        port: int = 0,
        *,
        population: tuple[Person, ...] = POPULATION,
        account: LgspAccount = DEMO_ACCOUNT,
        integration_codes: frozenset[str] = frozenset({"037"}),
        officers: dict[str, tuple[str, str]] | None = None,
        token_ttl_s: float = 600.0,
        strict_names: bool = True,
    ) -> None:
        super().__init__(port)
        self.account = account
        self.integration_codes = integration_codes
        self.strict_names = strict_names
        self.token_ttl_s = token_ttl_s
        #: MaCanBo → the AuthHash its requests must carry (Base64 of keyName:keyPass, OC-QL2:116-121)
        self.auth_hashes = {code: base64.b64encode(f"{name}:{password}".encode()).decode()
                            for code, (name, password) in (officers or {}).items()}  # fmt: skip
        self.people = {p.congdan["SoDinhDanh"]: p for p in population}
        self.old_ids = {p.congdan["SoCMND"]: p for p in population if p.congdan.get("SoCMND")}
        self._data_lock = threading.Lock()
        self._faults_left = 0
        self._empty_body = False
        self._clear()

    def _clear(self) -> None:
        self.lookups: list[dict[str, Any]] = []
        self.refusals: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}  # token → expiry (monotonic)
        self.tokens_issued = 0
        self.faults = 0

    # ------------------------------------------------------------ addresses and configuration

    @property
    def adapter_url(self) -> str:
        return self.url

    @property
    def direct_url(self) -> str:
        return self.base_url + self.direct_path

    @property
    def wsdl_url(self) -> str:
        return self.direct_url + "?wsdl"

    def profile_values(self) -> dict[str, str]:
        """The ``c06/lgsp`` values of a connector reaching this simulator (its endpoint: ``adapter_url``)."""
        return {
            "token_path": self.token_path,
            "lookup_path": self.lookup_path,
            "app_name": self.account.app_name,
            "partner_code": self.account.partner_code,
            "partner_code_cus": self.account.partner_code_cus,
        }

    # ------------------------------------------------------------ control and inspection

    def control(self, command: dict[str, Any]) -> None:
        with self._data_lock:
            if "fault" in command:
                self._faults_left = int(command["fault"])
            if "not_found_body" in command:
                self._empty_body = command["not_found_body"] == "empty-body"
            if command.get("expire_tokens"):
                self.tokens.clear()

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return {
                "lookups": [dict(x) for x in self.lookups],
                "tokens": self.tokens_issued,
                "refusals": [dict(x) for x in self.refusals],
                "faults": self.faults,
            }

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._faults_left = 0
            self._empty_body = False

    # ------------------------------------------------------------ HTTP

    def wsdl(self) -> bytes:
        text = resources.files("schemas").joinpath("population-db.wsdl").read_text(encoding="utf-8")
        return text.replace("http://127.0.0.1:9003/dancu", self.direct_url).encode()

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        if path == self.direct_path and "wsdl" in handler.path.partition("?")[2].lower():
            handler.reply(200, self.wsdl(), "text/xml; charset=utf-8")
            return
        handler.reply(404, {"error": f"no GET {path}"})

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path == self.path + self.token_path:
            self._token(handler, body)
        elif path == self.path + self.lookup_path:
            self._lgsp_call(handler, body)
        elif path == self.direct_path:
            self._direct_call(handler, body)
        else:
            handler.reply(404, {"error": f"no POST {path}"})

    def _refuse(self, handler: SimulatorHandler, route: str, status: int, reason: str, body: bytes | None = None):
        with self._data_lock:
            self.refusals.append({"route": route, "status": status, "reason": reason})
        if body is not None:
            handler.reply(status, body, "text/xml; charset=utf-8")
        else:
            error = {400: "invalid_request", 401: "invalid_client", 403: "access_denied"}.get(status, "error")
            handler.reply(status, {"error": error, "error_description": reason})

    # ------------------------------------------------------------ LGSP

    def _token(self, handler: SimulatorHandler, body: bytes) -> None:
        """OC-QL:60-75: form ``grant_type=client_credentials`` and the account's ``lgspaccesstoken``."""
        if _media_type(handler.headers.get("Content-Type")) != "application/x-www-form-urlencoded":
            self._refuse(handler, "token", 400, "the token request must be a form (grant_type=client_credentials)")
            return
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            self._refuse(handler, "token", 400, "grant_type must be client_credentials")
            return
        try:
            values = access_token_values(handler.headers.get("lgspaccesstoken"))
        except Refused as exc:
            self._refuse(handler, "token", 401, str(exc))
            return
        if values != self.account.values():
            self._refuse(handler, "token", 401, "lgspaccesstoken không khớp tài khoản đã cấp")
            return
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            self.tokens[token] = time.monotonic() + self.token_ttl_s
            self.tokens_issued += 1
        handler.reply(200, {"access_token": token})

    def _lgsp_call(self, handler: SimulatorHandler, body: bytes) -> None:
        """OC-API:540-578: Bearer token, ``lgspaccesstoken``, ``application/xml``, no SOAPAction."""
        headers = handler.headers
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        with self._data_lock:
            expiry = self.tokens.get(token) if scheme == "Bearer" else None
        if expiry is None or expiry < time.monotonic():
            self._refuse(handler, "lgsp", 401, "Authorization: Bearer <access_token> thiếu, sai hoặc hết hạn")
            return
        try:
            values = access_token_values(headers.get("lgspaccesstoken"))
        except Refused as exc:
            self._refuse(handler, "lgsp", 401, str(exc))
            return
        if values != self.account.values():
            self._refuse(handler, "lgsp", 401, "lgspaccesstoken không khớp tài khoản đã cấp")
            return
        if headers.get("SOAPAction") is not None:
            self._refuse(handler, "lgsp", 400, "the LGSP call carries no SOAPAction (OC-API:540-578)")
            return
        if _media_type(headers.get("Content-Type")) != "application/xml":
            self._refuse(handler, "lgsp", 415, f"Content-Type {headers.get('Content-Type')!r}: application/xml")
            return
        self._lookup(handler, "lgsp", body, auth_hash=headers.get("AuthHash"))

    # ------------------------------------------------------------ direct SOAP

    def _direct_call(self, handler: SimulatorHandler, body: bytes) -> None:
        headers = handler.headers
        if _media_type(headers.get("Content-Type")) != "text/xml":
            self._refuse(handler, "direct", 415, f"Content-Type {headers.get('Content-Type')!r}: SOAP 1.1 is text/xml")
            return
        if headers.get("SOAPAction") is None:
            reason = "SOAP 1.1 over HTTP needs a SOAPAction header"
            self._refuse(handler, "direct", 500, reason, soap_fault("Client", reason))
            return
        self._lookup(handler, "direct", body, auth_hash=None)

    # ------------------------------------------------------------ the lookup

    def _lookup(self, handler: SimulatorHandler, route: str, body: bytes, *, auth_hash: str | None) -> None:
        try:
            request = lookup_request(parse_xml(body), integration_codes=self.integration_codes,
                                     strict_names=self.strict_names)  # fmt: skip
        except (Refused, LienthongError) as exc:
            reason = str(exc) if isinstance(exc, Refused) else f"Yêu cầu không phải XML hợp lệ: {exc}"
            self._refuse(handler, route, 500, reason, soap_fault("Client", reason))
            return
        officer = request.fields["MaCanBo"]
        if route == "lgsp" and self.auth_hashes and auth_hash != self.auth_hashes.get(officer):
            self._refuse(handler, route, 403, f"AuthHash không hợp lệ cho cán bộ {officer}")
            return
        with self._data_lock:
            server_fault = self._faults_left > 0
            if server_fault:
                self._faults_left -= 1
                self.faults += 1
            empty_body = self._empty_body
        if server_fault:
            handler.reply(500, soap_fault("Server", "Hệ thống CSDL dân cư đang bận, vui lòng thử lại sau"),
                          "text/xml; charset=utf-8")  # fmt: skip
            return
        person = self._match(request)
        key, number = request.id_number
        with self._data_lock:
            self.lookups.append({
                "route": route, "MaYeuCau": request.fields["MaYeuCau"], "MaDVC": request.fields["MaDVC"],
                "MaTichHop": request.fields["MaTichHop"], "MaCanBo": officer, "id": key,
                "SoDinhDanh": mask_ids(number), "result": "found" if person else "not_found",
            })  # fmt: skip
        answer = reply_envelope(person.congdan if person else None, empty_body=empty_body)
        handler.reply(200, answer, "text/xml; charset=utf-8")

    def _match(self, request: LookupRequest) -> Person | None:
        """The person with the request's ID, name and birth date (or year); ``None``: not found."""
        key, number = request.id_number
        person = (self.people if key == "SoDinhDanh" else self.old_ids).get(number)
        if person is None or fold_name(person.full_name) != fold_name(request.fields["HoVaTen"]):
            return None
        born = person.congdan.get("NgayThangNamSinh", {})
        if request.birth_date is not None:
            return person if born.get("NgayThangNam") == request.birth_date else None
        year = born.get("Nam") or (born.get("NgayThangNam") or "")[:4]
        return person if year == request.birth_year else None


def demo_credentials(account: LgspAccount = DEMO_ACCOUNT) -> dict[str, str]:
    """The ``endpoint.credentials`` of a ``c06/lgsp`` connector reaching a simulator with ``account``."""
    return {"username": account.access_key, "password": account.secret_key}

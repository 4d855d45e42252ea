"""The population database simulator (CSDL quốc gia về dân cư): a real SOAP 1.1 service on 127.0.0.1.

- ``GET {path}?wsdl`` → ``schemas/population-db.wsdl`` with its address pointing at this server;
- ``POST {path}`` (``text/xml``, SOAPAction ``http://dancuquocgia.bca/TraCuuThongTinCongDan``) → the reply:
  ``MaKetQua`` ``0`` (found, one ``CongdanCollection/CongDan``), ``1`` (no such ID), ``2`` (the ID exists but
  the name or the birth date/year differs: nothing about the person is disclosed);
- SOAP faults as a real service answers them: ``soap:Client`` (HTTP 500) for a request that is not a SOAP
  envelope, names another operation or lacks ``MaYeuCau``/``MaCanBo``/``MaTichHop``/an ID; ``soap:Server``
  when told to (``/_control {"fault": N}``: the next N lookups).

The population is synthetic (``POPULATION``: no real people; 12-digit IDs with real province prefixes).
``GET /_received`` → ``{"lookups": [{MaYeuCau, MaCanBo, MaTichHop, SoDinhDanh (masked), MaKetQua}], "faults": n}``.
"""

from __future__ import annotations

import threading
import unicodedata
from importlib import resources
from typing import Any, ClassVar

from lxml import etree

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.errors import LienthongError
from hub.logs import mask_ids
from hub.packets.citizen import Citizen
from hub.xmlparse import parse_xml
from mappings.population_db import FOUND, MISMATCH, NAMESPACE, NOT_FOUND, OPERATION, congdan_of

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_NS = f"{{{NAMESPACE}}}"

#: A small synthetic population: invented names, IDs with real province prefixes, real address codes' shapes.
POPULATION: tuple[dict[str, Any], ...] = (
    {
        "personal_id": "001090001234",
        "family_name": "Nguyễn",
        "middle_name": "Văn",
        "given_name": "An",
        "gender": "male",
        "birth_date": "1990-05-17",
        "hometown": {"province_code": "34", "district_code": "336", "ward_code": "12418"},
        "permanent_address": {
            "province_code": "01",
            "district_code": "001",
            "ward_code": "00004",
            "detail": "12 Phố Thử Nghiệm",
        },
        "current_address": {
            "province_code": "49",
            "district_code": "502",
            "ward_code": "20305",
            "detail": "5 Đường Mẫu, Tam Kỳ",
        },
        "household_head": {"full_name": "Nguyễn Văn An", "personal_id": "001090001234", "relationship": "Chủ hộ"},
    },
    {
        "personal_id": "049185004321",
        "family_name": "Trần",
        "middle_name": "Thị",
        "given_name": "Bình",
        "gender": "female",
        "birth_date": "1985-11-02",
        "hometown": {"province_code": "49", "district_code": "503"},
        "permanent_address": {"province_code": "49", "district_code": "502", "ward_code": "20305", "detail": "Tổ 3"},
        "household_head": {"full_name": "Lê Văn Cường", "personal_id": "049080007777", "relationship": "Vợ"},
    },
    {
        "personal_id": "079200009876",
        "family_name": "Lê",
        "given_name": "Châu",
        "gender": "other",
        "birth_date": "2000-01-31",
        "current_address": {"province_code": "79", "district_code": "760", "detail": "Phường Thử, TP. Mẫu"},
    },
)


def _fold(name: str) -> str:
    """Names compared as the service does: case, spacing and Unicode normal form ignored (diacritics kept)."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _NS + name)
    if text is not None:
        child.text = text
    return child


def _fill(parent: etree._Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _fill(_el(parent, key), value)
        else:
            _el(parent, key, str(value))


def soap_fault(code: str, message: str) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class PopulationDbSimulator(SimulatorServer):
    """The population DB on 127.0.0.1; ``url`` is the SOAP endpoint, ``wsdl_url`` its WSDL."""

    name: ClassVar[str] = "population_db"
    path: ClassVar[str] = "/dancu"

    def __init__(self, port: int = 0, *, population: tuple[dict[str, Any], ...] = POPULATION) -> None:
        super().__init__(port)
        self.people = {p["personal_id"]: Citizen.model_validate(p) for p in population}
        self._data_lock = threading.Lock()
        self._faults_left = 0
        self._clear()

    def _clear(self) -> None:
        self.lookups: list[dict[str, Any]] = []
        self.faults = 0

    @property
    def wsdl_url(self) -> str:
        return self.url + "?wsdl"

    # ------------------------------------------------------------ control and inspection

    def control(self, command: dict[str, Any]) -> None:
        if "fault" in command:
            with self._data_lock:
                self._faults_left = int(command["fault"])

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return {"lookups": [dict(x) for x in self.lookups], "faults": self.faults}

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._faults_left = 0

    # ------------------------------------------------------------ protocol

    def wsdl(self) -> bytes:
        text = resources.files("schemas").joinpath("population-db.wsdl").read_text(encoding="utf-8")
        return text.replace("http://127.0.0.1:9003/dancu", self.url).encode()

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        if path == self.path and "wsdl" in handler.path.partition("?")[2].lower():
            handler.reply(200, self.wsdl(), "text/xml; charset=utf-8")
            return
        handler.reply(404, {"error": f"no GET {path}"})

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path != self.path:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        status, answer = self.answer(body)
        handler.reply(status, answer, "text/xml; charset=utf-8")

    def _fault(self, code: str, message: str) -> tuple[int, bytes]:
        with self._data_lock:
            self.faults += 1
        return 500, soap_fault(code, message)

    def answer(self, body: bytes) -> tuple[int, bytes]:
        try:
            root = parse_xml(body)
        except LienthongError as exc:
            return self._fault("Client", f"Yêu cầu không phải XML hợp lệ: {exc}")
        request = root.find(f"{{{SOAP_ENV}}}Body/{_NS}{OPERATION}")
        if root.tag != f"{{{SOAP_ENV}}}Envelope" or request is None:
            return self._fault("Client", f"Không tìm thấy thao tác {OPERATION} trong SOAP Body")
        with self._data_lock:
            if self._faults_left > 0:
                self._faults_left -= 1
                server_fault = True
            else:
                server_fault = False
        if server_fault:
            return self._fault("Server", "Hệ thống CSDL dân cư đang bận, vui lòng thử lại sau")

        def text(name: str) -> str:
            return (request.findtext(_NS + name) or "").strip()

        for required in ("MaYeuCau", "MaCanBo", "MaTichHop"):
            if not text(required):
                return self._fault("Client", f"Thiếu trường bắt buộc {required}")
        personal_id, old_id = text("SoDinhDanh"), text("SoCMND")
        if not personal_id and not old_id:
            return self._fault("Client", "Thiếu SoDinhDanh hoặc SoCMND")
        person = self.people.get(personal_id) if personal_id else None
        birth_date = request.findtext(f"{_NS}NgayThangNamSinh/{_NS}NgayThangNam")
        birth_year = request.findtext(f"{_NS}NgayThangNamSinh/{_NS}Nam")
        if person is None:
            code, message = NOT_FOUND, "Không tìm thấy công dân"
        else:
            full_name = " ".join(p for p in (person.family_name, person.middle_name, person.given_name) if p)
            same_birth = (
                birth_date == person.birth_date.strftime("%Y%m%d")
                if birth_date
                else birth_year == f"{person.birth_date.year:04d}"
            )
            if _fold(full_name) != _fold(text("HoVaTen")) or not same_birth:
                code, message = MISMATCH, "Thông tin họ tên hoặc ngày sinh không khớp"
            else:
                code, message = FOUND, "Thành công"
        with self._data_lock:
            self.lookups.append(
                {
                    "MaYeuCau": text("MaYeuCau"),
                    "MaCanBo": text("MaCanBo"),
                    "MaTichHop": text("MaTichHop"),
                    "SoDinhDanh": mask_ids(personal_id or old_id),
                    "MaKetQua": code,
                }
            )
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "dc": NAMESPACE})
        reply = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{_NS}{OPERATION}Response")
        _el(reply, "MaYeuCau", text("MaYeuCau"))
        _el(reply, "MaKetQua", code)
        _el(reply, "MoTaKetQua", message)
        if code == FOUND and person is not None:
            _fill(_el(_el(reply, "CongdanCollection"), "CongDan"), congdan_of(person))
        return 200, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

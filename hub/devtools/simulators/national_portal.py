"""The national portal simulator (Cổng DVCQG), built from ``../shared/PARTNER-FORMATS.md`` §1 only (never from the
hub's adapter), in one of two variants chosen at start:

``dvcqg/opencps`` (default; the portal as VietOpenCPS calls it)
- every request is a JSON POST with the header ``dstcode`` equal to the configured value, login included
  (OC-DV:1102, 1690, 1863); without it, or with another value, the request is refused (HTTP 403, unsourced answer);
- ``POST adapter_url + auth_endpoint {username, password}`` → ``{session, error_code: 0}``, an integer at login
  (OC-DV:1087-1088, 1130); the session does not expire (none is read, OC-DV:1067-1072) unless ``session_ttl_s``;
- calls carry ``session``, ``madonvi``, ``service`` and the service's parameters at top level; only
  ``DongBoHoSoMC``/``CapNhatTienDoHoSoMC`` use a ``data`` list (OC-DV:1670-1676, 1988-1995). At
  ``integration_endpoint``: ``DongBoHoSoMC`` (``isUpdating`` "True"/"False", OC-DV:2104-2108),
  ``CapNhatTienDoHoSoMC``, ``TraCuuHoSo {mahoso}`` → ``{result: [...]}``, empty when not on the portal
  (OC-DV:1933-1944), ``LayThuTuc {maTTHC}`` → ``result[0]`` (OC-DV:171-186), ``TraCuuTechID {provider "wso2is",
  mstorcmnd}`` → ``result[{TECHNICALID}]`` (OC-DV:2937-2953; the endpoint is not sourced, we take integration).
  At ``share_endpoint``: ``LayDanhSachTTHC``, ``LayDanhMucCoQuan``, ``LayDanhMucLinhVuc`` (OC-DV:1252-1259,
  534-558, 712-741). The catalogue is ``portal_catalogue.Catalogue`` (invented values, sourced shapes);
- ``error_code`` "0" on success, a STRING by default (TH-SI:33; OC-DV:2142 parses a string); ``error_code_style``
  "int" answers ``0`` and "00" answers "00" (OC-DV23:1577). Only login and the record services answer it: lookups
  and the catalogue answer ``{result}`` only, as the sources read them (OC-DV:1933-1944, 1988-1995, 2937-2953,
  171-186, 1252-1259); ``query_error_code`` (unsourced, off by default) adds ``error_code``/``message`` to them.

``dvcqg/proxy`` (the provincial proxy the Thanh Hóa system calls; TH-SS:57-70; TH-SI:31-35)
- one URL per operation (``proxy_paths``: insert, update, progress; the paths are not sourced), the body a bare
  JSON array of records, no session, no ``dstcode`` (not sourced for it); reply ``{error_code, message}`` with a
  string code; success messages contain "thành công" (TH checks it, TH-SS:506, 515, 627);
- an insert of a dossier the portal has is answered ``error_code`` "3" with "đã tồn tại" (TH-SS:497-510).

Both variants check every record of ``DongBoHoSoMC``/``CapNhatTienDoHoSoMC`` strictly (``portal_records``: the
sourced field table as JSON Schema), at most 10 progress records a call (TH-SS), all or nothing; an insert of a
known ``MaHoSo`` or an update/progress of an unknown one is refused. UNSOURCED (only 0 is sourced, plus the proxy's
"3"): every refusal is answered HTTP 200 with ``refusal_code`` (default "-1") and a Vietnamese message naming the
field; an invalid session with ``session_code`` (default "-2"); a failed login with ``int(refusal_code)``.

``/_control`` keys besides the failure modes (``base``): ``session_ttl_s``, ``expire_sessions``, ``invalid: N``
(the next N record calls refused, as if the portal's rules changed; with ``invalid_service`` only the calls of that
service), ``error_code_style``, ``refusal_code``, ``query_error_code``.
In Python also ``seed(*records)``: dossiers already on the portal (synced before the hub existed).

``GET /_received`` → ``{variant, records: {MaHoSo: record}, progress: {MaHoSo: [records]}, calls: [...], logins,
dstcodes: [value or null per request]}``; a call is ``{service, path, madonvi, isUpdating, data, params,
error_code, message, issues}`` (no session token; ``issues`` every reason a record was refused).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.devtools.simulators.portal_catalogue import Catalogue, demo_catalogue
from hub.devtools.simulators.portal_records import (
    MAX_PROGRESS_RECORDS,
    RECORD_SERVICES,
    SERVICE_PROGRESS,
    SERVICE_SYNC,
    RecordIssue,
    record_issues,
)

VARIANTS = ("dvcqg/opencps", "dvcqg/proxy")
ERROR_CODE_STYLES = ("string", "int", "00")
SERVICE_LOOKUP = "TraCuuHoSo"
SERVICE_PROCEDURE = "LayThuTuc"
SERVICE_TECH_ID = "TraCuuTechID"
SHARE_SERVICES = ("LayDanhSachTTHC", "LayDanhMucCoQuan", "LayDanhMucLinhVuc")
INTEGRATION_SERVICES = (*RECORD_SERVICES, SERVICE_LOOKUP, SERVICE_PROCEDURE, SERVICE_TECH_ID)
PROXY_EXISTS_CODE = "3"  # TH-SS:497-510 (TH also accepts "-3")

DEFAULT_USERS = {"lienthong": "lienthong-demo"}
# Unsourced defaults (no public value exists): configurable, never relied upon by a real deployment.
DEMO_DSTCODE = "LIENTHONG-DEMO"
DEFAULT_AUTH_ENDPOINT = "/auth/login"
DEFAULT_INTEGRATION_ENDPOINT = "/api"
DEFAULT_SHARE_ENDPOINT = "/share"
DEFAULT_PROXY_PATHS = {"insert": "/proxy/DongBoHoSoMC", "update": "/proxy/CapNhatHoSoMC",
                       "progress": "/proxy/CapNhatTienDoHoSoMC"}  # fmt: skip
DEFAULT_REFUSAL_CODE = "-1"
DEFAULT_SESSION_CODE = "-2"
#: TraCuuTechID's table (ID number or tax code → portal account TechID); invented demo values.
DEMO_TECH_IDS = {"001085012345": "8f1c2d3e-demo-0001", "0101234567": "8f1c2d3e-demo-0002"}


class NationalPortalSimulator(SimulatorServer):
    """The national portal on 127.0.0.1. ``adapter_url`` is the connector's base URL; ``login_url``,
    ``integration_url`` (also ``url``) and ``share_url`` the opencps endpoints; ``proxy_url(op)`` the proxy's."""

    name: ClassVar[str] = "national_portal"
    path: ClassVar[str] = DEFAULT_INTEGRATION_ENDPOINT

    def __init__(
        self,
        port: int = 0,
        *,
        variant: str = "dvcqg/opencps",
        users: dict[str, str] | None = None,
        dstcode: str = DEMO_DSTCODE,
        auth_endpoint: str = DEFAULT_AUTH_ENDPOINT,
        integration_endpoint: str = DEFAULT_INTEGRATION_ENDPOINT,
        share_endpoint: str = DEFAULT_SHARE_ENDPOINT,
        proxy_paths: dict[str, str] | None = None,
        units: set[str] | None = None,
        session_ttl_s: float | None = None,
        error_code_style: str = "string",
        refusal_code: str = DEFAULT_REFUSAL_CODE,
        session_code: str = DEFAULT_SESSION_CODE,
        tech_ids: dict[str, str] | None = None,
        catalogue: Catalogue | None = None,
        query_error_code: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown portal variant {variant!r} (one of {', '.join(VARIANTS)})")
        if error_code_style not in ERROR_CODE_STYLES:
            raise ValueError(f"unknown error_code_style {error_code_style!r} (one of {', '.join(ERROR_CODE_STYLES)})")
        super().__init__(port)
        self.variant = variant
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.dstcode = dstcode
        self.auth_endpoint, self.integration_endpoint = auth_endpoint, integration_endpoint
        self.share_endpoint = share_endpoint
        self.proxy_paths = dict(DEFAULT_PROXY_PATHS if proxy_paths is None else proxy_paths)
        self.units = units  # None: any unit code may call
        self.session_ttl_s = session_ttl_s
        self.error_code_style = error_code_style
        self.refusal_code, self.session_code = refusal_code, session_code
        self.tech_ids = dict(DEMO_TECH_IDS if tech_ids is None else tech_ids)
        self.catalogue = catalogue or demo_catalogue()
        self.query_error_code = query_error_code
        self._sessions: dict[str, float | None] = {}
        self._invalid_left = 0
        self._invalid_service: str | None = None  # None: any record service
        self._data_lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[dict[str, Any]] = []
        self.logins = 0
        self.dstcodes: list[str | None] = []

    # ------------------------------------------------------------ addresses

    @property
    def adapter_url(self) -> str:
        """The base URL the endpoints are appended to (OC-DV:1080-1090)."""
        return self.base_url

    @property
    def login_url(self) -> str:
        return self.base_url + self.auth_endpoint

    @property
    def integration_url(self) -> str:
        return self.base_url + self.integration_endpoint

    @property
    def share_url(self) -> str:
        return self.base_url + self.share_endpoint

    @property
    def url(self) -> str:
        return self.integration_url if self.variant == "dvcqg/opencps" else self.proxy_url("insert")

    def proxy_url(self, operation: str) -> str:
        """The proxy's URL of ``operation`` (insert, update, progress)."""
        return self.base_url + self.proxy_paths[operation]

    # ------------------------------------------------------------ control and inspection

    def control(self, command: dict[str, Any]) -> None:
        style = command.get("error_code_style")
        if style is not None and style not in ERROR_CODE_STYLES:
            raise ValueError(f"unknown error_code_style {style!r} (one of {', '.join(ERROR_CODE_STYLES)})")
        with self._data_lock:
            if "session_ttl_s" in command:
                ttl = command["session_ttl_s"]
                self.session_ttl_s = None if ttl is None else float(ttl)
            if command.get("expire_sessions"):
                self._sessions.clear()
            if "invalid" in command:
                self._invalid_left = int(command["invalid"])
                self._invalid_service = command.get("invalid_service")
            if style is not None:
                self.error_code_style = style
            if "refusal_code" in command:
                self.refusal_code = str(command["refusal_code"])
            if "query_error_code" in command:
                self.query_error_code = bool(command["query_error_code"])

    def expire_sessions(self) -> None:
        self.control({"expire_sessions": True})

    def seed(self, *records: dict[str, Any]) -> None:
        """Put dossiers on the portal as if synced before the hub existed (the portal's own data: not checked)."""
        with self._data_lock:
            for record in records:
                self.records[str(record["MaHoSo"])] = json.loads(json.dumps(record))

    def reject_next(self, count: int = 1, service: str | None = None) -> None:
        """Refuse the next ``count`` record calls (as if the portal's rules changed), or only those of ``service``."""
        self.control({"invalid": count, "invalid_service": service})

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(json.dumps({
                "variant": self.variant, "records": self.records, "progress": self.progress, "calls": self.calls,
                "logins": self.logins, "dstcodes": self.dstcodes,
            }))  # fmt: skip

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._sessions.clear()
            self._invalid_left = 0
            self._invalid_service = None

    # ------------------------------------------------------------ answers

    def _code(self, code: str) -> str | int:
        """``code`` as this portal writes ``error_code`` (string by default)."""
        if self.error_code_style == "int" and code.lstrip("-").isdigit():
            return int(code)
        if self.error_code_style == "00" and code == "0":
            return "00"
        return code

    def _ok(self, message: str = "Thành công", **extra: Any) -> dict[str, Any]:
        return {"error_code": self._code("0"), "message": message, **extra}

    def _result(self, result: object) -> dict[str, Any]:
        """A lookup's or the catalogue's answer: ``{result}`` only (OC-DV:1933-1944, 2937-2953, 171-186, 1252-1259),
        with ``error_code`` when ``query_error_code`` asks for it (no source shows one there)."""
        return self._ok(result=result) if self.query_error_code else {"result": result}

    def _refused(self, message: str, code: str | None = None) -> dict[str, Any]:
        return {"error_code": self._code(code or self.refusal_code), "message": message}

    # ------------------------------------------------------------ protocol

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        dstcode = handler.headers.get("dstcode")
        with self._data_lock:
            self.dstcodes.append(dstcode)
        if self.variant == "dvcqg/proxy":
            self._proxy(handler, path, body)
            return
        if path not in (self.auth_endpoint, self.integration_endpoint, self.share_endpoint):
            handler.reply(404, {"error": f"no POST {path}"})
            return
        if dstcode != self.dstcode:  # OC-DV:1102, 1690, 1863 (the answer's shape is not sourced)
            handler.reply(403, self._refused(f"Mã dstcode không hợp lệ: {dstcode!r}"))
            return
        if not (handler.headers.get("Content-Type") or "").startswith("application/json"):  # OC-DV:1065-1148
            handler.reply(415, self._refused("Yêu cầu phải là application/json"))
            return
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            handler.reply(200, self._refused("Yêu cầu không phải đối tượng JSON hợp lệ"))
            return
        if path == self.auth_endpoint:
            handler.reply(200, self._login(request))
        else:
            handler.reply(200, self._call(path, request))

    def _login(self, request: dict[str, Any]) -> dict[str, Any]:
        username, password = request.get("username"), request.get("password")
        expected = self.users.get(username) if isinstance(username, str) else None
        if expected is None or not isinstance(password, str) or not secrets.compare_digest(expected, password):
            code = int(self.refusal_code) if self.refusal_code.lstrip("-").isdigit() else self.refusal_code
            return {"error_code": code, "message": "Tên đăng nhập hoặc mật khẩu không đúng"}  # an int, as at login
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            ttl = self.session_ttl_s
            self._sessions[token] = None if ttl is None else time.monotonic() + ttl
            self.logins += 1
        return {"session": token, "error_code": 0}  # an int at login (OC-DV:1130)

    def _session_valid(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        with self._data_lock:
            if token not in self._sessions:
                return False
            until = self._sessions[token]
            if until is not None and time.monotonic() > until:
                del self._sessions[token]
                return False
            return True

    def _call(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        service = request.get("service")
        madonvi = request.get("madonvi")
        params = {k: v for k, v in request.items() if k not in ("session", "madonvi", "service", "data")}
        call: dict[str, Any] = {"service": service, "path": path, "madonvi": madonvi, "isUpdating": None,
                                "data": request.get("data"), "params": params, "issues": []}  # fmt: skip
        here = INTEGRATION_SERVICES if path == self.integration_endpoint else SHARE_SERVICES
        if not self._session_valid(request.get("session")):
            answer = self._refused("Phiên làm việc không hợp lệ hoặc đã hết hạn", self.session_code)
        elif not isinstance(madonvi, str) or not madonvi:
            answer = self._refused("Thiếu tham số madonvi")
        elif self.units is not None and madonvi not in self.units:
            answer = self._refused(f"Đơn vị không được phép: {madonvi}")
        elif service not in here:
            answer = self._refused(f"Dịch vụ không tồn tại tại {path}: {service!r}")
        elif service == SERVICE_SYNC:
            call["isUpdating"] = request.get("isUpdating")
            answer = self._sync(request.get("data"), request.get("isUpdating"), call)
        elif service == SERVICE_PROGRESS:
            answer = self._progress(request.get("data"), call)
        else:
            answer = self._query(str(service), request)
        self._log(call, answer)
        return answer

    def _log(self, call: dict[str, Any], answer: dict[str, Any]) -> None:
        with self._data_lock:
            self.calls.append({**call, "error_code": answer.get("error_code"), "message": answer.get("message")})

    # ------------------------------------------------------------ the proxy variant

    def _proxy(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        operation = next((op for op, p in self.proxy_paths.items() if p == path), None)
        if operation is None:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        service = SERVICE_PROGRESS if operation == "progress" else SERVICE_SYNC
        updating = {"insert": "False", "update": "True"}.get(operation)
        call: dict[str, Any] = {"service": service, "path": path, "madonvi": None, "isUpdating": updating,
                                "data": data, "params": {}, "issues": []}  # fmt: skip
        if not isinstance(data, list):  # a bare JSON array (TH-SS:57-70)
            answer = self._refused("Dữ liệu phải là một mảng JSON các bản ghi")
        elif service == SERVICE_SYNC:
            answer = self._sync(data, updating, call)
        else:
            answer = self._progress(data, call)
        if answer["error_code"] in ("0", 0, "00"):
            answer["message"] = "Đồng bộ thành công"  # TH checks the message for "thành công" (TH-SS:506)
        self._log(call, answer)
        handler.reply(200, {"error_code": str(answer["error_code"]), "message": answer["message"]})

    # ------------------------------------------------------------ record services

    def _check(self, service: str, data: object, call: dict[str, Any]) -> dict[str, Any] | None:
        """The refusal of a call's records (the first issue named), or None when every record is valid."""
        if not isinstance(data, list) or not data:
            return self._refused("Dữ liệu không hợp lệ: data phải là danh sách bản ghi")
        if service == SERVICE_PROGRESS and len(data) > MAX_PROGRESS_RECORDS:
            return self._refused(f"Dữ liệu không hợp lệ: tối đa {MAX_PROGRESS_RECORDS} bản ghi mỗi lần gọi")
        with self._data_lock:
            if self._invalid_left > 0 and self._invalid_service in (None, service):
                self._invalid_left -= 1
                return self._refused("Dữ liệu không hợp lệ: bản ghi bị từ chối theo quy tắc mới")
        issues: list[RecordIssue] = []
        for index, record in enumerate(data):
            issues.extend(record_issues(service, record, index))
        if issues:
            call["issues"] = [{"field": i.field, "rule": i.rule, "message": i.message} for i in issues]
            return self._refused(f"Dữ liệu không hợp lệ: {issues[0].message}")
        return None

    def _sync(self, data: object, is_updating: object, call: dict[str, Any]) -> dict[str, Any]:
        if is_updating not in ("True", "False"):  # OC-DV:2104-2108
            return self._refused('Dữ liệu không hợp lệ: isUpdating phải là "True" hoặc "False"')

        def refusal(record: dict[str, Any]) -> dict[str, Any] | None:
            code = record["MaHoSo"]
            if is_updating == "False" and code in self.records:
                exists = PROXY_EXISTS_CODE if self.variant == "dvcqg/proxy" else None  # TH-SS:497-510
                return self._refused(f"Hồ sơ {code} đã tồn tại", exists)
            if is_updating == "True" and code not in self.records:
                return self._refused(f"Hồ sơ {code} không tồn tại")
            return None

        def store(record: dict[str, Any]) -> None:
            self.records[record["MaHoSo"]] = record

        return self._write_all(SERVICE_SYNC, data, call, refusal, store)

    def _progress(self, data: object, call: dict[str, Any]) -> dict[str, Any]:
        def refusal(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["MaHoSo"] not in self.records:
                return self._refused(f"Hồ sơ {record['MaHoSo']} không tồn tại")
            return None

        def store(record: dict[str, Any]) -> None:
            kept = self.progress.setdefault(record["MaHoSo"], [])
            if record not in kept:  # a redelivered step is kept once
                kept.append(record)
            self.records[record["MaHoSo"]]["TrangThaiHoSo"] = record["TrangThai"]

        return self._write_all(SERVICE_PROGRESS, data, call, refusal, store)

    def _write_all(
        self,
        service: str,
        data: object,
        call: dict[str, Any],
        refusal: Callable[[dict[str, Any]], dict[str, Any] | None],
        store: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """All or nothing: the call's records are kept only when none is refused."""
        refused = self._check(service, data, call)
        if refused is not None:
            return refused
        assert isinstance(data, list)
        with self._data_lock:
            for record in data:
                answer = refusal(record)
                if answer is not None:
                    return answer
            for record in data:
                store(record)
        return self._ok()

    # ------------------------------------------------------------ queries

    def _query(self, service: str, request: dict[str, Any]) -> dict[str, Any]:
        if service == SERVICE_LOOKUP:  # top-level lower-case mahoso → result (OC-DV:1933-1944)
            code = request.get("mahoso")
            if not isinstance(code, str) or not code:
                return self._refused("Thiếu tham số mahoso")
            with self._data_lock:
                record = self.records.get(code)
                return self._result([] if record is None else [json.loads(json.dumps(record))])
        if service == SERVICE_PROCEDURE:  # maTTHC → result[0] (OC-DV:171-186)
            code = request.get("maTTHC")
            if not isinstance(code, str) or not code:
                return self._refused("Thiếu tham số maTTHC")
            procedure = self.catalogue.procedure(code)
            return self._result([] if procedure is None else [procedure])
        if service == SERVICE_TECH_ID:  # provider "wso2is", mstorcmnd → result[{TECHNICALID}] (OC-DV:2937-2953)
            if request.get("provider") != "wso2is":
                return self._refused(f"provider không hợp lệ: {request.get('provider')!r}")
            number = request.get("mstorcmnd")
            if not isinstance(number, str) or not number:
                return self._refused("Thiếu tham số mstorcmnd")
            tech_id = self.tech_ids.get(number)
            return self._result([] if tech_id is None else [{"TECHNICALID": tech_id}])
        lists = {"LayDanhSachTTHC": self.catalogue.procedure_list, "LayDanhMucCoQuan": lambda: self.catalogue.units,
                 "LayDanhMucLinhVuc": lambda: self.catalogue.fields}  # fmt: skip
        return self._result(json.loads(json.dumps(lists[service]())))

"""The national portal simulator (Cổng DVCQG): session login, then every call ``POST /api`` with
``{session, madonvi, service, data}`` answered ``{error_code, message, data}``.

- ``POST /login {username, password}`` → ``{error_code: 0, session, expires_in}`` (``error_code`` 7 for wrong
  credentials). Sessions live ``session_ttl_s`` (default 1800 s).
- ``POST /api`` with ``service``:
  - ``DongBoHoSoMC`` — ``data`` is a list of dossier records, ``isUpdating`` ``"False"`` (insert) or ``"True"``
    (update); an insert of a known ``MaHoSo`` answers ``ALREADY_EXISTS``, an update of an unknown one
    ``NOT_FOUND``;
  - ``CapNhatTienDoHoSoMC`` — ``data`` is a list of progress records for known dossiers (``NOT_FOUND`` otherwise);
    the dossier's ``TrangThaiHoSo`` follows the record's ``TrangThai``; a record identical to one already kept
    is accepted again without being kept twice;
  - ``TraCuuHoSo`` — ``data`` is ``{MaHoSo}``; answers the record and its progress.
  Every record is validated against ``schemas/national-portal/*.schema.json`` first: the first violation is
  answered with ``VALIDATION_ERROR``, its ``field`` and a message naming it, and nothing of that call is kept.
- Business errors come with HTTP 200, as the real portal does; the failure modes of ``hub.devtools.simulators.base``
  give HTTP errors, resets, slowness and malformed replies. Extra ``/_control`` keys: ``"session_ttl_s": N``,
  ``"expire_sessions": true`` (every current session becomes invalid), ``"invalid": N`` (the next N record
  calls are refused with ``VALIDATION_ERROR``, as if the portal's rules changed).

``GET /_received`` → ``{"records": {MaHoSo: record}, "progress": {MaHoSo: [records]}, "calls": [...],
"logins": n}``; each call is ``{service, madonvi, isUpdating, data, error_code, message}`` (no session token).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from mappings.national_portal import (  # the portal's error codes (error_code of every answer)
    ALREADY_EXISTS,
    BAD_REQUEST,
    INVALID_SESSION,
    LOGIN_FAILED,
    NOT_FOUND,
    OK,
    SERVICE_LOOKUP,
    SERVICE_PROGRESS,
    SERVICE_SYNC,
    UNIT_NOT_ALLOWED,
    UNKNOWN_SERVICE,
    VALIDATION_ERROR,
    validate_record,
)

MESSAGES = {
    OK: "Thành công",
    INVALID_SESSION: "Phiên làm việc không hợp lệ hoặc đã hết hạn",
    VALIDATION_ERROR: "Dữ liệu không hợp lệ",
    ALREADY_EXISTS: "Hồ sơ đã tồn tại",
    NOT_FOUND: "Hồ sơ không tồn tại",
    UNKNOWN_SERVICE: "Dịch vụ không tồn tại",
    UNIT_NOT_ALLOWED: "Đơn vị không được phép",
    LOGIN_FAILED: "Tên đăng nhập hoặc mật khẩu không đúng",
    BAD_REQUEST: "Yêu cầu không đúng định dạng",
}

DEFAULT_USERS = {"lienthong": "lienthong-demo"}
AGENCY_CODE = r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$"


class NationalPortalSimulator(SimulatorServer):
    """The national portal on 127.0.0.1; ``url`` is the adapter URL (``/api``), ``login_url`` the login."""

    name: ClassVar[str] = "national_portal"
    path: ClassVar[str] = "/api"

    def __init__(
        self,
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        session_ttl_s: float = 1800.0,
        units: set[str] | None = None,
    ) -> None:
        super().__init__(port)
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.session_ttl_s = session_ttl_s
        self.units = units  # None: any unit code of the right shape may call
        self._sessions: dict[str, tuple[str, float]] = {}
        self._invalid_left = 0
        self._data_lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[dict[str, Any]] = []
        self.logins = 0

    @property
    def login_url(self) -> str:
        return self.base_url + "/login"

    # ------------------------------------------------------------ control and inspection

    def control(self, command: dict[str, Any]) -> None:
        with self._data_lock:
            if "session_ttl_s" in command:
                self.session_ttl_s = float(command["session_ttl_s"])
            if command.get("expire_sessions"):
                self._sessions.clear()
            if "invalid" in command:
                self._invalid_left = int(command["invalid"])

    def expire_sessions(self) -> None:
        self.control({"expire_sessions": True})

    def reject_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` record calls with a validation error."""
        self.control({"invalid": count})

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(
                json.dumps(
                    {"records": self.records, "progress": self.progress, "calls": self.calls, "logins": self.logins}
                )
            )

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._sessions.clear()
            self._invalid_left = 0

    # ------------------------------------------------------------ protocol

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            handler.reply(200, _answer(BAD_REQUEST, "Yêu cầu không phải JSON hợp lệ"))
            return
        if path == "/login":
            handler.reply(200, self._login(request))
        elif path == self.path:
            handler.reply(200, self._call(request))
        else:
            handler.reply(404, {"error": f"no POST {path}"})

    def _login(self, request: dict[str, Any]) -> dict[str, Any]:
        username, password = request.get("username"), request.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return _answer(LOGIN_FAILED)
        expected = self.users.get(username)
        if expected is None or not secrets.compare_digest(expected, password):
            return _answer(LOGIN_FAILED)
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            self._sessions[token] = (username, time.monotonic() + self.session_ttl_s)
            self.logins += 1
            ttl = self.session_ttl_s
        return {**_answer(OK), "session": token, "expires_in": int(ttl)}

    def _session_valid(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        with self._data_lock:
            found = self._sessions.get(token)
            if found is None:
                return False
            if time.monotonic() > found[1]:
                del self._sessions[token]
                return False
            return True

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        service = request.get("service")
        madonvi = request.get("madonvi")
        is_updating = request.get("isUpdating", "False")
        data = request.get("data")
        if not self._session_valid(request.get("session")):
            answer = _answer(INVALID_SESSION)
        elif not isinstance(madonvi, str) or not re.fullmatch(AGENCY_CODE, madonvi):
            answer = _answer(UNIT_NOT_ALLOWED, f"{MESSAGES[UNIT_NOT_ALLOWED]}: madonvi {madonvi!r}")
        elif self.units is not None and madonvi not in self.units:
            answer = _answer(UNIT_NOT_ALLOWED, f"{MESSAGES[UNIT_NOT_ALLOWED]}: {madonvi}")
        elif service == SERVICE_SYNC:
            answer = self._sync(data, is_updating)
        elif service == SERVICE_PROGRESS:
            answer = self._progress(data)
        elif service == SERVICE_LOOKUP:
            answer = self._lookup(data)
        else:
            answer = _answer(UNKNOWN_SERVICE, f"{MESSAGES[UNKNOWN_SERVICE]}: {service!r}")
        with self._data_lock:
            self.calls.append(
                {
                    "service": service,
                    "madonvi": madonvi,
                    "isUpdating": is_updating if service == SERVICE_SYNC else None,
                    "data": data,
                    "error_code": answer["error_code"],
                    "message": answer["message"],
                }
            )
        return answer

    def _validate(self, service: str, data: object) -> dict[str, Any] | None:
        """The validation error answer for the first invalid record, or None when all are valid."""
        if not isinstance(data, list) or not data:
            return _answer(VALIDATION_ERROR, f"{MESSAGES[VALIDATION_ERROR]}: data phải là danh sách bản ghi", "data")
        with self._data_lock:
            if self._invalid_left > 0:
                self._invalid_left -= 1
                return _answer(
                    VALIDATION_ERROR, f"{MESSAGES[VALIDATION_ERROR]}: bản ghi bị từ chối theo quy tắc mới", "data"
                )
        for index, record in enumerate(data):
            issues = validate_record(service, record)
            if issues:
                first = issues[0]
                field = f"data[{index}].{first.field}" if first.field != "/" else f"data[{index}]"
                return _answer(VALIDATION_ERROR, f"{MESSAGES[VALIDATION_ERROR]}: {field}: {first.message}", field)
        return None

    def _sync(self, data: object, is_updating: object) -> dict[str, Any]:
        if is_updating not in ("True", "False"):
            return _answer(
                VALIDATION_ERROR, f"{MESSAGES[VALIDATION_ERROR]}: isUpdating phải là True/False", "isUpdating"
            )

        def refusal(record: dict[str, Any]) -> dict[str, Any] | None:
            code = record["MaHoSo"]
            if is_updating == "False" and code in self.records:
                return _answer(ALREADY_EXISTS, f"{MESSAGES[ALREADY_EXISTS]}: {code}", "MaHoSo")
            if is_updating == "True" and code not in self.records:
                return _answer(NOT_FOUND, f"{MESSAGES[NOT_FOUND]}: {code}", "MaHoSo")
            return None

        def store(record: dict[str, Any]) -> None:
            self.records[record["MaHoSo"]] = record

        return self._write_all(SERVICE_SYNC, data, refusal, store)

    def _progress(self, data: object) -> dict[str, Any]:
        def refusal(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["MaHoSo"] not in self.records:
                return _answer(NOT_FOUND, f"{MESSAGES[NOT_FOUND]}: {record['MaHoSo']}", "MaHoSo")
            return None

        def store(record: dict[str, Any]) -> None:
            kept = self.progress.setdefault(record["MaHoSo"], [])
            if record not in kept:
                kept.append(record)
            self.records[record["MaHoSo"]]["TrangThaiHoSo"] = record["TrangThai"]

        return self._write_all(SERVICE_PROGRESS, data, refusal, store)

    def _write_all(
        self,
        service: str,
        data: object,
        refusal: Callable[[dict[str, Any]], dict[str, Any] | None],
        store: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """All or nothing, as the portal does: a valid batch is stored only when no record is refused."""
        invalid = self._validate(service, data)
        if invalid is not None:
            return invalid
        assert isinstance(data, list)
        with self._data_lock:
            for record in data:
                refused = refusal(record)
                if refused is not None:
                    return refused
            for record in data:
                store(record)
        return {**_answer(OK), "data": [{"MaHoSo": r["MaHoSo"]} for r in data]}

    def _lookup(self, data: object) -> dict[str, Any]:
        code = data.get("MaHoSo") if isinstance(data, dict) else None
        if not isinstance(code, str):
            return _answer(VALIDATION_ERROR, f"{MESSAGES[VALIDATION_ERROR]}: thiếu MaHoSo", "MaHoSo")
        with self._data_lock:
            record = self.records.get(code)
            if record is None:
                return _answer(NOT_FOUND, f"{MESSAGES[NOT_FOUND]}: {code}", "MaHoSo")
            return {**_answer(OK), "data": {**record, "TienDoXuLy": list(self.progress.get(code, []))}}


def _answer(code: int, message: str | None = None, field: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"error_code": code, "message": message or MESSAGES.get(code, "Lỗi")}
    if field is not None:
        answer["field"] = field
    return answer

"""A small, strict national portal that serves only the catalogue services, built from the fact sheet
(PARTNER-FORMATS §1) for the catalogue tests: it refuses (HTTP 400, saying why) any call that is not exactly as
the sources make it.

- every call: POST, JSON, headers ``Accept``/``Content-Type: application/json``, ``Charset: utf-8`` and the
  configured ``dstcode``, on the login too (OC-DV:1102, 1690, 1863);
- login at ``auth_endpoint`` with exactly ``{username, password}`` → ``{session, error_code: 0}`` (an int at login,
  OC-DV:1087-1088, 1130);
- ``share_endpoint``: exactly ``{session, madonvi, service}`` for LayDanhSachTTHC (OC-DV:1252-1259),
  LayDanhMucCoQuan (OC-DV:534-558), LayDanhMucLinhVuc (OC-DV:712-741);
- ``integration_endpoint``: exactly ``{session, madonvi, service: LayThuTuc, maTTHC}`` (OC-DV:171-186, 2503-2760);
- answers are ``{result}`` only: the sources read nothing else from these services (OC-DV:1252-1259, 171-186);
  a refused LayThuTuc answers ``error_code`` "-1" (unsourced); ``FakePortal.replies`` replaces a service's answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DSTCODE = "DST-TEST-1"
MADONVI = "000.00.00.H12"
USERNAME, PASSWORD = "hub", "secret-pw"
PROFILE_VALUES = {
    "dstcode": DSTCODE,
    "madonvi": MADONVI,
    "auth_endpoint": "/auth",
    "integration_endpoint": "/integration",
    "share_endpoint": "/share",
}
PROCEDURES = [
    {"MATTHC": "1.009994", "TENTTHC": "Cấp giấy phép xây dựng"},
    {"MATTHC": "1.001193", "TENTTHC": "Đăng ký khai sinh"},
    {"MATTHC": "2.000001", "TENTTHC": "Thủ tục có chi tiết lỗi"},
]
DETAILS = {
    "1.009994": {
        "TENTTHC": "Cấp giấy phép xây dựng",
        "LINHVUCTHUCHIEN": [{"MALINHVUC": "XAY-DUNG", "TENLINHVUC": "Hoạt động xây dựng"}],
        "CACHTHUCTHUCHIEN": [],
        "THANHPHANHOSO": [],
    },
    "1.001193": {
        "TENTTHC": "Đăng ký khai sinh",
        "LINHVUCTHUCHIEN": [{"MALINHVUC": "HO-TICH", "TENLINHVUC": "Hộ tịch"}],
        "CACHTHUCTHUCHIEN": [],
        "THANHPHANHOSO": [],
    },
}
UNITS = [{"MADONVI": MADONVI, "TENDONVI": "Sở Xây dựng tỉnh Ninh Thuận", "CAPDONVI": "2"}]
FIELDS = [
    {"MALINHVUC": "XAY-DUNG", "TENLINHVUC": "Hoạt động xây dựng", "MANGANH": "XD"},
    {"MALINHVUC": "HO-TICH", "TENLINHVUC": "Hộ tịch", "MANGANH": "TP"},
]
LISTS = {"LayDanhSachTTHC": PROCEDURES, "LayDanhMucCoQuan": UNITS, "LayDanhMucLinhVuc": FIELDS}


@dataclass
class FakePortal:
    """What the fake portal answers and what it saw."""

    login_code: Any = 0
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)  # service → the whole answer instead
    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    url: str = ""

    def services(self) -> list[str]:
        return [body.get("service", "login") for _, _, body in self.seen]


def _handler(portal: FakePortal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            headers = {k.lower(): v for k, v in self.headers.items()}
            portal.seen.append((self.path, headers, body if isinstance(body, dict) else {}))
            wrong = [
                f"header {name}: {headers.get(name.lower())!r}"
                for name, ok in (
                    ("dstcode", headers.get("dstcode") == DSTCODE),
                    ("Charset", headers.get("charset") == "utf-8"),
                    ("Accept", headers.get("accept") == "application/json"),
                    ("Content-Type", headers.get("content-type", "").startswith("application/json")),
                )
                if not ok
            ]
            if wrong or not isinstance(body, dict):
                return self._answer(400, {"message": "; ".join(wrong) or "body is not a JSON object"})
            if self.path == "/portal/auth":
                if set(body) != {"username", "password"}:
                    return self._answer(400, {"message": f"login keys {sorted(body)}"})
                if (body["username"], body["password"]) != (USERNAME, PASSWORD) or portal.login_code != 0:
                    return self._answer(200, {"error_code": portal.login_code or 1, "message": "Sai tài khoản"})
                portal.sessions.append(f"S{len(portal.sessions) + 1}")
                return self._answer(200, {"session": portal.sessions[-1], "error_code": 0})
            if body.get("session") not in portal.sessions or body.get("madonvi") != MADONVI:
                return self._answer(400, {"message": "unknown session or madonvi"})
            service = body.get("service")
            if service in portal.replies:
                return self._answer(200, portal.replies[service])
            if self.path == "/portal/share" and service in LISTS and set(body) == {"session", "madonvi", "service"}:
                return self._answer(200, {"result": LISTS[service]})
            if (
                self.path == "/portal/integration"
                and service == "LayThuTuc"
                and set(body) == {"session", "madonvi", "service", "maTTHC"}
            ):
                detail = DETAILS.get(body["maTTHC"])
                if detail is None:
                    return self._answer(200, {"error_code": "-1", "message": "Lỗi hệ thống"})
                return self._answer(200, {"result": [detail]})
            return self._answer(400, {"message": f"{service} at {self.path} with {sorted(body)}"})

    return Handler


@contextmanager
def running_portal(portal: FakePortal | None = None) -> Iterator[FakePortal]:
    """The fake portal on 127.0.0.1 (``portal.url`` is the connector's ``endpoint.url``) for a ``with`` block."""
    portal = portal or FakePortal()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(portal))
    # Polling every 0.05 s, shutdown() returns at once (socketserver's 0.5 s was waited out at each test's end).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    portal.url = f"http://127.0.0.1:{server.server_address[1]}/portal"
    try:
        yield portal
    finally:
        server.shutdown()
        server.server_close()

"""The land registration software simulator speaking VBDLIS's JSON (profile ``ministry/vbdlis-json``), from
``../shared/PARTNER-FORMATS.md`` §5 (secondary source: the Thanh Hóa system; no primary one exists). The XML-steps
ministry simulator (``ministry.py``, profile ``ministry/xml-steps``) is a separate class.

It plays VBDLIS both ways:

- **VBDLIS → province** (the hub plays the province): ``send(action, body)`` POSTs the step's JSON, unsigned, to
  ``hub_url`` + ``api/v{version}/VBDLISs/<action>/{securityCode}`` (the shared secret a path segment; TH-BV:3,
  TH-BC:64-176), keyed by ``SoBienNhan`` (the one-stop dossier code); the province answers ``{Result 1|0,
  Message}`` (TH-BR ProvideToVBLISBaseResponse.cs:20-21). The body is checked first (``vbdlis_steps.STEPS``): a
  step lacking a sourced field or of the wrong type is not sent (``strict=False`` sends it anyway, to test the
  hub's refusals). Over HTTP: ``POST /_push {"action", "body", "strict"?}`` → ``{status, answer, url}``.
- **province → VBDLIS** (the hub calls it): ``POST url + <operation>`` for ``tiepnhan``,
  ``capnhattrangthaibosunghoso``, ``capnhattrangthaitraketquahoso``, ``phanhoihososaiketqua`` (TH-BS:42, 76, 110,
  144), answered ``{data: 1, status{success, code, type, time, message}}`` (TH-BG:8-21), ``data`` 0 when refused:
  a call lacking a sourced field or of the wrong type, or naming a ``SoBienNhan`` never received by ``tiepnhan``.
  The values of ``status.code``/``status.type`` are not sourced (ours: 200/"success", 400/"error").

Unsourced and configurable: the hub's base URL and the path template (``step_path``), ``version`` (default "1"),
``security_code``, and where the province calls arrive (``base_path``, default ``/vbdlis/``).

``GET /_received`` → ``{"pushed": [{action, url, body, status, answer}], "calls": [{operation, body, data,
message}], "dossiers": {SoBienNhan: tiepnhan body}, "documents_fetched": [name]}`` (inline file contents replaced by
their size; the result files it serves at ``/documents/<name>``, ``documents.DocumentHost``).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import urllib3

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.devtools.simulators.documents import DocumentHost
from hub.devtools.simulators.vbdlis_steps import PROVINCE_CALLS, province_call_issues, step_issues

DEFAULT_STEP_PATH = "api/v{version}/VBDLISs/{action}/{security_code}"  # TH-BV:3; TH-BC:64-176
DEFAULT_SECURITY_CODE = "vbdlis-demo-secret"  # invented: no public value

_http = urllib3.PoolManager(num_pools=2, maxsize=4, retries=False, timeout=urllib3.Timeout(total=30))


class StepRefusedError(ValueError):
    """A step the simulator will not send: it lacks a sourced field or has a wrong type (``issues``)."""

    def __init__(self, action: str, issues: list[str]) -> None:
        self.issues = issues
        super().__init__(f"{action}: " + "; ".join(issues))


@dataclass(frozen=True)
class StepResult:
    """The province's (the hub's) answer to one step."""

    action: str
    url: str
    status: int
    answer: Any

    @property
    def well_formed(self) -> bool:
        """The answer is ``{Result 1|0, Message}`` (TH-BR ProvideToVBLISBaseResponse.cs:20-21)."""
        return (isinstance(self.answer, dict) and self.answer.get("Result") in (0, 1)
                and isinstance(self.answer.get("Message"), str | None) and "Message" in self.answer)  # fmt: skip

    @property
    def accepted(self) -> bool:
        return self.status == 200 and self.well_formed and self.answer["Result"] == 1


class VbdlisSimulator(DocumentHost, SimulatorServer):
    """VBDLIS on 127.0.0.1: ``url`` is the base URL the hub's connector calls (``url + "tiepnhan"``); its result
    files (``LinkFile``) are served at ``/documents/<name>`` (``publish``, ``signed_result``)."""

    name: ClassVar[str] = "ministry_vbdlis"
    path: ClassVar[str] = "/vbdlis/"

    def __init__(
        self,
        port: int = 0,
        *,
        hub_url: str | None = None,
        version: str = "1",
        security_code: str = DEFAULT_SECURITY_CODE,
        step_path: str = DEFAULT_STEP_PATH,
        base_path: str = "/vbdlis/",
    ) -> None:
        super().__init__(port)
        self.hub_url = hub_url
        self.version = version
        self.security_code = security_code
        self.step_path = step_path
        self.base_path = base_path if base_path.endswith("/") else base_path + "/"
        self._data_lock = threading.Lock()
        self._clear()

    @property
    def url(self) -> str:
        return self.base_url + self.base_path

    def _clear(self) -> None:
        self.pushed: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.dossiers: dict[str, dict[str, Any]] = {}

    def configure(self, *, hub_url: str | None = None, security_code: str | None = None,
                  version: str | None = None) -> None:  # fmt: skip
        """Set what sending needs once the hub is up and the connector registered."""
        self.hub_url = hub_url or self.hub_url
        self.security_code = security_code or self.security_code
        self.version = version or self.version

    def step_url(self, action: str, *, masked: bool = False) -> str:
        """Where ``action`` is sent; ``masked``: with ``***`` for the security code (as kept in ``pushed``)."""
        if self.hub_url is None:
            raise RuntimeError("the VBDLIS simulator was given no hub URL")
        secret = "***" if masked else self.security_code
        path = self.step_path.format(version=self.version, action=action, security_code=secret)
        return self.hub_url.rstrip("/") + "/" + path.lstrip("/")

    # ------------------------------------------------------------ VBDLIS → province (the hub)

    def send(self, action: str, body: dict[str, Any], *, strict: bool = True) -> StepResult:
        """POST one step to the hub now; a body that is not the sourced step raises ``StepRefusedError``
        unless ``strict`` is False."""
        issues = step_issues(action, body)
        if issues and strict:
            raise StepRefusedError(action, issues)
        url = self.step_url(action)
        response = _http.request("POST", url, body=json.dumps(body, ensure_ascii=False).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            answer: Any = json.loads(response.data or b"null")
        except ValueError:
            answer = {"raw": response.data.decode("utf-8", "replace")}
        result = StepResult(action, url, response.status, answer)
        with self._data_lock:
            self.pushed.append({"action": action, "url": self.step_url(action, masked=True), "body": body,
                                "status": response.status, "answer": answer})  # fmt: skip
        return result

    # ------------------------------------------------------------ inspection

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            kept = {"pushed": self.pushed, "calls": self.calls, "dossiers": self.dossiers,
                    "documents_fetched": self.documents_fetched}  # fmt: skip
            return json.loads(json.dumps(kept))

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()

    # ------------------------------------------------------------ HTTP

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path == "/_push":
            self._push(handler, body)
            return
        operation = path[len(self.base_path) :] if path.startswith(self.base_path) else None
        if operation not in PROVINCE_CALLS:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        issues = province_call_issues(operation, request)
        code = request.get("SoBienNhan") if isinstance(request, dict) else None
        with self._data_lock:
            if not issues and operation != "tiepnhan" and code not in self.dossiers:
                issues = [f"SoBienNhan: hồ sơ {code} chưa được tiếp nhận"]
            kept = _without_file_data(request)
            if not issues and operation == "tiepnhan":
                self.dossiers[str(code)] = kept
            message = "; ".join(issues) if issues else "Thành công"
            self.calls.append({"operation": operation, "body": kept, "data": 0 if issues else 1, "message": message})
        handler.reply(200, _answer(not issues, message))

    def _push(self, handler: SimulatorHandler, body: bytes) -> None:
        try:
            command = json.loads(body or b"{}")
            result = self.send(str(command["action"]), command["body"], strict=bool(command.get("strict", True)))
        except StepRefusedError as exc:
            handler.reply(400, {"error": str(exc), "issues": exc.issues})
            return
        except (ValueError, KeyError, TypeError, RuntimeError, urllib3.exceptions.HTTPError) as exc:
            handler.reply(400, {"error": str(exc)})
            return
        handler.reply(200, {"status": result.status, "answer": result.answer, "url": result.url})


def _answer(ok: bool, message: str) -> dict[str, Any]:
    """VBDLIS's answer to a province call: ``{data, status{success, code, type, time, message}}`` (TH-BG:8-21)."""
    status = {"success": ok, "code": 200 if ok else 400, "type": "success" if ok else "error",
              "time": dt.datetime.now(dt.UTC).isoformat(), "message": message}  # fmt: skip
    return {"data": 1 if ok else 0, "status": status}


def _without_file_data(request: object) -> Any:
    """The call as kept for inspection: inline file contents replaced by their size."""
    kept = copy.deepcopy(request)
    files = kept.get("DanhSachGiayToDinhKem") if isinstance(kept, dict) else None
    for item in files if isinstance(files, list) else []:
        file = item.get("TapTin") if isinstance(item, dict) else None
        if isinstance(file, dict) and isinstance(file.get("data"), str):
            file["data"] = f"<{len(file['data'])} Base64 characters>"
    return kept

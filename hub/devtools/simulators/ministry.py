"""A ministry's specialised software (phần mềm chuyên ngành, e.g. land registration) simulator.

It pushes its step messages to the hub when the test says so — ``push(step, transport="rest"|"soap")`` in
Python, or ``POST /_push {...}`` over HTTP for a simulator running in another process — signing each with its
own key: REST is ``POST /api/v1/messages`` with ``X-Api-Key``; SOAP is a zeep client built from the hub's WSDL
(``/soap/exchange?wsdl``). What it pushes is either its own step format ``<BuocXuLy>`` (``MinistryStep``,
``schemas/ministry-step.xsd``; the hub maps it with the ``ministry-steps`` profile) or a canonical
``dossier.status``, in an envelope of type ``dossier.status``. It also has an envelope inbox (``POST /inbox``)
for dossiers handed over to it.

``GET /_received`` → the inbox's messages plus ``"pushed": [{message_id, transport, status, answer}]`` and
``"documents_fetched"`` (the result files it serves at ``/documents/<name>``, ``documents.DocumentHost``).
``POST /_push`` takes ``{"transport": "rest"|"soap", "message_id": optional, "step": {…MinistryStep fields…}}``
(or ``"status": {…dossier.status fields…}``; snake_case, times ISO 8601) and answers with the hub's answer.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from lxml import etree
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from hub.devtools.simulators.base import SimulatorHandler
from hub.devtools.simulators.documents import DocumentHost
from hub.devtools.simulators.envelopes import PartnerSystem, SendResult, send, send_soap, signed_envelope
from hub.packets.dossier import DossierStatusUpdate
from mappings.national_portal import to_portal_time

TRANSPORTS = ("rest", "soap")
STEP_NAMESPACE = "urn:lienthong:ministry:1"  # schemas/ministry-step.xsd, mapped by mappings/ministry_steps.py
STEP_CODES = ("LuanChuyenHoSo", "ChoBoSung", "DaBoSung", "KetThuc")


class ResultDocument(BaseModel):
    """A result document of a ``KetThuc`` step (GiayToKetQua)."""

    code: str
    name: str
    url: str
    sha256: str | None = None


class MinistryStep(BaseModel):
    """A step message in the ministry's own format (``<BuocXuLy>``); ``unit`` defaults to the ministry's code."""

    dossier_code: str
    step: Literal["LuanChuyenHoSo", "ChoBoSung", "DaBoSung", "KetThuc"]
    at: AwareDatetime
    actor: str
    title: str | None = None
    department: str | None = None
    content: str | None = None
    due: AwareDatetime | None = None
    results: list[ResultDocument] = Field(default_factory=list)
    unit: str | None = None

    def to_element(self, unit: str) -> etree._Element:
        """The ``<BuocXuLy>`` element (times local to Asia/Ho_Chi_Minh, ``yyyyMMddHHmmss``)."""
        n = f"{{{STEP_NAMESPACE}}}"
        root = etree.Element(f"{n}BuocXuLy", nsmap={None: STEP_NAMESPACE})

        def add(parent: etree._Element, name: str, value: str | None) -> None:
            if value is not None:
                etree.SubElement(parent, f"{n}{name}").text = value

        add(root, "MaHoSo", self.dossier_code)
        add(root, "MaDonVi", self.unit or unit)
        add(root, "LoaiBuoc", self.step)
        add(root, "ThoiDiem", to_portal_time(self.at))
        add(root, "NguoiXuLy", self.actor)
        add(root, "ChucDanh", self.title)
        add(root, "PhongBan", self.department)
        add(root, "NoiDung", self.content)
        add(root, "HanXuLy", None if self.due is None else to_portal_time(self.due))
        if self.results:
            documents = etree.SubElement(root, f"{n}DanhSachGiayToKetQua")
            for result in self.results:
                item = etree.SubElement(documents, f"{n}GiayToKetQua")
                add(item, "MaGiayTo", result.code)
                add(item, "TenGiayTo", result.name)
                add(item, "DuongDan", result.url)
                add(item, "MaBam", result.sha256)
        return root


class MinistrySimulator(DocumentHost, PartnerSystem):
    """Ministry software on 127.0.0.1: pushes signed step messages to the hub by REST or SOAP, and serves its result
    documents (``publish``, ``signed_result``: ``hub.devtools.simulators.documents``)."""

    name: ClassVar[str] = "ministry"
    default_code: ClassVar[str] = "000.00.00.G10"

    def __init__(self, port: int = 0, *, transport: str = "rest", **options: Any) -> None:
        """``options``: see ``PartnerSystem`` (trust, code, signer, hub_url, api_key, hub_code)."""
        super().__init__(port, **options)
        self.transport = transport
        self.pushed: list[dict[str, Any]] = []

    def envelope(
        self, step: DossierStatusUpdate | MinistryStep | etree._Element, *, message_id: str | None = None
    ) -> bytes:
        """The step in an envelope (type ``dossier.status``) from this ministry to the hub, signed with its key:
        a canonical ``dossier.status``, or the ministry's own ``<BuocXuLy>`` (a ``MinistryStep``)."""
        if self.signer is None:
            raise RuntimeError("the ministry simulator was given no signing key")
        if isinstance(step, MinistryStep):
            return signed_envelope(
                self.signer, sender=self.code, receiver=self.hub_code, payload=step.to_element(self.code),
                message_type="dossier.status", message_id=message_id, dossier_code=step.dossier_code,
            )  # fmt: skip
        return signed_envelope(self.signer, sender=self.code, receiver=self.hub_code, payload=step,
                               message_id=message_id)  # fmt: skip

    def push(
        self,
        step: DossierStatusUpdate | MinistryStep | etree._Element | bytes,
        *,
        transport: str | None = None,
        message_id: str | None = None,
    ) -> SendResult:
        """Push one step to the hub now; ``step`` may be a model, a payload element or signed envelope bytes
        (sent as they are, e.g. to resend a duplicate)."""
        transport = transport or self.transport
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r} (rest or soap)")
        if self.hub_url is None or self.api_key is None:
            raise RuntimeError("the ministry simulator was given no hub URL or API key")
        data = step if isinstance(step, bytes) else self.envelope(step, message_id=message_id)
        result = (send if transport == "rest" else send_soap)(data, self.api_key, self.hub_url)
        with self._data_lock:
            self.pushed.append(
                {
                    "message_id": result.message_id,
                    "transport": transport,
                    "status": result.status,
                    "answer": result.body,
                }
            )
        return result

    def received(self) -> dict[str, Any]:
        data = super().received()
        with self._data_lock:
            data["pushed"] = list(self.pushed)
        return data

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self.pushed = []

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path != "/_push":
            super().handle_post(handler, path, body)
            return
        try:
            command = json.loads(body or b"{}")
            step: DossierStatusUpdate | MinistryStep = (
                MinistryStep.model_validate(command["step"])
                if "step" in command
                else DossierStatusUpdate.model_validate(command["status"])
            )
            result = self.push(step, transport=command.get("transport"), message_id=command.get("message_id"))
        except (ValueError, KeyError, TypeError, ValidationError, RuntimeError) as exc:
            handler.reply(400, {"error": str(exc)})
            return
        handler.reply(200, {"status": result.status, "message_id": result.message_id, "answer": result.body})

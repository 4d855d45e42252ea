"""Envelope partners (provincial system, ministry software): an inbox that receives the hub's signed envelopes,
and the client helpers that sign and send envelopes to the hub.

The inbox (``POST /inbox``, an ``application/xml`` signed envelope with ``X-Message-Id``):

- verifies the hub's signature when the simulator was given a trust path (a CA/certificate file or folder):
  an envelope that does not verify is answered 403 with the reason (the hub must not retry it);
- deduplicates on ``X-Message-Id`` (the effect happens once; the duplicate is answered 200 and counted);
- keeps each message: id, type, sender, receiver, dossier code, whether its signature was verified, the
  canonical payload (XML text) and when it arrived.

``GET /_received`` → ``{"messages": [...], "received": n, "duplicates": n, "rejected": n}``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import urllib3
from lxml import etree
from pydantic import BaseModel

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.errors import LienthongError
from hub.security.envelope import EnvelopeHeader, body_payload, read_header
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore, sign_payload
from hub.xmlparse import parse_xml

_http = urllib3.PoolManager(num_pools=4, maxsize=8, retries=False, timeout=urllib3.Timeout(total=30))


class EnvelopeInbox(SimulatorServer):
    """A partner that receives signed envelopes from the hub at ``/inbox``."""

    path = "/inbox"

    def __init__(self, port: int = 0, *, trust: Path | str | TrustStore | None = None) -> None:
        super().__init__(port)
        if trust is None or isinstance(trust, TrustStore):
            self.trust = trust
        else:
            self.trust = TrustStore.from_path(Path(trust))
        self._verifier = EnvelopeVerifier(self.trust) if self.trust is not None else None
        self._data_lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.received_count = 0
        self.duplicates = 0
        self.rejected = 0

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return {
                "messages": list(self.messages.values()),
                "received": self.received_count,
                "duplicates": self.duplicates,
                "rejected": self.rejected,
            }

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()

    def payloads(self, message_type: str | None = None) -> list[etree._Element]:
        """The canonical payloads received (optionally of one type), parsed, in arrival order."""
        with self._data_lock:
            kept = [m for m in self.messages.values() if message_type in (None, m["message_type"])]
        return [parse_xml(m["payload"].encode()) for m in kept]

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path != self.path:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        message_id = handler.headers.get("X-Message-Id", "")
        if not message_id:
            handler.reply(400, {"error": "X-Message-Id header is required"})
            return
        verified = False
        try:
            if self._verifier is not None:
                checked = self._verifier.verify(body)
                header, payload, verified = checked.header, checked.payload, True
            else:
                root = parse_xml(body)
                header, payload = read_header(root), body_payload(root)
        except LienthongError as exc:
            with self._data_lock:
                self.rejected += 1
            status = 403 if self._verifier is not None and "signature" in type(exc).__name__.lower() else 400
            handler.reply(status, {"error": str(exc), "message_id": message_id})
            return
        if header.message_id != message_id:
            with self._data_lock:
                self.rejected += 1
            handler.reply(400, {"error": f"X-Message-Id {message_id} differs from the envelope's {header.message_id}"})
            return
        with self._data_lock:
            self.received_count += 1
            duplicate = message_id in self.messages
            if duplicate:
                self.duplicates += 1
            else:
                self.messages[message_id] = {
                    "message_id": message_id,
                    "message_type": header.message_type,
                    "sender": header.sender,
                    "receiver": header.receiver,
                    "dossier_code": header.dossier_code,
                    "correlation_id": header.correlation_id,
                    "verified": verified,
                    "payload": etree.tostring(payload, encoding="unicode"),
                    "received_at": dt.datetime.now(dt.UTC).isoformat(),
                }
        handler.reply(200, {"received": message_id, "duplicate": duplicate})


# ---------------------------------------------------------------- sending to the hub


class PartnerSystem(EnvelopeInbox):
    """A partner system that receives the hub's envelopes at ``/inbox`` and sends its own, signed with its key
    (the provincial system, a ministry's software)."""

    default_code: ClassVar[str] = ""

    def __init__(
        self,
        port: int = 0,
        *,
        trust: Path | str | TrustStore | None = None,
        code: str | None = None,
        signer: Signer | None = None,
        hub_url: str | None = None,
        api_key: str | None = None,
        hub_code: str = "000.00.00.H00",
    ) -> None:
        super().__init__(port, trust=trust)
        self.code = code or self.default_code
        self.signer = signer
        self.hub_url = hub_url
        self.api_key = api_key
        self.hub_code = hub_code

    def configure(
        self, *, signer: Signer | None = None, hub_url: str | None = None, api_key: str | None = None
    ) -> None:
        """Set what sending needs once the hub is up and the connector registered."""
        self.signer = signer or self.signer
        self.hub_url = hub_url or self.hub_url
        self.api_key = api_key or self.api_key


@dataclass(frozen=True)
class SendResult:
    """The hub's answer to a pushed envelope."""

    status: int
    body: dict[str, Any]
    message_id: str

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


def signed_envelope(
    signer: Signer,
    *,
    sender: str,
    receiver: str,
    payload: BaseModel | etree._Element,
    message_type: str | None = None,
    message_id: str | None = None,
    correlation_id: str = "",
    user_id: str | None = None,
    dossier_code: str | None = None,
) -> bytes:
    """A canonical packet (model or payload element) wrapped in an envelope and signed by ``signer``."""
    from hub import packets

    if isinstance(payload, BaseModel):
        message_type = message_type or packets.packet_type_for_model(payload).name
        element = packets.to_element(payload)
    else:
        element = payload
        message_type = message_type or packets.packet_type_for_element(element).name
    dossier_code = dossier_code or element.findtext(f"{{{packets.PACKET_NAMESPACE}}}dossierCode")
    header = EnvelopeHeader(
        sender=sender,
        receiver=receiver,
        message_type=message_type,
        correlation_id=correlation_id,
        dossier_code=dossier_code,
        user_id=user_id,
        **({"message_id": message_id} if message_id else {}),
    )
    return etree.tostring(sign_payload(signer, header, element), xml_declaration=True, encoding="UTF-8")


def send(envelope_bytes: bytes, api_key: str, hub_url: str, *, timeout_s: float = 30.0) -> SendResult:
    """POST a signed envelope to the hub's ``/api/v1/messages`` with the sender's API key."""
    message_id = read_header(parse_xml(envelope_bytes), validate=False).message_id
    response = _http.request(
        "POST",
        hub_url.rstrip("/") + "/api/v1/messages",
        body=envelope_bytes,
        headers={"Content-Type": "application/xml", "X-Api-Key": api_key},
        timeout=urllib3.Timeout(total=timeout_s),
    )
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = {"raw": response.data.decode("utf-8", "replace")}
    return SendResult(response.status, body if isinstance(body, dict) else {"raw": body}, message_id)


def send_soap(envelope_bytes: bytes, api_key: str, hub_url: str, *, timeout_s: float = 30.0) -> SendResult:
    """Submit a signed envelope through the hub's SOAP entry with a zeep client built from its WSDL.

    A SOAP fault is returned as ``SendResult`` with the fault's HTTP-equivalent status (from its Problem detail,
    else 500) and ``{"fault": message}``."""
    import zeep
    import zeep.exceptions
    from zeep.transports import Transport

    message_id = read_header(parse_xml(envelope_bytes), validate=False).message_id
    client = _soap_client(hub_url.rstrip("/"), timeout_s, zeep, Transport)
    try:
        answer = client.service.SubmitEnvelope(SignedEnvelope=envelope_bytes, _soapheaders={"ApiKey": api_key})
    except zeep.exceptions.Fault as fault:
        status = 500
        detail = fault.detail
        if detail is not None:
            found = detail.findtext(".//{*}Status")
            if found and found.strip().isdigit():
                status = int(found.strip())
        return SendResult(status, {"fault": fault.message}, message_id)
    body = {
        "message_id": answer["MessageId"],
        "status": answer["Status"],
        "duplicate": bool(answer["Duplicate"]),
        "destinations": list(answer["Destination"] or []),
    }
    return SendResult(200, body, message_id)


_soap_clients: dict[str, Any] = {}
_soap_lock = threading.Lock()


def _soap_client(hub_url: str, timeout_s: float, zeep: Any, transport_cls: Any) -> Any:
    with _soap_lock:
        client = _soap_clients.get(hub_url)
        if client is None:
            client = zeep.Client(f"{hub_url}/soap/exchange?wsdl", transport=transport_cls(timeout=timeout_s))
            _soap_clients[hub_url] = client
        return client

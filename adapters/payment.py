"""The national Payment Platform adapter, protocol (a) of PARTNER-FORMATS §3 (profile ``paygov/1.0.6``).

Sends the ``INIT`` — or, for a ``payment.request`` of ``kind`` ``refund`` (Tiền Giang Điều 17.4), the hub's own
``REFUND`` — the worker mapped (``mappings.payment.to_platform``), stamped with the connector's profile values,
its partner code, the time of the call and the checksum (``mappings.payment.stamp``/``sign``). One configured URL
per message kind (the profile's ``init_url``, ``query_url``, ``get_bill_url``, ``refund_url``: OC-PI:1348, 2299;
TH-PS:62, 138, 195), each a path after ``endpoint.url`` or a URL; a connector without a profile sends every kind
to ``endpoint.url``. ``Authorization: Bearer <token>`` on every call when the connector's credentials carry a
``token`` (TH-PS:58-59, 135, 192). ``DeliveryReceipt.sent`` is the JSON body exactly as posted (the secret is never
in it, only the checksum it keys).

``query`` (QUERY, with the INIT's ``ThoiGianGD``, TH-PQ:45) and ``get_bill`` (GET_BILL, with the CONFIRM's,
OC-PI:2295) serve reconciliation and the receipt (``hub.flows``). GET_BILL's answer is kept as the platform sent
it: a PDF (TH-PS:62-79) or JSON (OC-PI:2343); a JSON answer whose ``MaLoi`` is not "00" is a refusal.

A REFUND is not sent for a dossier resolved since intake (status 9 or 10, Tiền Giang Điều 17.4): ``refund_guard``
(the hub's check of its store, passed in) says so, and the delivery is refused (permanent).

``on_initiated(destination, request, message_id, answer, details)`` (optional) is called after a successful INIT
(or REFUND) so the hub records the reference, amount and dossier it expects a ``CONFIRM`` for, with ``details``:
``profile``, ``init_time`` (the INIT's ``ThoiGianGD``), ``payment_url`` (``UrlThanhToan``, handed back to the
province in the delivery's receipt).

Retry classification: timeouts, connection failures, HTTP 5xx/429, a reply that is not JSON and ``MaLoi`` in the
profile's ``transient_codes`` → ``TransientDeliveryError``; HTTP 4xx and any other ``MaLoi`` →
``PermanentDeliveryError``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.dvcqg import url_for
from adapters.http import classify_status, partner_pool
from hub.logs import mask_ids
from hub.packets.payment import PaymentRequest
from mappings import payment as pm

Initiated = Callable[..., None]


def local_ip() -> str:
    """This host's address, the INIT's ``Ip`` when the profile sets none (both sources send their own:
    OC-PI:1438, TH-PS:106); the loopback address when the name does not resolve."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


@dataclass(frozen=True)
class Bill:
    """The e-receipt (``GET_BILL``) as the platform sent it: the body and its content type."""

    content: bytes
    content_type: str

    @property
    def is_pdf(self) -> bool:
        return self.content.startswith(b"%PDF-") or self.content_type.startswith("application/pdf")


class PaymentAdapter(Adapter):
    partner_format = pm.KIND

    def __init__(
        self,
        endpoint: str,
        *,
        partner_code: str,
        secret: str,
        settings: Mapping[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        on_initiated: Initiated | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        profile: str | None = None,
        refund_guard: Callable[[str], str | None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.partner_code = partner_code
        self.settings = {**pm.DEFAULTS, **(settings or {})}
        self.profile = profile
        self._secret = secret
        self._token = token
        self.on_initiated = on_initiated
        self.refund_guard = refund_guard
        self._clock = clock
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)
        value = self.settings.get
        self.urls = {
            pm.INIT: url_for(endpoint, value("init_url", "")),
            pm.QUERY: url_for(endpoint, value("query_url", "")),
            pm.GET_BILL: url_for(endpoint, value("get_bill_url", "")),
            pm.REFUND: url_for(endpoint, value("refund_url", "") or value("init_url", "")),
        }
        self._transient = {c.strip() for c in value("transient_codes", "").split(",") if c.strip()}

    def __repr__(self) -> str:  # never the secret
        return f"PaymentAdapter({self.endpoint!r}, partner_code={self.partner_code!r}, profile={self.profile!r})"

    # ------------------------------------------------------------ transport

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _post(self, kind: str, body: bytes) -> tuple[int, bytes, str]:
        where = f"the payment platform's {kind} at {self.urls[kind]}"
        try:
            response = self._pool.request("POST", self.urls[kind], body=body, headers=self._headers())
        except Urllib3Timeout:
            raise TransientDeliveryError(f"timed out calling {where}") from None
        except Urllib3Error as exc:
            raise TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from None
        return response.status, response.data, str(response.headers.get("Content-Type", ""))

    def _answer(self, kind: str, text: str) -> dict[str, Any]:
        """The JSON answer of a call, ``MaLoi`` "00" checked."""
        where = f"the payment platform's {kind}"
        try:
            answer = json.loads(text)
            if not isinstance(answer, dict) or not isinstance(answer.get("MaLoi"), str):
                raise ValueError("no MaLoi")
        except ValueError:
            raise TransientDeliveryError(f"{where} answered a malformed reply: {text[:80]!r}") from None
        code = answer["MaLoi"]
        if code != pm.SUCCESS:
            detail = mask_ids(f"{where} refused {kind}: MaLoi {code} {answer.get('MoTaLoi', '')}")
            if code in self._transient:
                raise TransientDeliveryError(detail)
            raise PermanentDeliveryError(detail)
        return answer

    def _send(self, message: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Sign and send one message; (the body exactly as posted, the answer with ``MaLoi`` "00")."""
        kind = str(message["LoaiBanTin"])
        body = json.dumps(pm.sign(message, self._secret), ensure_ascii=False).encode()
        status, data, _ = self._post(kind, body)
        text = data.decode("utf-8", "replace")
        classify_status(status, mask_ids(text))
        return body, self._answer(kind, text)

    def call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one message (checksum added); the answer when ``MaLoi`` is ``00``, else a delivery error."""
        return self._send(message)[1]

    # ------------------------------------------------------------ messages

    def stamped(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The mapped message with the profile's values, the partner code and the time of the call."""
        return pm.stamp(
            message, partner_code=self.partner_code, at=self._clock(), settings=self.settings, ip=local_ip()
        )

    def init(self, request: PaymentRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """INIT for a payment request: (message sent, answer with ``UrlThanhToan``)."""
        message = self.stamped(pm.init_message(request))
        return message, self.call(message)

    def refund(self, request: PaymentRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """REFUND (ours) for a ``payment.request`` of kind ``refund``: (message sent, answer)."""
        message = self.stamped(pm.refund_message(request))
        return message, self.call(message)

    def _query_message(self, kind: str, reference: str, at: str | None) -> dict[str, Any]:
        return pm.query_message(
            kind,
            partner_code=self.partner_code,
            reference=reference,
            at=at or pm.local_time(self._clock()),
            version=self.settings["version"],
        )

    def query(self, reference: str, at: str | None = None) -> dict[str, Any]:
        """QUERY a reference with the INIT's ``ThoiGianGD`` ``at`` (TH-PQ:45; now when unknown): the reply."""
        return self.call(self._query_message(pm.QUERY, reference, at))

    def get_bill(self, reference: str, at: str | None = None) -> Bill:
        """GET_BILL with the CONFIRM's ``ThoiGianGD`` ``at`` (OC-PI:2295): the e-receipt as sent (a PDF or JSON)."""
        message = self._query_message(pm.GET_BILL, reference, at)
        body = json.dumps(pm.sign(message, self._secret), ensure_ascii=False).encode()
        status, data, content_type = self._post(pm.GET_BILL, body)
        classify_status(status, mask_ids(data[:300].decode("utf-8", "replace")))
        bill = Bill(data, content_type)
        if not bill.is_pdf:
            self._answer(pm.GET_BILL, data.decode("utf-8", "replace"))  # a JSON refusal is an error
        return bill

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        mapped = request.mapped("the payment platform")
        if not isinstance(model, PaymentRequest) or not isinstance(mapped, dict):
            raise PermanentDeliveryError(f"the payment platform takes payment.request, not {request.message_type}")
        if model.kind == "refund" and self.refund_guard is not None:
            why = self.refund_guard(model.dossier_code)
            if why is not None:  # resolved since intake checked it
                raise PermanentDeliveryError(f"refund-dossier-resolved: {why}")
        message = self.stamped(mapped)
        sent, answer = self._send(message)
        url = answer.get("UrlThanhToan")
        if self.on_initiated is not None:
            details = {
                "profile": self.profile,
                "init_time": message.get("ThoiGianGD"),
                "payment_url": url if isinstance(url, str) else None,
            }
            self.on_initiated(request.destination, model, request.message_id, answer, details)
        if model.kind == "refund":
            what = f"REFUND MaLoi=00 MaThamChieu={model.reference} MaThamChieuGoc={model.original_reference}"
        else:
            what = f"INIT MaLoi=00 MaThamChieu={model.reference} UrlThanhToan={url or ''}"
        return DeliveryReceipt.for_body(what, sent)

    def close(self) -> None:
        self._pool.clear()

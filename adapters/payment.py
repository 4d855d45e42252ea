"""The payment platform adapter: sends the ``INIT`` — or, for a ``payment.request`` of ``kind`` ``refund`` (Tiền
Giang Điều 17.4), the ``REFUND`` of its ``original_reference`` — the worker mapped (``mappings.payment.to_platform``),
with its partner code, the time of the call and the checksum filled in; ``QUERY`` and ``GET_BILL`` are available
for reconciliation. ``DeliveryReceipt.sent`` is the JSON body exactly as posted (the secret is never in it, only
the checksum it keys).

``on_initiated(destination, request, message_id, answer)`` (optional) is called after a successful INIT so the hub
records the reference, amount and dossier it expects a ``CONFIRM`` for (``hub.flows.payments``).

Retry classification: timeouts, connection failures, HTTP 5xx/429, a reply that is not JSON and ``MaLoi`` ``99``
→ ``TransientDeliveryError``; HTTP 4xx, a wrong checksum (``01``), unknown partner or data (``02``), a reference
already used for another amount (``03``) → ``PermanentDeliveryError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.http import classify_status, partner_pool, request_text
from hub.logs import mask_ids
from hub.packets.payment import PaymentRequest
from mappings import payment as pm

TRANSIENT_CODES = frozenset({"99"})


class PaymentAdapter(Adapter):
    def __init__(
        self,
        endpoint: str,
        *,
        partner_code: str,
        secret: str,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        on_initiated: Callable[[str, PaymentRequest, str, dict[str, Any]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoint = endpoint
        self.partner_code = partner_code
        self._secret = secret
        self.on_initiated = on_initiated
        self._clock = clock
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)

    def __repr__(self) -> str:  # never the secret
        return f"PaymentAdapter({self.endpoint!r}, partner_code={self.partner_code!r})"

    partner_format = pm.KIND

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one checksummed message; the answer when ``MaLoi`` is ``00``, else a delivery error."""
        return self._send(message)[1]

    def _send(self, message: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """``call``, also returning the body exactly as posted."""
        body = json.dumps(pm.sign(message, self._secret), ensure_ascii=False).encode()
        where = f"the payment platform at {self.endpoint}"
        status, text = request_text(
            self._pool, "POST", self.endpoint, where=where, body=body, headers={"Content-Type": "application/json"}
        )
        classify_status(status, mask_ids(text))
        try:
            answer = json.loads(text)
            if not isinstance(answer, dict) or not isinstance(answer.get("MaLoi"), str):
                raise ValueError("no MaLoi")
        except ValueError:
            raise TransientDeliveryError(f"{where} answered a malformed reply: {text[:80]!r}") from None
        code = answer["MaLoi"]
        if code != pm.SUCCESS:
            detail = mask_ids(f"{where} refused {message['LoaiBanTin']}: MaLoi {code} {answer.get('MoTaLoi', '')}")
            if code in TRANSIENT_CODES:
                raise TransientDeliveryError(detail)
            raise PermanentDeliveryError(detail)
        return body, answer

    def init(self, request: PaymentRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """INIT for a payment request: (message sent, answer with ``UrlThanhToan``)."""
        message = pm.init_message(request, partner_code=self.partner_code, at=self._clock())
        return message, self.call(message)

    def refund(self, request: PaymentRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """REFUND for a ``payment.request`` of kind ``refund``: (message sent, answer)."""
        message = pm.refund_message(request, partner_code=self.partner_code, at=self._clock())
        return message, self.call(message)

    def query(self, reference: str, kind: str = pm.QUERY) -> dict[str, Any]:
        return self.call(pm.query_message(kind, partner_code=self.partner_code, reference=reference, at=self._clock()))

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        mapped = request.mapped("the payment platform")
        if not isinstance(model, PaymentRequest) or not isinstance(mapped, dict):
            raise PermanentDeliveryError(f"the payment platform takes payment.request, not {request.message_type}")
        sent, answer = self._send(pm.stamp(mapped, partner_code=self.partner_code, at=self._clock()))
        if self.on_initiated is not None:
            self.on_initiated(request.destination, model, request.message_id, answer)
        if model.kind == "refund":
            what = f"REFUND MaLoi=00 MaThamChieu={model.reference} MaThamChieuGoc={model.original_reference}"
        else:
            what = f"INIT MaLoi=00 MaThamChieu={model.reference} UrlThanhToan={answer.get('UrlThanhToan', '')}"
        return DeliveryReceipt.for_body(what, sent)

    def close(self) -> None:
        self._pool.clear()

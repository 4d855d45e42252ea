"""PayGov through the provincial LGSP gateway, protocol (b) of PARTNER-FORMATS §3 (profile ``paygov/lgsp``).

Sends the order the worker mapped (``mappings.paygov_lgsp.order_draft``), stamped with the connector's values,
a ``requestCode`` (the time in milliseconds, as OC-PI:1787 appends it), this host's address and the checksum, to
the profile's ``order_url`` with ``Authorization: Bearer <token>`` and ``lgspaccesstoken`` (OC-API:160-163); the
answer's ``data.url`` is the payer's page (OC-API:200-206). ``receipt`` is the e-receipt call (``receipt_url``,
OC-API:347-410; body OC-PF:1510-1568) answering ``transactionReceipt``, the URL of the PDF, which it then fetches.

No status query is sourced for PayGov: its payments are settled by the callback only (``hub payments reconcile``
lists them without querying). Refunds are not sourced either: a refund request is refused (permanent).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.dvcqg import url_for
from adapters.http import classify_status, partner_pool
from adapters.payment import Bill, Initiated, local_ip
from hub.errors import MappingError
from hub.logs import mask_ids
from hub.packets.payment import PaymentRequest
from mappings import paygov_lgsp as pg


class PayGovLgspAdapter(Adapter):
    partner_format = pg.KIND

    def __init__(
        self,
        endpoint: str,
        settings: Mapping[str, str],
        *,
        partner_code: str,
        secret_key: str,
        token: str | None,
        lgsp_access_token: str | None,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        on_initiated: Initiated | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoint = endpoint
        self.settings = dict(settings)
        self.partner_code = partner_code
        self._secret = secret_key
        self._token = token
        self._lgsp = lgsp_access_token
        self.on_initiated = on_initiated
        self._clock = clock
        self.order_url = url_for(endpoint, settings["order_url"])
        self.receipt_url = url_for(endpoint, settings["receipt_url"])
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)

    def __repr__(self) -> str:  # never a secret
        return f"PayGovLgspAdapter({self.endpoint!r}, partner_code={self.partner_code!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "*/*", "Charset": "utf-8"}  # OC-API:158-161
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._lgsp:
            headers["lgspaccesstoken"] = self._lgsp
        return headers

    def _request(self, method: str, url: str, what: str, body: bytes | None = None) -> tuple[bytes, str]:
        where = f"PayGov's {what} at {url.split('?')[0]}"
        try:
            response = self._pool.request(method, url, body=body, headers=self._headers())
        except Urllib3Timeout:
            raise TransientDeliveryError(f"timed out calling {where}") from None
        except Urllib3Error as exc:
            raise TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from None
        classify_status(response.status, mask_ids(response.data[:300].decode("utf-8", "replace")))
        return response.data, str(response.headers.get("Content-Type", ""))

    def _json(self, url: str, what: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        data, _ = self._request("POST", url, what, json.dumps(payload, ensure_ascii=False).encode())
        try:
            answer = json.loads(data)
        except ValueError:
            raise TransientDeliveryError(f"PayGov's {what} answered a malformed reply: {data[:80]!r}") from None
        if not isinstance(answer, dict):
            raise TransientDeliveryError(f"PayGov's {what} answered a malformed reply: {data[:80]!r}")
        return answer

    def order(self, request: PaymentRequest) -> tuple[dict[str, str], dict[str, Any]]:
        """The order for a payment request: (the order sent, the answer with ``data.url``)."""
        return self._order(pg.order_draft(request), request)

    def _order(self, draft: Mapping[str, str | None], request: PaymentRequest) -> tuple[dict[str, str], dict[str, Any]]:
        request_code = f"{int(self._clock().timestamp() * 1000)}{time.monotonic_ns() % 1000:03d}"
        order = pg.stamp_order(
            draft,
            request,
            partner_code=self.partner_code,
            secret_key=self._secret,
            settings=self.settings,
            request_code=request_code,
            ip=local_ip(),
        )
        answer = self._json(self.order_url, "order", order)
        try:
            pg.payment_url(answer)
        except MappingError as exc:  # OC treats it as a failure of the call (OC-API:196-210)
            raise PermanentDeliveryError(
                mask_ids(
                    f"PayGov refused the order {order['orderId']}: {exc}: "
                    f"{json.dumps(answer, ensure_ascii=False)[:200]}"
                )
            ) from None
        return order, answer

    def receipt(self, request: PaymentRequest, transaction_code: str) -> Bill:
        """The e-receipt of a paid order: the call answering ``transactionReceipt`` (OC-API:405), then the PDF
        behind that URL (OC-PF:1571-1578)."""
        body = pg.receipt_message(
            request,
            partner_code=self.partner_code,
            secret_key=self._secret,
            settings=self.settings,
            transaction_code=transaction_code,
            at=self._clock(),
        )
        answer = self._json(self.receipt_url, "e-receipt call", body)
        link = answer.get("transactionReceipt")
        if not isinstance(link, str) or not link:
            raise PermanentDeliveryError("PayGov's e-receipt call answered no transactionReceipt")
        data, content_type = self._request("GET", link, "e-receipt")
        return Bill(data, content_type)

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        draft = request.mapped("PayGov")
        if not isinstance(model, PaymentRequest) or not isinstance(draft, dict):
            raise PermanentDeliveryError(f"PayGov takes payment.request, not {request.message_type}")
        order, answer = self._order(draft, model)
        url = pg.payment_url(answer)
        if self.on_initiated is not None:
            details = {"profile": pg.PROFILE, "partner_reference": order["orderId"], "payment_url": url}
            self.on_initiated(request.destination, model, request.message_id, answer, details)
        sent = json.dumps(order, ensure_ascii=False).encode()
        return DeliveryReceipt.for_body(
            f"PayGov order {order['orderId']} MaThamChieu={model.reference} url={url}", sent
        )

    def close(self) -> None:
        self._pool.clear()

"""The postal service adapter: OAuth2 client-credentials token (cached, renewed shortly before it expires or at
once on a 401), the order the worker mapped from a ``postal.order`` (``mappings.postal.to_order``) →
``POST {endpoint}/orders`` with the customer code filled in, cancel, price quote, and the paged tracking feed that
``hub.flows.postal_tracking`` polls. ``DeliveryReceipt.sent`` is the order's JSON body exactly as posted (the
bearer token travels in a header, not in it).

Retry classification: timeouts, connection failures, HTTP 5xx/429, a token refused (the credentials may be fixed
by an operator) and a reply that is not JSON → ``TransientDeliveryError``; HTTP 4xx on an order (the content is
refused) → ``PermanentDeliveryError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.credentials import RenewingToken
from adapters.http import classify_status, partner_pool, request_text
from hub.logs import mask_ids
from hub.packets.postal import PostalOrder
from mappings.postal import KIND, to_order


class PostalAdapter(Adapter):
    partner_format = KIND

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        customer_code: str,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        renew_margin_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token_url = self.endpoint + "/oauth/token"
        self.customer_code = customer_code
        self._client_id = client_id
        self._client_secret = client_secret
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)
        self._token = RenewingToken(self._fetch_token, renew_margin_s=renew_margin_s, clock=clock)

    def __repr__(self) -> str:
        return f"PostalAdapter({self.endpoint!r}, client_id={self._client_id!r})"

    # ------------------------------------------------------------ HTTP

    def _request(self, method: str, url: str, **kw: Any) -> tuple[int, Any, str]:
        status, text = request_text(self._pool, method, url, where=f"the postal service at {url}", **kw)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        return status, data, text

    @property
    def tokens_fetched(self) -> int:
        return self._token.fetched

    def token(self) -> str:
        """The cached bearer token, fetching one first when there is none or it is about to expire."""
        return self._token.get()

    def _fetch_token(self) -> tuple[str, float]:
        status, data, text = self._request(
            "POST",
            self.token_url,
            body=urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                }
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200 or not isinstance(data, dict) or not data.get("access_token"):
            raise TransientDeliveryError(f"the postal service refused a token: HTTP {status} {text[:120]}")
        return str(data["access_token"]), float(data.get("expires_in") or 600)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """One authorized call; a 401 renews the token and tries once more."""
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        return self._call(method, path, body)

    def _call(self, method: str, path: str, body: bytes | None) -> Any:
        url = self.endpoint + path
        for attempt in range(2):
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"}
            kw: dict[str, Any] = {"headers": headers}
            if body is not None:
                headers["Content-Type"] = "application/json"
                kw["body"] = body
            status, data, text = self._request(method, url, **kw)
            if status == 401 and attempt == 0:
                self._token.drop(token)
                continue
            break
        classify_status(status, mask_ids(text))
        if not isinstance(data, dict):
            raise TransientDeliveryError(f"the postal service answered a malformed reply: {text[:80]!r}")
        return data

    # ------------------------------------------------------------ operations

    def create(self, order: PostalOrder) -> tuple[dict[str, Any], dict[str, Any]]:
        payload = to_order(order, customer_code=self.customer_code)
        return payload, self.call("POST", "/orders", payload)

    def _order_body(self, mapped: dict[str, Any]) -> bytes:
        """The mapped order with this customer's code, as posted."""
        return json.dumps({**mapped, "CustomerCode": self.customer_code}, ensure_ascii=False).encode()

    def cancel(self, order_number: str, item_code: str | None = None) -> dict[str, Any]:
        return self.call("POST", "/orders/cancel", {"OrderNumber": order_number, "ItemCode": item_code})

    def price(self, sender_province: str, receiver_province: str, cod_amount: int = 0) -> int:
        answer = self.call("POST", "/price", {"SenderProvince": sender_province, "ReceiverProvince": receiver_province,
                                              "CODAmount": cod_amount})  # fmt: skip
        return int(answer["TotalFee"])

    def tracking(self, last_id: int, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Tracking events after ``last_id`` (oldest first) and the feed's new last id."""
        answer = self.call("GET", f"/tracking?lastId={int(last_id)}&limit={int(limit)}")
        items = answer.get("items")
        if not isinstance(items, list):
            raise TransientDeliveryError("the postal tracking feed answered without items")
        return items, int(answer.get("lastId") or last_id)

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        mapped = request.mapped("the postal service")
        if not isinstance(model, PostalOrder) or not isinstance(mapped, dict):
            raise PermanentDeliveryError(f"the postal service takes postal.order, not {request.message_type}")
        sent = self._order_body(mapped)
        answer = self._call("POST", "/orders", sent)
        return DeliveryReceipt.for_body(
            f"order {model.direction.value} OrderNumber={mapped['OrderNumber']} ItemCode={answer.get('ItemCode')}", sent
        )

    def close(self) -> None:
        self._pool.clear()

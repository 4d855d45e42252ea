"""The plain HTTP adapter: POST the signed envelope as ``application/xml`` to the partner's endpoint."""

from __future__ import annotations

import httpx

from adapters.base import (
    Adapter,
    DeliveryReceipt,
    OutboundRequest,
    PermanentDeliveryError,
    TransientDeliveryError,
)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify_status(status: int, text: str) -> DeliveryReceipt:
    """Turn a partner's HTTP status into a receipt or the right error."""
    if 200 <= status < 300:
        return DeliveryReceipt(status, text[:200])
    detail = f"partner answered HTTP {status}: {text[:300]}".strip()
    if status in RETRYABLE_STATUS or status >= 500:
        raise TransientDeliveryError(detail, status=status)
    raise PermanentDeliveryError(detail, status=status)


class HttpAdapter(Adapter):
    """A pooled, keep-alive sync client (cheaper per request than an AsyncClient, see PERFORMANCE.md)."""

    def __init__(self, endpoint: str, *, timeout_s: float = 10.0, max_connections: int = 8) -> None:
        self.endpoint = endpoint
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        headers = {
            "Content-Type": "application/xml",
            "X-Message-Id": request.message_id,
            "X-Message-Type": request.message_type,
            **request.headers,
        }
        try:
            response = self._client.post(self.endpoint, content=request.body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(f"timed out calling {self.endpoint}: {exc!r}") from None
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"cannot reach {self.endpoint}: {exc!r}") from None
        return classify_status(response.status_code, response.text)

    def close(self) -> None:
        self._client.close()

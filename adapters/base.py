"""The adapter interface: how the hub hands one outbound envelope to one partner system.

An adapter is transport only (HTTP, SOAP, …): mapping and signing happen before it is called. It reports
the outcome by returning normally (delivered) or raising one of the two errors below, which decide
whether the hub retries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar


class DeliveryError(Exception):
    """A delivery did not succeed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: timeout, connection refused, 5xx, 429."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help: the partner rejected the content (4xx) or it could not be mapped."""


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """What an adapter delivers: the hub-signed envelope plus routing facts partners deduplicate on."""

    destination: str
    message_id: str
    message_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the partner answered.

    For partners that do not take the envelope itself (JSON/SOAP partners), the adapter maps the canonical payload
    at the edge: ``sent`` is then the partner-format request exactly as sent (credentials and session tokens left
    out) and ``sent_type`` its media type, so the message log can keep it next to the hub-signed envelope;
    ``detail`` then summarises the exchange (service, partner's code and message, digest of ``sent``).
    """

    status: int
    detail: str = ""
    sent: bytes = b""
    sent_type: str = ""


class Adapter(ABC):
    """One destination system's transport.

    An adapter that sets ``async_capable`` also implements ``deliver_async``; the worker then drives its
    deliveries from one event loop instead of a thread each (much less CPU per delivery, see ``hub.exchange.worker``).
    """

    async_capable: ClassVar[bool] = False

    @abstractmethod
    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        """Deliver once; raise ``TransientDeliveryError`` or ``PermanentDeliveryError`` on failure."""

    async def deliver_async(self, request: OutboundRequest) -> DeliveryReceipt:
        """``deliver`` on the caller's event loop (only when ``async_capable``)."""
        raise NotImplementedError(f"{type(self).__name__} delivers from threads only")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what ``deliver_async`` opened (on the loop it ran on)."""

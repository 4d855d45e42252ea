"""The adapter interface: how the hub hands one outbound message to one partner system.

An adapter is transport only (session or login, headers, HTTP or SOAP, classifying the answer): the worker maps
and signs before it is called. A partner that takes the hub-signed envelope gets ``OutboundRequest.body``; one
that takes its own format names it in ``partner_format`` and gets the worker's outbound mapping
(``mappings.outbound_mapping``) in ``OutboundRequest.payload``. The adapter reports the outcome by returning
normally (delivered) or raising one of the two errors below, which decide whether the hub retries.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel


class DeliveryError(Exception):
    """A delivery did not succeed. ``rule``: a named hub rule held it back before the partner was called (e.g.
    ``result-unsigned``): the worker files it as the dead letter's reason and does not count it against the
    partner's circuit breaker."""

    def __init__(self, message: str, *, status: int | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: timeout, connection refused, 5xx, 429."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help: the partner rejected the content (4xx) or it could not be mapped."""


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """What an adapter delivers: the hub-signed envelope plus routing facts partners deduplicate on, and for a
    partner-format adapter the mapped request (``payload``) and the canonical packet it was mapped from."""

    destination: str
    message_id: str
    message_type: str
    body: bytes  # the hub-signed canonical envelope (the message log keeps it)
    headers: dict[str, str] = field(default_factory=dict)
    payload: Any = None  # the outbound mapping's result; None when the partner takes the envelope itself
    model: BaseModel | None = None  # the canonical packet behind ``payload``
    sender: str = ""  # the connector whose message this is (the queued envelope's sender)

    def mapped(self, partner: str) -> Any:
        """The mapped request, or a permanent error: a partner-format adapter cannot send the envelope."""
        if self.payload is None:
            raise PermanentDeliveryError(f"{partner} takes no {self.message_type}: the worker mapped nothing to send")
        return self.payload


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the partner answered.

    For partners that do not take the envelope itself (JSON/SOAP partners), ``sent`` is the request body exactly
    as it left the hub and ``sent_type`` its media type, so the message log keeps it next to the hub-signed
    envelope; each adapter's docstring says what it leaves out (only the national portal's session token, which
    travels inside its JSON body; headers such as the postal service's bearer token are never part of the body).
    ``detail`` then summarises the exchange (service, partner's code and message, digest of ``sent``). Empty
    ``sent``: the partner received the hub-signed envelope itself.
    """

    status: int
    detail: str = ""
    sent: bytes = b""
    sent_type: str = ""

    @classmethod
    def for_body(cls, summary: str, sent: bytes, sent_type: str = "application/json") -> DeliveryReceipt:
        """A partner's acceptance of ``sent``, its ``detail`` ending with the body's digest."""
        return cls(200, f"{summary}; sent sha256={hashlib.sha256(sent).hexdigest()}", sent=sent, sent_type=sent_type)


class AcceptedSteps(Protocol):
    """The calls of a delivery its partner already accepted, for an adapter that makes several calls for one delivery
    (``hub.store.delivery_steps.DeliverySteps``, passed in by ``adapters.registry.AdapterContext``): a retry or a
    replay then skips them instead of sending a record the partner would keep twice. A delivery is named by its
    message's sender and id and its destination (``OutboundRequest``)."""

    def done(self, sender: str, message_id: str, destination: str, step: str) -> tuple[str, bytes] | None:
        """The summary and the bytes sent of ``step`` if an earlier attempt had it accepted, else ``None``."""
        ...

    def record(self, sender: str, message_id: str, destination: str, step: str, summary: str, sent: bytes) -> bool:
        """Keep that the partner accepted ``step`` (``False``: the delivery is not in the store)."""
        ...


class Adapter(ABC):
    """One destination system's transport.

    An adapter that sets ``async_capable`` also implements ``deliver_async``; the worker then drives its
    deliveries from one event loop instead of a thread each (much less CPU per delivery, see ``hub.exchange.worker``).
    """

    async_capable: ClassVar[bool] = False
    #: The outbound mapping kind this adapter sends (``mappings.outbound_mapping``); None: the envelope itself.
    partner_format: ClassVar[str | None] = None

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

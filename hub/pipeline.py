"""Accepting a message: verify → validate → route → dedupe and commit → publish (outbox pattern).

The hub answers "accepted" only after the message and its deliveries are committed to the store. Publishing
to the broker comes after the commit; a delivery whose publish was not confirmed stays ``unpublished`` in the
store and the relay (``Relay``) publishes it again, so a crash between the two loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.base import Broker, BrokerError, OutboundMessage
from hub.envelope import EnvelopeHeader
from hub.errors import Issue, RejectedError
from hub.routing import RoutingTable
from hub.signing import EnvelopeVerifier, VerifiedEnvelope
from hub.store import PendingDelivery

log = logging.getLogger(__name__)

# Called with the verified header before routing; raises ``RejectedError`` (e.g. ``AccessDeniedError``) to refuse.
Authorizer = Callable[[EnvelopeHeader], None]


class NoRouteError(RejectedError):
    """Nobody is configured to receive this message type from this sender."""

    default_rule = "no-route"


class ConflictError(RejectedError):
    """The same message id was accepted before with different content."""

    default_rule = "idempotency-conflict"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a sender: the message id, its status, and whether this was a resend."""

    message_id: str
    status: str
    destinations: tuple[str, ...]
    duplicate: bool = False


def outbound_for(pending: PendingDelivery) -> OutboundMessage:
    """The queue message for a stored delivery (the inbound envelope; the worker maps and signs it)."""
    return OutboundMessage(
        destination=pending.destination,
        message_id=pending.message_id,
        body=pending.envelope,
        headers={"message_type": pending.message_type, "sender": pending.sender},
        delivery_id=pending.delivery_id,
    )


class Acceptor:
    """The front half of the pipeline, shared by the API, the SOAP entry and the benchmark."""

    def __init__(self, store, broker: Broker, routing: RoutingTable, verifier: EnvelopeVerifier) -> None:
        self.store = store
        self.broker = broker
        self.routing = routing
        self.verifier = verifier
        routing.declare(broker)

    def check(self, data: bytes, authorize: Authorizer | None = None) -> tuple[VerifiedEnvelope, tuple[str, ...]]:
        """Verify, authorize and route one envelope without storing it; raise ``RejectedError`` with the reason."""
        verified = self.verifier.verify(data)
        header = verified.header
        if authorize is not None:
            try:
                authorize(header)
            except RejectedError as exc:
                exc.message_id = exc.message_id or header.message_id
                raise
        destinations = self.routing.destinations_for(header.message_type, header.sender)
        if not destinations:
            raise NoRouteError(
                f"no destination receives {header.message_type} from {header.sender}",
                [Issue("/envelope/header/messageType", "no-route", f"no route for {header.message_type}")],
                message_id=header.message_id,
            )
        return verified, destinations

    def accept(self, data: bytes, authorize: Authorizer | None = None) -> Accepted:
        """Accept one envelope; see ``accept_many``."""
        result = self.accept_many([data], authorize)[0]
        if isinstance(result, RejectedError):
            raise result
        return result

    def accept_many(
        self, items: Sequence[bytes], authorize: Authorizer | None = None
    ) -> list[Accepted | RejectedError]:
        """Accept a batch: one store transaction and one confirmed publish for all that pass the checks.

        ``authorize`` (optional) sees each verified header before routing and may refuse it by raising."""
        checked: list[tuple[int, VerifiedEnvelope, tuple[str, ...], bytes]] = []
        results: list[Accepted | RejectedError | None] = [None] * len(items)
        for index, data in enumerate(items):
            try:
                verified, destinations = self.check(data, authorize)
            except RejectedError as exc:
                log.info("rejected message_id=%s rule=%s %s", exc.message_id, exc.issues[0].rule, exc)
                results[index] = exc
                continue
            checked.append((index, verified, destinations, data))
        if checked:
            stored = self.store.accept_many(
                [
                    {
                        "sender": v.header.sender,
                        "message_id": v.header.message_id,
                        "correlation_id": v.header.correlation_id,
                        "message_type": v.header.message_type,
                        "receiver": v.header.receiver,
                        "dossier_code": v.header.dossier_code,
                        "envelope": data,
                        "destinations": destinations,
                    }
                    for _, v, destinations, data in checked
                ]
            )
            outbound: list[OutboundMessage] = []
            for (index, verified, destinations, data), res in zip(checked, stored, strict=True):
                header = verified.header
                if res.outcome == "conflict":
                    results[index] = ConflictError(
                        f"message {header.message_id} from {header.sender} was already accepted with other content",
                        [Issue("/envelope/header/messageId", "idempotency-conflict", "same id, different content")],
                        message_id=header.message_id,
                    )
                    continue
                duplicate = res.outcome == "duplicate"
                results[index] = Accepted(header.message_id, res.status, destinations, duplicate)
                if not duplicate:
                    outbound.extend(
                        OutboundMessage(
                            destination=destination,
                            message_id=header.message_id,
                            body=data,
                            headers={"message_type": header.message_type, "sender": header.sender},
                            delivery_id=delivery_id,
                        )
                        for destination, delivery_id in zip(destinations, res.delivery_ids, strict=True)
                    )
            self._publish(outbound)
        return [r for r in results if r is not None]

    def _publish(self, outbound: list[OutboundMessage]) -> None:
        if not outbound:
            return
        try:
            self.broker.publish(outbound)
        except BrokerError as exc:
            # Committed but not confirmed: the relay will publish these again.
            log.warning("publish failed for %d deliveries, the relay will retry: %s", len(outbound), exc)
            return
        self.store.mark_published([m.delivery_id for m in outbound if m.delivery_id is not None])


class Relay:
    """Publishes deliveries that were committed but never confirmed by the broker (outbox relay)."""

    def __init__(self, store, broker: Broker, *, grace_s: float = 10.0, every_s: float = 5.0) -> None:
        self.store = store
        self.broker = broker
        self.grace_s = grace_s
        self.every_s = every_s
        self._last = 0.0

    def run_once(self) -> int:
        """Publish every pending delivery older than the grace period; return how many were published."""
        pending = self.store.unpublished(older_than_s=self.grace_s)
        if not pending:
            return 0
        self.broker.publish([outbound_for(p) for p in pending])
        self.store.mark_published([p.delivery_id for p in pending])
        log.info("relay published %d pending deliveries", len(pending))
        return len(pending)

    def maybe_run(self) -> int:
        """``run_once`` at most every ``every_s`` seconds."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return 0
        self._last = now
        try:
            return self.run_once()
        except BrokerError as exc:
            log.warning("relay could not publish: %s", exc)
            return 0

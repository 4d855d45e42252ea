"""Operator actions on the delivery side, for the API, the operator page and the CLI alike: close a dead letter,
retry now (skip the backoff), pause and resume a destination.

The store does each change and its audit row in one transaction (``hub.store``); this module adds what needs the
process's runtime: the destination must be routed, and a retry-now delivery is published at once (the broker
down: the outbox relay publishes it after its grace period). Workers see a pause within
``hub.exchange.worker.PAUSE_CACHE_S``; nothing queued for a paused destination is lost or counted as an attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broker.base import BrokerError
from hub.errors import UnknownDestinationError
from hub.runtime import Runtime
from hub.services.callers import ADMIN, OPERATOR, Caller, require
from hub.store import DeadLetter, PendingDelivery
from hub.store.pauses import Pause

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit log records it: the account (or key owner), its role and the client address."""

    name: str
    role: str | None = None
    client: str | None = None

    @classmethod
    def of(cls, caller: Caller, client: str | None = None) -> Actor:
        """The actor for an API caller, refused (403) unless it is an operator or the administrator."""
        require(caller, ADMIN, OPERATOR)
        return cls(caller.name, caller.role, client)


def _routed(runtime: Runtime, destination: str) -> str:
    if destination not in runtime.routing.destinations:
        raise UnknownDestinationError(destination)
    return destination


def close_dead_letter(runtime: Runtime, dead_letter_id: int, *, reason: str, actor: Actor) -> DeadLetter:
    """Close a dead letter without resending it (``Store.close_dead_letter``), then take its copy out of the broker's
    dead-letter queue (best effort: the store's record is what counts; with the broker down the copy stays there,
    and the warning says so)."""
    closed = runtime.store.close_dead_letter(
        dead_letter_id, actor=actor.name, reason=reason, role=actor.role, client=actor.client
    )
    try:
        runtime.broker.take_dead(closed.destination, {closed.message_id})
    except BrokerError as exc:
        log.warning("closed dead letter %s; its copy stays in the broker's dead queue for now: %s", dead_letter_id, exc)
    return closed


def retry_now(
    runtime: Runtime,
    *,
    actor: Actor,
    message_id: str | None = None,
    sender: str | None = None,
    destination: str | None = None,
) -> list[PendingDelivery]:
    """Skip the backoff of a message's (or a destination's) waiting deliveries and publish them now
    (``Store.retry_now``); returns them."""
    if destination is not None:
        _routed(runtime, destination)
    due = runtime.store.retry_now(
        actor=actor.name, message_id=message_id, sender=sender, destination=destination, role=actor.role,
        client=actor.client,
    )
    if due:
        from hub.exchange.pipeline import outbound_for

        try:
            runtime.routing.declare(runtime.broker)
            runtime.broker.publish([outbound_for(p) for p in due])
        except BrokerError as exc:  # committed: the relay publishes them once the broker is back
            log.warning("retry now: %d deliveries left to the relay: %s", len(due), exc)
        else:
            runtime.store.mark_published([p.delivery_id for p in due])
    return due


def pause(runtime: Runtime, destination: str, *, reason: str, actor: Actor) -> Pause:
    """Pause a routed destination (``Store.pause_destination``)."""
    return runtime.store.pause_destination(
        _routed(runtime, destination), actor=actor.name, reason=reason, role=actor.role, client=actor.client
    )


def resume(runtime: Runtime, destination: str, *, actor: Actor) -> Pause:
    """Resume a paused destination (``Store.resume_destination``); a destination no longer routed may be resumed
    too (its pause row would otherwise stay forever)."""
    return runtime.store.resume_destination(destination, actor=actor.name, role=actor.role, client=actor.client)

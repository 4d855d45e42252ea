"""The delivery worker: consume → map → sign as the hub → deliver through the adapter → record → settle.

Each queued envelope is parsed once; a partner-format body is mapped to canonical once, the canonical envelope
is signed as the hub, and a destination whose adapter takes its own format gets the outbound mapping's request
(mapped once): the adapter only sends. The store records the signed envelope and, beside it, the exact bytes a
partner-format adapter sent (``Delivered``).

One broker connection per process, used only by the main thread, which also maps, signs, and records every
outcome. Partner calls go out from one event loop thread (adapters that are ``async_capable``, such as plain
HTTP) or from a thread pool (the others), under a per-destination concurrency limit; a per-destination circuit
breaker stops hammering a partner that is down. The store is updated before the broker message is acknowledged,
so a crash at any point leads to a redelivery, which the store recognises (``start_attempts`` skips delivered
ones) instead of calling the partner twice.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from lxml import etree
from pydantic import BaseModel

from adapters.base import Adapter, DeliveryError, DeliveryReceipt, OutboundRequest, PermanentDeliveryError
from broker.base import Broker, BrokerUnavailable, Delivery
from hub import packets
from hub.errors import EnvelopeInvalidError, NoOutboundMappingError
from hub.exchange.routing import RoutingTable
from hub.logs import log_context, mask_personal, personal_names
from hub.security.envelope import EnvelopeHeader, body_payload, build_envelope, peek_header
from hub.security.signing import Signer
from hub.store import Delivered
from hub.xmlparse import parse_xml
from mappings import inbound_for_root, outbound_mapping, outbound_types

log = logging.getLogger(__name__)

BROKER_PAUSE_S = 1.0  # wait between two attempts to reach a broker that is down


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended this time, decided in a pool thread, applied to the broker by the main thread."""

    kind: str  # delivered | already | retry | dead | deferred
    delay_s: float = 0.0
    reason: str = ""


class CircuitBreaker:
    """Opens after ``failures`` consecutive transient failures; lets one trial through after ``cooldown_s``."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "open" if self.clock() - self._opened_at < self.cooldown_s else "half-open"

    def allow(self) -> float:
        """0 if a call may go ahead now, else the seconds until the circuit half-opens."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            remaining = self.cooldown_s - (self.clock() - self._opened_at)
            if remaining <= 0:
                self._opened_at = self.clock()  # one trial per cooldown period
                return 0.0
            return remaining

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._opened_at = self.clock()


@dataclass(frozen=True, slots=True)
class Outbound:
    """One delivery made ready on the main thread: the hub-signed canonical envelope (what the message log keeps
    and envelope partners receive) and, for a partner-format adapter, the request mapped from its packet."""

    header: EnvelopeHeader
    envelope: bytes
    model: BaseModel | None = None
    payload: object = None

    def request(self, destination: str) -> OutboundRequest:
        """What the adapter is handed: nothing in it needs parsing again."""
        return OutboundRequest(
            destination, self.header.message_id, self.header.message_type, self.envelope,
            payload=self.payload, model=self.model,
        )  # fmt: skip


class OutboundBuilder:
    """Parse the queued envelope once, map a partner-format body to canonical once, sign the canonical envelope as
    the hub (keeping the partner's message id) and, for a partner-format destination, map it to the partner's
    request once."""

    def __init__(self, signer: Signer, hub_code: str) -> None:
        self.signer = signer
        self.hub_code = hub_code

    def build(self, inbound: bytes, destination: str) -> tuple[EnvelopeHeader, bytes]:
        """The outbound header and hub-signed envelope for an envelope partner."""
        outbound = self.prepare(inbound, destination)
        return outbound.header, outbound.envelope

    def prepare(
        self,
        inbound: bytes,
        destination: str,
        partner_format: str | None = None,
        units: Mapping[str, str] | None = None,
    ) -> Outbound:
        """Everything a delivery to ``destination`` needs; ``partner_format`` is its adapter's (``None``: the
        partner takes the envelope, and no canonical model is built). ``units``: the registered unit of each
        sender (``RoutingTable.units``); a partner-format request names the sender's, not the body's
        ``source_system`` (the mappings stay pure: they are handed the model with the registered unit)."""
        root = parse_xml(inbound, strip_comments=True)  # as stored: exactly as received (see parse_xml)
        original = peek_header(root)  # verified and validated when it was accepted
        if original is None:
            raise EnvelopeInvalidError("the queued envelope has no header", [])
        message_type = original.message_type
        header = EnvelopeHeader(
            message_id=original.message_id,
            correlation_id=original.correlation_id,
            sender=self.hub_code,
            receiver=destination,
            message_type=message_type,
            dossier_code=original.dossier_code,
            user_id=original.user_id,
        )
        # A partner-format body (a mapping profile's, e.g. <BuocXuLy>) is mapped to the canonical packet by the
        # same pure converter that checked it at intake (another process: the queue carries the bytes as received,
        # which the log keeps); canonical bodies go as they came.
        body = body_payload(root)
        inbound_mapping = inbound_for_root(message_type, body.tag)
        model = None if inbound_mapping is None else inbound_mapping.to_canonical(body)
        canonical = body if model is None else packets.to_element(model)
        mapped: object = None
        if partner_format is not None:
            partner_mapping = outbound_mapping(partner_format, message_type)
            if partner_mapping is None:
                takes = ", ".join(sorted(outbound_types(partner_format))) or "nothing"
                raise NoOutboundMappingError(f"{partner_format} takes {takes}, not {message_type}")
            if model is None:  # validated at intake: decoded, not checked again
                model = packets.read_validated(message_type, body)
            unit = units.get(original.sender) if units else None
            if unit is not None and getattr(model, "source_system", unit) != unit:
                model = model.model_copy(update={"source_system": unit})
            mapped = partner_mapping.to_partner(model)
        signed = self.signer.sign_in_place(build_envelope(header, canonical, move_body=True))
        return Outbound(header, etree.tostring(signed, xml_declaration=True, encoding="UTF-8"), model, mapped)


def _names_in(envelope: bytes) -> Callable[[], list[str]]:
    """The names of the people an envelope is about, for masking: read only if a line is logged or an error kept."""
    return lambda: personal_names(parse_xml(envelope, strip_comments=True))


class Worker:
    """Delivers queued messages for a set of destinations until stopped."""

    def __init__(
        self,
        store,
        broker: Broker,
        routing: RoutingTable,
        builder: OutboundBuilder,
        adapters: dict[str, Adapter],
        *,
        prefetch: int = 64,
        relay=None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.routing = routing
        self.builder = builder
        self.adapters = adapters
        self.prefetch = prefetch
        self.relay = relay
        self.destinations = sorted(routing.destinations)
        self._limits = {d: threading.BoundedSemaphore(c.concurrency) for d, c in routing.destinations.items()}
        self._breakers = {
            d: CircuitBreaker(c.circuit_failures, c.circuit_cooldown_s) for d, c in routing.destinations.items()
        }
        pool_size = max(4, min(64, sum(c.concurrency for c in routing.destinations.values())))
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="deliver")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._async_limits: dict[str, asyncio.Semaphore] = {}
        if any(adapter.async_capable for adapter in adapters.values()):
            self._start_loop()
        self._stop = threading.Event()
        routing.declare(broker)

    def _start_loop(self) -> None:
        """One event loop thread drives every ``async_capable`` adapter's deliveries."""
        loop = self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=loop.run_forever, name="deliver-loop", daemon=True)
        self._loop_thread.start()

        async def limits() -> dict[str, asyncio.Semaphore]:
            return {d: asyncio.Semaphore(c.concurrency) for d, c in self.routing.destinations.items()}

        self._async_limits = asyncio.run_coroutine_threadsafe(limits(), loop).result()

    def breaker(self, destination: str) -> CircuitBreaker:
        return self._breakers[destination]

    def stop(self, *_: object) -> None:
        """Ask the worker to finish its in-flight deliveries and return (SIGTERM handler)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, *, idle_exit_s: float | None = None, max_seconds: float | None = None) -> int:
        """Consume until stopped (or idle for ``idle_exit_s``); return the number of deliveries settled."""
        settled = 0
        idle_since = time.monotonic()
        started = time.monotonic()
        while not self._stop.is_set():
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            if self.relay is not None:
                self.relay.maybe_run()
            try:
                batch = self.broker.consume(self.destinations, prefetch=self.prefetch, timeout_s=0.5)
            except BrokerUnavailable as exc:  # the broker gave up reconnecting for now: keep trying, never exit
                log.warning("broker unavailable, trying again in %.0f s: %s", BROKER_PAUSE_S, exc)
                self._stop.wait(BROKER_PAUSE_S)
                continue
            if not batch:
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                continue
            settled += self.process_batch(batch)
            idle_since = time.monotonic()
        log.info("worker stopping after %d deliveries", settled)
        return settled

    def process_batch(self, batch: Sequence[Delivery]) -> int:
        """Deliver a batch: one store transaction to start the attempts, partner calls in the pool, one
        transaction to record what was delivered, then every delivery settled with the broker from this thread."""
        outcomes: dict[int, Outcome] = {}
        to_start: dict[int, Delivery] = {}
        for index, delivery in enumerate(batch):
            if delivery.delivery_id is None:
                outcomes[index] = Outcome("dead", reason="queue message carries no delivery id")
                continue
            wait = self._breakers[delivery.destination].allow()
            if wait > 0:
                outcomes[index] = Outcome("deferred", wait, f"circuit open for {delivery.destination}")
                continue
            to_start[index] = delivery
        started = self.store.start_attempts([d.delivery_id for d in to_start.values()]) if to_start else {}
        # Mapping and signing are CPU work: done here, one at a time, before any partner call starts. Pool threads
        # only call partners; CPU work interleaved with other busy threads costs about twice the CPU, as the
        # threads hand the GIL back and forth at every lxml, OpenSSL and socket call.
        ready: dict[int, tuple[int, Outbound]] = {}
        for index, delivery in to_start.items():
            attempt = started.get(delivery.delivery_id)
            if attempt is None:
                log.info(
                    "message_id=%s destination=%s already delivered; ack", delivery.message_id, delivery.destination
                )
                outcomes[index] = Outcome("already")
                continue
            built = self._build(delivery)
            if isinstance(built, Outcome):
                outcomes[index] = built
            else:
                ready[index] = (attempt, built)
        futures = {index: self._call(batch[index], outbound) for index, (_, outbound) in ready.items()}
        delivered: list[tuple[int, Delivered]] = []
        for index, future in futures.items():
            delivery = batch[index]
            attempt, outbound = ready[index]
            names = _names_in(outbound.envelope)
            with log_context(message_id=delivery.message_id, connector=delivery.destination, names=names):
                try:
                    answer = future.result()
                except Exception as exc:  # a bug must not lose the message: retry it later
                    log.exception("message_id=%s unexpected error", delivery.message_id)  # masked: in the context
                    reason = mask_personal(f"internal error: {exc!r}", names)
                    outcome, record = Outcome("deferred", 30.0, reason), None
                else:
                    outcome, record = self._outcome(delivery, attempt, outbound, answer)
            outcomes[index] = outcome
            if record is not None:
                delivered.append((index, record))
        if delivered:
            self.store.record_delivered_many([record for _, record in delivered])
        done = {i for i, outcome in outcomes.items() if outcome.kind in ("delivered", "already")}
        self.broker.ack_many([batch[i] for i in sorted(done)])
        for index, delivery in enumerate(batch):
            if index not in done:
                self._settle(delivery, outcomes[index])
        return len(batch)

    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Settle a delivery that was not done (done ones are acknowledged together, see ``process_batch``)."""
        if outcome.kind in ("retry", "deferred"):
            self.broker.retry(delivery, outcome.delay_s, outcome.reason)
        else:
            self.broker.dead_letter(delivery, outcome.reason)

    def _build(self, delivery: Delivery) -> Outbound | Outcome:
        """Map and sign for the destination; a failure is permanent for this content (recorded as dead)."""
        with log_context(message_id=delivery.message_id, connector=delivery.destination,
                         names=_names_in(delivery.body)):  # fmt: skip
            try:
                partner_format = self.adapters[delivery.destination].partner_format
                return self.builder.prepare(delivery.body, delivery.destination, partner_format, self.routing.units)
            except Exception as exc:
                reason = mask_personal(f"cannot map or sign for {delivery.destination}: {exc}")
                assert delivery.delivery_id is not None
                self.store.record_dead(delivery.delivery_id, reason="mapping", error=reason)
                log.warning("message_id=%s %s", delivery.message_id, reason)
                return Outcome("dead", reason=reason)

    def _call(self, delivery: Delivery, outbound: Outbound) -> Future:
        """Start the partner call: on the event loop for an ``async_capable`` adapter, else in a pool thread.
        The future holds the receipt or the ``DeliveryError``; what it means is decided by ``_outcome``."""
        request = outbound.request(delivery.destination)
        adapter = self.adapters[delivery.destination]
        if adapter.async_capable and self._loop is not None:
            return asyncio.run_coroutine_threadsafe(self._call_async(adapter, request), self._loop)
        return self._pool.submit(self._call_in_thread, delivery, adapter, request)

    async def _call_async(self, adapter: Adapter, request: OutboundRequest) -> DeliveryReceipt | DeliveryError:
        async with self._async_limits[request.destination]:
            try:
                return await adapter.deliver_async(request)
            except DeliveryError as exc:
                return exc

    def _call_in_thread(
        self, delivery: Delivery, adapter: Adapter, request: OutboundRequest
    ) -> DeliveryReceipt | DeliveryError:
        with log_context(message_id=delivery.message_id, connector=delivery.destination,
                         names=_names_in(request.body)):  # fmt: skip
            try:
                with self._limits[delivery.destination]:
                    return adapter.deliver(request)
            except DeliveryError as exc:
                return exc

    def _outcome(
        self,
        delivery: Delivery,
        attempt: int,
        outbound: Outbound,
        answer: DeliveryReceipt | DeliveryError,
    ) -> tuple[Outcome, Delivered | None]:
        """What the partner's answer means: delivered (recorded by the caller with the batch), dead, or a retry
        (both recorded here), and what the circuit breaker learns from it."""
        destination = delivery.destination
        header = outbound.header
        delivery_id = delivery.delivery_id
        assert delivery_id is not None
        breaker = self._breakers[destination]
        if isinstance(answer, PermanentDeliveryError):
            breaker.success()  # the partner is up; it just refuses this content
            error = mask_personal(str(answer))  # a partner's text may echo the citizen's name: kept masked
            self.store.record_dead(delivery_id, reason="rejected", error=error)
            log.warning("message_id=%s destination=%s rejected: %s", delivery.message_id, destination, error,
                        extra={"dossier_code": header.dossier_code})  # fmt: skip
            return Outcome("dead", reason=error), None
        if isinstance(answer, DeliveryError):
            breaker.failure()
            error = mask_personal(str(answer))
            policy = self.routing.destinations[destination].retry_policy
            if policy.exhausted(attempt):
                self.store.record_dead(delivery_id, reason="exhausted", error=error)
                return Outcome("dead", reason=f"gave up after {attempt} attempts: {error}"), None
            delay = policy.delay_for(attempt)
            self.store.record_retry(delivery_id, error=error, delay_s=delay)
            log.info("message_id=%s destination=%s attempt %d failed, retry in %.1fs: %s",
                     delivery.message_id, destination, attempt, delay, error,
                     extra={"dossier_code": header.dossier_code})  # fmt: skip
            return Outcome("retry", delay, error), None
        breaker.success()
        if not answer.sent:  # the partner received the outbound envelope itself
            return Outcome("delivered"), Delivered(delivery_id, outbound.envelope, f"HTTP {answer.status}")
        detail = f"HTTP {answer.status} {answer.detail}"
        sent_type = answer.sent_type or None
        return Outcome("delivered"), Delivered(delivery_id, outbound.envelope, detail, answer.sent, sent_type)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._loop is not None:

            async def close_sessions() -> None:
                for adapter in self.adapters.values():
                    await adapter.aclose()

            asyncio.run_coroutine_threadsafe(close_sessions(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
            self._loop.close()
            self._loop = None
        for adapter in self.adapters.values():
            adapter.close()

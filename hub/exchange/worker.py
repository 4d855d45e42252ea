"""The delivery worker: consume → map → sign as the hub → deliver through the adapter → record → settle.

Each queued envelope is parsed once; a partner-format body is mapped to canonical once, the canonical envelope
is signed as the hub, and a destination whose adapter takes its own format gets the outbound mapping's request
(mapped once): the adapter only sends. The store records the signed envelope and, beside it, the exact bytes a
partner-format adapter sent (``Delivered``).

One broker connection per process, used only by the main thread, which also maps, signs, and records every
outcome. Partner calls go out from one event loop thread (adapters that are ``async_capable``, such as plain
HTTP) or from a thread pool (the others), under a per-destination concurrency limit; a per-destination circuit
breaker stops hammering a partner that is down. Each call's duration and each recorded delivery's time since its
message was accepted are Prometheus histograms (``hub.metrics``, served by ``hub worker --metrics-port``).

A batch (``process_batch``): a delivery id the batch holds twice (the relay published it twice) is delivered
once, its copies acknowledged with it; one transaction starts the attempts (a delivery already delivered is
acknowledged without calling the partner); the calls go out together, and each time calls return (with those
returning within ``GATHER_S`` of the first), the main thread records them (the delivered ones in one
transaction, which records "delivered" only for a delivery not delivered yet) and then settles them with the
broker. The store is updated before the broker message is acknowledged, so a crash leads to a redelivery of at
most the calls in flight (or just returned), which the store recognises instead of calling the partner twice; a
resent call carries the same ``X-Message-Id``.

Outages (``run``): a store or broker failure never ends the worker. It backs off (``hub.exchange.outages``:
0.5 s doubling to 10 s, one log line when an outage starts and one when it ends, Prometheus metrics) and tries
again. Deliveries not yet called are given back to the broker; deliveries the partner took whose "delivered"
could not be recorded are held, unacknowledged, and recorded (then acknowledged) when the store is back — never
called again meanwhile; a failed call whose retry could not be recorded is given back, and so is a delivery whose
mapping or adapter needed the store (a supplement step's dossier record, a notification's dossier or timeline, the
postal order book, the result signers) while it was down. During the backoff the
broker connection is pumped (RabbitMQ heartbeats) and the heartbeat file rewritten (``hub.exchange.heartbeat``);
SIGTERM ends the wait at once.

Operator actions (``hub.runtime`` runs them): a destination an operator paused is not consumed — the worker reads
the paused destinations from the store at most every ``PAUSE_CACHE_S``, so a pause takes effect within seconds in
every worker process; its queued work waits in the broker, counts no attempt and flows again once resumed (a
delivery of a batch taken just before the pause was seen is given back unchanged). "Retry now" publishes a
delivery anew under a new generation (``hub.store.deliveries.GENERATION_HEADER``): a batch keeps the newest copy
of a delivery, and the store starts an attempt only for a copy of the delivery's current generation, so the copy
still waiting out its backoff is acknowledged without a second partner call.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree
from pydantic import BaseModel

from adapters.base import Adapter, DeliveryError, DeliveryReceipt, OutboundRequest, PermanentDeliveryError
from broker.base import Broker, BrokerError, Delivery
from hub import packets
from hub.errors import DeliveryClosedError, EnvelopeInvalidError, NoOutboundMappingError, StoreUnavailableError
from hub.exchange.heartbeat import Heartbeat
from hub.exchange.outages import BROKER, STORE, Dependencies
from hub.exchange.portal_refresh import DossierRecords
from hub.exchange.routing import RoutingTable
from hub.logs import log_context, mask_personal, personal_names
from hub.metrics import ACCEPT_TO_DELIVERED_SECONDS, PARTNER_CALL_SECONDS
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.security.envelope import EnvelopeHeader, body_payload, build_envelope, peek_header
from hub.security.signing import Signer
from hub.store import Delivered
from hub.store.deliveries import GENERATION_HEADER
from hub.xmlparse import parse_xml
from mappings import inbound_for_root, outbound_mapping, outbound_types
from mappings.catalogue import CatalogueSource, catalogue_names, named_call
from mappings.dvcqg import KIND as DVCQG
from mappings.dvcqg import is_supplement_step, supplement_calls

log = logging.getLogger(__name__)

WAIT_SLICE_S = 2.0  # the longest the main thread waits without writing its heartbeat
# Calls returning within this long of the first one are recorded in its transaction: a store commit has a fixed
# cost (a disk write; an fsync when durable), so groups stay large when many calls return together, and a crash
# re-sends at most the calls in flight and those that returned this long before.
GATHER_S = 0.01
PAUSE_CACHE_S = 2.0  # how long a worker trusts its last read of the paused destinations
PAUSED_IDLE_S = 0.5  # the wait of a turn when every destination of the worker is paused (no busy loop)


def generation_of(delivery: Delivery) -> int:
    """The publication of its delivery a queue message carries (0 when it says none; see ``GENERATION_HEADER``)."""
    raw = delivery.headers.get(GENERATION_HEADER, "0")
    return int(raw) if raw.isdigit() else 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended this time, decided and applied to the store and the broker by the main thread."""

    kind: str  # delivered | already | retry | dead | deferred | requeue (given back unchanged)
    delay_s: float = 0.0
    reason: str = ""  # for the broker's retry or dead-letter copy
    record: str = ""  # what the store records first: "retry", or a dead letter's reason ("" for nothing)
    error: str = ""  # the error the store records with it


GIVE_BACK = Outcome("requeue", reason="given back before its call (the store or the broker failed)")
PAUSED = Outcome("requeue", reason="given back: its destination is paused")


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
    origin: str = ""  # the sender of the queued envelope (the outbound header names the hub)

    def request(self, destination: str) -> OutboundRequest:
        """What the adapter is handed: nothing in it needs parsing again."""
        return OutboundRequest(
            destination, self.header.message_id, self.header.message_type, self.envelope,
            payload=self.payload, model=self.model, sender=self.origin,
        )  # fmt: skip


class OutboundBuilder:
    """Parse the queued envelope once, map a partner-format body to canonical once, sign the canonical envelope as
    the hub (keeping the partner's message id) and, for a partner-format destination, map it to the partner's
    request once.

    ``catalogue`` (the worker's ``hub.store.catalogue.CachedCatalogue``, one per worker): the national portal's
    procedure catalogue, whose names (``TenTTHC``, ``MaLinhVuc``/``TenLinhVuc``, ``DonViXuLy``) a ``dvcqg``
    DongBoHoSoMC record takes where the dossier gives none (``mappings.catalogue``: looked up here, passed in; the
    adapter then fills a still-empty ``DonViXuLy`` with the profile's ``unit_name``).

    ``dossiers`` (``hub.exchange.portal_refresh.DossierRecords`` on the worker's store): a supplement step
    (``dossier.status`` 5, or one with a new due date) for a ``dvcqg`` destination becomes two calls, its progress
    record and the dossier's record refreshed with ``DanhSachHoSoBoSung`` and the current due date; without it,
    the progress record alone."""

    def __init__(
        self,
        signer: Signer,
        hub_code: str,
        catalogue: CatalogueSource | None = None,
        *,
        dossiers: DossierRecords | None = None,
    ) -> None:
        self.signer = signer
        self.hub_code = hub_code
        self.catalogue = catalogue
        self.dossiers = dossiers

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
            dossier = model if isinstance(model, DossierSync) else None
            if partner_format == DVCQG and isinstance(model, DossierStatusUpdate) and is_supplement_step(model):
                dossier = None if self.dossiers is None else self.dossiers.refreshed(model)
                mapped = mapped if dossier is None else supplement_calls(model, dossier)
            if self.catalogue is not None and partner_format == DVCQG and dossier is not None:
                names = catalogue_names(self.catalogue, dossier.procedure_code, dossier.receiving_unit)
                mapped = named_call(mapped, names)
        signed = self.signer.sign_in_place(build_envelope(header, canonical, move_body=True))
        envelope = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
        return Outbound(header, envelope, model, mapped, original.sender)


def _names_in(envelope: bytes) -> Callable[[], list[str]]:
    """The names of the people an envelope is about, for masking: read only if a line is logged or an error kept."""
    return lambda: personal_names(parse_xml(envelope, strip_comments=True))


@dataclass(slots=True)
class _Held:
    """A delivery the partner took whose "delivered" the store could not record: kept with its unacked broker
    deliveries (the first and its copies in the batch) until recorded, and never sent again meanwhile."""

    record: Delivered
    deliveries: list[Delivery]


class Worker:
    """Delivers queued messages for a set of destinations until stopped, riding out store and broker outages."""

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
        stop: threading.Event | None = None,
        dependencies: Dependencies | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        routing.declare(broker)  # first: a broker failure here leaves no threads behind
        self.store = store
        self.broker = broker
        self.routing = routing
        self.builder = builder
        self.adapters = adapters
        self.prefetch = prefetch
        self.relay = relay
        self.destinations = sorted(routing.destinations)
        self.dependencies = dependencies or Dependencies()
        self.heartbeat = heartbeat
        self.settled = 0  # deliveries acknowledged, retried or dead-lettered by this worker
        self._held: list[_Held] = []
        self._accepted_at: dict[int, datetime] = {}  # the batch's delivery id -> its message's acceptance
        self._paused: frozenset[str] = frozenset()
        self._paused_read_at: float | None = None
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
        self._stop = stop if stop is not None else threading.Event()

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

    @property
    def held(self) -> int:
        """Deliveries the partner took that wait for the store to record them (non-zero only during an outage)."""
        return len(self._held)

    def beat(self, *, force: bool = False) -> None:
        """Rewrite the heartbeat file (at most every couple of seconds unless ``force``)."""
        if self.heartbeat is not None:
            self.heartbeat.beat(store_up=self.dependencies.is_up(STORE), broker_up=self.dependencies.is_up(BROKER),
                                settled=self.settled, force=force)  # fmt: skip

    def run(self, *, idle_exit_s: float | None = None, max_seconds: float | None = None) -> int:
        """Consume until stopped (or idle for ``idle_exit_s``); return the number of deliveries settled.

        A store or broker outage never ends it: the turn that met it backs off (``Dependencies.backoff``) and the
        next one tries again, starting with what the outage left (delivered but unrecorded deliveries)."""
        first = self.settled
        started = idle_since = time.monotonic()
        while not self._stop.is_set():
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            self.beat()
            try:
                busy = self._turn()
            except StoreUnavailableError as exc:
                self.dependencies.down(STORE, exc)
                self._back_off()
                continue
            except BrokerError as exc:  # BrokerUnavailable: the broker gave up reconnecting for now
                self.dependencies.down(BROKER, exc)
                self._back_off()
                continue
            if busy:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        if self._held:
            self._record_held_at_exit()
        log.info("worker stopping after %d deliveries", self.settled - first)
        return self.settled - first

    def _turn(self) -> bool:
        """One turn of the loop: recover from an outage, run the relay, deliver one batch; whether there was one.
        Raises ``StoreUnavailableError`` / ``BrokerError`` for what is down."""
        if self._held or not self.dependencies.is_up(STORE):
            self._recover_store()
        if self.relay is not None:
            self.relay.maybe_run()
        paused = self.paused()
        active = [d for d in self.destinations if d not in paused]
        if not active:  # every destination paused: nothing to consume; wait a little, the connection kept alive
            self._stop.wait(PAUSED_IDLE_S)
            self._pump()
            return False
        batch = self.broker.consume(active, prefetch=self.prefetch, timeout_s=0.5)
        self.dependencies.up(BROKER)
        if not batch:
            return False
        self.process_batch(batch)
        return True

    def paused(self) -> frozenset[str]:
        """The destinations an operator paused, read from the store at most every ``PAUSE_CACHE_S`` (the last
        answer is kept while the store cannot be read: the turn's own store calls meet the outage)."""
        at = time.monotonic()
        if self._paused_read_at is None or at - self._paused_read_at >= PAUSE_CACHE_S:
            try:
                paused = frozenset(self.store.paused_destinations())
            except StoreUnavailableError as exc:
                log.debug("paused destinations not read: %s", exc)
            else:
                self._paused_read_at = at
                newly = sorted((paused - self._paused) & set(self.destinations))
                self._paused = paused
                if newly:
                    log.info("destinations paused by an operator: %s (their queued work waits)", ", ".join(newly))
                    try:
                        self.broker.release(newly)  # what the broker fetched ahead for them goes back
                    except BrokerError as exc:  # the next broker call meets it
                        log.debug("release failed: %s", exc)
        return self._paused

    def _recover_store(self) -> None:
        """Record what the partner took during the outage (then acknowledge it), or just probe the store: no batch
        is taken from the broker while the store is known to be down."""
        if self._held:
            held, self._held = self._held, []
            try:
                self.store.record_delivered_many([h.record for h in held])
            except StoreUnavailableError:
                self._held = held
                raise
            log.info("recorded %d deliveries delivered during the store outage", len(held))
            self.dependencies.up(STORE)
            self._ack([delivery for h in held for delivery in h.deliveries])
        else:
            self.store.ping()
            self.dependencies.up(STORE)

    def _record_held_at_exit(self) -> None:
        """Stopping with held deliveries: one last try; else the broker gives them back and they are sent again."""
        try:
            self._recover_store()
        except (StoreUnavailableError, BrokerError) as exc:
            log.warning("stopping with %d delivered deliveries not recorded (%s): they will be sent again",
                        len(self._held), exc)  # fmt: skip

    def _back_off(self) -> None:
        """Wait before the next try, in slices: SIGTERM ends the wait at once, the heartbeat goes on, and the
        broker connection is pumped (RabbitMQ heartbeats answered, so held deliveries stay ours)."""
        self.beat(force=True)  # what is down shows at once
        self.dependencies.wait(self._stop, self._beat_and_pump, WAIT_SLICE_S)

    def _beat_and_pump(self) -> None:
        self.beat()
        self._pump()

    def _pump(self) -> None:
        try:
            self.broker.flush()
        except BrokerError as exc:  # the outage handling notices it at the next broker call
            log.debug("broker flush failed: %s", exc)

    def process_batch(self, batch: Sequence[Delivery]) -> int:
        """Deliver a batch; return how many deliveries it settled.

        A delivery id repeated in the batch (published twice) is delivered once; its copies are acknowledged once
        the first is settled. One store transaction starts the attempts; the partner calls go out together, and
        each wake-up records every call that has returned, gathered for ``GATHER_S`` (delivered ones in one
        transaction), and then settles
        them with the broker, so a crash re-sends at most what was in flight. A store or broker failure is raised
        once every call has returned and everything that could be settled was: what was not called is given
        back, what the partner took but the store did not record is held (see ``_recover_store``)."""
        before = self.settled
        copies: dict[int, list[Delivery]] = {}  # index of a delivery id's first delivery -> its later copies
        first_of: dict[int, int] = {}
        decided: list[tuple[int, Outcome]] = []
        to_start: dict[int, Delivery] = {}
        newest: dict[int, int] = {}  # delivery id -> the index of its copy of the newest generation (then first)
        for index, delivery in enumerate(batch):
            if delivery.delivery_id is not None:
                kept = newest.setdefault(delivery.delivery_id, index)
                if generation_of(delivery) > generation_of(batch[kept]):
                    newest[delivery.delivery_id] = index
        paused = self._paused
        for index in sorted(set(range(len(batch))) - set(newest.values())):  # copies settle with the kept one
            copy_of = batch[index].delivery_id
            if copy_of is not None:
                copies.setdefault(newest[copy_of], []).append(batch[index])
        for index, delivery in enumerate(batch):
            delivery_id = delivery.delivery_id
            if delivery_id is not None and newest[delivery_id] != index:
                continue
            copies.setdefault(index, [])
            if delivery_id is None:
                decided.append((index, Outcome("dead", reason="queue message carries no delivery id")))
                continue
            first_of[delivery_id] = index
            if delivery.destination in paused:  # taken just before the pause was seen: waits with the rest
                decided.append((index, PAUSED))
                continue
            cooldown = self._breakers[delivery.destination].allow()
            if cooldown > 0:
                decided.append((index, Outcome("deferred", cooldown, f"circuit open for {delivery.destination}")))
                continue
            to_start[index] = delivery
        if len(first_of) < sum(d.delivery_id is not None for d in batch):
            log.info("batch of %d holds %d repeated delivery id(s): each delivered once", len(batch),
                     sum(map(len, copies.values())))  # fmt: skip
        broker_error = self._settle_all(batch, copies, decided)
        try:
            started_at = self._start(list(to_start.values())) if to_start else {}
        except StoreUnavailableError:
            self._settle_all(batch, copies, [(index, GIVE_BACK) for index in to_start])
            raise
        started = {delivery_id: attempt for delivery_id, (attempt, _) in started_at.items()}
        self._accepted_at = {delivery_id: at for delivery_id, (_, at) in started_at.items()}
        store_error: StoreUnavailableError | None = None
        # Mapping and signing are CPU work: done here, one at a time, before any partner call starts. Pool threads
        # only call partners; CPU work interleaved with other busy threads costs about twice the CPU, as the
        # threads hand the GIL back and forth at every lxml, OpenSSL and socket call.
        ready: dict[int, tuple[int, Outbound]] = {}
        built: list[tuple[int, Outcome]] = []
        for index, delivery in to_start.items():
            attempt = started.get(delivery.delivery_id or 0)  # to_start holds no delivery without an id
            if attempt is None:
                log.info("message_id=%s destination=%s already delivered (or dead, or superseded by a retry now); "
                         "ack", delivery.message_id, delivery.destination)  # fmt: skip
                built.append((index, Outcome("already")))
                continue
            outbound = self._build(delivery)
            if isinstance(outbound, Outcome):
                built.append((index, outbound))
            else:
                ready[index] = (attempt, outbound)
        store_error = self._record_failures(batch, built, store_error)
        if store_error is not None:  # nothing was called yet: give back all that is not settled
            self._settle_all(batch, copies, [*built, *((index, GIVE_BACK) for index in ready)])
            raise store_error
        broker_error = self._settle_all(batch, copies, built) or broker_error
        if broker_error is not None:  # the connection may be gone, its deliveries already on their way to another
            self._settle_all(batch, copies, [(index, GIVE_BACK) for index in ready])  # worker: call none of them
            raise broker_error
        futures: dict[Future, int] = {self._call(batch[i], outbound): i for i, (_, outbound) in ready.items()}
        waiting = set(futures)
        while waiting:
            done_now, waiting = wait(waiting, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
            if not done_now:  # slow partners: keep the heartbeat going meanwhile
                self.beat()
                continue
            if waiting:  # calls that return together are recorded together
                more, waiting = wait(waiting, timeout=GATHER_S)
                done_now |= more
            answers = [(futures[future], *ready[futures[future]], future) for future in done_now]
            store_error, error = self._complete(batch, copies, answers, store_error)
            broker_error = error or broker_error
        if store_error is not None:
            raise store_error
        if broker_error is not None:
            raise broker_error
        return self.settled - before

    def _start(self, deliveries: list[Delivery]) -> dict[int, tuple[int, datetime]]:
        """Start the attempts (``Store.start_attempts_at``), each for the generation its queue message carries."""
        ids = [d.delivery_id for d in deliveries if d.delivery_id is not None]
        generations = {d.delivery_id: g for d in deliveries if d.delivery_id is not None and (g := generation_of(d))}
        if generations:
            return self.store.start_attempts_at(ids, generations)
        return self.store.start_attempts_at(ids)

    def _complete(
        self,
        batch: Sequence[Delivery],
        copies: dict[int, list[Delivery]],
        answers: list[tuple[int, int, Outbound, Future]],
        store_error: StoreUnavailableError | None,
    ) -> tuple[StoreUnavailableError | None, BrokerError | None]:
        """Record and settle the calls that have returned: delivered ones in one transaction, then acknowledged.
        Once the store has failed (``store_error``), delivered ones are held and failed ones given back; a call
        whose adapter met the store down is given back and is the store's failure (not the partner's: no circuit
        breaker count, no retry recorded, never a dead letter)."""
        delivered: list[tuple[int, Delivered]] = []
        outcomes: list[tuple[int, Outcome]] = []
        for index, attempt, outbound, future in answers:
            try:
                outcome, record = self._answer(batch[index], attempt, outbound, future)
            except StoreUnavailableError as exc:  # the adapter's own store read or write: an outage, not the partner
                log.warning("message_id=%s given back: the store failed during its call: %s", batch[index].message_id,
                            exc)  # fmt: skip
                store_error = store_error or exc
                outcomes.append((index, GIVE_BACK))
                continue
            if record is not None:
                delivered.append((index, record))
            else:
                outcomes.append((index, outcome))
        if delivered and store_error is None:
            try:
                recorded = self.store.record_delivered_many([record for _, record in delivered])
            except StoreUnavailableError as exc:
                store_error = exc
            else:
                self._observe_delivered([batch[index] for index, _ in delivered], recorded)
        if delivered and store_error is not None:
            self._held.extend(_Held(record, [batch[index], *copies[index]]) for index, record in delivered)
        elif delivered:
            outcomes[:0] = [(index, Outcome("delivered")) for index, _ in delivered]
        store_error = self._record_failures(batch, outcomes, store_error)
        return store_error, self._settle_all(batch, copies, outcomes)

    def _observe_delivered(self, deliveries: Sequence[Delivery], recorded: Sequence[bool]) -> None:
        """Accept-to-delivered latency of the deliveries recorded now (not of those another worker recorded)."""
        at = datetime.now(UTC)
        for delivery, fresh in zip(deliveries, recorded, strict=False):
            accepted = self._accepted_at.get(delivery.delivery_id or 0)
            if fresh and accepted is not None:
                ACCEPT_TO_DELIVERED_SECONDS.labels(destination=delivery.destination).observe(
                    max(0.0, (at - accepted).total_seconds())
                )

    def _record_failures(
        self, batch: Sequence[Delivery], outcomes: list[tuple[int, Outcome]], store_error: StoreUnavailableError | None
    ) -> StoreUnavailableError | None:
        """Record each retry or dead letter in ``outcomes`` (one transaction each: they are the exception), in
        place; once the store has failed, give them back instead (the next attempt calls again, acceptable for a
        failed call). Returns the store's failure, if any."""
        for position, (index, outcome) in enumerate(outcomes):
            if not outcome.record:
                continue
            delivery = batch[index]
            if store_error is not None:
                outcomes[position] = (index, GIVE_BACK)
                continue
            assert delivery.delivery_id is not None
            try:
                if outcome.kind == "retry":
                    self.store.record_retry(delivery.delivery_id, error=outcome.error, delay_s=outcome.delay_s)
                else:
                    self.store.record_dead(delivery.delivery_id, reason=outcome.record, error=outcome.error)
            except StoreUnavailableError as exc:
                store_error, outcomes[position] = exc, (index, GIVE_BACK)
            except DeliveryClosedError as exc:  # delivered or dead-lettered meanwhile (another copy, another worker)
                log.info("message_id=%s %s; ack", delivery.message_id, exc)
                outcomes[position] = (index, Outcome("already"))
        return store_error

    def _settle_all(
        self, batch: Sequence[Delivery], copies: dict[int, list[Delivery]], outcomes: Sequence[tuple[int, Outcome]]
    ) -> BrokerError | None:
        """Settle each first delivery as its outcome says, then acknowledge its copies in the batch and the done
        ones together (one multiple ack when they are contiguous). A broker failure is returned, not raised: the
        batch goes on, and what was not settled is redelivered (and recognised by the store)."""
        acks: list[Delivery] = []
        try:
            for index, outcome in outcomes:
                delivery = batch[index]
                if outcome.kind in ("delivered", "already"):
                    acks.append(delivery)
                elif outcome.kind == "requeue":
                    self.broker.requeue(delivery)
                else:
                    self._settle(delivery, outcome)
                    self.settled += 1
                acks.extend(copies[index])
            self._ack(acks)
        except BrokerError as exc:
            return exc
        return None

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self.broker.ack_many(deliveries)
            self.settled += len(deliveries)

    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Settle a delivery that was not done (done ones are acknowledged together, see ``_settle_all``)."""
        if outcome.kind in ("retry", "deferred"):
            self.broker.retry(delivery, outcome.delay_s, outcome.reason)
        else:
            self.broker.dead_letter(delivery, outcome.reason)

    def _build(self, delivery: Delivery) -> Outbound | Outcome:
        """Map and sign for the destination; a failure is permanent for this content (a dead letter to record)."""
        with log_context(message_id=delivery.message_id, connector=delivery.destination,
                         names=_names_in(delivery.body)):  # fmt: skip
            try:
                partner_format = self.adapters[delivery.destination].partner_format
                return self.builder.prepare(delivery.body, delivery.destination, partner_format, self.routing.units)
            except StoreUnavailableError as exc:  # reading a portal record (a supplement step): not its content
                log.warning("message_id=%s given back: the store failed while mapping: %s", delivery.message_id, exc)
                return GIVE_BACK
            except Exception as exc:
                reason = mask_personal(f"cannot map or sign for {delivery.destination}: {exc}")
                log.warning("message_id=%s %s", delivery.message_id, reason)
                return Outcome("dead", reason=reason, record="mapping", error=reason)

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
            started = time.perf_counter()
            try:
                return await adapter.deliver_async(request)
            except DeliveryError as exc:
                return exc
            finally:
                PARTNER_CALL_SECONDS.labels(destination=request.destination).observe(time.perf_counter() - started)

    def _call_in_thread(
        self, delivery: Delivery, adapter: Adapter, request: OutboundRequest
    ) -> DeliveryReceipt | DeliveryError:
        with log_context(message_id=delivery.message_id, connector=delivery.destination,
                         names=_names_in(request.body)):  # fmt: skip
            try:
                with (
                    self._limits[delivery.destination],
                    PARTNER_CALL_SECONDS.labels(destination=delivery.destination).time(),
                ):  # the call itself, not the wait for a free slot
                    return adapter.deliver(request)
            except DeliveryError as exc:
                return exc

    def _answer(
        self, delivery: Delivery, attempt: int, outbound: Outbound, future: Future
    ) -> tuple[Outcome, Delivered | None]:
        """The outcome of a returned call (``_outcome``); an unexpected error is a bug, which must not lose the
        message: retried later. ``StoreUnavailableError`` (an adapter reads or writes the store: a notification's
        dossier and timeline, the postal order book, the result signers, the payment recorder) is raised: the store
        is down, not the partner, so the caller gives the delivery back and the worker backs off."""
        names = _names_in(outbound.envelope)
        with log_context(message_id=delivery.message_id, connector=delivery.destination, names=names):
            try:
                answer = future.result()
            except StoreUnavailableError:
                raise
            except Exception as exc:
                log.exception("message_id=%s unexpected error", delivery.message_id)  # masked: in the context
                return Outcome("deferred", 30.0, mask_personal(f"internal error: {exc!r}", names)), None
            return self._outcome(delivery, attempt, outbound, answer)

    def _outcome(
        self,
        delivery: Delivery,
        attempt: int,
        outbound: Outbound,
        answer: DeliveryReceipt | DeliveryError,
    ) -> tuple[Outcome, Delivered | None]:
        """What the partner's answer means — delivered (with what to record), dead or a retry (recorded by
        ``_record_failures``) — and what the circuit breaker learns from it."""
        destination = delivery.destination
        header = outbound.header
        delivery_id = delivery.delivery_id
        assert delivery_id is not None
        breaker = self._breakers[destination]
        if isinstance(answer, PermanentDeliveryError):
            if answer.rule is None:
                breaker.success()  # the partner is up; it just refuses this content
            error = mask_personal(str(answer))  # a partner's text may echo the citizen's name: kept masked
            log.warning("message_id=%s destination=%s rejected: %s", delivery.message_id, destination, error,
                        extra={"dossier_code": header.dossier_code})  # fmt: skip
            # a hub rule that held the message back (``DeliveryError.rule``) is the dead letter's reason
            return Outcome("dead", reason=error, record=answer.rule or "rejected", error=error), None
        if isinstance(answer, DeliveryError):
            if answer.rule is None:  # a rule's failure (a result document's host down) is not the partner's
                breaker.failure()
            error = mask_personal(str(answer))
            policy = self.routing.destinations[destination].retry_policy
            if policy.exhausted(attempt):
                reason = f"gave up after {attempt} attempts: {error}"
                return Outcome("dead", reason=reason, record=answer.rule or "exhausted", error=error), None
            delay = policy.delay_for(attempt)
            log.info("message_id=%s destination=%s attempt %d failed, retry in %.1fs: %s",
                     delivery.message_id, destination, attempt, delay, error,
                     extra={"dossier_code": header.dossier_code})  # fmt: skip
            return Outcome("retry", delay, error, record="retry", error=error), None
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

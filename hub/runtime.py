"""The composition root: ``Runtime`` builds, once per process, everything the hub wires together from ``Settings``.

The API, the partner flows, the CLI, the demo and the benchmark take the store, broker, routing, registry, trust
store, verifier, signer and acceptor from their ``Runtime`` instead of building their own, so every path trusts,
routes and accepts the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from lxml import etree
from pydantic import BaseModel

from adapters.base import Adapter
from adapters.registry import AdapterContext, build_adapter, build_adapters, factory_key
from broker.base import Broker, BrokerError, connect
from hub.config import Settings
from hub.errors import StoreError, StoreUnavailableError
from hub.exchange.routing import DestinationConfig, RoutingTable
from hub.packets.dossier import DossierSync
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore
from hub.store import Store
from hub.xmlparse import XmlLimits

if TYPE_CHECKING:
    from adapters.notification import DossierNote
    from hub.dossier.status_machine import Correction
    from hub.exchange.pipeline import Accepted, Acceptor
    from hub.registry import Registry

log = logging.getLogger(__name__)

HUB_KEY_NAME = "hub"


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy-style URL (amqp://…): hide the userinfo part by hand
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}" if "@" in rest else url


def broker_url(settings: Settings) -> str:
    """The broker URL, with the embedded queue placed in the data folder (``embedded?opt=…`` keeps its options)."""
    if settings.broker_url == "embedded" or settings.broker_url.startswith("embedded?"):
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the store, queue and keys
        return f"embedded:{settings.data_dir / 'queue.db'}{settings.broker_url[len('embedded') :]}"
    return settings.broker_url


def open_store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


#: RabbitMQ's reconnect loop for a lazily opened broker: short, as its caller (the API's publisher thread) retries
#: by itself and reports the broker down in between.
LAZY_RECONNECT_S = 2.0


def open_broker(settings: Settings, *, lazy: bool = False) -> Broker:
    """The process's broker. ``lazy``: RabbitMQ is connected on first use, not now, so the process starts while it
    is down, and each call gives up reconnecting after ``LAZY_RECONNECT_S`` (the embedded queue ignores it)."""
    url = broker_url(settings)
    if lazy and url.startswith(("amqp://", "amqps://")):
        return connect(url, lazy=True, reconnect_timeout_s=LAZY_RECONNECT_S)
    return connect(url)


def hub_certificate_path(settings: Settings) -> Path:
    """Where the hub's own certificate is: the configured one, or the demo key's under the data folder."""
    if settings.key_file and settings.cert_file:
        return settings.cert_file
    return settings.data_dir / "keys" / f"{HUB_KEY_NAME}.pem"


def hub_signer(settings: Settings) -> Signer:
    """The hub's own signer: the configured key, or a demo key under the data folder (created once)."""
    if settings.key_file and settings.cert_file:
        return Signer.from_files(settings.key_file, settings.cert_file)
    key_dir = settings.data_dir / "keys"
    key_path, cert_path = key_dir / f"{HUB_KEY_NAME}.key", hub_certificate_path(settings)
    if not key_path.exists():
        # ECDSA P-256: the hub signs every outbound message, and EC signing is ~8x cheaper than RSA-2048.
        keys.issue_key(HUB_KEY_NAME, key_dir, algorithm="ec", code=settings.hub_code)
    return Signer.from_files(key_path, cert_path)


@contextmanager
def _registry(settings: Settings, store: Store | None) -> Iterator[Registry | None]:
    """The connector registry when any connector is registered (``None`` otherwise, or before migrations).
    Without ``store``, a short-lived one is opened on ``LIENTHONG_DATABASE_URL`` and closed afterwards."""
    from hub.registry import Registry

    own = store is None
    store = Store(settings.database_url) if store is None else store
    try:
        if not sa.inspect(store.engine).has_table("connectors"):
            yield None
            return
        registry = Registry(store, hub_code=settings.hub_code)
        yield registry if registry.count() else None
    finally:
        if own:
            store.close()


def _trust_of(settings: Settings, registry: Registry | None) -> TrustStore:
    anchors = TrustStore.anchors_from(Path(settings.trust_dir or settings.data_dir / "keys"))
    return anchors if registry is None else registry.trust_store(anchors)


def _routing_of(settings: Settings, registry: Registry | None) -> RoutingTable:
    if registry is not None:
        return registry.routing_table()
    if settings.routes_file is None:
        return RoutingTable()
    return RoutingTable.from_file(settings.routes_file)


def trust_store(settings: Settings, store: Store | None = None) -> TrustStore:
    """The hub's one trust store (rule: ``TrustStore``): the CA certificates of ``LIENTHONG_TRUST_DIR`` (else the
    demo CA under the data folder; none when it is missing), with every registered connector's certificates
    pinned for its code."""
    with _registry(settings, store) as registry:
        return _trust_of(settings, registry)


def routing_table(settings: Settings, store: Store | None = None) -> RoutingTable:
    """The connector registry's routing when any connector is registered, else ``LIENTHONG_ROUTES_FILE``."""
    with _registry(settings, store) as registry:
        return _routing_of(settings, registry)


def has_destinations(settings: Settings) -> bool:
    """Whether a worker has anything to deliver to: registered connectors or a routing file."""
    if settings.routes_file is not None:
        return True
    with _registry(settings, None) as registry:
        return registry is not None


class NotificationLedger:
    """``adapters.notification.NotificationHooks`` on a store: the dossier's latest ``dossier.sync``
    (``Store.latest_sync``, the record the portal's refreshed record reads too), and the notifications on its
    timeline (``hub.store.notifications``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def dossier(self, dossier_code: str) -> DossierSync | None:
        return self.store.latest_sync(dossier_code)

    def already(self, connector: str, note: DossierNote) -> bool:
        from hub.store import notifications

        return notifications.notified(self.store.db, source=connector, dossier_code=note.dossier_code,
                                      status=note.status, at=note.at, message_id=note.message_id,
                                      once=note.once)  # fmt: skip

    def record(self, connector: str, note: DossierNote) -> None:
        from hub.store import notifications

        notifications.record_notification(
            self.store.db, dossier_code=note.dossier_code, message_id=note.message_id, status=note.status,
            at=note.at, outcome=note.outcome, reason=note.reason, source=connector, detail=note.detail,
        )  # fmt: skip


def adapter_context(
    configs: Iterable[DestinationConfig], store: Store | None = None, hub_code: str | None = None
) -> AdapterContext:
    """What adapters get from the hub: its code (``None``: each adapter's default), the payment adapter's recorder
    of the references it initiates, the postal adapter's order book (``hub.store.postal_orders``), the
    notification connectors' ledger and the national portal's accepted calls (``hub.store.delivery_steps``), all on
    ``store`` (without one, the store named by ``LIENTHONG_DATABASE_URL``)."""
    kinds = {factory_key(cfg) for cfg in configs}
    if not kinds & {"payment", "postal", "notification", "national_portal"}:
        return AdapterContext(integration_code=hub_code)
    from hub.config import get_settings
    from hub.store.delivery_steps import DeliverySteps
    from hub.store.flow_records import initiated_recorder, refund_guard
    from hub.store.postal_orders import OrderBook

    target = store.engine if store is not None else get_settings().database_url
    ledger = None
    if "notification" in kinds:
        ledger = NotificationLedger(store if store is not None else Store(get_settings().database_url))
    payments = "payment" in kinds
    return AdapterContext(
        on_payment_initiated=initiated_recorder(target) if payments else None,
        refund_guard=refund_guard(target) if payments else None,
        integration_code=hub_code,
        postal_orders=OrderBook(target) if "postal" in kinds else None,
        notifications=ledger,
        delivery_steps=DeliverySteps(target) if "national_portal" in kinds else None,
    )


def adapter_for(cfg: DestinationConfig, store: Store | None = None) -> Adapter:
    """The adapter for one destination, by its connector kind (``adapters.registry.FACTORIES``)."""
    return build_adapter(cfg, adapter_context([cfg], store))


def adapters_for(routing: RoutingTable, store: Store | None = None, hub_code: str | None = None) -> dict[str, Adapter]:
    """One adapter per destination; ``store`` is the process's own store, where adapters that keep state (the
    payment adapter's initiated references) record it."""
    return build_adapters(routing.destinations, adapter_context(routing.destinations.values(), store, hub_code))


@dataclass
class Runtime:
    """One process's composition root: the store, broker and routing it opened, and — each built on first use,
    then shared — the registry, the one trust store, the verifier, the hub's signer and the acceptor.

    A caller that wraps ``broker`` (the API hands it to its publisher thread) does so before asking for the acceptor.
    ``refresh`` re-reads routing and pins from the registry into the objects already handed out.
    """

    settings: Settings
    store: Store
    broker: Broker
    routing: RoutingTable
    _built: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _retiring: dict[str, DestinationConfig] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, lazy_broker: bool = False) -> Runtime:
        """Open the store (migrated), the broker (``lazy_broker``: see ``open_broker``) and the routing."""
        store = open_store(settings)
        return cls(settings, store, open_broker(settings, lazy=lazy_broker), routing_table(settings, store))

    def describe_broker(self) -> str:
        """The broker URL(s) without passwords (a cluster's comma-separated URLs each hidden)."""
        if self.settings.broker_url == "embedded":
            return "embedded"
        return ",".join(_hide_password(url.strip()) for url in self.settings.broker_url.split(","))

    def describe_store(self) -> str:
        return _hide_password(self.settings.database_url)

    def _once(self, name: str, build: Any) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    def limits(self) -> XmlLimits:
        """The parsing limits of every inbound document (``LIENTHONG_MAX_MESSAGE_BYTES``, ``…_MAX_XML_DEPTH``)."""
        return XmlLimits(max_bytes=self.settings.max_message_bytes, max_depth=self.settings.max_xml_depth)

    def registry(self) -> Registry:
        """The connector registry on this runtime's store."""
        from hub.registry import Registry

        return self._once("registry", lambda: Registry(self.store, hub_code=self.settings.hub_code))

    def _registered(self) -> Registry | None:
        """The registry when any connector is registered (it then decides routing and pins), else ``None``."""
        if not sa.inspect(self.store.engine).has_table("connectors"):
            return None
        registry = self.registry()
        return registry if registry.count() else None

    def trust(self) -> TrustStore:
        """The one trust store: CA anchors and the connectors' pinned certificates (see ``TrustStore``)."""
        return self.verifier().trust

    def verifier(self) -> EnvelopeVerifier:
        """The verifier of every inbound envelope; ``refresh`` swaps its trust store in place."""
        return self._once(
            "verifier", lambda: EnvelopeVerifier(_trust_of(self.settings, self._registered()), limits=self.limits())
        )

    def signer(self) -> Signer:
        """The hub's own signer (``hub_signer``)."""
        return self._once("signer", lambda: hub_signer(self.settings))

    def acceptor(self) -> Acceptor:
        """The process's acceptor: verify → route → commit → publish, on this runtime's objects."""
        from hub.exchange.pipeline import Acceptor

        return self._once("acceptor", lambda: Acceptor(self.store, self.broker, self.routing, self.verifier(),
                                                       status_time_ahead_s=self.settings.status_time_ahead_s))

    def inject(
        self, header: EnvelopeHeader, payload: BaseModel | etree._Element, *, correction: Correction | None = None
    ) -> Accepted:
        """Accept a message the hub creates itself, signed by the hub and not verified again (``Acceptor.inject``);
        ``correction``: a ``dossier.status`` reporting an operator's correction (decided and audited as such)."""
        from hub import packets

        element = payload if isinstance(payload, etree._Element) else packets.to_element(payload)
        return self.acceptor().inject(header, element, self.signer(), correction=correction)

    def refresh(self) -> RoutingTable:
        """Re-read routing and pinned certificates from the registry (after a change, or periodically); the
        acceptor and the verifier already handed out use them from now on."""
        with self._lock:
            registry = self._registered()
            routing = _routing_of(self.settings, registry)
            routing.declare(self.broker)
            old, self.routing = self.routing, routing
            if "verifier" in self._built:
                self._built["verifier"].trust = _trust_of(self.settings, registry)
            if "acceptor" in self._built:
                self._built["acceptor"].routing = routing
            self._retire(old)
            return routing

    def _retire(self, old: RoutingTable) -> None:
        """Remove the queues of destinations gone from the routing (issue #12: a bounded set of queues). Queues
        that still hold messages, or that a worker with the old routing still consumes, are kept and tried again
        at each refresh until they are idle or the destination comes back."""
        gone = {code: cfg for code, cfg in old.destinations.items() if code not in self.routing.destinations}
        self._retiring = {**{c: v for c, v in self._retiring.items() if c not in self.routing.destinations}, **gone}
        kept: set[str] = set()
        if self._retiring:  # deliveries still open in the store (e.g. a replayed dead letter) may yet be published
            try:
                open_ = {d.destination for d in self.store.queue_overview() if d.pending}
            except StoreError as exc:
                log.warning("cannot remove the queues of gone destinations yet: %s", exc)
                return
            kept = set(self._retiring) & open_
        for code, cfg in sorted(self._retiring.items()):
            if code in kept:
                continue
            try:
                kept.update(self.broker.retire([code], cfg.retry_policy))
            except BrokerError as exc:  # the broker is down: the next refresh tries again
                log.warning("cannot remove the queues of %s yet: %s", code, exc)
                kept.add(code)
        self._retiring = {c: v for c, v in self._retiring.items() if c in kept}

    def adapters(self) -> dict[str, Adapter]:
        """One adapter per destination of the routing table, built once (``adapters.registry``); closed with the
        runtime. A worker builds them at start, as it reads its routing then. With a connector registry, those of
        the destinations that receive ``dossier.status`` check a finished update's signed results before they
        deliver it (``hub.exchange.results``)."""
        return self._once("adapters", self._build_adapters)

    def _build_adapters(self) -> dict[str, Adapter]:
        from hub.exchange.results import ResultCheck, guard

        registered = sa.inspect(self.store.engine).has_table("connectors")  # first: an outage leaves nothing built
        built = adapters_for(self.routing, self.store, self.settings.hub_code)
        if not registered:
            return built  # a routing file, no registry: no result signers to check against
        registry = self.registry()
        check = ResultCheck(registry.result_signers, registry.result_hosts, max_bytes=self.settings.result_max_bytes,
                            timeout_s=self.settings.result_fetch_timeout_s)  # fmt: skip
        return guard(built, self.routing, check)

    def close(self) -> None:
        for adapter in self._built.get("adapters", {}).values():
            adapter.close()
        self.broker.close()
        self.store.close()


WORKER_RECONNECT_S = 5.0  # a worker's broker gives up reconnecting soon: the worker's own backoff takes over


#: Work a worker process runs beside its deliveries, started once its runtime is open: (runtime, stop event) → it
#: starts its own daemon thread. Picklable (a module function, or a ``functools.partial`` of one) for the processes.
Background = Callable[["Runtime", threading.Event], Any]


def run_backgrounds(hooks: Sequence[Background], runtime: Runtime, stop: threading.Event) -> None:
    """Start several ``background`` hooks on one worker process's runtime (picklable with ``functools.partial``)."""
    for hook in hooks:
        hook(runtime, stop)


def _worker_broker(settings: Settings) -> Broker:
    """The worker's broker: RabbitMQ's own reconnect loop (not interruptible, silent in the heartbeat) kept short,
    as the worker retries with its backoff, logged, measured and ended by SIGTERM."""
    url = broker_url(settings)
    options = {"reconnect_timeout_s": WORKER_RECONNECT_S} if url.startswith(("amqp://", "amqps://")) else {}
    return connect(url, **options)


def _open_for_worker(settings: Settings, stop: threading.Event, dependencies: Any, beat: Any) -> Runtime | None:
    """``Runtime.open`` for a worker: while the store or the broker is down, wait with the worker's backoff (a log
    line per outage, the heartbeat kept) and try again; ``None`` when stopped meanwhile."""
    from broker.base import BrokerError
    from hub.errors import StoreUnavailableError
    from hub.exchange.outages import BROKER, STORE
    from hub.exchange.worker import WAIT_SLICE_S

    while not stop.is_set():
        store: Store | None = None
        try:
            store = open_store(settings)
            routing = routing_table(settings, store)
            dependencies.up(STORE)
            broker = _worker_broker(settings)
            dependencies.up(BROKER)
            return Runtime(settings, store, broker, routing)
        except StoreUnavailableError as exc:
            dependencies.down(STORE, exc)
        except BrokerError as exc:
            dependencies.down(BROKER, exc)
        if store is not None:
            store.close()
        dependencies.wait(stop, beat, WAIT_SLICE_S)
    return None


def _worker_process(
    settings: Settings,
    prefetch: int,
    idle_exit_s: float | None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    background: Background | None = None,
) -> int:
    """One worker process: its own store engine, broker connection, adapters, thread pool and heartbeat file.

    It waits for the store and the broker at start (SIGTERM ends the wait) and never exits because either is
    down (``Worker.run``); with ``metrics_port`` it serves its Prometheus metrics there. ``background`` (the
    catalogue schedule, ``hub.flows.catalogue.start_schedule``) is started on the process's runtime, in a thread
    that ends with the worker."""
    import signal

    from broker.base import BrokerError
    from hub.exchange.heartbeat import Heartbeat
    from hub.exchange.outages import BROKER, STORE, Dependencies
    from hub.exchange.pipeline import Relay
    from hub.exchange.portal_refresh import DossierRecords
    from hub.exchange.worker import OutboundBuilder, Worker
    from hub.logs import configure_logging
    from hub.store.catalogue import CachedCatalogue

    configure_logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before anything waits: a SIGTERM then ends the wait
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    dependencies = Dependencies()
    heartbeat = Heartbeat(settings.data_dir)

    def beat() -> None:
        heartbeat.beat(store_up=dependencies.is_up(STORE), broker_up=dependencies.is_up(BROKER), settled=0)

    try:
        while True:
            runtime = _open_for_worker(settings, stop, dependencies, beat)
            if runtime is None:
                return 0
            try:
                work = Worker(
                    runtime.store,
                    runtime.broker,
                    runtime.routing,
                    OutboundBuilder(
                        runtime.signer(),
                        settings.hub_code,
                        CachedCatalogue(runtime.store.catalogue_names),
                        dossiers=DossierRecords(runtime.store),
                    ),
                    runtime.adapters(),
                    prefetch=prefetch,
                    relay=Relay(runtime.store, runtime.broker),
                    stop=stop,
                    dependencies=dependencies,
                    heartbeat=heartbeat,
                )
            except BrokerError as exc:  # the broker went away between opening and declaring the queues
                dependencies.down(BROKER, exc)
                runtime.close()
                continue
            except StoreUnavailableError as exc:  # the store went away after opening (the adapters read the registry)
                dependencies.down(STORE, exc)
                runtime.close()
                continue  # _open_for_worker waits with the backoff while it stays down
            break
        if background is not None:
            background(runtime, stop)
        try:
            return work.run(idle_exit_s=idle_exit_s)
        finally:
            work.close()
            runtime.close()
    finally:
        heartbeat.remove()


def _worker_child(
    settings: Settings,
    prefetch: int,
    idle_exit_s: float | None,
    metrics: tuple[int | None, str],
    results: Any,
    background: Background | None = None,
) -> None:
    results.put(_worker_process(settings, prefetch, idle_exit_s, *metrics, background=background))


def run_workers(
    settings: Settings,
    *,
    processes: int = 1,
    prefetch: int = 64,
    idle_exit_s: float | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    background: Background | None = None,
) -> int:
    """Run ``processes`` worker processes (the current one when 1) until they stop; return deliveries settled.
    With ``metrics_port`` P, worker process i (0-based) serves its Prometheus metrics on ``metrics_host``:P + i.

    SIGTERM/SIGINT received here is passed on to every child, which finishes its in-flight batch and exits.
    A child that fails stops the others, and this raises once all have exited (a supervisor restarts the set).

    Plain processes, not a ``multiprocessing.Pool``: a pool waits for ever for the result of a child killed by a
    SIGTERM that came before its worker's handler was installed, and its ``terminate()`` hangs on children whose
    SIGTERM handler is their finished worker's ``stop()``.
    """
    if processes <= 1:
        return _worker_process(settings, prefetch, idle_exit_s, metrics_port, metrics_host, background)
    import contextlib
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    results = context.SimpleQueue()
    children = [
        context.Process(
            target=_worker_child,
            args=(
                settings,
                prefetch,
                idle_exit_s,
                (metrics_port and metrics_port + n - 1, metrics_host),
                results,
                background,
            ),
            name=f"worker-{n}",
        )
        for n in range(1, processes + 1)
    ]
    finished: set[int] = set()
    stopping = False

    def forward(_signum: int = signal.SIGTERM, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.pid not in finished:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    if stopping:  # a signal came while they were starting
        forward()
    failed: list[str] = []
    running = list(children)
    while running:
        wait([child.sentinel for child in running])
        for child in [c for c in running if c.exitcode is not None]:
            running.remove(child)
            if child.pid is not None:  # always set once started
                finished.add(child.pid)
            if child.exitcode != 0 and not (stopping and child.exitcode == -signal.SIGTERM):
                failed.append(f"{child.name} exited with {child.exitcode}")
                forward()
    settled = 0
    while not results.empty():
        settled += results.get()
    if failed:
        raise RuntimeError(f"worker process(es) failed: {'; '.join(failed)} (settled {settled} deliveries)")
    return settled


def replay_dead_letters(runtime: Runtime, ids: list[int], *, actor: str) -> tuple[list[tuple[int, str, str]], list]:
    """Replay dead letters: record who and when, publish again, drop them from the broker's dead-letter queue."""
    from hub.exchange.pipeline import outbound_for

    replayed: list[tuple[int, str, str]] = []
    errors: list[tuple[int, StoreError]] = []
    pending = []
    for dead_id in ids:
        try:
            pending.append(runtime.store.replay(dead_id, actor=actor))
        except StoreUnavailableError:  # not about this dead letter: the caller answers "try again later"
            raise
        except StoreError as exc:
            errors.append((dead_id, exc))
            continue
        replayed.append((dead_id, pending[-1].message_id, pending[-1].destination))
    if pending:
        try:
            runtime.routing.declare(runtime.broker)
            for destination in {p.destination for p in pending}:
                runtime.broker.take_dead(destination, {p.message_id for p in pending if p.destination == destination})
            runtime.broker.publish([outbound_for(p) for p in pending])
        except BrokerError as exc:  # the replay is committed: the outbox relay publishes it once the broker is back
            log.warning("replayed %d dead letters; the relay will publish them: %s", len(pending), exc)
        else:
            runtime.store.mark_published([p.delivery_id for p in pending])
    return replayed, errors

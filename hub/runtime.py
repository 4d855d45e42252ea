"""Wiring: build the store, broker, routing table, signer and verifier a process needs from ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from adapters.base import Adapter
from adapters.registry import AdapterContext, build_adapter, build_adapters, factory_key
from broker.base import Broker, connect
from hub.config import Settings
from hub.errors import KeyMaterialError
from hub.exchange.routing import DestinationConfig, RoutingTable
from hub.security import keys
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore
from hub.store import Store

if TYPE_CHECKING:
    from hub.registry import Registry

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
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return f"embedded:{settings.data_dir / 'queue.db'}{settings.broker_url[len('embedded') :]}"
    return settings.broker_url


def open_store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def open_broker(settings: Settings) -> Broker:
    return connect(broker_url(settings))


def hub_signer(settings: Settings) -> Signer:
    """The hub's own signer: the configured key, or a demo key under the data folder (created once)."""
    if settings.key_file and settings.cert_file:
        return Signer.from_files(settings.key_file, settings.cert_file)
    key_dir = settings.data_dir / "keys"
    key_path, cert_path = key_dir / f"{HUB_KEY_NAME}.key", key_dir / f"{HUB_KEY_NAME}.pem"
    if not key_path.exists():
        # ECDSA P-256: the hub signs every outbound message, and EC signing is ~8x cheaper than RSA-2048.
        keys.issue_key(HUB_KEY_NAME, key_dir, algorithm="ec")
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


def trust_store(settings: Settings, store: Store | None = None) -> TrustStore:
    """Trusted CAs from ``LIENTHONG_TRUST_DIR`` (else the demo CA under the data folder), with every registered
    connector's certificates pinned for its code."""
    path = settings.trust_dir or settings.data_dir / "keys"
    with _registry(settings, store) as registry:
        try:
            anchors = TrustStore.from_path(Path(path))
        except KeyMaterialError:
            if registry is None:
                raise
            anchors = TrustStore()  # no CA folder yet: the connectors' pinned certificates alone
        return anchors if registry is None else registry.trust_store(anchors)


def routing_table(settings: Settings, store: Store | None = None) -> RoutingTable:
    """The connector registry's routing when any connector is registered, else ``LIENTHONG_ROUTES_FILE``."""
    with _registry(settings, store) as registry:
        if registry is not None:
            return registry.routing_table()
    if settings.routes_file is None:
        return RoutingTable()
    return RoutingTable.from_file(settings.routes_file)


def has_destinations(settings: Settings) -> bool:
    """Whether a worker has anything to deliver to: registered connectors or a routing file."""
    if settings.routes_file is not None:
        return True
    with _registry(settings, None) as registry:
        return registry is not None


def adapter_context(configs: Iterable[DestinationConfig], store: Store | None = None) -> AdapterContext:
    """The callbacks adapters get from the hub: the payment adapter records the references it initiates in
    ``store`` (without one, the store named by ``LIENTHONG_DATABASE_URL``)."""
    if not any(factory_key(cfg) == "payment" for cfg in configs):
        return AdapterContext()
    from hub.config import get_settings
    from hub.flows.payments import initiated_recorder

    target = store.engine if store is not None else get_settings().database_url
    return AdapterContext(on_payment_initiated=initiated_recorder(target))


def adapter_for(cfg: DestinationConfig, store: Store | None = None) -> Adapter:
    """The adapter for one destination, by its connector kind (``adapters.registry.FACTORIES``)."""
    return build_adapter(cfg, adapter_context([cfg], store))


def adapters_for(routing: RoutingTable, store: Store | None = None) -> dict[str, Adapter]:
    """One adapter per destination; ``store`` is the process's own store, where adapters that keep state (the
    payment adapter's initiated references) record it."""
    return build_adapters(routing, adapter_context(routing.destinations.values(), store))


@dataclass
class Runtime:
    settings: Settings
    store: Store
    broker: Broker
    routing: RoutingTable

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        store = open_store(settings)
        return cls(settings, store, open_broker(settings), routing_table(settings, store))

    def describe_broker(self) -> str:
        return "embedded" if self.settings.broker_url == "embedded" else _hide_password(self.settings.broker_url)

    def describe_store(self) -> str:
        return _hide_password(self.settings.database_url)

    def verifier(self) -> EnvelopeVerifier:
        return EnvelopeVerifier(trust_store(self.settings, self.store))

    def registry(self) -> Registry:
        """The connector registry on this runtime's store."""
        from hub.registry import Registry

        return Registry(self.store, hub_code=self.settings.hub_code)

    def close(self) -> None:
        self.broker.close()
        self.store.close()


def _worker_process(settings: Settings, prefetch: int, idle_exit_s: float | None) -> int:
    """One worker process: its own store engine, broker connection, adapters and thread pool."""
    from hub.exchange.pipeline import Relay
    from hub.exchange.worker import OutboundBuilder, Worker
    from hub.logs import configure_logging

    configure_logging(settings)
    runtime = Runtime.open(settings)
    work = Worker(
        runtime.store,
        runtime.broker,
        runtime.routing,
        OutboundBuilder(hub_signer(settings), settings.hub_code),
        adapters_for(runtime.routing, runtime.store),
        prefetch=prefetch,
        relay=Relay(runtime.store, runtime.broker),
    )
    work.install_signal_handlers()
    try:
        return work.run(idle_exit_s=idle_exit_s)
    finally:
        work.close()
        runtime.close()


def _worker_child(settings: Settings, prefetch: int, idle_exit_s: float | None, results) -> None:
    results.put(_worker_process(settings, prefetch, idle_exit_s))


def run_workers(settings: Settings, *, processes: int = 1, prefetch: int = 64, idle_exit_s: float | None = None) -> int:
    """Run ``processes`` worker processes (the current one when 1) until they stop; return deliveries settled.

    SIGTERM/SIGINT received here is passed on to every child, which finishes its in-flight batch and exits.
    A child that fails stops the others, and this raises once all have exited (a supervisor restarts the set).

    Plain processes, not a ``multiprocessing.Pool``: a pool waits for ever for the result of a child killed by a
    SIGTERM that came before its worker's handler was installed, and its ``terminate()`` hangs on children whose
    SIGTERM handler is their finished worker's ``stop()``.
    """
    if processes <= 1:
        return _worker_process(settings, prefetch, idle_exit_s)
    import contextlib
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    results = context.SimpleQueue()
    children = [
        context.Process(target=_worker_child, args=(settings, prefetch, idle_exit_s, results), name=f"worker-{n}")
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
    from hub.store import StoreError

    replayed: list[tuple[int, str, str]] = []
    errors: list[tuple[int, StoreError]] = []
    pending = []
    for dead_id in ids:
        try:
            pending.append(runtime.store.replay(dead_id, actor=actor))
        except StoreError as exc:
            errors.append((dead_id, exc))
            continue
        replayed.append((dead_id, pending[-1].message_id, pending[-1].destination))
    if pending:
        runtime.routing.declare(runtime.broker)
        for destination in {p.destination for p in pending}:
            runtime.broker.take_dead(destination, {p.message_id for p in pending if p.destination == destination})
        runtime.broker.publish([outbound_for(p) for p in pending])
        runtime.store.mark_published([p.delivery_id for p in pending])
    return replayed, errors

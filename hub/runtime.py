"""Wiring: build the store, broker, routing table, signer and verifier a process needs from ``Settings``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adapters.base import Adapter
from adapters.http import HttpAdapter
from broker.base import Broker, connect
from hub import keys
from hub.config import Settings
from hub.routing import RoutingTable
from hub.signing import EnvelopeVerifier, Signer, TrustStore
from hub.store import Store

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


def trust_store(settings: Settings) -> TrustStore:
    """Trusted CAs from ``LIENTHONG_TRUST_DIR``, else the demo CA under the data folder."""
    path = settings.trust_dir or settings.data_dir / "keys"
    return TrustStore.from_path(Path(path))


def routing_table(settings: Settings) -> RoutingTable:
    if settings.routes_file is None:
        return RoutingTable()
    return RoutingTable.from_file(settings.routes_file)


def adapters_for(routing: RoutingTable) -> dict[str, Adapter]:
    """One adapter per destination (plain HTTP until the partner adapters exist)."""
    return {
        code: HttpAdapter(cfg.endpoint, timeout_s=cfg.timeout_s, max_connections=cfg.concurrency)
        for code, cfg in routing.destinations.items()
    }


@dataclass
class Runtime:
    settings: Settings
    store: Store
    broker: Broker
    routing: RoutingTable

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        return cls(settings, open_store(settings), open_broker(settings), routing_table(settings))

    def describe_broker(self) -> str:
        return "embedded" if self.settings.broker_url == "embedded" else _hide_password(self.settings.broker_url)

    def describe_store(self) -> str:
        return _hide_password(self.settings.database_url)

    def verifier(self) -> EnvelopeVerifier:
        return EnvelopeVerifier(trust_store(self.settings))

    def close(self) -> None:
        self.broker.close()
        self.store.close()


def _worker_process(settings: Settings, prefetch: int, idle_exit_s: float | None) -> int:
    """One worker process: its own store engine, broker connection, adapters and thread pool."""
    from hub.logs import configure_logging
    from hub.pipeline import Relay
    from hub.worker import OutboundBuilder, Worker

    configure_logging(settings)
    runtime = Runtime.open(settings)
    work = Worker(
        runtime.store,
        runtime.broker,
        runtime.routing,
        OutboundBuilder(hub_signer(settings), settings.hub_code),
        adapters_for(runtime.routing),
        prefetch=prefetch,
        relay=Relay(runtime.store, runtime.broker),
    )
    work.install_signal_handlers()
    try:
        return work.run(idle_exit_s=idle_exit_s)
    finally:
        work.close()
        runtime.close()


def run_workers(settings: Settings, *, processes: int = 1, prefetch: int = 64, idle_exit_s: float | None = None) -> int:
    """Run ``processes`` worker processes (the current one when 1) until they stop; return deliveries settled.

    SIGTERM/SIGINT received here is passed on to every child, which finishes its in-flight batch and exits.
    """
    if processes <= 1:
        return _worker_process(settings, prefetch, idle_exit_s)
    import multiprocessing
    import signal

    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = [pool.apply_async(_worker_process, (settings, prefetch, idle_exit_s)) for _ in range(processes)]

        def forward(signum: int, _frame: object) -> None:
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return sum(r.get() for r in results)


def replay_dead_letters(runtime: Runtime, ids: list[int], *, actor: str) -> tuple[list[tuple[int, str, str]], list]:
    """Replay dead letters: record who and when, publish again, drop them from the broker's dead-letter queue."""
    from hub.pipeline import outbound_for
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

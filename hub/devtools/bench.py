"""``hub bench``: signed envelopes through accept → queue → worker processes → a real HTTP sink partner,
and, in the same run and on the same packets, the naive single-process chain for comparison.

The load generator is a pool of load processes (``hub.devtools.bench_load``): with ``--via direct`` they accept
envelopes exactly as the API will (verify, validate, route, commit, publish with confirms), with ``--via http``
they POST them to a real ``hub serve``; ``hub worker`` processes deliver to ``python -m hub.devtools.sink`` on
127.0.0.1. Latency is accept-committed (or the 202) → first receipt at the sink, measured on the same clock. A
window keeps the accepted-but-undelivered backlog bounded, so p99 measures the exchange, not an ever-growing
queue; ``--rate R`` paces the load instead (message ``i`` offered at ``i / R`` s), for latency at a given load.

Beside throughput and latency every run reports the shape it measured (the production shape is HTTP intake,
RabbitMQ and PostgreSQL: the default ``--via`` when given both), the CPU per message of each process kind and the
store's and broker's size per message (``hub.devtools.bench_measure``); ``--soak`` (paced, signing as it goes,
meant for a million messages) samples the resident memory of every hub process into a CSV file and reports its
growth after the warm-up.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from hub.config import Settings
from hub.devtools import bench_measure, proc_stats, rss_chart
from hub.devtools.bench_load import (
    MESSAGE_TYPES,
    PROVINCE,
    SINK,
    EnvelopeFactory,
    LoadPlan,
    LoadReport,
    accept_share,
    acceptor_init,
    loader_init,
    make_envelopes,
    padded_sync,
    post_share,
    process_ready,
)
from hub.exchange.worker import OutboundBuilder
from hub.runtime import Runtime
from hub.security import keys
from hub.security.signing import Signer

__all__ = ["BenchResult", "as_json", "padded_sync", "readable", "run", "shape"]

LOAD_CONCURRENCY = 32  # requests each load process keeps in flight against `hub serve` (--via http)
SOAK_RATE = 500.0  # msg/s a soak run offers unless told: a million messages in about 33 minutes
LATENCY_SAMPLE = 20_000  # a run of more messages keeps the accept time of about this many for its percentiles


@dataclass
class BenchResult:
    messages: int
    delivered: int
    lost: int
    duplicates: int
    seconds: float
    throughput_msg_s: float
    p50_ms: float
    p99_ms: float
    naive_msg_s: float | None  # None: not timed (a paced run: its throughput is the offered rate)
    ratio_vs_naive: float | None
    broker: str
    store: str
    workers: int
    accept_msg_s: float
    via: str
    envelope_bytes: int = 0  # the average envelope's size
    healthz_p50_ms: float | None = None  # /healthz round trips while the load runs (--via http)
    healthz_p99_ms: float | None = None
    store_durability: str = ""  # what a commit survives, read back from the store (``Database.durability``)
    shape: str = ""  # what was measured, in words (``shape``)
    production_shape: bool = False  # HTTP intake, RabbitMQ and PostgreSQL
    offered_rate: float | None = None  # --rate: msg/s offered; None: as fast as the window lets
    achieved_rate: float | None = None  # msg/s accepted, from the start to the last accepted
    # µs of CPU per delivered message, per process kind (``bench_measure.KINDS``) and in total; None: not measured
    cpu_us_per_message: dict[str, float | None] = field(default_factory=dict)
    cpu_notes: dict[str, str] = field(default_factory=dict)  # how each kind was measured, or why it was not
    store_bytes_per_message: float | None = None  # the store's growth over the run, per message
    broker_size: dict[str, Any] = field(default_factory=dict)  # what the broker's size could be read as
    soak: bool = False
    rss_csv: str | None = None  # where the memory samples went
    rss_svg: str | None = None  # their curve, drawn beside them (``hub.devtools.rss_chart``)
    rss_every_s: float | None = None
    rss: dict[str, dict[str, float]] = field(default_factory=dict)  # per kind: MB after warm-up, at the end, growth
    stage_floor_us: dict[str, float] = field(default_factory=dict)  # ``stage_floor``
    cpu_vs_floor: float | None = None  # ``floor_ratio``: (api + worker) CPU per message ÷ the floor's total


def shape(via: str, broker: str, database_url: str) -> tuple[bool, str]:
    """Whether this is the production shape (HTTP intake, RabbitMQ, PostgreSQL), and what is measured, in words."""
    http, rabbitmq, postgres = via == "http", broker.startswith("amqp"), database_url.startswith("postgres")
    parts = [
        "HTTP intake (hub serve)" if http else "direct accept in the load processes (no HTTP)",
        "RabbitMQ" if rabbitmq else "the embedded queue (SQLite)",
        "PostgreSQL store" if postgres else "SQLite store",
    ]
    production = http and rabbitmq and postgres
    lead = "production shape" if production else "not the production shape (HTTP + RabbitMQ + PostgreSQL)"
    return production, f"{lead}: {', '.join(parts)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback sink
        return json.loads(response.read())


def _post_json(url: str, document: Any) -> dict:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback sink
        return json.loads(response.read())


def _wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sink did not start on port {port}")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _register_connectors(runtime: Runtime, province_pem: str, sink_url: str) -> str:
    """Register (or update) the bench's sender and sink as connectors (the API routes by the registry); the
    sender's key."""
    from hub.registry.spec import parse_spec

    registry = runtime.registry()
    sender = parse_spec(
        {
            "code": PROVINCE,
            "name": "Bench sender",
            "kind": "provincial",
            "sends": list(MESSAGE_TYPES),
            "receives": [],
            "handles": [PROVINCE],  # the handling system of its dossiers (one per message: ``dossier_code``)
            "certificates": [province_pem],
        }
    )
    sink = parse_spec(
        {
            "code": SINK,
            "name": "Bench sink",
            "kind": "ministry",
            "sends": [],
            "receives": list(MESSAGE_TYPES),
            "endpoint": {"url": sink_url, "transport": "http"},
            "concurrency": 16,
        }
    )
    registry.add(sink, actor="bench")
    _, api_key = registry.add(sender, actor="bench")
    # A database kept from an earlier run already holds the sender (updated with this run's certificate): new key.
    return api_key or registry.rotate_key(PROVINCE, actor="bench")


class HealthProbe:
    """Times ``/healthz`` round trips, one every ``every_s``, in a thread while the load runs: how long any other
    caller of the API waits behind the intake's work."""

    def __init__(self, url: str, every_s: float = 0.02) -> None:
        self.url = url
        self.every_s = every_s
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                _get_json(self.url)
            except OSError:
                continue  # counted as nothing: a failed probe is no latency figure
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(self.every_s)

    def percentile(self, q: float) -> float | None:
        return round(_percentile(self.latencies_ms, q), 1) if self.latencies_ms else None


def _wait_http(url: str, processes: int = 1, seconds: float = 30) -> None:
    """Wait until ``processes`` different server processes have answered ``url`` (``/healthz`` names its pid),
    so that none of them is still starting up once the clock runs."""
    deadline = time.monotonic() + seconds
    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            seen.add(str(_get_json(url).get("pid", "")))
        except OSError:
            time.sleep(0.1)
            continue
        if len(seen) >= processes:
            return
        time.sleep(0.02)
    if not seen:
        raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def naive_chain(envelopes: list[bytes], settings: Settings, broker_url: str, verifier, signer: Signer) -> float:
    """verify → validate → map → sign → publish with one confirm per message, in one process; msg/s."""
    builder = OutboundBuilder(signer, settings.hub_code)
    if broker_url.startswith("amqp"):
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        queue = channel.queue_declare("lienthong.bench.naive", durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()

        def publish(message_id: str, body: bytes) -> None:
            props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            channel.basic_publish("", queue.method.queue, body, props, mandatory=True)

        def close() -> None:
            channel.queue_delete("lienthong.bench.naive")
            connection.close()
    else:
        db = sqlite3.connect(settings.data_dir / "naive.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, message_id TEXT, body BLOB)")

        def publish(message_id: str, body: bytes) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO q (message_id, body) VALUES (?, ?)", (message_id, body))
            db.execute("COMMIT")

        def close() -> None:
            db.close()

    started = time.perf_counter()
    for data in envelopes:
        verified = verifier.verify(data)
        _, outbound = builder.build(etree.tostring(verified.envelope), SINK)
        publish(verified.header.message_id, outbound)
    elapsed = time.perf_counter() - started
    close()
    return len(envelopes) / elapsed


FLOOR_SAMPLE = 300  # envelopes the stage floor is timed on (twice: the first pass warms the caches)


def stage_floor(envelopes: list[bytes], verifier, signer: Signer, hub_code: str) -> dict[str, float]:
    """µs of CPU per message of the two stages every design must run, timed in this one warm process on the run's
    own envelopes: ``verify`` (the hub's parse, signature check and envelope schema) and ``map_sign`` (the
    outbound envelope built and signed for the sink), and their ``total``.

    Measured in every run because this machine kind's speed varies from session to session (the same stage has
    cost 2.8× more on one day than on another): the hub's CPU per message divided by this floor is the figure that
    compares across runs and machines."""
    builder = OutboundBuilder(signer, hub_code)
    sample = envelopes[:FLOOR_SAMPLE]
    spent = {"verify": 0.0, "map_sign": 0.0}
    for timed in (False, True):  # the first pass warms the verifier's and the signer's caches
        for data in sample:
            t0 = time.process_time()
            verifier.verify(data)
            t1 = time.process_time()
            builder.build(data, SINK)
            t2 = time.process_time()
            if timed:
                spent["verify"] += t1 - t0
                spent["map_sign"] += t2 - t1
    per = {stage: round(seconds / len(sample) * 1e6, 1) for stage, seconds in spent.items()} if sample else {}
    if per:
        per["total"] = round(per["verify"] + per["map_sign"], 1)
    return per


def floor_ratio(cpu: dict[str, float | None], floor: dict[str, float], via: str) -> float | None:
    """The hub's own processes' CPU per message (API and workers; with --via direct the load processes do the
    API's work) over the stage floor: how many times the unavoidable work the hub spends."""
    kinds = ("api", "worker") if via == "http" else ("load", "worker")
    spent = [cpu.get(kind) for kind in kinds]
    if not floor.get("total") or any(value is None for value in spent):
        return None
    return round(sum(value or 0.0 for value in spent) / floor["total"], 2)


def _locate_servers(processes: bench_measure.Processes, broker: str, runtime: Runtime) -> None:
    """Find the broker's and the database's server processes, or note why they have none of their own."""
    if broker.startswith("amqp"):
        pid, note = bench_measure.rabbitmq_process(broker)
        if pid is not None:
            processes.add("broker", pid)
        processes.notes["broker"] = note
    else:
        processes.notes["broker"] = "embedded queue: a SQLite file the API (or load) and worker processes write"
    if runtime.store.dialect == "postgresql":
        pid, note = bench_measure.postgres_process(runtime.store.engine)
        if pid is not None:
            processes.add("database", pid)
        processes.notes["database"] = note
    else:
        processes.notes["database"] = "SQLite: inside the API (or load) and worker processes, counted there"


def _broker_bytes(broker: str, settings: Settings, processes: bench_measure.Processes) -> int | None:
    """The broker's size now: the embedded queue's files, or RabbitMQ's resident memory (``beam.smp`` and its
    children; its disk is not readable from here)."""
    if not broker.startswith("amqp"):
        return bench_measure.embedded_queue_bytes(settings.data_dir / "queue.db")
    roots = processes.roots.get("broker")
    if not roots:
        return None
    return sum(proc_stats.rss_bytes(pid) or 0 for pid in proc_stats.tree(roots))


def _broker_size(broker: str, before: int | None, after: int | None, messages: int) -> dict[str, Any]:
    """What the broker's size per message could be read as, and what could not be read."""
    grew = after - before if before is not None and after is not None else None
    size: dict[str, Any] = {
        "measured": "resident memory of beam.smp" if broker.startswith("amqp") else "the embedded queue's files",
        "start_bytes": before,
        "end_bytes": after,
        # A size that fell (RabbitMQ freeing what earlier runs left) says nothing about this run's messages.
        "bytes_per_message": round(grew / messages, 1) if grew is not None and grew >= 0 and messages else None,
    }
    if grew is not None and grew < 0:
        size["fell"] = "it fell during the run (the broker freed more than this run added): no size per message"
    if broker.startswith("amqp"):
        queues, note = bench_measure.rabbitmq_queues(broker, prefix=f"lienthong.{SINK}.")
        size["queues_at_end"] = queues
        size["note"] = note
    return size


def _cpu_notes(processes: bench_measure.Processes, via: str, workers: int, serve_workers: int,
               soak: bool) -> dict[str, str]:  # fmt: skip
    """How each process kind was measured (``cpu_notes`` of the result)."""
    if via == "http":
        api = f"hub serve: uvicorn's supervisor and its {serve_workers} worker processes"
        load = "the load processes POST over HTTP (aiohttp)"
    else:
        api = "no API process: with --via direct the load processes accept in its place"
        load = "the load processes accept (verify, validate, store, publish): the API's work, in its place"
    if soak:
        load += ", and sign each envelope just before sending it"
    notes = {"api": api, "worker": f"{workers} `hub worker` processes", "load": load,
             "sink": "the partner stand-in (uvicorn), not the hub", "relay": bench_measure.RELAY_NOTE}  # fmt: skip
    notes.update(processes.notes)
    if not proc_stats.available():
        notes = {kind: "no /proc on this system: not measured" for kind in bench_measure.KINDS}
    return notes


def _default_rss_csv() -> Path:
    return Path("var") / "bench" / f"rss-{time.strftime('%Y%m%d-%H%M%S')}.csv"


def run(
    *,
    broker: str,
    messages: int,
    workers: int,
    window: int,
    batch: int,
    database_url: str | None,
    naive_messages: int,
    prefetch: int = 32,
    acceptors: int = 2,
    via: str = "direct",
    serve_workers: int = 2,
    payload_bytes: int = 0,
    rate: float | None = None,
    soak: bool = False,
    rss_every_s: float = 10.0,
    rss_csv: Path | None = None,
    report: Callable[[str], None],
    progress_factory,
) -> BenchResult:
    """Run the benchmark and return its figures (see the module docstring).

    ``rate``: offer that many msg/s (paced) instead of as many as the window lets. ``soak``: paced (``SOAK_RATE``
    unless ``rate``), envelopes signed by the load processes as they go, resident memory sampled every
    ``rss_every_s`` into ``rss_csv`` (also sampled, without ``soak``, when ``rss_csv`` is given)."""
    if soak and not rate:
        rate = SOAK_RATE
    if soak and rss_csv is None:
        rss_csv = _default_rss_csv()
    workdir = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    data_dir = workdir / "var"
    keydir = data_dir / "keys"
    province = keys.issue_key("province", keydir, code=PROVINCE)
    port = _free_port()
    routes = workdir / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "destinations": {SINK: {"endpoint": f"http://127.0.0.1:{port}/inbox", "concurrency": 16}},
                "routes": [{"type": t, "sender": PROVINCE, "to": [SINK]} for t in MESSAGE_TYPES],
            }
        )
    )
    settings = Settings(
        broker_url=broker,
        database_url=database_url or f"sqlite:///{workdir / 'store.db'}",
        routes_file=routes,
        data_dir=data_dir,
        log_format="console",
        log_level="WARNING",
    )
    env = {
        **os.environ,
        **{f"LIENTHONG_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None},
    }
    production, described = shape(via, broker, settings.database_url)
    report(described)
    children: list[subprocess.Popen] = []
    processes = bench_measure.Processes()
    clean = False
    try:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "hub.devtools.sink", "--port", str(port)],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        processes.add("sink", children[-1].pid)
        _wait_port(port)
        runtime = Runtime.open(settings)
        runtime.signer()  # create the hub's demo key before the workers start
        durability = runtime.store.db.durability()
        report(f"store: {durability}")
        api_url = ""
        hub_bin = Path(sys.executable).with_name("hub")
        if via == "http":
            api_key = _register_connectors(runtime, province.cert_path.read_text(), f"http://127.0.0.1:{port}/inbox")
            api_port = _free_port()
            serve_cmd = [str(hub_bin), "serve", "--port", str(api_port), "--workers", str(serve_workers)]
            children.append(subprocess.Popen(serve_cmd, env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            processes.add("api", children[-1].pid)
            api_url = f"http://127.0.0.1:{api_port}"
        # Workers start now, so they are connected and warm before the clock starts.
        for _ in range(workers):
            worker_cmd = [str(hub_bin), "worker", "--prefetch", str(prefetch)]
            children.append(subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            processes.add("worker", children[-1].pid)
        _locate_servers(processes, broker, runtime)
        factory_args = EnvelopeFactory.new_run(province.key_path, province.cert_path, payload_bytes)
        factory = EnvelopeFactory(factory_args)
        envelopes: list[bytes] = []
        if soak:
            envelope_bytes = sum(len(factory.envelope(i)) for i in range(len(factory.types))) // len(factory.types)
            report(f"the load processes sign {messages} envelopes as they send them (~{envelope_bytes} bytes each)")
        else:
            with progress_factory("signing envelopes", messages) as advance:
                envelopes = make_envelopes(factory, messages, advance)
            envelope_bytes = sum(map(len, envelopes)) // messages
            report(f"prepared {messages} signed envelopes (~{envelope_bytes} bytes each)")

        count_url = f"http://127.0.0.1:{port}/_count"
        context = multiprocessing.get_context("spawn")
        initializer: Callable[..., None]
        initargs: tuple[Any, ...]
        task: Callable[[LoadPlan], LoadReport]
        lazy = factory_args if soak else None
        if via == "http":
            _wait_http(f"{api_url}/healthz", serve_workers)
            initializer, initargs = loader_init, (api_key, f"{api_url}/api/v1/messages", LOAD_CONCURRENCY, lazy)
            task = post_share
        else:
            initializer, initargs = acceptor_init, (settings.model_dump(), lazy)
            task = accept_share
        if rate:
            report(f"paced: {rate:g} msg/s offered")
        probe = HealthProbe(f"{api_url}/healthz")
        store_before = bench_measure.store_bytes(runtime.store.engine)
        broker_before = _broker_bytes(broker, settings, processes)
        sampler: bench_measure.RssSampler | None = None
        rss_svg: Path | None = None
        rss_file = None
        with context.Pool(acceptors, initializer, initargs) as pool:
            pool.map(process_ready, range(acceptors))  # started, connected and warm before the clock starts
            pool_pids = [p.pid for p in multiprocessing.active_children() if p.name.startswith("SpawnPoolWorker")]
            processes.add("load", *(pid for pid in pool_pids if pid is not None))
            meter = bench_measure.CpuMeter(processes)
            if rss_csv is not None:
                rss_csv.parent.mkdir(parents=True, exist_ok=True)
                rss_file = rss_csv.open("w", newline="")
                sampler = bench_measure.RssSampler(
                    processes, ("api", "worker", "load", "sink", "broker"), rss_every_s, rss_file,
                    lambda: int(_get_json(count_url)["unique"]),
                )  # fmt: skip
            if via == "http":
                probe.start()
            meter.start()
            if sampler is not None:
                sampler.start()
            started = time.time() + (0.3 if rate else 0.0)  # a paced schedule starts once every process has it
            sample_every = max(1, messages // LATENCY_SAMPLE) if soak else 1
            plans = [
                LoadPlan(share=k, processes=acceptors, messages=messages, envelopes=envelopes[k::acceptors] or None,
                         window=max(1, window // acceptors), batch=batch, count_url=count_url, rate=rate,
                         start_at=started, sample_every=sample_every)
                for k in range(acceptors)
            ]  # fmt: skip
            jobs = [pool.apply_async(task, (plan,)) for plan in plans]
            delivered = 0
            with progress_factory("accepted → delivered", messages) as advance:
                deadline = time.monotonic() + max(120.0, messages / 20, messages / rate * 1.5 + 120 if rate else 0)
                while delivered < messages and time.monotonic() < deadline:
                    seen = _get_json(count_url)["unique"]
                    advance(seen - delivered)
                    delivered = seen
                    if all(job.ready() for job in jobs) and any(not job.successful() for job in jobs):
                        break
                    time.sleep(0.05)
            finished = time.time()
            meter.stop()
            if sampler is not None:
                sampler.stop()
            if rss_file is not None:
                rss_file.close()
            if sampler is not None and rss_csv is not None:
                rss_svg = rss_csv.with_suffix(".svg")
                title = f"Resident memory of the hub's processes: {messages:,} messages at {rate or 0:g} msg/s"
                rss_svg.write_text(rss_chart.rss_chart(sampler.series, title=title, subtitle=described))
            loads = [job.get(timeout=30) for job in jobs]
            probe.stop()
        elapsed = finished - started
        counts = _get_json(count_url)
        sampled = {m: t for load in loads for m, t in load.accepted_at.items()}
        first_seen = _post_json(f"http://127.0.0.1:{port}/_first_seen", list(sampled))
        latencies = [(first_seen[m] - t) * 1000 for m, t in sampled.items() if m in first_seen]
        accepted = sum(load.accepted for load in loads)
        last_accept = max((load.last_at for load in loads), default=0.0)
        accept_busy = sum(load.busy_s for load in loads)
        for child in children[1:]:
            child.send_signal(signal.SIGTERM)
        for child in children[1:]:
            child.wait(timeout=30)
        # Sizes once the workers have acknowledged all they took (and before the naive chain uses the broker).
        store_after = bench_measure.store_bytes(runtime.store.engine)
        broker_after = _broker_bytes(broker, settings, processes)
        broker_size = _broker_size(broker, broker_before, broker_after, messages)
        floor_sample = envelopes or [factory.envelope(i) for i in range(min(FLOOR_SAMPLE, messages))]
        floor = stage_floor(floor_sample, runtime.verifier(), runtime.signer(), settings.hub_code)
        naive = None
        if not rate:
            naive_n = min(naive_messages, messages)
            report(f"timing the naive chain on {naive_n} of the same packets (one confirm per message)…")
            naive = naive_chain(envelopes[:naive_n], settings, broker, runtime.verifier(), runtime.signer())
        runtime.close()
        delivered = int(counts["unique"])
        cpu = meter.per_message_us(delivered or messages) if proc_stats.available() else {}
        throughput = delivered / elapsed if elapsed else 0.0
        result = BenchResult(
            messages=messages,
            delivered=delivered,
            lost=messages - delivered,
            duplicates=int(counts["duplicates"]),
            seconds=round(elapsed, 3),
            throughput_msg_s=round(throughput, 1),
            p50_ms=round(_percentile(latencies, 0.50), 1),
            p99_ms=round(_percentile(latencies, 0.99), 1),
            naive_msg_s=round(naive, 1) if naive is not None else None,
            ratio_vs_naive=round(throughput / naive, 2) if naive else None,
            broker="embedded" if broker == "embedded" else "rabbitmq",
            via=via,
            store=settings.database_url.split(":", 1)[0].split("+")[0],
            workers=workers,
            accept_msg_s=round(messages / accept_busy * acceptors, 1) if accept_busy else 0.0,
            envelope_bytes=envelope_bytes,
            healthz_p50_ms=probe.percentile(0.50),
            healthz_p99_ms=probe.percentile(0.99),
            store_durability=durability,
            shape=described,
            production_shape=production,
            offered_rate=rate,
            achieved_rate=round(accepted / (last_accept - started), 1) if last_accept > started else None,
            cpu_us_per_message=cpu,
            cpu_notes=_cpu_notes(processes, via, workers, serve_workers, soak),
            store_bytes_per_message=round((store_after - store_before) / messages, 1)
            if store_before is not None and store_after is not None else None,
            broker_size=broker_size,
            soak=soak,
            rss_csv=str(rss_csv) if rss_csv is not None else None,
            rss_svg=str(rss_svg) if rss_svg is not None else None,
            rss_every_s=rss_every_s if sampler is not None else None,
            rss=bench_measure.rss_growth(sampler.series) if sampler is not None else {},
            stage_floor_us=floor,
            cpu_vs_floor=floor_ratio(cpu, floor, via),
        )  # fmt: skip
        clean = not (result.lost or result.duplicates)
        return result
    finally:
        # Each child leads a process group of its own: `hub serve`'s worker processes go with it (killed alone, they
        # lived on, and their outbox relay fed the next run's queue with this run's messages).
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report(f"kept the run's folder for a look: {workdir}")


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:,.1f} MB"


def readable(result: BenchResult) -> list[str]:
    """The report's closing lines, for a person (the JSON line carries the same figures)."""
    lines = [
        "",
        result.shape,
        f"end to end: {result.delivered}/{result.messages} delivered in {result.seconds:.1f}s = "
        f"{result.throughput_msg_s:.0f} msg/s; latency accept → delivered p50 {result.p50_ms:.0f} ms, "
        f"p99 {result.p99_ms:.0f} ms; lost {result.lost}, duplicates {result.duplicates}",
    ]
    if result.offered_rate is not None:
        lines.append(f"paced: offered {result.offered_rate:g} msg/s, achieved {result.achieved_rate or 0:.1f} msg/s")
    if result.naive_msg_s is not None:
        lines.append(f"naive chain: {result.naive_msg_s:.0f} msg/s -> ratio {result.ratio_vs_naive or 0:.2f}x; "
                     f"accept stage alone {result.accept_msg_s:.0f} msg/s")  # fmt: skip
    if result.healthz_p50_ms is not None and result.healthz_p99_ms is not None:
        lines.append(f"/healthz while loaded: p50 {result.healthz_p50_ms:.0f} ms, p99 {result.healthz_p99_ms:.0f} ms")
    cpu = result.cpu_us_per_message
    if cpu:
        measured = [f"{kind} {value:,.0f} µs" for kind, value in cpu.items() if value is not None and kind != "total"]
        lines.append(f"CPU per message: {', '.join(measured)}; total {cpu.get('total') or 0:,.0f} µs")
    floor = result.stage_floor_us
    if floor:
        hub_kinds = "api + worker" if result.via == "http" else "load (accepting) + worker"
        ratio = f"; the hub's {hub_kinds} spent {result.cpu_vs_floor:.2f}× that" if result.cpu_vs_floor else ""
        lines.append(f"stage floor on this machine (one warm process, the run's envelopes): verify "
                     f"{floor['verify']:,.0f} µs + map and sign {floor['map_sign']:,.0f} µs = {floor['total']:,.0f} µs "
                     f"per message{ratio}")  # fmt: skip
    for kind, note in result.cpu_notes.items():
        if cpu.get(kind) is None or kind in ("broker", "database", "relay"):
            lines.append(f"  {kind}: {note}")
    if result.store_bytes_per_message is not None:
        lines.append(f"store: {result.store_bytes_per_message:,.0f} bytes per message ({result.store})")
    broker = result.broker_size
    if broker:
        per = broker.get("bytes_per_message")
        lines.append(f"broker: {broker['measured']} {_mb(broker.get('start_bytes'))} → {_mb(broker.get('end_bytes'))}"
                     + (f" ({per:,.0f} bytes per message)" if per is not None else "")
                     + (f": {broker['fell']}" if "fell" in broker else ""))  # fmt: skip
        if "queues_at_end" in broker:
            lines.append(f"  queues at the end: {broker['queues_at_end'] or 'not read'} ({broker.get('note')})")
    if result.rss_csv:
        lines.append(f"memory samples every {result.rss_every_s:g} s in {result.rss_csv}"
                     + (f", their curve in {result.rss_svg}" if result.rss_svg else ""))  # fmt: skip
        for kind, rss in result.rss.items():
            lines.append(f"  {kind}: {rss['after_warmup_mb']:,.1f} MB after warm-up → {rss['end_mb']:,.1f} MB at the "
                         f"end (max {rss['max_mb']:,.1f} MB): {rss['growth_pct']:+.1f} %")  # fmt: skip
        if not result.rss:
            lines.append("  too few samples after the warm-up (the first 10 % of the run) to tell any growth")
    return lines


def as_json(result: BenchResult) -> str:
    return json.dumps(asdict(result), sort_keys=False)

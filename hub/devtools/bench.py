"""``hub bench``: signed envelopes through accept → queue → worker processes → a real HTTP sink partner,
and, in the same run and on the same packets, the naive single-process chain for comparison.

The load generator is this process: it accepts envelopes exactly as the API will (verify, validate, route,
commit, publish with confirms) while ``hub worker`` processes deliver to ``python -m hub.devtools.sink`` on 127.0.0.1.
Latency is accept-committed → first receipt at the sink, measured on the same clock. A window keeps the
accepted-but-undelivered backlog bounded, so p99 measures the exchange, not an ever-growing queue.
"""

from __future__ import annotations

import asyncio
import copy
import json
import multiprocessing
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from hub import packets
from hub.config import Settings
from hub.exchange.pipeline import Acceptor
from hub.exchange.worker import OutboundBuilder
from hub.runtime import Runtime
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload
from hub.xmlparse import parse_xml

PROVINCE, SINK = "000.00.00.H12", "000.00.00.B01"
SYNC = "dossier.sync"
MESSAGE_TYPES = (SYNC, "dossier.status", "payment.request", "postal.order")
LOAD_CONCURRENCY = 32  # requests each load process keeps in flight against `hub serve` (--via http)


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
    naive_msg_s: float
    ratio_vs_naive: float
    broker: str
    store: str
    workers: int
    accept_msg_s: float
    via: str
    envelope_bytes: int = 0  # the average envelope's size
    healthz_p50_ms: float | None = None  # /healthz round trips while the load runs (--via http)
    healthz_p99_ms: float | None = None
    store_durability: str = ""  # what a commit survives, read back from the store (``Database.durability``)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback sink
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


def padded_sync(target_bytes: int) -> etree._Element:
    """The example ``dossier.sync`` with more documents until its XML is about ``target_bytes`` long: still valid,
    so the whole intake (parse, verify, validate, decode, store, publish) works on a body of that size."""
    ns = f"{{{packets.PACKET_NAMESPACE}}}"
    payload = packets.to_element(packets.example(SYNC))
    documents = payload.find(f"{ns}documents")
    assert documents is not None
    template = copy.deepcopy(documents[0])
    template.find(f"{ns}name").text = "Bản vẽ " + "thiết kế " * 100
    size, step = len(etree.tostring(payload)), len(etree.tostring(template))
    for i in range(max(0, target_bytes - size) // step):
        document = copy.deepcopy(template)
        document.find(f"{ns}componentCode").text = f"PAD-{i:05d}"
        documents.append(document)
    return payload


def dossier_code(first_day: int, i: int) -> str:
    """The ``i``-th message's own dossier code (agency-YYMMDD-NNNN): 9,999 serials a day from the run's first day.

    Every message is about a dossier of its own: on one shared dossier the status machine would find every
    ``dossier.status`` older than the ``dossier.sync`` before it (a sync is as old as its record) and store it
    as stale, not routed, and every commit would lock that one dossier's row."""
    day = date.fromordinal(first_day + i // 9999)
    return f"{PROVINCE}-{day:%y%m%d}-{i % 9999 + 1:04d}"


class EnvelopeFactory:
    """Signs the run's ``i``-th envelope: ~4 KB, cycling through a few message types (with ``payload_bytes``: a
    ``dossier.sync`` padded to about that size), each about its own dossier. Message ids and dossier codes are
    unique per run (a random run id and first day), so a run against a long-lived store never collides with an
    earlier one. Picklable arguments, so that load processes can sign their share as they go (``--soak``)."""

    def __init__(self, key_path: Path, cert_path: Path, run_id: str, first_day: int, payload_bytes: int = 0) -> None:
        self.args = (key_path, cert_path, run_id, first_day, payload_bytes)
        self.signer = Signer.from_files(key_path, cert_path)
        self.run_id, self.first_day = run_id, first_day
        examples = {t: packets.example(t) for t in MESSAGE_TYPES}
        examples["dossier.status"] = examples["dossier.status"].model_copy(update={"source_system": PROVINCE})
        self.example_code = examples[SYNC].dossier_code.encode()
        self.payloads = {t: etree.tostring(packets.to_element(m)) for t, m in examples.items()}
        self.types: tuple[str, ...] = MESSAGE_TYPES
        if payload_bytes:
            self.payloads[SYNC], self.types = etree.tostring(padded_sync(payload_bytes)), (SYNC,)

    @classmethod
    def new(cls, key_path: Path, cert_path: Path, payload_bytes: int = 0) -> EnvelopeFactory:
        """A factory for a new run: a random run id, and a random first day between 2001 and 2080."""
        first_day = date(2001, 1, 1).toordinal() + secrets.randbelow(365 * 79)
        return cls(key_path, cert_path, uuid.uuid4().hex[:8], first_day, payload_bytes)

    def envelope(self, i: int) -> bytes:
        message_type = self.types[i % len(self.types)]
        message_id = f"bench-{self.run_id}-{i:07d}"
        payload = self.payloads[message_type].replace(self.example_code, dossier_code(self.first_day, i).encode())
        header = EnvelopeHeader(sender=PROVINCE, receiver=SINK, message_type=message_type, message_id=message_id)
        return etree.tostring(sign_payload(self.signer, header, parse_xml(payload)))


def make_envelopes(factory: EnvelopeFactory, count: int, progress: Callable[[int], None]) -> list[bytes]:
    """The run's first ``count`` envelopes (``EnvelopeFactory``), signed now."""
    out = []
    for i in range(count):
        out.append(factory.envelope(i))
        progress(1)
    return out


_acceptor: Acceptor | None = None


def _acceptor_init(settings: dict) -> None:
    """Acceptor process start-up: its own store, broker connection and verifier, like an API worker."""
    global _acceptor
    _acceptor = Runtime.open(Settings(**settings)).acceptor()
    _acceptor.defer_marks = True


def _process_ready(_: int) -> bool:
    """Answered once a pool process has started and run its initializer (it imported the hub by then)."""
    time.sleep(0.2)  # lets every pool process take one of these
    return _acceptor is not None or _loader is not None


def _accept_chunk(
    envelopes: list[bytes], window: int, batch: int, count_url: str, acceptors: int
) -> tuple[dict[str, float], float]:
    """Accept ``envelopes`` in batches, keeping at most ``window`` of this process's share undelivered."""
    assert _acceptor is not None
    accepted_at: dict[str, float] = {}
    busy = 0.0
    for i in range(0, len(envelopes), batch):
        while len(accepted_at) - _get_json(count_url)["unique"] / acceptors >= window:
            time.sleep(0.005)
        t0 = time.perf_counter()
        results = _acceptor.accept_many(envelopes[i : i + batch])
        busy += time.perf_counter() - t0
        now = time.time()
        for result in results:
            if isinstance(result, Exception):
                raise RuntimeError(f"benchmark envelope rejected: {result}")
            accepted_at[result.message_id] = now
    _acceptor.flush()
    return accepted_at, busy


_loader: tuple[str, str, int] | None = None


def _loader_init(api_key: str, url: str, concurrency: int) -> None:
    """Load-process start-up: where to POST, with which key, how many requests at once."""
    global _loader
    _loader = (api_key, url, concurrency)


def _post_chunk(
    envelopes: list[bytes], window: int, batch: int, count_url: str, loaders: int
) -> tuple[dict[str, float], float]:
    """POST ``envelopes`` to the API, keeping at most ``window`` undelivered per process."""
    return asyncio.run(_post_all(envelopes, window, batch, count_url, loaders))


async def _post_all(
    envelopes: list[bytes], window: int, batch: int, count_url: str, loaders: int
) -> tuple[dict[str, float], float]:
    # aiohttp on one event loop: the load generator shares the two cores with the hub, and this costs it about
    # a quarter of the CPU per request that a pool of threads with a blocking client does.
    import aiohttp

    assert _loader is not None
    api_key, url, concurrency = _loader
    headers = {"Content-Type": "application/xml", "X-Api-Key": api_key}
    accepted_at: dict[str, float] = {}
    busy = 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def post(data: bytes) -> tuple[str, float]:
            async with session.post(url, data=data, headers=headers) as response:
                answer = await response.read()
            if response.status != 202:
                raise RuntimeError(f"benchmark envelope rejected: HTTP {response.status} {answer[:300]!r}")
            return json.loads(answer)["message_id"], time.time()

        async def delivered() -> int:
            async with session.get(count_url) as response:
                return (await response.json())["unique"]

        for i in range(0, len(envelopes), batch):
            while len(accepted_at) - await delivered() / loaders >= window:
                await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            for message_id, at in await asyncio.gather(*(post(d) for d in envelopes[i : i + batch])):
                accepted_at[message_id] = at
            busy += time.perf_counter() - t0
    return accepted_at, busy


def _register_connectors(runtime: Runtime, province_pem: str, sink_url: str) -> str:
    """Register the bench's sender and sink as connectors (the API routes by the registry); the sender's key."""
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
    assert api_key is not None
    return api_key


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
    report: Callable[[str], None],
    progress_factory,
) -> BenchResult:
    """Run the benchmark and return its figures (see the module docstring)."""
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
    children: list[subprocess.Popen] = []
    try:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "hub.devtools.sink", "--port", str(port)], stdout=subprocess.DEVNULL
            )
        )
        _wait_port(port)
        runtime = Runtime.open(settings)
        runtime.signer()  # create the hub's demo key before the workers start
        durability = runtime.store.db.durability()
        report(f"store: {durability}")
        api_url = ""
        if via == "http":
            api_key = _register_connectors(runtime, province.cert_path.read_text(), f"http://127.0.0.1:{port}/inbox")
            api_port = _free_port()
            hub_bin = Path(sys.executable).with_name("hub")
            serve_cmd = [str(hub_bin), "serve", "--port", str(api_port), "--workers", str(serve_workers)]
            children.append(subprocess.Popen(serve_cmd, env=env, stdout=subprocess.DEVNULL))
            api_url = f"http://127.0.0.1:{api_port}"
        # Workers start now, so they are connected and warm before the clock starts.
        hub_bin = Path(sys.executable).with_name("hub")
        for _ in range(workers):
            worker_cmd = [str(hub_bin), "worker", "--prefetch", str(prefetch)]
            children.append(subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL))
        factory = EnvelopeFactory.new(province.key_path, province.cert_path, payload_bytes)
        with progress_factory("signing envelopes", messages) as advance:
            envelopes = make_envelopes(factory, messages, advance)
        envelope_bytes = sum(map(len, envelopes)) // messages
        report(f"prepared {messages} signed envelopes (~{envelope_bytes} bytes each)")

        count_url = f"http://127.0.0.1:{port}/_count"
        chunks = [envelopes[k::acceptors] for k in range(acceptors)]
        context = multiprocessing.get_context("spawn")
        initializer: Callable[..., None]
        initargs: tuple[Any, ...]
        task: Callable[[list[bytes], int, int, str, int], tuple[dict[str, float], float]]
        if via == "http":
            _wait_http(f"{api_url}/healthz", serve_workers)
            initializer, initargs = _loader_init, (api_key, f"{api_url}/api/v1/messages", LOAD_CONCURRENCY)
            task = _post_chunk
        else:
            initializer, initargs = _acceptor_init, (settings.model_dump(),)
            task = _accept_chunk
        probe = HealthProbe(f"{api_url}/healthz")
        with context.Pool(acceptors, initializer, initargs) as pool:
            pool.map(_process_ready, range(acceptors))  # started, connected and warm before the clock starts
            if via == "http":
                probe.start()
            started = time.perf_counter()
            jobs = [
                pool.apply_async(task, (chunk, max(1, window // acceptors), batch, count_url, acceptors))
                for chunk in chunks
            ]
            delivered = 0
            with progress_factory("accepted → delivered", messages) as advance:
                deadline = time.monotonic() + max(120.0, messages / 20)
                while delivered < messages and time.monotonic() < deadline:
                    seen = _get_json(count_url)["unique"]
                    advance(seen - delivered)
                    delivered = seen
                    if all(job.ready() for job in jobs) and any(not job.successful() for job in jobs):
                        break
                    time.sleep(0.05)
            results = [job.get(timeout=30) for job in jobs]
            probe.stop()
        accepted_at = {m: t for chunk_times, _ in results for m, t in chunk_times.items()}
        accept_cpu = sum(cpu for _, cpu in results)
        elapsed = time.perf_counter() - started
        stats = _get_json(f"http://127.0.0.1:{port}/_stats")
        latencies = [(stats["first_seen"][m] - t) * 1000 for m, t in accepted_at.items() if m in stats["first_seen"]]
        for child in children[1:]:
            child.send_signal(signal.SIGTERM)
        for child in children[1:]:
            child.wait(timeout=30)
        naive_n = min(naive_messages, messages)
        report(f"timing the naive chain on {naive_n} of the same packets (one confirm per message)…")
        naive = naive_chain(envelopes[:naive_n], settings, broker, runtime.verifier(), runtime.signer())
        runtime.close()
        delivered = stats["unique"]
        throughput = delivered / elapsed if elapsed else 0.0
        return BenchResult(
            messages=messages,
            delivered=delivered,
            lost=messages - delivered,
            duplicates=stats["duplicates"],
            seconds=round(elapsed, 3),
            throughput_msg_s=round(throughput, 1),
            p50_ms=round(_percentile(latencies, 0.50), 1),
            p99_ms=round(_percentile(latencies, 0.99), 1),
            naive_msg_s=round(naive, 1),
            ratio_vs_naive=round(throughput / naive, 2) if naive else 0.0,
            broker="embedded" if broker == "embedded" else "rabbitmq",
            via=via,
            store=settings.database_url.split(":", 1)[0].split("+")[0],
            workers=workers,
            accept_msg_s=round(messages / accept_cpu * acceptors, 1) if accept_cpu else 0.0,
            envelope_bytes=envelope_bytes,
            healthz_p50_ms=probe.percentile(0.50),
            healthz_p99_ms=probe.percentile(0.99),
            store_durability=durability,
        )
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def as_json(result: BenchResult) -> str:
    return json.dumps(asdict(result), sort_keys=False)

"""Plain helpers the tests share, so that no test module copies another's or imports from one.

Fixtures built on them live in ``tests/conftest.py`` (and ``tests/integration/conftest.py``); what is here is
ordinary code a test or fixture calls: partner codes, ports and polling, signed envelopes, a throw-away hub's
settings, connectors and environment, the sink partner, and the exchange pipeline's parts wired together.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest
import yaml
from lxml import etree

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from hub import packets
from hub.config import Settings
from hub.devtools.sink import SinkServer
from hub.exchange.pipeline import Acceptor
from hub.exchange.worker import OutboundBuilder, Worker
from hub.registry import parse_spec
from hub.runtime import Runtime
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload

T = TypeVar("T")

REQUIRE_SERVICES = os.environ.get("LIENTHONG_REQUIRE_SERVICES", "") not in ("", "0", "false")
HUB, MINISTRY, PROVINCE, PORTAL = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G22"
HUB_BIN = str(Path(sys.executable).parent / "hub")


def require(reason: str) -> NoReturn:
    """Skip for want of ``reason`` on a laptop; fail on CI (``LIENTHONG_REQUIRE_SERVICES=1``), where it is a fault."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and LIENTHONG_REQUIRE_SERVICES is set")
    pytest.skip(reason)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# Ports handed to servers a test starts come from below the kernel's ephemeral range (32768-60999 on Linux): a
# port the kernel picked (bind to 0) can be taken again by any outgoing connection between the pick and the
# server's bind, which made `hub serve` fail with "address already in use" about once a suite. Each xdist worker
# draws from its own slice, in turn, so two tests of one run are not handed the same port either.
_PORT_RANGE = (10000, 32000)
_SERVICE_PORTS = frozenset({11211, 15672, 15692, 25672, 27017})  # RabbitMQ management/prometheus/dist, memcached…
_next_port: list[int] = []


def _port_slice() -> tuple[int, int]:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    size = (_PORT_RANGE[1] - _PORT_RANGE[0]) // workers
    start = _PORT_RANGE[0] + index * size
    return start, start + size


def free_port() -> int:
    """A port nothing listens on now, outside the ephemeral range (closed again, so a server started next takes it)."""
    start, end = _port_slice()
    if not _next_port:
        _next_port.append(start + (os.getpid() % (end - start)))
    for _ in range(end - start):
        port = _next_port[0]
        _next_port[0] = start + (port + 1 - start) % (end - start)
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {start}-{end}")


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports that are all free now, from this worker's slice like ``free_port``
    (for a command that takes an offset to a fixed set of ports, such as ``hub simulate --port-offset``)."""
    start, end = _port_slice()
    for _ in range((end - start) // size):
        first = free_port()
        if first + size > end:
            continue
        rest = range(first + 1, first + size)
        if all(_bindable(port) for port in rest):
            _next_port[0] = start + (first + size - start) % (end - start)
            return first
    raise RuntimeError(f"no {size} consecutive free ports in {start}-{end}")


def _bindable(port: int) -> bool:
    if port in _SERVICE_PORTS:
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(
    condition: Callable[[], T], timeout_s: float = 5.0, what: str = "the condition", logs: Callable[[], str] = str,
    every_s: float = 0.05,
) -> T:  # fmt: skip
    """Poll ``condition`` until it is truthy and return its value; fail with ``what`` and ``logs()`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{logs()}")
        time.sleep(every_s)


# ---------------------------------------------------------------------------------------------- envelopes


def signed_envelope(
    signer: Signer, *, sender: str, receiver: str, message_type: str, payload: etree._Element | None = None,
    **header: object,
) -> bytes:  # fmt: skip
    """The example packet of ``message_type`` (or ``payload``) in an envelope signed by ``signer``, as bytes.

    ``header`` holds the other envelope fields (message_id, dossier_code, …); left out, the envelope's defaults.
    """
    envelope = EnvelopeHeader(sender=sender, receiver=receiver, message_type=message_type, **header)
    body = payload if payload is not None else packets.to_element(packets.example(message_type))
    return etree.tostring(sign_payload(signer, envelope, body))


def post_accepted(client, data: bytes, api_key: str) -> dict:
    """POSTs a signed envelope to ``/api/v1/messages`` as the partner with ``api_key``; the hub must accept it
    (202). Returns the hub's JSON answer."""
    response = client.post("/api/v1/messages", content=data,
                           headers={"Content-Type": "application/xml", "X-Api-Key": api_key})  # fmt: skip
    assert response.status_code == 202, response.text
    return response.json()


def issue_signer(name: str, key_dir: Path, code: str = PROVINCE) -> Signer:
    """A partner key and certificate from the demo CA in ``key_dir`` (created there when missing), its subject
    naming connector ``code`` (the CA trust rule, ``TrustStore``)."""
    issued = keys.issue_key(name, key_dir, code=code)
    return Signer.from_files(issued.key_path, issued.cert_path)


# ---------------------------------------------------------------------------------------------- a throw-away hub


def hub_settings(root: Path, **overrides: object) -> Settings:
    """Settings of a hub that lives in ``root``: SQLite store, embedded queue, data under ``root/var``."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{root / 'hub.db'}", "data_dir": root / "var", "log_format": "console",
    }  # fmt: skip
    values.update(overrides)
    return Settings(**values)


def hub_env(**variables: str) -> dict[str, str]:
    """For ``hub`` children: this environment without its ``LIENTHONG_*`` settings, with ``variables`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(variables)
    return env


def register(hub, specs: Iterable[dict]) -> dict[str, str | None]:
    """Add connectors to a running hub service's registry and reload it; returns each code's API key."""
    api_keys = {}
    for spec in specs:
        _, api_keys[spec["code"]] = hub.registry.add(parse_spec(spec), actor="test")
    hub.refresh()
    return api_keys


def write_routes(path: Path, destinations: dict[str, dict], routes: list[dict]) -> Path:
    """A routing file (``LIENTHONG_ROUTES_FILE``) with these destinations and routes."""
    path.write_text(yaml.safe_dump({"destinations": destinations, "routes": routes}))
    return path


def open_pipeline(settings: Settings, **worker_options: object) -> tuple[Runtime, Acceptor, Worker]:
    """The exchange core in this process: the runtime, an acceptor and a worker signing as the hub."""
    runtime = Runtime.open(settings)
    acceptor = runtime.acceptor()
    builder = OutboundBuilder(runtime.signer(), settings.hub_code)
    worker = Worker(runtime.store, runtime.broker, runtime.routing, builder, runtime.adapters(), **worker_options)
    return runtime, acceptor, worker


@contextmanager
def worker_thread(settings: Settings, logs: Callable[[], str] = str, **worker_options: object) -> Iterator[Worker]:
    """A worker of the hub with ``settings`` in this process (a thread) until the block ends; then it must stop
    within 10 s, as a worker process must exit after SIGTERM."""
    runtime, _, worker = open_pipeline(settings, **worker_options)
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)
        worker.close()
        runtime.close()
    assert not thread.is_alive(), f"the worker in the test process did not stop within 10 s\n{logs()}"


# ---------------------------------------------------------------------------------------------- the sink partner


@contextmanager
def running_sink() -> Iterator[SinkServer]:
    """An HTTP sink partner on a free port of 127.0.0.1, in a thread; it counts what it receives."""
    server = SinkServer(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def sink_control(sink: SinkServer, **command: object) -> None:
    """Tell a sink (here or in another process: anything with its ``url``) how to answer from now on: ``/_control``."""
    url = sink.url.replace("/inbox", "/_control")
    urllib.request.urlopen(urllib.request.Request(url, json.dumps(command).encode(), method="POST"), timeout=5)  # noqa: S310


def sink_stats(server: SinkServer) -> dict:
    with server.state.lock:
        return server.state.snapshot()


@dataclass
class SinkProcess:
    """A sink partner in its own process (``python -m hub.devtools.sink``): it does not share the test's CPU."""

    proc: subprocess.Popen
    url: str

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        url = self.url.replace("/inbox", path)
        request = urllib.request.Request(url, data, method="GET" if data is None else "POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("/_stats")

    def control(self, **command: object) -> None:
        self._call("/_control", command)


def start_sink_process(delay_ms: float = 0) -> SinkProcess:
    """Start a sink partner process on a free port (in its own session: ``stop_process`` kills it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.devtools.sink", "--port", "0", "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
    if not line.startswith("sink listening on "):
        stop_process(proc)
        raise AssertionError(f"the sink did not start: {line!r}")
    return SinkProcess(proc, line.split()[-1])


# ---------------------------------------------------------------------------------------------- child processes


def stop_process(proc: subprocess.Popen) -> None:
    """Kill a child started with ``start_new_session=True`` and whatever it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def terminate(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass(frozen=True)
class ServedHub:
    """A ``hub serve`` child on 127.0.0.1 (SQLite store, embedded queue, data under its root)."""

    base: str
    port: int
    pid: int
    log: Path


@contextmanager
def served_hub(root: Path, **variables: str) -> Iterator[ServedHub]:
    """Start ``hub serve`` in ``root`` with ``variables`` over a throw-away hub's settings, wait until it answers
    ``/readyz``, and stop it afterwards (its output goes to ``root/serve.log``)."""
    import httpx

    port = free_port()
    env = hub_env(
        LIENTHONG_DATABASE_URL=f"sqlite:///{root / 'hub.db'}", LIENTHONG_DATA_DIR=str(root / "var"),
        LIENTHONG_BROKER_URL="embedded", LIENTHONG_HUB_CODE=HUB, LIENTHONG_LOG_FORMAT="console",
        LIENTHONG_LOG_LEVEL="WARNING", **variables,
    )  # fmt: skip
    log = root / "serve.log"
    with log.open("wb") as out:  # one process: uvicorn serves in the process it was started as
        proc = subprocess.Popen([HUB_BIN, "serve", "--port", str(port)], env=env, cwd=root, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=1) as client:  # one client: building one per probe costs ~50 ms of CPU

            def ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"hub serve exited:\n{log.read_text()}")
                try:
                    return client.get(f"{base}/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, 30, "hub serve to come up", log.read_text)
        yield ServedHub(base, port, proc.pid, log)
    finally:
        terminate(proc)


# ---------------------------------------------------------------------------------------------- the store


def row_count(store, table: str) -> int:
    """How many rows a store table holds."""
    import sqlalchemy as sa

    from hub.store.schema import metadata

    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[table])).scalar_one()


@contextmanager
def hub_client(settings: Settings, specs: Iterable[dict] = ()) -> Iterator:
    """The hub's app in a ``TestClient`` with these connectors registered; their API keys in ``client.keys``."""
    from fastapi.testclient import TestClient

    from hub.api import create_app

    with TestClient(create_app(settings)) as client:
        client.keys = register(client.app.state.hub, specs)  # type: ignore[attr-defined]
        client.settings = settings  # type: ignore[attr-defined]
        yield client


def province_connector(pki, sends: list[str], receives: list[str]) -> dict:
    """The provincial one-stop system as a connector: signs with the test PKI's province key, receives nothing live."""
    return {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": sends, "receives": receives,
            "endpoint": {"url": "http://127.0.0.1:9/inbox"}, "certificates": [pki.province.cert_path.read_text()]}


#: A simulator's failure modes and the delivery error each must become (transient ones are retried).
FAILURE_MODES = [
    ("5xx", TransientDeliveryError),
    ("down", TransientDeliveryError),
    ("malformed", TransientDeliveryError),
    ("4xx", PermanentDeliveryError),
]

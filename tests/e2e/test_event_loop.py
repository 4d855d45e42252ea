"""The API's event loop stays free under large envelopes: a real `hub serve` (one uvicorn worker, embedded broker,
SQLite in tmp_path) takes 30 clients pushing ~1 MB signed envelopes while `/healthz` is timed; the checks of large
bodies run off the loop (``LIENTHONG_LOOP_CHECK_MAX_BYTES``), so the probe is answered at once, and every envelope
is still accepted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from hub.devtools.bench import padded_sync
from tests.support import MINISTRY, PROVINCE, served_hub, signed_envelope

ADMIN_KEY = "admin-key-for-tests"
CLIENTS, PER_CLIENT, ENVELOPE_BYTES = 30, 2, 1_000_000
# A regression bound, not a speed figure (that is `hub bench`'s healthz_p99_ms): with the checks back on the event
# loop, this test measured p99 1.7 s over 9 probes; off the loop, 10-170 ms, the top end on a 2-core machine shared
# with other test runs. 500 ms keeps the two apart without failing on a busy machine.
HEALTHZ_P99_MS = 500.0


@dataclass
class Server:
    base: str
    province_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki) -> Iterator[Server]:
    with served_hub(tmp_path_factory.mktemp("loop"), LIENTHONG_ADMIN_API_KEY=ADMIN_KEY) as hub:
        keys = {}
        for spec in (
            {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": ["dossier.sync"],
             "certificates": [pki.province.cert_path.read_text()]},
            {"code": MINISTRY, "name": "Land registration", "kind": "ministry", "receives": ["dossier.sync"],
             "endpoint": {"url": "http://127.0.0.1:9/inbox"}},
        ):  # fmt: skip
            response = httpx.post(f"{hub.base}/api/v1/connectors", json=spec, headers={"X-Api-Key": ADMIN_KEY})
            assert response.status_code == 201, response.text
            keys[spec["code"]] = response.json()["api_key"]
        yield Server(hub.base, keys[PROVINCE])


def large_sync(pki) -> bytes:
    return signed_envelope(pki.province.signer, sender=PROVINCE, receiver=MINISTRY, message_type="dossier.sync",
                           message_id=str(uuid.uuid4()), payload=padded_sync(ENVELOPE_BYTES))  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def probe_healthz(base: str, until: Callable[[], bool]) -> list[float]:
    """``/healthz`` round trips (ms), one after the other every 10 ms, until ``until()`` and at least 5 of them (a
    loaded machine may let the whole window pass before the first)."""
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=10) as client:
        while not until() or len(latencies) < 5:
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    return latencies


def test_healthz_answers_at_once_while_30_clients_push_1_mb_envelopes(server: Server, pki) -> None:
    signer = pki.province.signer
    small = signed_envelope(signer, sender=PROVINCE, receiver=MINISTRY, message_type="dossier.sync")
    headers = {"X-Api-Key": server.province_key, "Content-Type": "application/xml"}
    first = httpx.post(f"{server.base}/api/v1/messages", content=small, headers=headers, timeout=10)
    assert first.status_code == 202, first.text  # the connectors are live; the path is warm
    envelopes = [large_sync(pki) for _ in range(CLIENTS * PER_CLIENT)]
    assert min(map(len, envelopes)) > ENVELOPE_BYTES * 0.9
    # The machine's own noise (CI shares it with other jobs), measured unloaded, is allowed on top of the target.
    quiet_until = time.monotonic() + 0.5
    noise = percentile(probe_healthz(server.base, lambda: time.monotonic() > quiet_until), 0.99)

    def push(mine: list[bytes]) -> list[int]:
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
            return [client.post("/api/v1/messages", content=data).status_code for data in mine]

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        pushes = [pool.submit(push, envelopes[i::CLIENTS]) for i in range(CLIENTS)]
        latencies = probe_healthz(server.base, lambda: all(p.done() for p in pushes))
        statuses = [status for p in pushes for status in p.result()]

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    figures = f"/healthz under load: p50 {p50:.0f} ms, p99 {p99:.0f} ms ({len(latencies)} probes)"
    figures += f"; unloaded p99 {noise:.0f} ms"
    assert p99 < HEALTHZ_P99_MS + noise, figures
    assert len(latencies) >= 50, figures  # the load lasted long enough to measure
    assert statuses == [202] * len(envelopes)

"""`hub serve` through a broker outage and a store outage (RabbitMQ and PostgreSQL behind TCP proxies this test
opens and closes, so nothing shared is stopped): while RabbitMQ cannot be reached the API keeps answering 202,
`/healthz` stays fast and `/readyz` says `broker: down`; once it is back, the relay publishes what was accepted
meanwhile. While PostgreSQL cannot be reached, the API answers 503 problem+json with `Retry-After` (never 500)
on the same keep-alive connection, and 202 again once it is back."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from broker.rabbitmq import RabbitMQBroker
from hub import packets
from hub.security import keys
from hub.security.signing import Signer
from hub.store import Store
from tests.support import HUB, HUB_BIN, free_port, hub_env, signed_envelope, terminate, wait_for

ADMIN_KEY = "admin-key-for-outage-tests"


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``close()`` stops listening and cuts every connection (what a
    stopped server looks like from the hub), ``open()`` listens again on the same port."""

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:  # closed meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _code(letter: str) -> str:
    """A connector code of the registry's default pattern that no other test uses (its queues are its own)."""
    r = random.Random()
    return f"{r.randrange(100, 999)}.{r.randrange(10, 99)}.{r.randrange(10, 99)}.{letter}{r.randrange(10, 99)}"


def _post(conn: http.client.HTTPConnection, data: bytes, key: str) -> tuple[int, dict, dict]:
    conn.request("POST", "/api/v1/messages", body=data, headers={"Content-Type": "application/xml", "X-Api-Key": key})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read() or b"{}")


def test_the_api_rides_out_broker_and_store_outages(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, postgres_schema: str
) -> None:
    pg, amqp = make_url(postgres_url), make_url(rabbitmq_url.replace("amqp://", "postgresql://"))
    pg_proxy = TcpProxy((pg.host or "127.0.0.1", pg.port or 5432))
    mq_proxy = TcpProxy((amqp.host or "127.0.0.1", amqp.port or 5672))  # closed: nothing listens there yet
    pg_proxy.open()
    database_url = pg.set(port=pg_proxy.port).update_query_dict({"options": f"-csearch_path={postgres_schema}"})
    broker_url = rabbitmq_url.replace(f":{amqp.port}/", f":{mq_proxy.port}/")
    ministry, province = _code("G"), _code("H")
    key_dir = tmp_path / "var" / "keys"  # the demo CA there is the one the hub trusts
    ministry_key = keys.issue_key("ministry", key_dir, code=ministry)
    province_key = keys.issue_key("province", key_dir, code=province)
    signer = Signer.from_files(ministry_key.key_path, ministry_key.cert_path)
    port = free_port()
    env = hub_env(
        LIENTHONG_DATABASE_URL=database_url.render_as_string(hide_password=False),
        LIENTHONG_BROKER_URL=broker_url,
        LIENTHONG_DATA_DIR=str(tmp_path / "var"),
        LIENTHONG_HUB_CODE=HUB,
        LIENTHONG_ADMIN_API_KEY=ADMIN_KEY,
        LIENTHONG_LOG_FORMAT="console",
        LIENTHONG_LOG_LEVEL="WARNING",
        LIENTHONG_RELAY_INTERVAL_S="0.5",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([HUB_BIN, "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"hub serve exited:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            return False

        wait_for(up, 30, "hub serve to start while RabbitMQ is down", log.read_text)
        api_keys: dict[str, str] = {}
        for spec in (
            {"code": ministry, "name": "Ministry", "kind": "ministry", "sends": ["dossier.status"],
             "handles": [province], "certificates": [ministry_key.cert_path.read_text()]},
            {"code": province, "name": "Province", "kind": "provincial", "sends": ["dossier.sync"],
             "receives": ["dossier.status"], "endpoint": {"url": "http://127.0.0.1:9/inbox"},
             "certificates": [province_key.cert_path.read_text()]},
        ):  # fmt: skip
            response = httpx.post(f"{base}/api/v1/connectors", json=spec, headers={"X-Api-Key": ADMIN_KEY}, timeout=10)
            assert response.status_code == 201, response.text
            api_keys[spec["code"]] = response.json()["api_key"]

        dossier = f"{province}-251123-0042"  # a dossier of the province, which the ministry handles
        status_update = packets.example("dossier.status").model_copy(
            update={"source_system": ministry, "dossier_code": dossier}
        )

        def envelope(message_id: str) -> bytes:
            return signed_envelope(signer, sender=ministry, receiver=province, message_type="dossier.status",
                                   payload=packets.to_element(status_update), message_id=message_id,
                                   dossier_code=dossier)  # fmt: skip

        # RabbitMQ down: accepted into the store, /healthz fast, /readyz names the broker.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        probe = httpx.Client(base_url=base, timeout=5)  # one client: creating one costs more than the call
        accepted, health_ms = [], []
        for _ in range(20):
            message_id = str(uuid.uuid4())
            status, _, body = _post(conn, envelope(message_id), api_keys[ministry])
            assert status == 202, body
            accepted.append(message_id)
            for _ in range(5):
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                health_ms.append((time.perf_counter() - started) * 1000)
        health_ms.sort()
        assert health_ms[int(len(health_ms) * 0.99) - 1] < 100, health_ms[-5:]
        started = time.perf_counter()
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert time.perf_counter() - started < 3
        assert ready.status_code == 503 and "broker: down" in ready.json()["detail"], ready.text
        assert "store" not in ready.json()["detail"]

        # RabbitMQ back: the publisher declares the province's queues and the relay publishes what waited.
        store = Store(database_url)
        try:
            assert len(store.unpublished()) == len(accepted)
            mq_proxy.open()
            wait_for(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, 20, "the broker to be seen")
            wait_for(lambda: store.unpublished() == [], 20, "the relay to publish what was accepted meanwhile")
        finally:
            store.close()

        # PostgreSQL down: 503 with Retry-After on the same keep-alive connection, never a 500.
        pg_proxy.close()
        message_id = str(uuid.uuid4())
        sock = conn.sock
        status, headers, body = _post(conn, envelope(message_id), api_keys[ministry])
        assert status == 503, body
        assert headers["content-type"] == "application/problem+json"
        assert int(headers["retry-after"]) > 0
        assert body["errors"][0]["rule"] == "store-unavailable"
        # Named when the commit failed; here the API key's lookup (cached for a while) may have needed the store first.
        assert body.get("message_id") in (message_id, None)
        conn.request("GET", f"/api/v1/messages/{accepted[0]}", headers={"X-Api-Key": ADMIN_KEY})
        response = conn.getresponse()
        assert response.status == 503 and json.loads(response.read())["errors"][0]["rule"] == "store-unavailable"
        assert conn.sock is sock  # the connection was kept open
        started = time.perf_counter()
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert time.perf_counter() - started < 3
        assert ready.status_code == 503 and "store: down" in ready.json()["detail"], ready.text
        started = time.perf_counter()
        assert probe.get("/healthz").status_code == 200
        assert time.perf_counter() - started < 0.1
        probe.close()

        # PostgreSQL back: accepted again (a fresh pooled connection), the one refused included.
        pg_proxy.open()
        wait_for(lambda: _post(conn, envelope(message_id), api_keys[ministry])[0] == 202, 20, "the store to be back")
        conn.close()
    finally:
        terminate(proc)
        pg_proxy.close()
        mq_proxy.close()
        with contextlib.suppress(Exception):
            broker = RabbitMQBroker(rabbitmq_url)
            try:
                broker.delete([province])
            finally:
                broker.close()

"""The API against a real `hub serve` process (two uvicorn workers, embedded broker, SQLite in tmp_path):
connectors registered over HTTP, a ministry pushes a signed dossier.status over REST and over SOAP (a zeep client
built from the served WSDL), the messages are traced, and a `hub worker` delivers them to the province."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import zeep
import zeep.exceptions

from hub import packets
from hub.devtools.sink import SinkServer
from tests.support import (
    HUB,
    HUB_BIN,
    MINISTRY,
    PROVINCE,
    free_port,
    hub_env,
    running_sink,
    signed_envelope,
    terminate,
    wait_for,
)

ADMIN_KEY = "admin-key-for-tests"


@dataclass
class Server:
    base: str
    env: dict[str, str]
    keys: dict[str, str]
    sink: SinkServer
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = hub_env(
        LIENTHONG_DATABASE_URL=f"sqlite:///{root / 'hub.db'}",
        LIENTHONG_DATA_DIR=str(root / "var"),
        LIENTHONG_BROKER_URL="embedded",
        LIENTHONG_HUB_CODE=HUB,
        LIENTHONG_ADMIN_API_KEY=ADMIN_KEY,
        LIENTHONG_LOG_FORMAT="console",
        LIENTHONG_LOG_LEVEL="WARNING",
        LIENTHONG_REGISTRY_REFRESH_S="0.5",
    )
    log = root / "serve.log"
    with running_sink() as sink:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [HUB_BIN, "serve", "--port", str(port), "--workers", "2"],
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            ready: set[str] = set()  # both uvicorn workers up, so that neither reads the registry before the adds

            def both_workers_ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"hub serve exited:\n{log.read_text()}")
                try:
                    response = httpx.get(f"{base}/readyz", timeout=1)
                    if response.status_code == 200:
                        ready.add(httpx.get(f"{base}/healthz", timeout=1).json()["pid"])
                except httpx.HTTPError:
                    pass
                return len(ready) == 2

            wait_for(both_workers_ready, 90, "hub serve to come up", lambda: log.read_text())
            keys = {}
            for spec in (
                {
                    "code": MINISTRY,
                    "name": "Land registration",
                    "kind": "ministry",
                    "sends": ["dossier.status"],
                    "handles": [PROVINCE],
                    "certificates": [pki.ministry.cert_path.read_text()],
                },
                {
                    "code": PROVINCE,
                    "name": "One-stop system",
                    "kind": "provincial",
                    "sends": ["dossier.sync"],
                    "receives": ["dossier.status"],
                    "endpoint": {"url": sink.url},
                    "certificates": [pki.province.cert_path.read_text()],
                },
            ):
                response = httpx.post(f"{base}/api/v1/connectors", json=spec, headers={"X-Api-Key": ADMIN_KEY})
                assert response.status_code == 201, response.text
                keys[spec["code"]] = response.json()["api_key"]
            # The other uvicorn worker reloads the registry: at most ~1 s with LIENTHONG_REGISTRY_REFRESH_S=0.5.
            time.sleep(1.5)
            yield Server(base, env, keys, sink, log)
        finally:
            terminate(proc)


def signed_status(pki, message_id: str | None = None) -> bytes:
    return signed_envelope(pki.ministry.signer, sender=MINISTRY, receiver=PROVINCE, message_type="dossier.status",
                           message_id=message_id or str(uuid.uuid4()), dossier_code=packets.examples.DOSSIER_CODE)


def test_rest_push_is_accepted_traced_and_delivered(server: Server, pki) -> None:
    headers = {"X-Api-Key": server.keys[MINISTRY], "Content-Type": "application/xml"}
    ids = []
    with httpx.Client(base_url=server.base, headers=headers, timeout=10) as client:
        for _ in range(4):  # spread over both uvicorn workers
            response = client.post("/api/v1/messages", content=signed_status(pki))
            assert response.status_code == 202, response.text
            assert response.json()["destinations"] == [PROVINCE]
            ids.append(response.json()["message_id"])
        data = signed_status(pki, ids[0])
        trace = client.get(f"/api/v1/messages/{ids[0]}")
        assert trace.status_code == 200
        assert [e["state"] for e in trace.json()["events"]][:3] == ["received", "validated", "queued"]
        assert client.post("/api/v1/messages", content=data).status_code == 409  # same id, other bytes
        tampered = signed_status(pki).replace(b"<p:status>4", b"<p:status>9")
        assert client.post("/api/v1/messages", content=tampered).status_code == 422
        assert client.post("/api/v1/messages", content=data, headers={"X-Api-Key": "lt_00000000_x"}).status_code == 401
        timeline = client.get(f"/api/v1/dossiers/{packets.examples.DOSSIER_CODE}", headers={"X-Api-Key": ADMIN_KEY})
        assert {m["message_id"] for m in timeline.json()["messages"]} >= set(ids)

    # A worker routes them to the province's endpoint.
    subprocess.run(
        [HUB_BIN, "worker", "--idle-exit", "2"],
        env=server.env,
        cwd=Path(server.log).parent,
        check=True,
        timeout=40,
        capture_output=True,
    )
    with server.sink.state.lock:
        seen = set(server.sink.state.snapshot()["first_seen"])
    assert set(ids) <= seen
    trace = httpx.get(f"{server.base}/api/v1/messages/{ids[0]}", headers={"X-Api-Key": ADMIN_KEY}).json()
    assert trace["status"] == "delivered" and trace["deliveries"][0]["state"] == "delivered"

    metrics = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text  # both workers
    accepted = [line for line in metrics.splitlines() if line.startswith("lienthong_accepted_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in accepted) >= 4
    assert f'lienthong_delivered_total{{connector="{PROVINCE}"}}' in metrics


def test_zeep_client_submits_through_the_served_wsdl(server: Server, pki) -> None:
    client = zeep.Client(f"{server.base}/soap/exchange?wsdl")
    key = server.keys[MINISTRY]
    message_id = f"soap-{uuid.uuid4()}"
    data = signed_status(pki, message_id)
    answer = client.service.SubmitEnvelope(SignedEnvelope=data, _soapheaders={"ApiKey": key})
    assert (answer.MessageId, answer.Status, answer.Duplicate) == (message_id, "queued", False)
    again = client.service.SubmitEnvelope(SignedEnvelope=data, _soapheaders={"ApiKey": key})
    assert again.Duplicate is True

    status = client.service.GetMessageStatus(MessageId=message_id, _soapheaders={"ApiKey": key})
    assert status.Sender == MINISTRY and status.MessageType == "dossier.status"
    assert [e.State for e in status.Event][:3] == ["received", "validated", "queued"]
    rest = httpx.get(f"{server.base}/api/v1/messages/{message_id}", headers={"X-Api-Key": key})
    assert rest.status_code == 200

    with pytest.raises(zeep.exceptions.Fault) as fault:
        client.service.SubmitEnvelope(
            SignedEnvelope=data.replace(b"<p:status>4", b"<p:status>9"), _soapheaders={"ApiKey": key}
        )
    assert fault.value.code.endswith("Client")
    rules = [el.text for el in fault.value.detail.iter("{urn:lienthong:exchange:1}Rule")]
    assert rules == ["signature-digest"]
    with pytest.raises(zeep.exceptions.Fault) as fault:
        client.service.GetMessageStatus(MessageId=message_id, _soapheaders={"ApiKey": "wrong"})
    assert [el.text for el in fault.value.detail.iter("{urn:lienthong:exchange:1}Rule")] == ["api-key-unknown"]
    assert json.loads(httpx.get(f"{server.base}/healthz").text)["status"] == "ok"


def _exchange(base: str, raw: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Send ``raw`` (one or more requests) on one connection and read answers until the server closes it:
    (status line, headers, body) of each, in the order they came."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
        length = int(headers["content-length"])
        answers.append((status, headers, rest[:length]))
        data = rest[length:]
    return answers


def test_healthz_is_answered_by_the_protocol_as_the_route_would_and_in_order(server: Server) -> None:
    """`hub serve` answers a plain GET /healthz in its HTTP protocol, before the ASGI stack (hub.api.server):
    the same status, headers and JSON as the route (reached here by a GET with a `Content-Length: 0` body),
    pipelined answers in request order, `connection: close` for HTTP/1.0 and when the client asks."""
    request = b"GET %s HTTP/1.1\r\nHost: hub\r\n%s\r\n"
    answers = _exchange(
        server.base,
        request % (b"/readyz", b"")
        + request % (b"/healthz", b"")  # pipelined behind /readyz: must come second
        + request % (b"/healthz", b"Content-Length: 0\r\n")  # the ASGI route
        + request % (b"/healthz", b"Connection: close\r\n"),
    )
    assert [status for status, _, _ in answers] == ["HTTP/1.1 200 OK"] * 4
    assert json.loads(answers[0][2])["checks"] == {"store": "ok", "broker": "ok"}
    fast, route, closing = answers[1], answers[2], answers[3]
    assert fast[1].keys() == route[1].keys() == {"date", "server", "content-length", "content-type"}
    assert fast[1]["content-type"] == route[1]["content-type"] == "application/json"
    assert json.loads(fast[2]) == json.loads(route[2])  # same worker process, so the same pid
    assert json.loads(fast[2]).keys() == {"status", "version", "pid"}
    assert closing[1]["connection"] == "close" and json.loads(closing[2])["status"] == "ok"
    (old,) = _exchange(server.base, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert old[0] == "HTTP/1.1 200 OK" and old[1]["connection"] == "close"
    refused = httpx.post(f"{server.base}/healthz")
    assert refused.status_code == 405  # not a GET: the app's answer

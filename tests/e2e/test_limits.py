"""Bounds against a real `hub serve`: refused bodies leave the API's memory where it was, and clients that are
too slow (silent connections, headers or bodies trickled in) are cut off."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import ServedHub, served_hub

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 1.0, 2.0
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    with served_hub(
        tmp_path_factory.mktemp("limits"), LIENTHONG_ADMIN_API_KEY="admin-key-for-tests",
        LIENTHONG_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S), LIENTHONG_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ) as hub:  # fmt: skip
        yield hub


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def soap_without_a_known_key(size: int) -> bytes:
    head = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:ex="urn:lienthong:exchange:1"><soap:Header>'
        "<ex:ApiKey>lt_00000000_unknown</ex:ApiKey></soap:Header><soap:Body><ex:GetMessageStatusRequest><ex:MessageId>"
    ).encode()
    tail = b"</ex:MessageId></ex:GetMessageStatusRequest></soap:Body></soap:Envelope>"
    return head + b"<a>x</a>" * ((size - len(head) - len(tail)) // 8) + tail


def refused_round(client: httpx.Client, requests: int, body: dict[str, bytes]) -> list[int]:
    """``requests`` refused POSTs, 15 at a time, spread over the paths of ``body``."""
    paths = list(body)

    def post(i: int) -> int:
        path = paths[i % len(paths)]
        return client.post(path, content=body[path], headers={"Content-Type": "text/xml"}).status_code

    with ThreadPoolExecutor(15) as pool:
        return list(pool.map(post, range(requests)))


def test_refused_requests_leave_the_api_memory_where_it_was(server: ServedHub) -> None:
    megabyte = 1024 * 1024
    body = {
        "/soap/exchange": soap_without_a_known_key(megabyte),  # under the SOAP limit: refused by its key
        "/api/v1/callbacks/payment/000.00.00.P01": b"{" + b" " * megabyte + b"}",  # over the callback limit
        "/login": b"username=a&password=" + b"x" * megabyte,  # over the form limit
    }
    pool = httpx.Limits(max_connections=15, max_keepalive_connections=0)  # no reuse racing the server's timeouts
    with httpx.Client(base_url=server.base, timeout=30, limits=pool) as client:
        assert set(refused_round(client, 30, body)) == {413, 500}  # warm-up: lazily loaded code is in
        baseline = rss_mb(server.pid)
        peak = baseline
        started = time.monotonic()
        for _ in range(10):  # before the bounds, 1 round alone took ~+650 MB
            assert set(refused_round(client, 150, body)) == {413, 500}
            peak = max(peak, rss_mb(server.pid))
    after = rss_mb(server.pid)
    print(f"RSS {baseline:.0f} MB → peak {peak:.0f} MB → {after:.0f} MB in {time.monotonic() - started:.1f} s")
    assert after - baseline < 50, (baseline, peak, after)
    assert peak - baseline < 100, (baseline, peak, after)


def closed_within(sock: socket.socket, timeout_s: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (``trickle`` sent every 0.2 s meanwhile); fails past ``timeout_s``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout_s:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset: closed as well
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {timeout_s} s")


def test_silent_and_slow_clients_are_cut_off(server: ServedHub) -> None:
    limit = HEADER_TIMEOUT_S + 4  # generous: the machine is shared
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert closed_within(silent, limit) >= HEADER_TIMEOUT_S * 0.8
    with socket.create_connection(("127.0.0.1", server.port)) as slow_headers:
        slow_headers.sendall(b"POST /api/v1/messages HTTP/1.1\r\nHost: hub\r\n")
        closed_within(slow_headers, limit, trickle=b"X-Slow: 1\r\n")
    with socket.create_connection(("127.0.0.1", server.port)) as slow_body:
        slow_body.sendall(
            b"POST /api/v1/callbacks/payment/000.00.00.P01 HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        slow_body.settimeout(BODY_TIMEOUT_S + 8)
        answer = slow_body.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        while not answer.endswith(b"}"):  # the problem+json may come in a second segment
            answer += slow_body.recv(65536)
        assert b'"rule":"body-timeout"' in answer, answer
        closed_within(slow_body, limit, trickle=b" ")  # the rest of the refused body is not waited for
    # a client that keeps up is unaffected
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200

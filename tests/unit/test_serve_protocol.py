"""``hub serve``'s HTTP protocol (``hub.api.server.BoundedHttpProtocol``) answers a plain ``GET /healthz`` (no
query, no body) in the loop's read callback, without starting the ASGI app: checked here on the protocol itself,
fed bytes as the event loop would, with an app that records whether it ran. (That the answer equals the route's
is checked against a real ``hub serve`` in tests/e2e/test_api_server.py.)"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from hub.api.server import BoundedHttpProtocol


class FakeTransport(asyncio.Transport):
    """What the protocol writes, and whether it closed the connection (no socket: the test drives the bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.closed_by_server = False  # before the connection was lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed(*requests: bytes) -> tuple[FakeTransport, list[str]]:
    """Feed ``requests`` to a new connection of the protocol, let the loop run, return the transport and the
    paths the ASGI app was called for."""
    called: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        called.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run() -> FakeTransport:
        config = Config(app=app, log_level="warning")
        config.load()
        protocol = BoundedHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        protocol.connection_made(transport)
        for request in requests:
            protocol.data_received(request)
            for _ in range(5):
                await asyncio.sleep(0)
        transport.closed_by_server = transport.closed
        protocol.connection_lost(None)
        return transport

    return asyncio.run(run()), called


def test_a_plain_get_healthz_is_answered_without_the_app() -> None:
    transport, called = feed(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert called == []
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-type: application/json" in head
    assert json.loads(body) == {"status": "ok", "version": json.loads(body)["version"], "pid": str(os.getpid())}
    assert not transport.closed_by_server  # keep-alive


def test_other_requests_and_a_healthz_with_a_query_or_a_body_go_to_the_app_in_order() -> None:
    transport, called = feed(
        b"GET /readyz HTTP/1.1\r\nHost: hub\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nContent-Length: 0\r\n\r\n"
        b"GET /healthz?x=%00 HTTP/1.1\r\nHost: hub\r\n\r\n"
        b"POST /healthz HTTP/1.1\r\nHost: hub\r\nContent-Length: 0\r\n\r\n"
    )
    assert called == ["/readyz", "/healthz", "/healthz", "/healthz"]  # the second request alone was the protocol's
    bodies = [part for part in transport.written.split(b"\r\n\r\n")[1:]]
    assert [body.startswith(b"{}") for body in bodies] == [True, False, True, True, True]


def test_http_1_0_gets_its_answer_and_the_connection_closed() -> None:
    transport, called = feed(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert called == [] and b"connection: close\r\n" in transport.written and transport.closed_by_server

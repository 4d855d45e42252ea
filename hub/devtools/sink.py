"""A sink partner: a real HTTP server on 127.0.0.1 that accepts delivered envelopes and remembers them.

Used by the benchmark and the failure tests. It deduplicates on ``X-Message-Id`` the way a partner should
(the effect happens once) and also counts raw receipts, so a test can tell at-least-once redelivery from a
duplicated effect. It can be told to fail: ``POST /_control {"status": 503, "count": 10}`` answers the next
10 deliveries with 503 (``"seconds"`` instead of ``count`` fails for a while); ``{"status": 0}`` heals it.
``--delay-ms`` makes every delivery take that long (a slow partner); ``{"delay_ms": 2000}`` changes it from now on
(longer than the hub's timeout: a hanging partner, which still receives what it is sent). ``GET /_stats`` returns
what it saw (``repeated``: how many times each id received more than once came); ``GET /_count`` only the counts;
``POST /_first_seen`` with a JSON list of ids when each of them first came (a long benchmark asks for a sample of
its ids instead of all it sent).
Run: ``python -m hub.devtools.sink --port 9100``.

Two servers share the same state and rules: ``SinkServer`` (threads, started in-process by tests), and, for
``python -m hub.devtools.sink``, a bare ASGI app under uvicorn (httptools, uvloop): the benchmark runs the sink on the
same two cores as the hub, so the sink must cost as little CPU per delivery as a real partner's server would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import ThreadingHTTPServer
from typing import Any

from hub.devtools.partner_http import PartnerRequestHandler


class SinkState:
    """What the sink has received, and how it is currently told to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.first_seen: dict[str, float] = {}
        self.repeated: dict[str, int] = {}  # receipts of the ids received more than once
        self.received = 0
        self.duplicates = 0
        self.failed = 0
        self.fail_status = 0
        self.fail_count: int | None = None
        self.fail_until: float | None = None

    def failing(self) -> int:
        if not self.fail_status:
            return 0
        if self.fail_until is not None and time.time() > self.fail_until:
            self.fail_status = 0
            return 0
        if self.fail_count is not None:
            if self.fail_count <= 0:
                self.fail_status = 0
                return 0
            self.fail_count -= 1
        return self.fail_status

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {"unique": len(self.first_seen), "received": self.received, "failed": self.failed,
                    "duplicates": self.duplicates}  # fmt: skip

    def first_seen_of(self, body: bytes) -> bytes:
        """``/_first_seen``: {id: when it first came} for the ids of the JSON list ``body`` that came."""
        wanted = json.loads(body or b"[]")
        with self.lock:
            return json.dumps({m: self.first_seen[m] for m in wanted if m in self.first_seen}).encode()

    def control(self, body: bytes) -> None:
        """Apply a ``/_control`` command (see the module docstring)."""
        command = json.loads(body or b"{}")
        with self.lock:
            self.fail_status = int(command.get("status", 0))
            self.fail_count = command.get("count")
            seconds = command.get("seconds")
            self.fail_until = time.time() + float(seconds) if seconds else None
            if "delay_ms" in command:
                self.delay_s = float(command["delay_ms"]) / 1000

    def receive(self, message_id: str, body: bytes) -> tuple[int, bytes]:
        """Take one delivery (after the delay); the status and JSON body to answer with."""
        with self.lock:
            status = self.failing()
            if status:
                self.failed += 1
            else:
                self.received += 1
                if message_id in self.first_seen:
                    self.duplicates += 1
                    self.repeated[message_id] = self.repeated.get(message_id, 1) + 1
                else:
                    self.first_seen[message_id] = time.time()
        if status:
            return status, json.dumps({"error": f"told to fail with {status}"}).encode()
        if not message_id or not body.lstrip().startswith(b"<"):
            return 400, b'{"error": "expected an XML envelope with X-Message-Id"}'
        return 200, json.dumps({"received": message_id}).encode()

    def answer_get(self, path: str) -> tuple[int, bytes]:
        if path.startswith("/_count"):
            return 200, json.dumps(self.counts()).encode()
        if path.startswith("/_stats"):
            with self.lock:
                return 200, json.dumps(self.snapshot()).encode()
        return 404, b'{"error": "not found"}'

    def snapshot(self) -> dict[str, object]:
        return {
            "unique": len(self.first_seen),
            "received": self.received,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "first_seen": self.first_seen,
            "repeated": self.repeated,
        }


class SinkHandler(PartnerRequestHandler):
    server: SinkServer

    def do_GET(self) -> None:
        self.send_body(*self.server.state.answer_get(self.path))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state = self.server.state
        if self.path.startswith("/_control"):
            state.control(body)
            self.send_body(200, b'{"ok": true}')
            return
        if self.path.startswith("/_first_seen"):
            self.send_body(200, state.first_seen_of(body))
            return
        if state.delay_s > 0:
            time.sleep(state.delay_s)
        self.send_body(*state.receive(self.headers.get("X-Message-Id", ""), body))


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, *, delay_ms: float = 0) -> None:
        super().__init__(("127.0.0.1", port), SinkHandler)
        self.state = SinkState(delay_s=delay_ms / 1000)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/inbox"

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """Serve until ``shutdown()``, which returns within ``poll_interval``: socketserver's default of 0.5 s
        was waited out at the end of every test that started a sink (as the partner simulators do, 0.05 s)."""
        super().serve_forever(poll_interval)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def asgi_app(state: SinkState) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """The sink as a bare ASGI application over ``state`` (no framework: nothing to route but four paths)."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET":
            status, answer = state.answer_get(path)
        elif path.startswith("/_control"):
            state.control(body)
            status, answer = 200, b'{"ok": true}'
        elif path.startswith("/_first_seen"):
            status, answer = 200, state.first_seen_of(body)
        else:
            if state.delay_s > 0:
                await asyncio.sleep(state.delay_s)
            message_id = next((v.decode() for k, v in scope["headers"] if k == b"x-message-id"), "")
            status, answer = state.receive(message_id, body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Lienthong sink partner (benchmark and failure tests)")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0, help="answer each delivery after this long")
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))  # bound here, so that --port 0 can report the port it got
    # Listening before saying so: a connection made as soon as the line is read waits in the backlog until uvicorn
    # serves, rather than being refused.
    listener.listen(2048)
    state = SinkState(delay_s=args.delay_ms / 1000)
    print(f"sink listening on http://127.0.0.1:{listener.getsockname()[1]}/inbox", flush=True)
    config = uvicorn.Config(asgi_app(state), log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

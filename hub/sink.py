"""A sink partner: a real HTTP server on 127.0.0.1 that accepts delivered envelopes and remembers them.

Used by the benchmark and the failure tests. It deduplicates on ``X-Message-Id`` the way a partner should
(the effect happens once) and also counts raw receipts, so a test can tell at-least-once redelivery from a
duplicated effect. It can be told to fail: ``POST /_control {"status": 503, "count": 10}`` answers the next
10 deliveries with 503 (``"seconds"`` instead of ``count`` fails for a while); ``{"status": 0}`` heals it.
``--delay-ms`` makes every delivery take that long (a slow partner). ``GET /_stats`` returns what it saw.
Run: ``python -m hub.sink --port 9100``.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SinkState:
    """What the sink has received, and how it is currently told to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.first_seen: dict[str, float] = {}
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

    def snapshot(self) -> dict[str, object]:
        return {
            "unique": len(self.first_seen),
            "received": self.received,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "first_seen": self.first_seen,
        }


class SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real partners do
    server: SinkServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: the benchmark sends thousands
        pass

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to every keep-alive reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/_count"):
            with self.server.state.lock:
                state = self.server.state
                counts = {"unique": len(state.first_seen), "received": state.received, "failed": state.failed}
            self._reply(200, json.dumps(counts).encode())
        elif self.path.startswith("/_stats"):
            with self.server.state.lock:
                self._reply(200, json.dumps(self.server.state.snapshot()).encode())
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        state = self.server.state
        if self.path.startswith("/_control"):
            command = json.loads(body or b"{}")
            with state.lock:
                state.fail_status = int(command.get("status", 0))
                state.fail_count = command.get("count")
                seconds = command.get("seconds")
                state.fail_until = time.time() + float(seconds) if seconds else None
            self._reply(200, b'{"ok": true}')
            return
        message_id = self.headers.get("X-Message-Id", "")
        if state.delay_s > 0:
            time.sleep(state.delay_s)
        with state.lock:
            status = state.failing()
            if status:
                state.failed += 1
            else:
                state.received += 1
                if message_id in state.first_seen:
                    state.duplicates += 1
                else:
                    state.first_seen[message_id] = time.time()
        if status:
            self._reply(status, json.dumps({"error": f"told to fail with {status}"}).encode())
        elif not message_id or not body.lstrip().startswith(b"<"):
            self._reply(400, b'{"error": "expected an XML envelope with X-Message-Id"}')
        else:
            self._reply(200, json.dumps({"received": message_id}).encode())


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, *, delay_ms: float = 0) -> None:
        super().__init__(("127.0.0.1", port), SinkHandler)
        self.state = SinkState(delay_s=delay_ms / 1000)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/inbox"


def main() -> None:
    parser = argparse.ArgumentParser(description="Lienthong sink partner (benchmark and failure tests)")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0, help="answer each delivery after this long")
    args = parser.parse_args()
    server = SinkServer(args.port, delay_ms=args.delay_ms)
    print(f"sink listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

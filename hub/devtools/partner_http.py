"""The request handler every stand-in partner server (the simulators, the sink) builds on."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler


class PartnerRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, as real partners do; ``TCP_NODELAY``; no access log (the benchmark sends thousands)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to every keep-alive reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_body(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        """The whole answer, with the ``Content-Length`` keep-alive needs."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

"""Fetching a linked document (``adapters.documents``) from a real HTTP server on 127.0.0.1: bounded in size (declared
and streamed), in time (a server that drips bytes is cut off), no redirects, no decoding, http(s) only; errors
transient or permanent as the worker retries them, the link shown without its query."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.documents import DocumentTooLargeError, document_pool, fetch_document, shown

LIMIT = 1000
seen_headers: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        seen_headers.append(dict(self.headers))
        path = self.path.split("?", 1)[0]
        if path == "/ok.pdf":
            self._send(200, b"%PDF-1.7 small document", {"Content-Type": "application/pdf"})
        elif path == "/declared-big":
            self._send(200, b"x" * (LIMIT + 1))
        elif path == "/streamed-big":  # no Content-Length: read until the limit is passed
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(4):
                chunk = b"y" * 400
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/moved":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/busy":
            self._send(503, b"busy")
        elif path == "/gone":
            self._send(404, b"not here")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                try:
                    self.wfile.write(b"z")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        else:
            self._send(404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch(url: str, timeout_s: float = 5.0) -> bytes:
    return fetch_document(document_pool(timeout_s=timeout_s), url, max_bytes=LIMIT, timeout_s=timeout_s)


def test_a_document_within_the_limit_is_read_as_sent_without_decoding(server: str) -> None:
    assert fetch(server + "/ok.pdf?token=secret") == b"%PDF-1.7 small document"
    assert seen_headers[-1]["Accept-Encoding"] == "identity"


def test_sizes_over_the_limit_are_refused_declared_or_streamed(server: str) -> None:
    for path in ("/declared-big", "/streamed-big"):
        with pytest.raises(DocumentTooLargeError, match=f"more than the {LIMIT}"):
            fetch(server + path)


def test_redirects_are_not_followed_and_other_schemes_not_fetched(server: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="HTTP 302 \\(redirects are not followed\\)"):
        fetch(server + "/moved")
    with pytest.raises(PermanentDeliveryError, match="only http and https"):
        fetch("file:///etc/passwd")


def test_a_busy_or_unreachable_host_is_transient_a_missing_document_permanent(server: str) -> None:
    with pytest.raises(TransientDeliveryError, match="HTTP 503"):
        fetch(server + "/busy")
    with pytest.raises(TransientDeliveryError, match="cannot fetch"):
        fetch("http://127.0.0.1:9/nothing-listens-here")
    with pytest.raises(PermanentDeliveryError, match="HTTP 404") as refused:
        fetch(server + "/gone?access_token=abc")
    assert "abc" not in str(refused.value) and not isinstance(refused.value, TransientDeliveryError)


def test_a_server_that_drips_bytes_is_cut_off(server: str) -> None:
    with pytest.raises(TransientDeliveryError, match="timed out"):
        fetch(server + "/drip", timeout_s=0.5)


def test_links_are_shown_without_credentials_or_query() -> None:
    assert shown("https://user:pw@tnmt.example.gov.vn:8443/kq/1.pdf?sig=abc#x") == "https://tnmt.example.gov.vn:8443/kq/1.pdf"

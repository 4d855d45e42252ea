"""Fetching a linked document (``adapters.documents``) from a real HTTP server on 127.0.0.1: bounded in size (declared
and streamed), in time (a server that drips bytes is cut off), no redirects, no decoding, http(s) only; errors
transient or permanent as the worker retries them, the link shown without its query. Only hosts the connector allows
are asked, an internal address only for a host named exactly, and the connection goes to the address checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.documents import DocumentTooLargeError, HostNotAllowedError, document_pool, fetch_document, shown
from adapters.link_hosts import HostAllowList, HostPattern

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


LOOPBACK = HostAllowList.of(["127.0.0.1"])  # named exactly: the test server's loopback address is allowed


def fetch(url: str, timeout_s: float = 5.0, hosts: HostAllowList = LOOPBACK, **kw) -> bytes:
    return fetch_document(document_pool(timeout_s=timeout_s), url, max_bytes=LIMIT, timeout_s=timeout_s,
                          hosts=hosts, **kw)  # fmt: skip


class Resolver:
    """A DNS that answers ``names`` (name → addresses) and counts its questions."""

    def __init__(self, **names: str) -> None:
        self.names = {name.replace("_", "."): [address] for name, address in names.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"{host} does not resolve")
        return self.names[host]


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


def test_a_host_the_connector_does_not_allow_is_neither_resolved_nor_asked(server: str) -> None:
    other_port = int(server.rsplit(":", 1)[1]) % 65535 + 1
    dns = Resolver(files_tnmt_example_gov_vn="127.0.0.1")
    asked = len(seen_headers)
    elsewhere = HostAllowList.of(["files.tnmt.example.gov.vn", "127.0.0.2", f"127.0.0.1:{other_port}"])
    for hosts in (HostAllowList(), elsewhere):
        with pytest.raises(HostNotAllowedError, match="not one of the connector's result_hosts") as refused:
            fetch(server + "/ok.pdf", hosts=hosts, resolver=dns)
        assert not isinstance(refused.value, TransientDeliveryError)
    with pytest.raises(HostNotAllowedError):  # the cloud metadata address, whatever the path
        fetch("http://169.254.169.254/latest/meta-data/", hosts=HostAllowList.of(["files.tnmt.example.gov.vn"]))
    assert dns.asked == [] and len(seen_headers) == asked


def test_an_internal_address_is_reached_only_through_a_host_named_exactly(server: str) -> None:
    """``docs.example.test`` resolves (in this test's DNS) to the loopback server: a wildcard or the endpoint's
    default host does not open it; naming the host does, and the request goes to the address the check saw — the
    name exists in no real DNS, so the connection can only have gone to the answer that was checked."""
    port = int(server.rsplit(":", 1)[1])
    link = f"http://docs.example.test:{port}/ok.pdf"
    for hosts in (HostAllowList.of(["*.example.test"]),
                  HostAllowList((HostPattern("docs.example.test", None, explicit=False),))):  # fmt: skip
        dns = Resolver(docs_example_test="127.0.0.1")
        with pytest.raises(HostNotAllowedError, match="internal address"):
            fetch(link, hosts=hosts, resolver=dns)
        assert dns.asked == ["docs.example.test"]
    for address in ("169.254.169.254", "10.1.2.3", "::ffff:127.0.0.1", "fd00::7"):
        with pytest.raises(HostNotAllowedError, match="internal address"):
            fetch(link, hosts=HostAllowList.of(["*.example.test"]), resolver=Resolver(docs_example_test=address))
    with pytest.raises(HostNotAllowedError, match="the connector's endpoint host"):  # an IP literal, by default
        fetch(server + "/ok.pdf", hosts=HostAllowList((HostPattern("127.0.0.1", None, explicit=False),)))

    dns = Resolver(docs_example_test="127.0.0.1")
    assert fetch(link, hosts=HostAllowList.of([f"docs.example.test:{port}"]), resolver=dns) == (
        b"%PDF-1.7 small document"
    )
    assert dns.asked == ["docs.example.test"]  # resolved once: a second answer (DNS rebinding) is never asked for
    assert seen_headers[-1]["Host"] == f"docs.example.test:{port}"


def test_a_name_that_does_not_resolve_is_transient(server: str) -> None:
    with pytest.raises(TransientDeliveryError, match="does not resolve"):
        fetch("http://gone.example.test/kq.pdf", hosts=HostAllowList.of(["gone.example.test"]), resolver=Resolver())


def test_an_address_that_cannot_connect_gives_way_to_the_next_one_checked(server: str) -> None:
    """A name with several addresses (IPv6 and IPv4, say): each was checked, and the next is tried only when one
    cannot be connected to (127.0.0.2 is loopback too, but nothing listens there)."""
    port = int(server.rsplit(":", 1)[1])
    dns = Resolver(docs_example_test="127.0.0.2")
    dns.names["docs.example.test"].append("127.0.0.1")
    hosts = HostAllowList.of(["docs.example.test"])
    assert fetch(f"http://docs.example.test:{port}/ok.pdf", hosts=hosts, resolver=dns) == b"%PDF-1.7 small document"
    dns.names["docs.example.test"] = ["127.0.0.2"]
    with pytest.raises(TransientDeliveryError, match="cannot be reached"):
        fetch(f"http://docs.example.test:{port}/ok.pdf", hosts=hosts, resolver=dns)

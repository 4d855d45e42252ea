"""How ``hub serve`` talks HTTP: uvicorn's httptools protocol with a deadline on request headers.

uvicorn times out idle keep-alive connections only, and only after a first answer: a client that opens a
connection and sends nothing, sends its headers a byte at a time, or trickles a body the hub has already
refused, holds the connection forever. ``BoundedHttpProtocol`` closes it when a request's headers have not all
arrived ``header_timeout_s`` after the connection opened or the request began, or when the rest of a body
answered before it was read (a refusal) has not been followed by a new request's headers within that time.
(Subclassing is the only hook uvicorn offers; h11 and httptools have no such timeout.)

It also answers a plain ``GET /healthz`` itself, in the loop's read callback, without the ASGI stack: a liveness
probe then waits for one turn of the event loop (which it exists to prove), not behind the ASGI work of every
envelope that arrived with it. Anything more in the request (a query, a body) sends it the usual way, to the same
answer from ``hub.api.routes.health``.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr

from hub.api.routes.health import LIVENESS_PATH, liveness
from hub.config import get_settings

PROTOCOL = "hub.api.server:BoundedHttpProtocol"  # uvicorn's ``http=``: an import string survives its worker spawn


class BoundedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes connections whose request headers are too slow (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn calls this once a request may be answered: its headers are in and the one before it is done.
        if _is_liveness_probe(cycle.scope):
            self._answer_liveness(cycle)
        else:
            super()._start_asgi_task(cycle, app)

    def _answer_liveness(self, cycle: RequestResponseCycle) -> None:
        """What the ASGI route would send, written at once; then on to the next request as uvicorn would."""
        body = json.dumps(liveness(), separators=(",", ":")).encode()
        head = [b"HTTP/1.1 200 OK\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in cycle.default_headers]
        head.append(b"content-length: %d\r\ncontent-type: application/json\r\n" % len(body))
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + body)
        cycle.response_started = cycle.response_complete = True
        cycle.more_body = False
        if cycle.access_log:
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', get_client_addr(cycle.scope), "GET", LIVENESS_PATH,
                cycle.scope["http_version"], HTTPStatus.OK,
            )  # fmt: skip
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def on_response_complete(self) -> None:
        # The rest of a body answered before it was all read (a refusal) is read and discarded: bounded too.
        # Otherwise the connection is idle until the next request begins, which uvicorn's keep-alive bounds.
        unread = self.cycle.more_body and not self.pipeline
        super().on_response_complete()
        if unread and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _is_liveness_probe(scope: Any) -> bool:
    """A ``GET /healthz`` without a query or a body (anything more goes to the app, which checks it as usual)."""
    return (
        scope["method"] == "GET"
        and scope["path"] == LIVENESS_PATH
        and not scope["query_string"]
        and not any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])
    )


__all__ = ["PROTOCOL", "BoundedHttpProtocol"]

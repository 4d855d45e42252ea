"""How ``hub serve`` talks HTTP: uvicorn's httptools protocol with a deadline on request headers.

uvicorn times out idle keep-alive connections only, and only after a first answer: a client that opens a
connection and sends nothing, sends its headers a byte at a time, or trickles a body the hub has already
refused, holds the connection forever. ``BoundedHttpProtocol`` closes it when a request's headers have not all
arrived ``header_timeout_s`` after the connection opened or the request began, or when the rest of a body
answered before it was read (a refusal) has not been followed by a new request's headers within that time.
(Subclassing is the only hook uvicorn offers; h11 and httptools have no such timeout.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


__all__ = ["PROTOCOL", "BoundedHttpProtocol"]

"""The ``Secure`` flag on the operator page's cookies, decided per request.

A cookie without ``Secure`` may leak over any plain-HTTP request to the host; with it, a browser drops the cookie
on a plain-HTTP page, which would make sign-in impossible there. So every cookie is ``Secure`` except when the
page is served over plain HTTP on a loopback address (``hub demo``, a local ``hub serve``), where nothing crosses
a network; ``LIENTHONG_SESSION_HTTPS_ONLY`` makes them ``Secure`` always. Behind a TLS-terminating proxy the
scheme comes from ``X-Forwarded-Proto`` (uvicorn's proxy headers), so the cookie is ``Secure`` there too.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a Host header's name, without port) names this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_loopback(scope: Scope) -> bool:
    """Whether the request came over plain HTTP to a loopback address (as the browser sees it: the Host) from this
    machine (the peer is loopback too: a proxy that forwards a public client says so with ``X-Forwarded-For``,
    and a Host header alone, which any client or proxy sets, never decides)."""
    if scope.get("scheme") != "http":
        return False
    if _remote_peer(scope):
        return False
    host = next((value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"host"), None)
    if host is None:
        server = scope.get("server")
        host = str(server[0]) if server else ""
    elif host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return is_loopback_host(host)


def _remote_peer(scope: Scope) -> bool:
    """Whether the peer is an address of another machine (a name, as test clients give, decides nothing)."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return not ipaddress.ip_address(str(client[0]).strip("[]")).is_loopback
    except ValueError:
        return False


def _with_secure(cookie: bytes) -> bytes:
    attributes = [part.strip().lower() for part in cookie.split(b";")[1:]]
    return cookie if b"secure" in attributes else cookie + b"; Secure"


class SecureCookies:
    """ASGI middleware adding ``Secure`` to every ``Set-Cookie`` unless the request is plain HTTP on loopback."""

    def __init__(self, app: ASGIApp, *, always: bool = False) -> None:
        self.app = app
        self.always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (not self.always and plain_http_loopback(scope)):
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (key, _with_secure(value) if key.lower() == b"set-cookie" else value)
                    for key, value in message.get("headers", ())
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secure)

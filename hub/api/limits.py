"""Every request body is bounded before it is read: ``BodyLimits``, the API's outermost ASGI middleware.

Each route has a body limit (envelopes: ``max_message_bytes``; SOAP: the same, base64-wrapped; connector
specs, partner callbacks: their own; anything else, sign-in and sign-out included: ``max_form_bytes``). A
Content-Length over the limit is answered 413 before the application sees the request, authenticated or not;
a body without a length is counted as it streams and refused (413) as soon as it passes the limit, without
being buffered; a body that has not fully arrived ``body_timeout_s`` after the headers is refused (408).
What the client sends after a refusal is discarded by the server, never buffered.

The same middleware refuses (400, rule ``nul-character``, naming the query field or the path) a URL holding a NUL
character: no identifier, filter or code the hub knows has one, and PostgreSQL's text cannot hold it, so it would
otherwise surface as a 500 deep inside a query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.problems import ApiProblem, problem_response
from hub.api.routes.soap import SOAP_PATH, fault, soap_body_limit
from hub.config import Settings
from hub.errors import Issue


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """A route's largest body, the rule a refusal names (the setting's name), and how the route answers errors."""

    max_bytes: int
    rule: str
    answer: Callable[[ApiProblem], Response] | None = None  # None: problem+json

    def too_large(self, detail: str) -> ApiProblem:
        return ApiProblem("too-large", detail, [Issue("/", self.rule, f"limit is {self.max_bytes} bytes")])


def route_limits(settings: Settings) -> tuple[dict[str, BodyLimit], tuple[tuple[str, BodyLimit], ...], BodyLimit]:
    """The body limit of each route: exact paths, path prefixes, and the default for everything else."""
    message = BodyLimit(settings.max_message_bytes, "max-message-bytes")
    exact = {
        "/api/v1/messages": message,
        "/api/v1/lookups": message,
        SOAP_PATH: BodyLimit(soap_body_limit(settings), "max-message-bytes", fault),
        "/api/v1/connectors": BodyLimit(settings.max_connector_spec_bytes, "max-connector-spec-bytes"),
    }
    prefixes = (("/api/v1/callbacks/", BodyLimit(settings.max_callback_bytes, "max-callback-bytes")),)
    return exact, prefixes, BodyLimit(settings.max_form_bytes, "max-form-bytes")


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length (None when absent); ``ApiProblem`` when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
            if length < 0:
                raise ApiProblem(
                    "malformed",
                    "Content-Length is not a number",
                    [Issue("/headers/Content-Length", "content-length", "not a number")],
                )
            return length
    return None


def nul_in_url(scope: Scope) -> ApiProblem | None:
    """The refusal of a path or query string holding a NUL character (raw or ``%00``), naming where; else None."""
    why = "no NUL character: nothing the hub stores or looks up holds one"
    if "\x00" in scope["path"]:
        return ApiProblem("malformed", "the path holds a NUL character", [Issue("/path", "nul-character", why)])
    query = scope.get("query_string", b"").decode("latin-1")
    if "\x00" in query or "%00" in query:
        for key, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                field = key.replace("\x00", "") or "?"
                return ApiProblem("malformed", f"{field}: holds a NUL character",
                                  [Issue(f"/query/{field}", "nul-character", why)])  # fmt: skip
    return None


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


class BodyLimits:
    """ASGI middleware bounding every HTTP request body by size and by time (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.exact, self.prefixes, self.default = route_limits(settings)
        self.timeout_s = settings.body_timeout_s

    def limit_for(self, path: str) -> BodyLimit:
        found = self.exact.get(path.rstrip("/") or "/")
        if found is not None:
            return found
        for prefix, limit in self.prefixes:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        try:
            nul = nul_in_url(scope)
            if nul is not None:
                raise nul
            declared = declared_length(scope)
            if declared is not None and declared > limit.max_bytes:
                raise limit.too_large(f"the body is {declared} bytes, the limit is {limit.max_bytes}")
        except ApiProblem as refused:
            await self._refuse(scope, receive, send, limit, refused)
            return
        if declared == 0 or (declared is None and not _chunked(scope)):  # no body to bound
            await self.app(scope, receive, send)
            return
        await self.app(scope, _BoundedReceive(receive, limit, self.timeout_s), send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: BodyLimit, problem: ApiProblem) -> None:
        response = limit.answer(problem) if limit.answer else problem_response(Request(scope), problem)
        await response(scope, receive, send)


class _BoundedReceive:
    """``receive`` that counts the body's bytes and keeps the deadline, raising ``ApiProblem`` past either."""

    __slots__ = ("complete", "deadline", "limit", "receive", "received")

    def __init__(self, receive: Receive, limit: BodyLimit, timeout_s: float) -> None:
        self.receive = receive
        self.limit = limit
        self.deadline = asyncio.get_running_loop().time() + timeout_s
        self.received = 0
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:  # the body is in: later calls only wait for the disconnect
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise ApiProblem(
                "request-timeout",
                "the request body did not arrive in time",
                [Issue("/", "body-timeout", "the whole body must arrive within the body timeout")],
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.max_bytes:
                raise self.limit.too_large(f"the body is larger than the limit of {self.limit.max_bytes} bytes")
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message


__all__ = ["BodyLimit", "BodyLimits", "declared_length", "nul_in_url", "route_limits"]

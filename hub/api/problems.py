"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

The one place refusals become HTTP: a ``RejectedError`` (``hub.errors``) is answered with the status of its
``kind``; the API's own refusals (bad media type, too large, unknown id) are ``ApiProblem``. A store that cannot
be reached (``StoreUnavailableError``, or a driver error that escaped it) and a broker that is down are a 503
with ``Retry-After``, answered as handled errors: the keep-alive connection stays open, unlike a 500.

A problem carries ``type``, ``title``, ``status``, ``detail`` and ``instance`` (the request path), plus the hub's
``errors: [{path, rule, message, line}]`` and the ``message_id`` when it could be read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.base import BrokerError
from hub.errors import Issue, RejectedError, StoreUnavailableError, UnauthenticatedError

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:lienthong:problem:"

# kind (the slug used in ``type`` and as the ``rejected{reason}`` metric label) → (status, title)
KINDS: dict[str, tuple[int, str]] = {
    "malformed": (400, "Malformed request"),
    "unauthenticated": (401, "Missing or unknown API key"),
    "forbidden": (403, "Not allowed"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "request-timeout": (408, "Request body too slow"),
    "conflict": (409, "Conflict"),
    "too-large": (413, "Request too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "invalid": (422, "Envelope rejected"),
    "internal": (500, "Internal error"),
    "bad-gateway": (502, "Partner system failed"),
    "unavailable": (503, "Service unavailable"),
    "gateway-timeout": (504, "Partner system did not answer in time"),
}
_SLUG_BY_STATUS = {status: slug for slug, (status, _) in KINDS.items()}

#: ``Retry-After`` (seconds) of a 503 for a store or broker that cannot be reached: about how long a restart or a
#: failover takes, and long enough that retrying clients do not pile on.
RETRY_AFTER_S = 5
#: What escapes below the store when a connection is refused, lost or timed out (the store turns most of them
#: into ``StoreUnavailableError``, not e.g. a failed pool pre-ping or an exhausted pool).
STORE_DOWN = (StoreUnavailableError, sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)

# What an endpoint that takes a posted document (an envelope, a connector spec) may be refused with.
BODY_PROBLEMS = (
    "malformed",
    "unauthenticated",
    "forbidden",
    "conflict",
    "too-large",
    "unsupported-media-type",
    "invalid",
)


class ProblemIssue(BaseModel):
    path: str = Field(description="Where the problem is (an XPath-like path into the envelope, or `/`)")
    rule: str = Field(description="The rule that was broken, stable and machine-readable")
    message: str = Field(description="A readable explanation")
    line: int | None = Field(None, description="Line in the submitted document, when known")


class Problem(BaseModel):
    """RFC 9457 problem details with the hub's list of issues."""

    type: str = Field(description="URI naming the kind of problem (`urn:lienthong:problem:<kind>`)")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path the problem is about")
    errors: list[ProblemIssue] = Field(default_factory=list)
    message_id: str | None = Field(None, description="The envelope's message id, when it could be read")


class ApiProblem(Exception):
    """Raised by endpoints to answer with a problem (refusals of the HTTP request itself)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        errors: Iterable[Issue] = (),
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.status, self.title = KINDS[kind]
        self.detail = detail
        self.errors = list(errors) or [Issue("/", kind, detail)]
        self.message_id = message_id
        self.headers = headers
        super().__init__(detail)


def from_rejection(exc: RejectedError) -> ApiProblem:
    """The problem for a refusal raised below the API: its kind's status, its detail, issues and message id."""
    headers = {"WWW-Authenticate": "ApiKey"} if isinstance(exc, UnauthenticatedError) else None
    return ApiProblem(exc.kind, exc.detail, exc.issues, message_id=exc.message_id, headers=headers)


def problem_body(
    request: Request, status: int, title: str, detail: str, errors: Iterable[Issue], message_id: str | None
) -> dict[str, Any]:
    slug = _SLUG_BY_STATUS.get(status, "about:blank")
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{slug}" if slug != "about:blank" else slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "errors": [
            {"path": i.path, "rule": i.rule, "message": i.message, **({"line": i.line} if i.line is not None else {})}
            for i in errors
        ],
    }
    if message_id is not None:
        body["message_id"] = message_id
    return body


def problem_response(request: Request, problem: ApiProblem) -> JSONResponse:
    body = problem_body(request, problem.status, problem.title, problem.detail, problem.errors, problem.message_id)
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)


def store_unavailable(exc: Exception) -> ApiProblem:
    """The 503 for a store that cannot be reached (one of ``STORE_DOWN``), with ``Retry-After``."""
    return ApiProblem(
        "unavailable",
        "the hub's store cannot be reached now; nothing was stored, send it again later",
        [Issue("/", "store-unavailable", "the store is unavailable")],
        message_id=getattr(exc, "message_id", None),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install_handlers(app: Any) -> None:
    """Every error becomes problem+json; an unexpected exception is logged and answered 500 (a bug, never input)."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RejectedError)
    async def _rejected(request: Request, exc: RejectedError) -> JSONResponse:
        return problem_response(request, from_rejection(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            Issue(
                "/" + "/".join(str(p) for p in e.get("loc", ())),
                f"request:{e.get('type', 'invalid')}",
                str(e.get("msg", "invalid")),
            )
            for e in exc.errors()
        ]
        return problem_response(request, ApiProblem("invalid", "the request parameters are invalid", issues))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _SLUG_BY_STATUS.get(exc.status_code)
        title = KINDS[slug][1] if slug else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        body = problem_body(request, exc.status_code, title, detail, [Issue("/", slug or "http", detail)], None)
        return JSONResponse(
            body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE, headers=getattr(exc, "headers", None)
        )

    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(request, store_unavailable(exc))

    for cls in STORE_DOWN:  # a handler per class: Starlette answers them as handled, not through its 500 path
        app.add_exception_handler(cls, _store_down)

    @app.exception_handler(BrokerError)
    async def _broker_down(request: Request, exc: BrokerError) -> JSONResponse:
        log.warning("broker unavailable on %s %s: %s", request.method, request.url.path, exc)
        problem = ApiProblem(
            "unavailable",
            f"the broker cannot be reached now: {exc}",
            [Issue("/", "broker-unavailable", "the broker is unavailable")],
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        return problem_response(request, problem)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = problem_body(
            request,
            500,
            "Internal error",
            "the hub failed to handle this request; it was logged",
            [Issue("/", "internal", "internal error")],
            None,
        )
        return JSONResponse(body, status_code=500, media_type=PROBLEM_MEDIA_TYPE)


def responses(*kinds: str, **examples: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the given problem kinds, each with an example body."""
    out: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        status, title = KINDS[kind]
        example = examples.get(kind.replace("-", "_")) or {
            "type": f"{TYPE_BASE}{kind}",
            "title": title,
            "status": status,
            "detail": title.lower(),
            "instance": "/api/v1/…",
            "errors": [{"path": "/", "rule": kind, "message": title.lower()}],
        }
        out[status] = {
            "description": title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}},
        }
    return out

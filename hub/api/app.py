"""The FastAPI application served by ``hub serve``.

One ``HubService`` per process (uvicorn worker), opened by the lifespan: a Runtime (store, broker), the
connector registry, one Acceptor, and a background thread that runs the outbox relay and reloads routes and
certificates from the registry. Blocking work (signature checks, store transactions) runs in the threadpool.

Resending an envelope already accepted (same sender, id and bytes) is answered like the first time — 202 with
the message's current status — and ``"duplicate": true``; nothing is stored or queued again. The same id with
other bytes is 409.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Security
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from hub import __version__
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiProblem, Problem, install_handlers, responses
from hub.api.service import ADMIN, OPERATOR, Caller, HubService, hub_of, staff_hub
from hub.config import Settings
from hub.errors import Issue

log = logging.getLogger(__name__)

XML_MEDIA_TYPES = ("application/xml", "text/xml")
API_KEY = APIKeyHeader(name="X-Api-Key", auto_error=False, description="The caller's API key")
ApiKey = Annotated[str | None, Security(API_KEY)]

VALIDATION_EXAMPLE = {
    "type": "urn:lienthong:problem:invalid",
    "title": "Envelope rejected",
    "status": 422,
    "detail": "the request parameters are invalid",
    "instance": "/api/v1/dead-letters",
    "errors": [{"path": "/query/limit", "rule": "request:less_than_equal", "message": "should be at most 5000"}],
}
MAX_ID = 2**63 - 1  # ids are 64-bit integers in the store (SQLite INTEGER, PostgreSQL BIGINT)
EXAMPLE_ID = "7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60"
EXAMPLE_DOSSIER = "000.00.00.H12-251123-0042"


# ---------------------------------------------------------------------------------------------- response models


class AcceptedOut(BaseModel):
    message_id: str
    status: str = Field(description="queued, delivering, retrying, delivered, dead (or accepted: no destinations)")
    duplicate: bool = Field(False, description="True when this id and content were accepted before")
    destinations: list[str] = Field(default_factory=list)
    status_update: str | None = Field(
        None,
        description="For a new dossier.status: `applied`, or `stale` (older than the dossier's last applied "
        "update: recorded on its timeline, not routed). An illegal transition is refused with 422 "
        "(rule `status-transition`).",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"message_id": EXAMPLE_ID, "status": "queued", "duplicate": False, "destinations": ["000.00.00.H12"]}
            ]
        }
    }


class EventOut(BaseModel):
    state: str
    destination: str | None
    attempt: int | None
    detail: str
    actor: str | None
    at: datetime


class DeliveryOut(BaseModel):
    delivery_id: int
    destination: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    published_at: datetime | None
    delivered_at: datetime | None


class TraceOut(BaseModel):
    message_id: str
    sender: str
    correlation_id: str | None
    message_type: str
    receiver: str
    dossier_code: str | None
    digest: str = Field(description="SHA-256 (hex) of the envelope as received")
    received_at: datetime
    status: str
    events: list[EventOut]
    deliveries: list[DeliveryOut]


class TimelineEntryOut(BaseModel):
    status: int
    at: datetime
    outcome: str = Field(description="applied, stale, rejected, corrected, or synced (reported by a dossier.sync)")
    reason: str
    source: str
    message_id: str | None
    recorded_at: datetime


class DossierMessageOut(BaseModel):
    message_id: str
    sender: str
    message_type: str
    received_at: datetime
    status: str
    deliveries: list[DeliveryOut]


class DossierOut(BaseModel):
    dossier_code: str
    status: int | None = Field(description="The last applied status (1–10), null before the first one")
    status_at: datetime | None
    updates: list[TimelineEntryOut]
    messages: list[DossierMessageOut]


class QueueOut(BaseModel):
    destination: str
    queued: int
    delivering: int
    retrying: int
    delivered: int
    dead: int
    pending: int
    oldest_pending_age_s: float | None
    rate_per_s: float


class DeadLetterOut(BaseModel):
    id: int
    delivery_id: int
    message_id: str
    sender: str
    destination: str
    dossier_code: str | None
    message_type: str
    reason: str
    last_error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replayed_by: str | None


class ReplayOut(BaseModel):
    dead_letter_id: int
    message_id: str
    destination: str
    replayed_by: str
    status: str = "queued"


class ConnectorOut(BaseModel):
    code: str
    name: str
    kind: str
    enabled: bool
    sends: list[str]
    receives: list[str]


class ConnectorCreatedOut(ConnectorOut):
    api_key: str | None = Field(None, description="Shown once: store it now, the hub keeps only its hash")


# ---------------------------------------------------------------------------------------------- helpers


def connector_out(connector: Any, model: type[ConnectorOut] = ConnectorOut, **extra: Any) -> Any:
    return model(
        code=connector.code,
        name=connector.name,
        kind=str(connector.kind),
        enabled=connector.enabled,
        sends=list(connector.spec.sends),
        receives=list(connector.spec.receives),
        **extra,
    )


def _deliveries(items: Any) -> list[DeliveryOut]:
    return [
        DeliveryOut(
            delivery_id=d.delivery_id,
            destination=d.destination,
            state=str(d.state.value),
            attempts=d.attempts,
            last_error=d.last_error,
            next_attempt_at=d.next_attempt_at,
            published_at=d.published_at,
            delivered_at=d.delivered_at,
        )
        for d in items
    ]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) before reading when Content-Length says too much, and while reading
    when a body without a length grows past the limit."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiProblem("malformed", "Content-Length is not a number") from None
        if declared > limit:
            raise ApiProblem(
                "too-large",
                f"the body is {declared} bytes, the limit is {limit}",
                [Issue("/", "max-message-bytes", f"limit is {limit} bytes")],
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(
                "too-large",
                f"the body is larger than the limit of {limit} bytes",
                [Issue("/", "max-message-bytes", f"limit is {limit} bytes")],
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _problem_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents invalid parameters as 422 ``application/json`` ``HTTPValidationError``; the hub answers
    them as problem+json (``install_handlers``), so document that instead."""
    fastapi_default = {"$ref": "#/components/schemas/HTTPValidationError"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            content = response.get("content", {})
            if content.get("application/json", {}).get("schema") == fastapi_default:
                del content["application/json"]
                content.setdefault(
                    PROBLEM_MEDIA_TYPE,
                    {"schema": {"$ref": "#/components/schemas/Problem"}, "example": VALIDATION_EXAMPLE},
                )
                if response.get("description") == "Validation Error":
                    response["description"] = "Invalid parameters"
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


# ---------------------------------------------------------------------------------------------- the app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API application (a uvicorn factory: ``hub.api:create_app``)."""
    if settings is None:
        from hub.config import get_settings

        settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = await run_in_threadpool(HubService, settings)
        hub.start()
        app.state.hub = hub
        try:
            yield
        finally:
            await run_in_threadpool(hub.close)

    app = FastAPI(
        title="Lienthong hub",
        version=__version__,
        description=(
            "The provincial data-sharing hub: signed envelopes in, routed deliveries out. Errors are RFC 9457 "
            "`application/problem+json` with `errors: [{path, rule, message}]`. Legacy SOAP clients use "
            "`/soap/exchange` (WSDL at `/soap/exchange?wsdl`)."
        ),
        lifespan=lifespan,
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry hooks would only cost a lookup per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            _problem_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # ------------------------------------------------------------------ messages

    @app.post(
        "/api/v1/messages",
        tags=["messages"],
        summary="Submit a signed envelope",
        status_code=202,
        response_model=AcceptedOut,
        description=(
            "The body is a signed hub envelope (`application/xml` or `text/xml`), the sender's API key in "
            "`X-Api-Key`. 202 once the message and its deliveries are committed to the store. A resend of the same "
            "id and content is answered 202 with the current status and `duplicate: true`; the same id with other "
            "content is 409. A ministry whose connector maps `dossier.status` to the `ministry-steps` profile may "
            "send its own step message (`<BuocXuLy>`, schemas/ministry-step.xsd) as the body: it is validated and "
            "mapped to the canonical `dossierStatus`, the envelope is logged exactly as received. Every "
            "`dossier.status` goes through the dossier status machine: an illegal transition is 422 (rule "
            "`status-transition`), a stale update is 202 with `status_update: stale` and is not routed."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    media: {
                        "schema": {"type": "string"},
                        "example": '<env:envelope xmlns:env="urn:lienthong:'
                        'envelope:1">…<ds:Signature>…</ds:Signature></env:envelope>',
                    }
                    for media in XML_MEDIA_TYPES
                },
            }
        },
        responses=responses(
            "malformed",
            "unauthenticated",
            "forbidden",
            "conflict",
            "too-large",
            "unsupported-media-type",
            "invalid",
            invalid={
                "type": "urn:lienthong:problem:invalid",
                "title": "Envelope rejected",
                "status": 422,
                "detail": "digest mismatch: the envelope was changed after it was signed",
                "instance": "/api/v1/messages",
                "message_id": EXAMPLE_ID,
                "errors": [
                    {
                        "path": "/envelope/Signature",
                        "rule": "signature-digest",
                        "message": "digest mismatch: the envelope was changed after it was signed",
                    }
                ],
            },
            forbidden={
                "type": "urn:lienthong:problem:forbidden",
                "title": "Not allowed",
                "status": 403,
                "detail": "000.00.00.G01 may not send this message",
                "instance": "/api/v1/messages",
                "message_id": EXAMPLE_ID,
                "errors": [
                    {
                        "path": "/envelope/header/messageType",
                        "rule": "type-not-granted",
                        "message": "000.00.00.G01 is not granted dossier.sync",
                    }
                ],
            },
        ),
    )
    async def submit_message(request: Request, x_api_key: ApiKey = None) -> JSONResponse:
        hub = hub_of(request)
        try:
            caller = hub.authenticate(x_api_key)  # on the loop: a cached registry read (a store query when cold)
        except ApiProblem as exc:
            hub.reject_metric("unknown", exc.kind)
            raise
        label = caller.code or caller.name
        try:
            if _media_type(request) not in XML_MEDIA_TYPES:
                raise ApiProblem(
                    "unsupported-media-type",
                    f"send the envelope as {' or '.join(XML_MEDIA_TYPES)}, not "
                    f"{_media_type(request) or 'no Content-Type'}",
                    [Issue("/headers/Content-Type", "media-type", "expected application/xml")],
                )
            body = await read_body(request, hub.settings.max_message_bytes)
        except ApiProblem as exc:
            hub.reject_metric(label, exc.kind)
            raise
        accepted = await hub.submit_async(caller, body, "rest")
        out = AcceptedOut(
            message_id=accepted.message_id,
            status=accepted.status,
            duplicate=accepted.duplicate,
            destinations=list(accepted.destinations),
            status_update=accepted.status_update,
        )
        return JSONResponse(
            out.model_dump(), status_code=202, headers={"Location": f"/api/v1/messages/{accepted.message_id}"}
        )

    @app.get(
        "/api/v1/messages/{message_id}",
        tags=["messages"],
        summary="A message's trace: every state and attempt with times",
        response_model=TraceOut,
        description="Readable by the message's sender (its own messages only) and by the admin and operator keys "
        "(which may name the `sender` when two senders used the same id).",
        responses=responses("unauthenticated", "not-found"),
    )
    def message_trace(
        request: Request,
        message_id: str,
        x_api_key: ApiKey = None,
        sender: Annotated[str | None, Query(description="Sender code (admin/operator only)")] = None,
    ) -> TraceOut:
        hub = hub_of(request)
        caller = hub.authenticate(x_api_key)
        trace = hub.store.trace(message_id, sender if caller.is_staff else caller.code)
        if trace is None:
            raise ApiProblem(
                "not-found",
                f"no message {message_id} is known" + ("" if caller.is_staff else f" from {caller.code}"),
                [Issue("/message_id", "unknown-message", "unknown message id")],
                message_id=message_id,
            )
        return TraceOut(
            message_id=trace.message_id,
            sender=trace.sender,
            correlation_id=trace.correlation_id,
            message_type=trace.message_type,
            receiver=trace.receiver,
            dossier_code=trace.dossier_code,
            digest=trace.digest,
            received_at=trace.received_at,
            status=trace.status,
            events=[
                EventOut(
                    state=e.state, destination=e.destination, attempt=e.attempt, detail=e.detail, actor=e.actor, at=e.at
                )
                for e in trace.events
            ],
            deliveries=_deliveries(trace.deliveries),
        )

    # ------------------------------------------------------------------ dossiers

    @app.get(
        "/api/v1/dossiers/{code}",
        tags=["dossiers"],
        summary="A dossier's timeline across systems",
        response_model=DossierOut,
        description="Its current status, every status update recorded (applied or not) and every message logged "
        "for it. Admin and operator keys see every dossier; a connector sees the dossiers it sent or received "
        "messages about.",
        responses=responses("unauthenticated", "not-found"),
    )
    def dossier_timeline(request: Request, code: str, x_api_key: ApiKey = None) -> DossierOut:
        hub = hub_of(request)
        caller = hub.authenticate(x_api_key)
        record = hub.store.dossier(code)
        updates = hub.store.timeline(code)
        msgs = hub.store.dossier_messages(code)
        visible = caller.is_staff or any(
            m.sender == caller.code or any(d.destination == caller.code for d in m.deliveries) for m in msgs
        )
        if not visible or (record is None and not updates and not msgs):
            raise ApiProblem(
                "not-found", f"no dossier {code} is known", [Issue("/code", "unknown-dossier", "unknown dossier code")]
            )
        return DossierOut(
            dossier_code=code,
            status=None if record is None else record.status,
            status_at=None if record is None else record.status_at,
            updates=[
                TimelineEntryOut(
                    status=u.status,
                    at=u.at,
                    outcome=u.outcome,
                    reason=u.reason,
                    source=u.source,
                    message_id=u.message_id,
                    recorded_at=u.recorded_at,
                )
                for u in updates
            ],
            messages=[
                DossierMessageOut(
                    message_id=m.message_id,
                    sender=m.sender,
                    message_type=m.message_type,
                    received_at=m.received_at,
                    status=m.status,
                    deliveries=_deliveries(m.deliveries),
                )
                for m in msgs
            ],
        )

    # ------------------------------------------------------------------ connectors

    @app.get(
        "/api/v1/connectors",
        tags=["connectors"],
        summary="Registered connectors (admin or operator key)",
        response_model=list[ConnectorOut],
        responses=responses("unauthenticated", "forbidden"),
    )
    def list_connectors(request: Request, x_api_key: ApiKey = None) -> list[ConnectorOut]:
        hub = staff_hub(request, x_api_key)
        return [connector_out(c) for c in hub.registry.list()]

    @app.post(
        "/api/v1/connectors",
        tags=["connectors"],
        summary="Register a connector from its YAML or JSON spec (admin key)",
        status_code=201,
        response_model=ConnectorCreatedOut,
        description="The body is the connector file (`application/yaml`, `application/x-yaml`, `text/yaml` or "
        "`application/json`). The answer carries the connector's API key, shown this once.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        },
        responses=responses(
            "malformed", "unauthenticated", "forbidden", "conflict", "too-large", "unsupported-media-type", "invalid"
        ),
    )
    async def add_connector(request: Request, x_api_key: ApiKey = None) -> JSONResponse:
        from hub.api.connectors import add_connector_from

        hub = hub_of(request)
        caller = await run_in_threadpool(hub.authenticate, x_api_key)
        hub.require(caller, ADMIN)
        media = _media_type(request)
        if media not in ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            raise ApiProblem(
                "unsupported-media-type",
                f"send the connector spec as YAML or JSON, not {media or '?'}",
                [Issue("/headers/Content-Type", "media-type", "expected YAML or JSON")],
            )
        body = await read_body(request, 256 * 1024)
        connector, api_key = await run_in_threadpool(add_connector_from, hub, body, media, caller)
        out = connector_out(connector, ConnectorCreatedOut, api_key=api_key)
        return JSONResponse(
            out.model_dump(),
            status_code=201 if api_key else 200,
            headers={"Location": f"/api/v1/connectors/{connector.code}"},
        )

    # ------------------------------------------------------------------ operations

    @app.get(
        "/api/v1/queues",
        tags=["operations"],
        summary="Deliveries per destination connector (admin or operator key)",
        response_model=list[QueueOut],
        responses=responses("unauthenticated", "forbidden"),
    )
    def queues(request: Request, x_api_key: ApiKey = None) -> list[QueueOut]:
        hub = staff_hub(request, x_api_key)
        return [
            QueueOut(
                destination=s.destination,
                queued=s.queued,
                delivering=s.delivering,
                retrying=s.retrying,
                delivered=s.delivered,
                dead=s.dead,
                pending=s.pending,
                oldest_pending_age_s=s.oldest_pending_age_s,
                rate_per_s=s.rate_per_s,
            )
            for s in hub.store.queue_overview()
        ]

    @app.get(
        "/api/v1/dead-letters",
        tags=["operations"],
        summary="Deliveries given up on (admin or operator key)",
        response_model=list[DeadLetterOut],
        responses=responses("unauthenticated", "forbidden"),
    )
    def dead_letters(
        request: Request,
        x_api_key: ApiKey = None,
        destination: str | None = None,
        include_replayed: bool = False,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> list[DeadLetterOut]:
        hub = staff_hub(request, x_api_key)
        found = hub.store.dead_letters(destination=destination, include_replayed=include_replayed, limit=limit)
        return [DeadLetterOut(**{k: getattr(d, k) for k in DeadLetterOut.model_fields}) for d in found]

    @app.post(
        "/api/v1/dead-letters/{dead_letter_id}/replay",
        tags=["operations"],
        summary="Send a dead letter again (admin or operator key)",
        response_model=ReplayOut,
        status_code=202,
        description="Recorded with the key owner's name as the actor; a dead letter is replayed at most once (409).",
        responses=responses("unauthenticated", "forbidden", "not-found", "conflict"),
    )
    def replay(
        request: Request,
        dead_letter_id: Annotated[int, FastApiPath(ge=1, le=MAX_ID, description="The dead letter's id")],
        x_api_key: ApiKey = None,
    ) -> ReplayOut:
        from hub.runtime import replay_dead_letters
        from hub.store import UnknownDeadLetterError

        hub = hub_of(request)
        caller = hub.authenticate(x_api_key)
        hub.require(caller, ADMIN, OPERATOR)
        replayed, errors = replay_dead_letters(hub.runtime, [dead_letter_id], actor=caller.name)
        if errors:
            _, exc = errors[0]
            kind = "not-found" if isinstance(exc, UnknownDeadLetterError) else "conflict"
            raise ApiProblem(kind, str(exc), [Issue("/dead_letter_id", type(exc).__name__, str(exc))])
        _, message_id, destination = replayed[0]
        return ReplayOut(
            dead_letter_id=dead_letter_id, message_id=message_id, destination=destination, replayed_by=caller.name
        )

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "pid": str(os.getpid())}  # which worker process answered

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The store and the broker are reachable",
        responses=responses("unavailable"),
    )
    def readyz(request: Request) -> JSONResponse:
        checks = hub_of(request).ready()
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        raise ApiProblem(
            "unavailable",
            "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            [Issue(f"/{k}", "reachable", v) for k, v in checks.items() if v != "ok"],
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from hub.api.metrics import render

        return Response(render(hub_of(request).metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/types", tags=["packets"], summary="The canonical message types")
    def message_types() -> list[dict[str, str]]:
        from hub import packets

        return [{"type": name, "root": t.root} for name, t in sorted(packets.PACKET_TYPES.items())]

    from hub.api.soap import router as soap_router

    app.include_router(soap_router)
    from hub.api.partners import router as partners_router

    app.include_router(partners_router)
    from hub.api.deadlines import router as deadlines_router

    app.include_router(deadlines_router)
    from hub.console import install_console

    install_console(app, settings)  # the operator page at /
    return app


__all__ = ["Caller", "create_app"]

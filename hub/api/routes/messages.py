"""Envelopes in (``POST /api/v1/messages``) and what became of them: a message's trace and a dossier's timeline.

Resending an envelope already accepted (same sender, id and bytes) is answered like the first time — 202 with
the message's current status — and ``"duplicate": true``; nothing is stored or queued again. The same id with
other bytes is 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from hub.api.dependencies import XML_MEDIA_TYPES, ApiKey, hub_of, read_body, require_media_type, xml_request_body
from hub.api.models import EXAMPLE_ID, AcceptedOut, DossierMessageOut, DossierOut, TimelineEntryOut, TraceOut
from hub.api.problems import BODY_PROBLEMS, ApiProblem, responses
from hub.errors import Issue, UnauthenticatedError

router = APIRouter()

SUBMIT_DESCRIPTION = (
    "The body is a signed hub envelope (`application/xml` or `text/xml`), the sender's API key in "
    "`X-Api-Key`. 202 once the message and its deliveries are committed to the store. A resend of the same "
    "id and content is answered 202 with the current status and `duplicate: true`; the same id with other "
    "content is 409. A ministry whose connector maps `dossier.status` to the `ministry-steps` profile may "
    "send its own step message (`<BuocXuLy>`, schemas/ministry-step.xsd) as the body: it is validated and "
    "mapped to the canonical `dossierStatus`, the envelope is logged exactly as received. Every "
    "`dossier.status` goes through the dossier status machine: an illegal transition is 422 (rule "
    "`status-transition`), a stale update is 202 with `status_update: stale` and is not routed."
)
SUBMIT_EXAMPLES = {
    "invalid": {
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
    "forbidden": {
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
}


TRACE_EXAMPLE = {
    "message_id": EXAMPLE_ID, "sender": "000.00.00.H12", "correlation_id": EXAMPLE_ID,
    "message_type": "dossier.sync", "receiver": "000.00.00.G22", "dossier_code": "000.00.00.H12-251123-0042",
    "digest": "9f2c4e1d0b7a5c3e8f6d2a1b0c9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d", "received_at": "2025-11-23T02:15:00Z",
    "status": "delivered",
    "events": [
        {"state": "received", "destination": None, "attempt": None, "detail": "", "actor": None,
         "at": "2025-11-23T02:15:00Z"},
        {"state": "queued", "destination": "000.00.00.G22", "attempt": None, "detail": "", "actor": None,
         "at": "2025-11-23T02:15:00Z"},
        {"state": "delivered", "destination": "000.00.00.G22", "attempt": 1, "detail": "HTTP 200", "actor": None,
         "at": "2025-11-23T02:15:01Z"},
    ],
    "deliveries": [
        {"delivery_id": 3480, "destination": "000.00.00.G22", "state": "delivered", "attempts": 1,
         "last_error": None, "next_attempt_at": None, "published_at": "2025-11-23T02:15:00Z",
         "delivered_at": "2025-11-23T02:15:01Z", "sent_digest": None, "sent_type": None},
    ],
}  # fmt: skip


@router.post(
    "/api/v1/messages",
    operation_id="submit_message",
    tags=["messages"],
    summary="Submit a signed envelope",
    status_code=202,
    response_model=AcceptedOut,
    description=SUBMIT_DESCRIPTION,
    openapi_extra=xml_request_body(
        '<env:envelope xmlns:env="urn:lienthong:envelope:1">…<ds:Signature>…</ds:Signature></env:envelope>'
    ),
    responses=responses(*BODY_PROBLEMS, "unavailable", **SUBMIT_EXAMPLES),
)
async def submit_message(request: Request, x_api_key: ApiKey = None) -> JSONResponse:
    hub = hub_of(request)
    try:
        caller = hub.authenticate(x_api_key)  # on the loop: a cached registry read (a store query when cold)
    except UnauthenticatedError as exc:
        hub.reject_metric("unknown", exc.kind)
        raise
    try:
        require_media_type(
            request, XML_MEDIA_TYPES, f"the envelope as {' or '.join(XML_MEDIA_TYPES)}", "application/xml"
        )
        body = await read_body(request, hub.settings.max_message_bytes)
    except ApiProblem as exc:
        hub.reject_metric(caller.code or caller.name, exc.kind)
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


@router.get(
    "/api/v1/messages/{message_id}",
    operation_id="get_message_trace",
    tags=["messages"],
    summary="A message's trace: every state and attempt with times",
    response_model=TraceOut,
    description="Readable by the message's sender (its own messages only) and by the admin and operator keys "
    "(which may name the `sender` when two senders used the same id).",
    responses={
        200: {"content": {"application/json": {"example": TRACE_EXAMPLE}}},
        **responses("unauthenticated", "not-found", "unavailable"),
    },
)
def message_trace(
    request: Request,
    message_id: str,
    x_api_key: ApiKey = None,
    sender: Annotated[str | None, Query(description="Sender code (admin/operator only)")] = None,
) -> TraceOut:  # type: ignore[valid-type]
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
    return TraceOut.model_validate(trace)


@router.get(
    "/api/v1/dossiers/{code}",
    operation_id="get_dossier_timeline",
    tags=["dossiers"],
    summary="A dossier's timeline across systems",
    response_model=DossierOut,
    description="Its current status, every status update recorded (applied or not) and the messages logged for "
    "it. Admin and operator keys see every dossier and every message. A connector sees only the dossiers it is "
    "party to (it sent or was routed a message about the dossier, or the registry names it the handling system), "
    "and of those the status history and its own messages only; any other dossier is 404, as an unknown one is.",
    responses=responses("unauthenticated", "not-found", "unavailable"),
)
def dossier_timeline(request: Request, code: str, x_api_key: ApiKey = None) -> DossierOut:
    hub = hub_of(request)
    caller = hub.authenticate(x_api_key)
    unknown = ApiProblem(
        "not-found", f"no dossier {code} is known", [Issue("/code", "unknown-dossier", "unknown dossier code")]
    )
    if not caller.is_staff and (caller.connector is None or not hub.registry.is_party(caller.connector, code)):
        raise unknown  # the same answer as for an unknown dossier: codes cannot be probed
    record = hub.store.dossier(code)
    updates = hub.store.timeline(code)
    msgs = hub.store.dossier_messages(code, sender=None if caller.is_staff else caller.code)
    if record is None and not updates and not msgs:
        raise unknown
    return DossierOut(
        dossier_code=code,
        status=None if record is None else record.status,
        status_at=None if record is None else record.status_at,
        updates=[TimelineEntryOut.model_validate(u) for u in updates],
        messages=[DossierMessageOut.model_validate(m) for m in msgs],
    )

"""Envelopes in (``POST /api/v1/messages``) and what became of them: the message log (``GET /api/v1/messages``,
filtered, paged), a message's trace, its payload (an audited download) and a dossier's timeline.

Resending an envelope already accepted (same sender, id and bytes) is answered like the first time — 202 with
the message's current status — and ``"duplicate": true``; nothing is stored or queued again. The same id with
other bytes is 409.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from hub.api.dependencies import (
    XML_MEDIA_TYPES,
    ApiKey,
    hub_of,
    read_body,
    require_media_type,
    staff_hub,
    xml_request_body,
)
from hub.api.models import (
    EXAMPLE_ID,
    AcceptedOut,
    DossierMessageOut,
    DossierOut,
    LoggedMessageOut,
    MessageLogOut,
    TimelineEntryOut,
    TraceOut,
    WarningOut,
)
from hub.api.problems import BODY_PROBLEMS, ApiProblem, responses
from hub.console.message_log import payload_response
from hub.errors import InvalidCursorError, Issue, UnauthenticatedError
from hub.services import ADMIN, OPERATOR, require
from hub.store.message_log import MESSAGE_STATES, MessageFilter
from hub.store.pages import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter()

SUBMIT_DESCRIPTION = (
    "The body is a signed hub envelope (`application/xml` or `text/xml`), the sender's API key in "
    "`X-Api-Key`. 202 once the message and its deliveries are committed to the store. A resend of the same "
    "id and content is answered 202 with the current status and `duplicate: true`; the same id with other "
    "content is 409. A ministry whose connector maps `dossier.status` to the `ministry-steps` profile may "
    "send its own step message (`<BuocXuLy>`, schemas/ministry-step.xsd) as the body: it is validated and "
    "mapped to the canonical `dossierStatus`, the envelope is logged exactly as received. Every "
    "`dossier.status`, and the status every `dossier.sync` reports, goes through the one dossier status machine: an "
    "illegal transition is 422 (rule `status-transition`; after 10 only an operator's correction, "
    "`POST /api/v1/dossiers/{code}/corrections`), a stale update is 202 with `status_update: stale` and is not "
    "routed; a sync restating the dossier's status amends its record. A status 3 or 8 needs its reason (422 "
    "`status-reason-required`), a sync at 3 its `rejectedAt` (`rejected-at-required`). A dossier.sync "
    "naming a procedure the procedure catalogue does not list is accepted with a `procedure-unknown` warning."
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
        warnings=[WarningOut(path=w.path, rule=w.rule, message=w.message) for w in accepted.warnings],
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
        due_at=hub.store.due_date(code)[0],
        updates=[TimelineEntryOut.model_validate(u) for u in updates],
        messages=[DossierMessageOut.model_validate(m) for m in msgs],
    )


# ------------------------------------------------------------------------------------------------ the message log

LOG_EXAMPLE = {
    "items": [
        {"message_id": EXAMPLE_ID, "sender": "000.00.00.G22", "receiver": "000.00.00.H12",
         "message_type": "dossier.status", "dossier_code": "000.00.00.H12-251123-0042", "correlation_id": None,
         "received_at": "2025-11-23T02:15:00Z", "status": "delivered", "destinations": ["000.00.00.H12"]},
    ],
    "total": 1234, "total_exact": True, "next_cursor": "azEuMzQ4MQ",
}  # fmt: skip
LOG_BAD_TIME = {
    "type": "urn:lienthong:problem:malformed", "title": "Malformed request", "status": 400,
    "detail": "since: '23/11/2025' is not an ISO 8601 time", "instance": "/api/v1/messages",
    "errors": [{"path": "/query/since", "rule": "datetime",
                "message": "an ISO 8601 date or time, e.g. 2025-11-23T09:15:00+07:00"}],
}  # fmt: skip


_UNENCODED_PLUS = re.compile(r"(T[\d:.]+) (\d\d:?\d\d)$")


def _time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 date or time from the query (a time without an offset is UTC); 400 naming ``field``. An offset's
    ``+`` sent unencoded arrives as a space, and is read as the ``+`` it was."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(_UNENCODED_PLUS.sub(r"\1+\2", value.strip()))
        parsed = (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a time at the very edge of the calendar (0001-01-01+07:00)
        raise ApiProblem(
            "malformed",
            f"{field}: {value[:40]!r} is not an ISO 8601 time",
            [Issue(f"/query/{field}", "datetime", "an ISO 8601 date or time, e.g. 2025-11-23T09:15:00+07:00")],
        ) from None
    return parsed


def message_filter(
    since: str | None, until: str | None, sender: str | None, receiver: str | None, message_type: str | None,
    state: str | None, dossier: str | None,
) -> MessageFilter:  # fmt: skip
    """The log's filter from the query parameters, or the 400 naming the first bad one."""
    start, end = _time(since, "since"), _time(until, "until")
    if start is not None and end is not None and end <= start:
        raise ApiProblem("malformed", "until must be after since", [Issue("/query/until", "time-range", "after since")])
    if state and state not in MESSAGE_STATES:
        raise ApiProblem(
            "malformed",
            f"state: {state[:40]!r} is not a message state",
            [Issue("/query/state", "message-state", f"one of {', '.join(MESSAGE_STATES)}")],
        )
    return MessageFilter(since=start, until=end, sender=sender or None, receiver=receiver or None,
                         message_type=message_type or None, state=state or None, dossier=dossier or None)  # fmt: skip


@router.get(
    "/api/v1/messages",
    operation_id="list_messages",
    tags=["messages"],
    summary="The message log, filtered and paged (admin or operator key)",
    response_model=MessageLogOut,
    description="Logged messages, newest first, matching every filter given: a time range on when the hub "
    "received them (`since` included, `until` excluded; ISO 8601, UTC without an offset), the `sender`, a "
    "`receiver` (a destination the message was routed to), the message `type`, its overall `state` (accepted, "
    "queued, delivering, retrying, delivered, dead) and the `dossier` code. Pages of `limit` rows (at most "
    f"{MAX_LIMIT}); pass `next_cursor` as `cursor` for the next one: a page stays right while messages arrive. "
    "`total` counts the matching messages (up to 100,000: past that `total_exact` is false). A bad time, state or "
    "cursor is 400 naming the query field.",
    responses={
        200: {"content": {"application/json": {"example": LOG_EXAMPLE}}},
        **responses("malformed", "unauthenticated", "forbidden", "unavailable", malformed=LOG_BAD_TIME),
    },
)
def list_messages(
    request: Request,
    x_api_key: ApiKey = None,
    since: Annotated[str | None, Query(description="Received at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="Received before (ISO 8601)")] = None,
    sender: Annotated[str | None, Query(description="Sender code")] = None,
    receiver: Annotated[str | None, Query(description="A destination the message was routed to")] = None,
    type: Annotated[str | None, Query(description="Message type, e.g. dossier.sync")] = None,
    state: Annotated[str | None, Query(description=f"One of {', '.join(MESSAGE_STATES)}")] = None,
    dossier: Annotated[str | None, Query(description="Dossier code")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="The next_cursor of the previous page")] = None,
) -> MessageLogOut:
    hub = staff_hub(request, x_api_key)
    flt = message_filter(since, until, sender, receiver, type, state, dossier)
    try:
        found = hub.store.message_log(flt, cursor=cursor, limit=limit)
    except InvalidCursorError as exc:
        issues = [Issue("/query/cursor", i.rule, i.message) for i in exc.issues]
        raise ApiProblem("malformed", exc.detail, issues) from None
    return MessageLogOut(
        items=[LoggedMessageOut.model_validate(m) for m in found.items],
        total=found.total,
        total_exact=found.total_exact,
        next_cursor=found.next_cursor,
    )


RAW_RULE = "raw-payload-admin-only"


@router.get(
    "/api/v1/messages/{message_id}/payload",
    operation_id="download_message_payload",
    tags=["messages"],
    summary="Download a message's payload: masked by default, raw for the admin key (audited)",
    description="Masked (the default): the envelope's payload, pretty-printed, without its signature, with "
    "personal names, ids, phone numbers and e-mail addresses masked. `raw=true`: the envelope exactly as "
    f"received, for the admin key only (an operator key is refused 403, rule `{RAW_RULE}`). Every download, "
    "and every refused raw one, is written to the audit log (`payload.download`, with the caller's name).",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"example": "<dossierStatus>…<fullName>N***** V** A*</fullName>…"}}},
        **responses("unauthenticated", "forbidden", "not-found", "unavailable"),
    },
)
def download_payload(
    request: Request,
    message_id: str,
    x_api_key: ApiKey = None,
    raw: Annotated[bool, Query(description="The envelope as received (admin key only)")] = False,
    sender: Annotated[str | None, Query(description="Sender code, when two senders used the same id")] = None,
) -> Response:
    hub = hub_of(request)
    caller = hub.authenticate(x_api_key)
    require(caller, ADMIN, OPERATOR)
    audit = {"actor": caller.name, "role": caller.role, "action": "payload.download", "subject": message_id,
             "client": request.client.host if request.client else None}  # fmt: skip
    if raw and caller.role != ADMIN:
        hub.store.audit(**audit, outcome="refused", detail={"raw": True, "rule": RAW_RULE})
        raise ApiProblem(
            "forbidden",
            "the raw payload is for the admin key only; operators download it masked",
            [Issue("/query/raw", RAW_RULE, "raw=true needs the admin key")],
            message_id=message_id,
        )
    stored = hub.store.message_envelope(message_id, sender)
    if stored is None:
        raise ApiProblem(
            "not-found",
            f"no message {message_id} is known",
            [Issue("/message_id", "unknown-message", "unknown message id")],
            message_id=message_id,
        )
    hub.store.audit(**audit, detail={"raw": raw, "sender": stored.sender})
    return payload_response(stored.envelope, message_id, raw=raw)

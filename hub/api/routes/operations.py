"""Operator endpoints over the delivery side: queues per destination, dead letters, and replaying one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as FastApiPath

from hub.api.dependencies import ApiKey, ListLimit, hub_of, staff_hub
from hub.api.models import DeadLetterOut, QueueOut, ReplayOut
from hub.api.problems import ApiProblem, responses
from hub.errors import InvalidCursorError, Issue, UnknownDeadLetterError
from hub.services import ADMIN, OPERATOR, require
from hub.store.pages import decode_cursor, encode_cursor

router = APIRouter()

MAX_ID = 2**63 - 1  # ids are 64-bit integers in the store (SQLite INTEGER, PostgreSQL BIGINT)

# Answer examples for the OpenAPI document.
QUEUES_EXAMPLE = [
    {"destination": "000.00.00.H12", "queued": 2, "delivering": 1, "retrying": 1, "delivered": 1840, "dead": 1,
     "pending": 4, "oldest_pending_age_s": 37.5, "rate_per_s": 0.8},
]  # fmt: skip
DEAD_LETTERS_EXAMPLE = [
    {"id": 12, "delivery_id": 3481, "message_id": "7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60", "sender": "000.00.00.G22",
     "destination": "000.00.00.H12", "dossier_code": "000.00.00.H12-251123-0042", "message_type": "dossier.status",
     "reason": "rejected", "last_error": "HTTP 400 from the partner: invalid dossier status",
     "attempts": 1, "created_at": "2025-11-23T02:16:04Z", "replayed_at": None, "replayed_by": None,
     "closed_at": None, "closed_by": None, "close_reason": None},
]  # fmt: skip
REPLAY_EXAMPLE = {"dead_letter_id": 12, "message_id": "7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60",
                  "destination": "000.00.00.H12", "replayed_by": "nguyen.van.a", "status": "queued"}  # fmt: skip


@router.get(
    "/api/v1/queues",
    operation_id="list_queues",
    tags=["operations"],
    summary="Deliveries per destination connector (admin or operator key)",
    response_model=list[QueueOut],  # type: ignore[valid-type]
    responses={
        200: {"content": {"application/json": {"example": QUEUES_EXAMPLE}}},
        **responses("unauthenticated", "forbidden", "unavailable"),
    },
)
def queues(request: Request, x_api_key: ApiKey = None) -> list[QueueOut]:  # type: ignore[valid-type]
    hub = staff_hub(request, x_api_key)
    return [QueueOut.model_validate(s) for s in hub.store.queue_overview()]


PAGE_HEADERS = {
    "X-Total-Count": {"description": "How many dead letters match the filters in all", "schema": {"type": "integer"}},
    "Link": {
        "description": 'The next page, when there is one: `<…?cursor=…>; rel="next"` (RFC 8288)',
        "schema": {"type": "string"},
    },
}


@router.get(
    "/api/v1/dead-letters",
    operation_id="list_dead_letters",
    tags=["operations"],
    summary="Deliveries given up on (admin or operator key)",
    description="Oldest first, `limit` a page. The answer stays a JSON array (as it always was); the total is the "
    '`X-Total-Count` header and the next page the `Link` header\'s `rel="next"` URL, which carries a `cursor` '
    "(keyset: a page stays right while dead letters arrive). A cursor this hub did not hand out is 400.",
    response_model=list[DeadLetterOut],  # type: ignore[valid-type]
    responses={
        200: {"content": {"application/json": {"example": DEAD_LETTERS_EXAMPLE}}, "headers": PAGE_HEADERS},
        **responses("malformed", "unauthenticated", "forbidden", "unavailable"),
    },
)
def dead_letters(
    request: Request,
    response: Response,
    x_api_key: ApiKey = None,
    destination: str | None = None,
    include_replayed: bool = False,
    limit: ListLimit = 500,
    state: Annotated[
        Literal["open", "closed", "replayed", "all"] | None,
        Query(description="open (neither replayed nor closed; the default), closed, replayed or all"),
    ] = None,
    cursor: Annotated[str | None, Query(description='From the `Link` header\'s rel="next" URL')] = None,
) -> list[DeadLetterOut]:  # type: ignore[valid-type]
    hub = staff_hub(request, x_api_key)
    try:
        after = decode_cursor(cursor)
    except InvalidCursorError as exc:
        issues = [Issue("/query/cursor", i.rule, i.message) for i in exc.issues]
        raise ApiProblem("malformed", exc.detail, issues) from None
    chosen = state or ("all" if include_replayed else "open")
    found = hub.store.dead_letters(destination=destination, limit=limit + 1, state=chosen, after=after)
    page = found[:limit]
    response.headers["X-Total-Count"] = str(hub.store.dead_letter_count(destination=destination, state=chosen))
    if len(found) > limit:
        next_url = request.url.include_query_params(cursor=encode_cursor(page[-1].id))
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return [DeadLetterOut.model_validate(d) for d in page]


@router.post(
    "/api/v1/dead-letters/{dead_letter_id}/replay",
    operation_id="replay_dead_letter",
    tags=["operations"],
    summary="Send a dead letter again (admin or operator key)",
    response_model=ReplayOut,
    status_code=202,
    description="Recorded with the key owner's name as the actor; a dead letter is replayed at most once, and a "
    "closed one not at all (409).",
    responses={
        202: {"content": {"application/json": {"example": REPLAY_EXAMPLE}}},
        **responses("unauthenticated", "forbidden", "not-found", "conflict", "unavailable"),
    },
)
def replay(
    request: Request,
    dead_letter_id: Annotated[int, FastApiPath(ge=1, le=MAX_ID, description="The dead letter's id")],
    x_api_key: ApiKey = None,
) -> ReplayOut:
    from hub.runtime import replay_dead_letters

    hub = hub_of(request)
    caller = hub.authenticate(x_api_key)
    require(caller, ADMIN, OPERATOR)
    replayed, errors = replay_dead_letters(hub.runtime, [dead_letter_id], actor=caller.name)
    if errors:
        _, exc = errors[0]
        kind = "not-found" if isinstance(exc, UnknownDeadLetterError) else "conflict"
        raise ApiProblem(kind, str(exc), [Issue("/dead_letter_id", type(exc).__name__, str(exc))])
    _, message_id, destination = replayed[0]
    return ReplayOut(
        dead_letter_id=dead_letter_id, message_id=message_id, destination=destination, replayed_by=caller.name
    )

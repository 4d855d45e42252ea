"""Operator actions over the delivery side (admin or operator key; each audited with the key owner's name):
close a dead letter without resending it, retry now (skip the backoff) for a message or a destination, pause
and resume a destination. The work is ``hub.services.actions``'."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field

from hub.api.dependencies import ApiKey, hub_of
from hub.api.models import DeadLetterOut
from hub.api.problems import ApiProblem, responses
from hub.api.routes.operations import MAX_ID
from hub.errors import (
    AlreadyReplayedError,
    DeadLetterClosedError,
    DestinationNotPausedError,
    DestinationPausedError,
    Issue,
    NotRetryingError,
    UnknownDeadLetterError,
    UnknownDestinationError,
)
from hub.services import actions
from hub.services.intake import HubService

router = APIRouter()

REASON_EXAMPLE = {"reason": "sent to the portal by hand on 23/11; ticket HD-1042"}
CLOSED_EXAMPLE = {
    "id": 12, "delivery_id": 3481, "message_id": "7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60", "sender": "000.00.00.G22",
    "destination": "000.00.00.H12", "dossier_code": "000.00.00.H12-251123-0042", "message_type": "dossier.status",
    "reason": "rejected", "last_error": "HTTP 400 from the partner: invalid dossier status", "attempts": 1,
    "created_at": "2025-11-23T02:16:04Z", "replayed_at": None, "replayed_by": None,
    "closed_at": "2025-11-23T03:02:11Z", "closed_by": "nguyen.van.a",
    "close_reason": "sent to the portal by hand on 23/11; ticket HD-1042",
}  # fmt: skip
RETRY_EXAMPLE = {
    "retried": 1,
    "deliveries": [{"delivery_id": 3481, "message_id": CLOSED_EXAMPLE["message_id"], "destination": "000.00.00.H12"}],
    "retried_by": "nguyen.van.a",
}
PAUSE_EXAMPLE = {"destination": "000.00.00.H12", "paused": True, "paused_at": "2025-11-23T03:05:00Z",
                 "paused_by": "nguyen.van.a", "reason": "portal maintenance until 06:00"}  # fmt: skip


NO_NUL = r"^[^\x00]*$"  # PostgreSQL text holds no NUL: refused as 422 naming the field, never a 500


class ReasonIn(BaseModel):
    reason: str = Field(
        max_length=2000, pattern=NO_NUL, description="Why (required, not blank); kept with the action and audited"
    )


class RetryNowIn(BaseModel):
    message_id: str | None = Field(
        None, max_length=200, pattern=NO_NUL, description="Every waiting delivery of this message"
    )
    sender: str | None = Field(
        None,
        max_length=64,
        pattern=NO_NUL,
        description="The message's sender (ids are unique per sender); every sender's if left out",
    )
    destination: str | None = Field(
        None, max_length=64, pattern=NO_NUL, description="Every waiting delivery to this destination"
    )


class RetriedDelivery(BaseModel):
    delivery_id: int
    message_id: str
    destination: str


class RetryNowOut(BaseModel):
    retried: int = Field(description="How many deliveries were made due now (published at once)")
    deliveries: list[RetriedDelivery]
    retried_by: str


class PauseOut(BaseModel):
    destination: str
    paused: bool = Field(description="Whether the destination is paused after this call")
    paused_at: datetime
    paused_by: str
    reason: str


def _actor(request: Request, x_api_key: str | None) -> tuple[HubService, actions.Actor]:
    hub = hub_of(request)
    client = request.client.host if request.client else None
    return hub, actions.Actor.of(hub.authenticate(x_api_key), client)


def _reason(body: ReasonIn) -> str:
    if not body.reason.strip():
        raise ApiProblem("malformed", "a reason is required", [Issue("/reason", "reason-required", "not blank")])
    return body.reason


def _refused(kind: str, exc: Exception, path: str) -> ApiProblem:
    return ApiProblem(kind, str(exc), [Issue(path, type(exc).__name__, str(exc))])


@router.post(
    "/api/v1/dead-letters/{dead_letter_id}/close",
    operation_id="close_dead_letter",
    tags=["operations"],
    summary="Close a dead letter without resending it (admin or operator key)",
    response_model=DeadLetterOut,
    description="Recorded with who, when and the reason (required); a closed dead letter is not replayed or closed "
    "again, and a replayed one is not closed (409).",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": REASON_EXAMPLE}}}},
    responses={
        200: {"content": {"application/json": {"example": CLOSED_EXAMPLE}}},
        **responses("malformed", "unauthenticated", "forbidden", "not-found", "conflict", "invalid", "unavailable"),
    },
)
def close_dead_letter(
    request: Request,
    body: ReasonIn,
    dead_letter_id: Annotated[int, FastApiPath(ge=1, le=MAX_ID, description="The dead letter's id")],
    x_api_key: ApiKey = None,
) -> DeadLetterOut:  # type: ignore[valid-type]
    hub, actor = _actor(request, x_api_key)
    reason = _reason(body)
    try:
        closed = actions.close_dead_letter(hub.runtime, dead_letter_id, reason=reason, actor=actor)
    except UnknownDeadLetterError as exc:
        raise _refused("not-found", exc, "/dead_letter_id") from None
    except (DeadLetterClosedError, AlreadyReplayedError) as exc:
        raise _refused("conflict", exc, "/dead_letter_id") from None
    return DeadLetterOut.model_validate(closed)


@router.post(
    "/api/v1/deliveries/retry-now",
    operation_id="retry_now",
    tags=["operations"],
    summary="Skip the backoff of waiting retries (admin or operator key)",
    response_model=RetryNowOut,
    description="Name a message (every delivery of it waiting for a retry) or a destination (every waiting "
    "delivery to it): they are published at once, and the copies still waiting out their backoff are "
    "acknowledged without a second partner call. A message with nothing waiting is a 409; a destination "
    "with nothing waiting answers `retried: 0`.",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"example": {"message_id": CLOSED_EXAMPLE["message_id"]}}}}
    },
    responses={
        200: {"content": {"application/json": {"example": RETRY_EXAMPLE}}},
        **responses("malformed", "unauthenticated", "forbidden", "not-found", "conflict", "invalid", "unavailable"),
    },
)
def retry_now(request: Request, body: RetryNowIn, x_api_key: ApiKey = None) -> RetryNowOut:
    hub, actor = _actor(request, x_api_key)
    if (body.message_id is None) == (body.destination is None):
        raise ApiProblem("malformed", "name either message_id or destination",
                         [Issue("/", "one-of", "exactly one of message_id, destination")])  # fmt: skip
    try:
        due = actions.retry_now(hub.runtime, actor=actor, message_id=body.message_id, sender=body.sender,
                                destination=body.destination)  # fmt: skip
    except UnknownDestinationError as exc:
        raise _refused("not-found", exc, "/destination") from None
    except NotRetryingError as exc:
        raise _refused("conflict", exc, "/message_id") from None
    return RetryNowOut(
        retried=len(due),
        deliveries=[RetriedDelivery(delivery_id=p.delivery_id, message_id=p.message_id, destination=p.destination)
                    for p in due],
        retried_by=actor.name,
    )  # fmt: skip


@router.post(
    "/api/v1/destinations/{code}/pause",
    operation_id="pause_destination",
    tags=["operations"],
    summary="Stop calling a destination; its queued work waits (admin or operator key)",
    response_model=PauseOut,
    description="Workers stop consuming the destination's queue within seconds; nothing is lost and no attempt "
    "is counted. Pausing a paused destination is a 409.",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": {"reason": PAUSE_EXAMPLE["reason"]}}}}},
    responses={
        200: {"content": {"application/json": {"example": PAUSE_EXAMPLE}}},
        **responses("malformed", "unauthenticated", "forbidden", "not-found", "conflict", "invalid", "unavailable"),
    },
)
def pause(
    request: Request,
    body: ReasonIn,
    code: Annotated[str, FastApiPath(max_length=64, description="The destination connector's code")],
    x_api_key: ApiKey = None,
) -> PauseOut:
    hub, actor = _actor(request, x_api_key)
    reason = _reason(body)
    try:
        held = actions.pause(hub.runtime, code, reason=reason, actor=actor)
    except UnknownDestinationError as exc:
        raise _refused("not-found", exc, "/code") from None
    except DestinationPausedError as exc:
        raise _refused("conflict", exc, "/code") from None
    return PauseOut(destination=held.destination, paused=True, paused_at=held.paused_at, paused_by=held.paused_by,
                    reason=held.reason)  # fmt: skip


@router.post(
    "/api/v1/destinations/{code}/resume",
    operation_id="resume_destination",
    tags=["operations"],
    summary="Call a paused destination again (admin or operator key)",
    response_model=PauseOut,
    description="Its waiting work flows again; the answer describes the pause that ended. A destination that is "
    "not paused is a 409.",
    responses={
        200: {"content": {"application/json": {"example": {**PAUSE_EXAMPLE, "paused": False}}}},
        **responses("unauthenticated", "forbidden", "conflict", "invalid", "unavailable"),
    },
)
def resume(
    request: Request,
    code: Annotated[str, FastApiPath(max_length=64, description="The destination connector's code")],
    x_api_key: ApiKey = None,
) -> PauseOut:
    hub, actor = _actor(request, x_api_key)
    try:
        ended = actions.resume(hub.runtime, code, actor=actor)
    except DestinationNotPausedError as exc:
        raise _refused("conflict", exc, "/code") from None
    return PauseOut(destination=ended.destination, paused=False, paused_at=ended.paused_at, paused_by=ended.paused_by,
                    reason=ended.reason)  # fmt: skip

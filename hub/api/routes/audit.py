"""``GET /api/v1/audit``: the audit log (``hub.store.audit``) for the admin key, with the audit view's filters
(time range, actor, action group or name, subject, outcome), newest first, a cursor page at a time with the total.

Admin only, like the console's audit view (``hub.console.roles`` says why).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from hub.api.dependencies import ApiKey, hub_of
from hub.api.problems import ApiProblem, responses
from hub.errors import InvalidCursorError, Issue
from hub.services import ADMIN, require
from hub.store.audit import GROUPS, AuditFilter
from hub.store.pages import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter()
TEXT = r"^[^\x00]*$"  # what the store can compare (PostgreSQL text holds no NUL)

Group = Literal["signin", "registry", "dead_letter", "delivery", "destination", "payload", "account", "dossier"]
assert set(get_args(Group)) == set(GROUPS)  # hub.store.audit.GROUPS, spelled out for the OpenAPI document


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="The account, connector code or `system` that acted (or the name tried)")
    role: str | None = Field(description="The actor's role when it acted (viewer, operator, admin), if known")
    action: str = Field(description="Dotted: `signin.refused`, `registry.update`, `dead_letter.replay`…")
    subject: str | None = Field(description="What it was done to: an account, a connector code, a dead letter…")
    outcome: str = Field(description="`ok` or `refused`")
    client: str | None = Field(description="The client address, when it came over HTTP")
    detail: dict[str, Any] | None = Field(description="Context; never a password or a secret")


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    total: int = Field(description="Entries matching the filters, on every page")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "items": [
                        {"id": 812, "at": "2026-12-02T03:15:09Z", "actor": "nguyen.van.a", "role": None,
                         "action": "signin.refused", "subject": None, "outcome": "refused", "client": "10.1.2.3",
                         "detail": {"reason": "wrong-password", "recent_failures": 2}},
                        {"id": 811, "at": "2026-12-02T03:11:40Z", "actor": "quan.tri", "role": "admin",
                         "action": "account.add", "subject": "tran.thi.b", "outcome": "ok", "client": "10.1.2.9",
                         "detail": {"role": "viewer"}},
                    ],
                    "total": 2,
                    "next_cursor": None,
                }
            ]
        }
    }  # fmt: skip


def _utc(at: datetime | None, field: str) -> datetime | None:
    """A time as the store compares it: an offset-less one is taken as UTC; 400 naming ``field`` for one at the very
    edge of the calendar (0001-01-01T00:00+07:00 has no UTC)."""
    if at is None:
        return None
    try:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:
        raise ApiProblem("malformed", f"{field}: out of range",
                         [Issue(f"/query/{field}", "datetime", "a time between years 1 and 9999 in UTC")]) from None


@router.get(
    "/api/v1/audit",
    operation_id="list_audit_entries",
    tags=["operations"],
    summary="The audit log: sign-ins, registry changes, replays, corrections, payload views… (admin key)",
    description="Newest first. Filters combine (AND); `group` and `action` match every action of a group "
    "(`group=signin` also matches `signout`). Page with `cursor` = the previous page's `next_cursor` (a cursor "
    "this hub did not hand out is refused, 400 rule `cursor`).",
    response_model=AuditPageOut,
    responses={**responses("malformed", "unauthenticated", "forbidden", "invalid", "unavailable")},
)
def list_audit(
    request: Request,
    x_api_key: ApiKey = None,
    since: Annotated[datetime | None, Query(description="From this time on (ISO 8601; no offset = UTC)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (ISO 8601; no offset = UTC)")] = None,
    actor: Annotated[str | None, Query(max_length=128, pattern=TEXT, description="Exactly this actor")] = None,
    group: Annotated[Group | None, Query(description="One action group")] = None,
    action: Annotated[
        str | None, Query(max_length=48, pattern=TEXT, description="An action name, or its group prefix (`registry`)")
    ] = None,
    subject: Annotated[str | None, Query(max_length=200, pattern=TEXT, description="Exactly this subject")] = None,
    outcome: Annotated[Literal["ok", "refused"] | None, Query(description="Only this outcome")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Entries per page")] = DEFAULT_LIMIT,
) -> AuditPageOut:
    hub = hub_of(request)
    require(hub.authenticate(x_api_key), ADMIN)
    actions: tuple[str, ...] | None = GROUPS[group] if group else None
    if action:  # both given: the action must be one of the group's
        if actions is not None and action.split(".")[0] not in actions:
            raise ApiProblem(
                "invalid",
                f"action {action!r} is not in group {group!r}",
                [Issue("/action", "audit-filter", f"an action of the group {group}, or no group")],
            )
        actions = (action,)
    flt = AuditFilter(since=_utc(since, "since"), until=_utc(until, "until"), actor=actor, action=actions,
                      subject=subject, outcome=outcome)  # fmt: skip
    try:
        page = hub.store.audit_entries(flt, cursor=cursor, limit=limit)
    except InvalidCursorError as exc:  # 400 naming the query field, as every paged list answers
        issues = [Issue("/query/cursor", i.rule, i.message) for i in exc.issues]
        raise ApiProblem("malformed", exc.detail, issues) from None
    return AuditPageOut(
        items=[AuditEntryOut.model_validate(e, from_attributes=True) for e in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
    )

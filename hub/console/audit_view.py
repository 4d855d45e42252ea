"""The admin's audit view: ``/console/audit``, the audit log (``hub.store.audit``) newest first, filtered by time
range, actor, action group and outcome, a page at a time (keyset cursor, ``hub.store.pages``) with the total.

Times are entered and shown in the calendar's zone (UTC+7). Admin only (``hub.console.roles`` says why); reading
it is not itself recorded, as it holds no message payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from hub.console import roles
from hub.console.i18n import Translator
from hub.console.pages import check_session, hub_of, render, settings_of
from hub.errors import InvalidCursorError
from hub.store.audit import GROUPS, OUTCOMES, AuditFilter

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])
PAGE = "/console/audit"
PAGE_SIZE = 50
FIELDS = ("since", "until", "actor", "group", "outcome")


def parse_local(text: str, zone: str) -> datetime | None:
    """A ``datetime-local`` field (``2026-12-02T10:15``, the calendar's zone) as UTC; ``None`` when empty or not a
    time (the filter is then left out, and the form shows it empty)."""
    if not text.strip():
        return None
    try:
        at = datetime.fromisoformat(text.strip())
        if at.tzinfo is None:
            at = at.replace(tzinfo=ZoneInfo(zone))
        return at.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a time at the very edge of the calendar
        return None


def audit_filter(values: dict[str, str], zone: str) -> AuditFilter:
    """The store's filter for the form's values (unknown group or outcome: left out)."""
    group = values.get("group", "")
    outcome = values.get("outcome", "")
    return AuditFilter(
        since=parse_local(values.get("since", ""), zone),
        until=parse_local(values.get("until", ""), zone),
        actor=values.get("actor", "").strip()[:128] or None,
        action=GROUPS.get(group),
        outcome=outcome if outcome in OUTCOMES else None,
    )


@router.get(PAGE, response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    roles.require_role(request, roles.ADMIN)
    values = {name: request.query_params.get(name, "")[:64] for name in FIELDS}
    flt = audit_filter(values, settings_of(request).calendar_timezone)
    cursor = request.query_params.get("cursor") or None
    try:
        page = hub_of(request).store.audit_entries(flt, cursor=cursor, limit=PAGE_SIZE)
        bad_cursor = False
    except InvalidCursorError:
        page = hub_of(request).store.audit_entries(flt, limit=PAGE_SIZE)
        bad_cursor = True
    kept = {k: v for k, v in values.items() if v}
    next_url = f"{PAGE}?{urlencode({**kept, 'cursor': page.next_cursor})}" if page.next_cursor else None
    first_url = f"{PAGE}?{urlencode(kept)}" if cursor else None
    return render(request, "audit.html", page=page, values=values, groups=list(GROUPS), outcomes=OUTCOMES,
                   next_url=next_url, first_url=first_url, bad_cursor=bad_cursor, details=_details)  # fmt: skip


def _details(detail: dict[str, Any] | None, t: Translator) -> str:
    """``key: value`` pairs of an entry's detail, in one line, in the page's language where the label is known
    (``audit_k_<key>``, ``audit_v_<value>``; another part's keys are shown as recorded)."""
    if not detail:
        return ""

    def said(prefix: str, value: object) -> str:
        text = t(f"{prefix}{value}")
        return str(value) if text == f"{prefix}{value}" else text

    def shown(value: object) -> str:
        return ", ".join(said("audit_v_", v) for v in value) if isinstance(value, list) else said("audit_v_", value)

    return " · ".join(f"{said('audit_k_', k)}: {shown(v)}" for k, v in detail.items())

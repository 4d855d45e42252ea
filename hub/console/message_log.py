"""The operator page's message log: ``/console/messages`` (filters, keyset pages, totals) and the audited payload
download ``/console/messages/{message_id}/payload``.

The filter form is a GET, so a filtered page is a link an operator can share. Times in the form are Vietnam time
(UTC+7, as the page shows them); the store filters in UTC. Pages go forward by the store's cursor; the position
of the first row (``at``) rides along so the page can say "51–100 of 1.234".

A payload download is masked (names, personal ids, phone, e-mail) for every operator; the original envelope is
for administrators only. Each download, and each refused one, is an audit row (``payload.download``, detail
``{raw}``) with the operator's name, role and address; opening a trace on the page records ``payload.view``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from hub.console.i18n import Translator
from hub.console.pages import check_session, current_user, hub_of, lang_of, render, to_login
from hub.console.views import LOCAL_TZ, mask_payload
from hub.errors import InvalidCursorError
from hub.store.message_log import MESSAGE_STATES, MessageFilter, MessageLogPage

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])

FIELDS = ("since", "until", "sender", "receiver", "type", "state", "dossier")
STAFF = ("operator", "admin")  # roles that may read payloads (masked); raw: admin only
PAGE_SIZE = 50


@dataclass
class LogView:
    """What the template shows: the filters as typed, the page, where it starts, and a refused filter."""

    values: dict[str, str]
    page: MessageLogPage | None = None
    at: int = 0  # how many rows come before this page
    error: tuple[str, str] | None = None  # (field, translation key of why)
    states: tuple[str, ...] = MESSAGE_STATES
    senders: list[str] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.at + 1 if self.page and self.page.items else 0

    @property
    def last(self) -> int:
        return self.at + len(self.page.items) if self.page else 0

    @property
    def filtered(self) -> bool:
        return any(self.values.values())

    def link(self, **changes: Any) -> str:
        """This page's URL with ``changes`` (``None`` drops a parameter), empty filters left out."""
        params = {**self.values, **changes}
        return "/console/messages?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def local_time(text: str) -> datetime | None:
    """A form time: ``2025-11-23T09:15`` (a ``datetime-local`` field, or a date) is Vietnam time; a time with an
    offset is taken as written. ``ValueError`` when it is not a time."""
    text = text.strip()
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    try:  # the store compares in UTC: a time at the very edge of the calendar cannot be one
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=LOCAL_TZ)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range") from None


def parse_filter(values: dict[str, str]) -> tuple[MessageFilter | None, tuple[str, str] | None]:
    """The store's filter from the form, or the first refused field and why (a translation key)."""
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = local_time(values[name])
        except ValueError:
            return None, (name, "bad_time")
    if times["since"] and times["until"] and times["until"] <= times["since"]:
        return None, ("until", "bad_range")
    if values["state"] and values["state"] not in MESSAGE_STATES:
        return None, ("state", "bad_state")
    flt = MessageFilter(since=times["since"], until=times["until"], sender=values["sender"] or None,
                        receiver=values["receiver"] or None, message_type=values["type"] or None,
                        state=values["state"] or None, dossier=values["dossier"] or None)  # fmt: skip
    return flt, None


@router.get("/console/messages", response_class=HTMLResponse)
def message_log(request: Request, cursor: str = "", at: int = 0) -> Response:
    if current_user(request) is None:
        return to_login(request)
    values = {name: request.query_params.get(name, "").strip()[:200] for name in FIELDS}
    view = LogView(values, at=max(at, 0) if cursor else 0)
    flt, view.error = parse_filter(values)
    store = hub_of(request).store
    if flt is not None:
        try:
            view.page = store.message_log(flt, cursor=cursor or None, limit=PAGE_SIZE)
        except InvalidCursorError:
            view.error = ("cursor", "bad_cursor")
    registry = hub_of(request).registry
    view.senders = sorted(c.code for c in registry.list()) if registry is not None else []
    status = 400 if view.error else 200
    return render(request, "message_log.html", status_code=status, view=view)


def payload_response(envelope: bytes, message_id: str, *, raw: bool) -> Response:
    """A payload download: the envelope as received (``raw``) or its payload masked, as an XML attachment."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", message_id)[:100] or "message"
    body = envelope if raw else mask_payload(envelope, limit=sys.maxsize).encode()
    filename = f"{name}.xml" if raw else f"{name}.masked.xml"
    return Response(
        body,
        media_type="application/xml",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/console/messages/{message_id}/payload")
def download_payload(request: Request, message_id: str, sender: str = "", raw: bool = False) -> Response:
    user = current_user(request)
    if user is None:
        return to_login(request)
    t = Translator(lang_of(request))
    store = hub_of(request).store
    audit = {"actor": user["name"], "role": user["role"], "action": "payload.download", "subject": message_id,
             "client": request.client.host if request.client else None}  # fmt: skip
    if user["role"] not in STAFF or (raw and user["role"] != "admin"):
        store.audit(**audit, outcome="refused", detail={"raw": raw})
        return Response(t("raw_forbidden"), status_code=403, media_type="text/plain; charset=utf-8")
    stored = store.message_envelope(message_id, sender or None)
    if stored is None:
        return Response(t("unknown_message", id=message_id), status_code=404, media_type="text/plain; charset=utf-8")
    store.audit(**audit, detail={"raw": raw, "sender": stored.sender})
    return payload_response(stored.envelope, message_id, raw=raw)

"""The operator page's actions on the delivery side: close dead letters with a reason, retry now (a destination's
waiting deliveries, or one message's), pause and resume a destination.

Each is two steps, like the replay (``hub.console.routes``): the button leads to a confirmation page (a GET for a
destination or a message; a POST from the dead-letter form, which carries the ticked ids), and only the
confirmation's POST — with the session's CSRF token — acts. Operators and administrators only. The work and its
audit row (with the operator's name, role and address) are ``hub.services.actions``'; the outcome comes back to
the page as a flash message. ``paused_destinations(request)`` is a template global: the queue panel marks paused
destinations and offers pause or resume.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import auth, roles
from hub.console.pages import check_session, first, form_ids, hub_of, read_form, render, templates
from hub.errors import LienthongError
from hub.services import actions
from hub.store.pauses import Pause

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])

DESTINATION_ACTIONS = ("pause", "resume", "retry-now")
MAX_REASON = 2000


def paused_destinations(request: Request) -> dict[str, Pause]:
    """The paused destinations, for the queue panel (a template global)."""
    return hub_of(request).store.paused_destinations()


templates.env.globals["paused_destinations"] = paused_destinations


def _staff(request: Request) -> dict:
    """The signed-in operator or administrator; anyone else is sent to sign in, or shown the 403 page naming the
    role needed (``hub.console.roles``)."""
    return roles.require_role(request, *roles.ACTORS)


def _actor(request: Request, user: dict) -> actions.Actor:
    return actions.Actor(user["name"], user.get("role"), request.client.host if request.client else None)


def _done(request: Request, anchor: str, key: str, **values: Any) -> RedirectResponse:
    request.session["flash"] = {"kind": "ok", "key": key, **values}
    return RedirectResponse(f"/#{anchor}", status_code=303)


def _error(item: object, exc: Exception) -> list[str]:
    """A flash error: what it was about, the error's own (English) text, and the label of its kind (``err_<class>``,
    ``hub.console.action_labels``) the page says instead where there is one."""
    return [str(item), str(exc), f"err_{type(exc).__name__}"]


def _failed(request: Request, anchor: str, exc: Exception) -> RedirectResponse:
    request.session["flash"] = {"kind": "error", "key": "action_failed", "error_key": "action_error",
                                "errors": [_error("", exc)]}  # fmt: skip
    return RedirectResponse(f"/#{anchor}", status_code=303)


async def _checked_form(request: Request, anchor: str) -> dict[str, list[str]] | Response:
    form = await read_form(request)
    if not auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD)):
        request.session["flash"] = {"kind": "error", "key": "bad_csrf"}
        return RedirectResponse(f"/#{anchor}", status_code=303)
    return form


# ------------------------------------------------------------------------------------------------ dead letters


@router.post("/console/dead-letters/close", response_class=HTMLResponse)
async def close_confirm(request: Request) -> Response:
    """Step 1: the chosen dead letters and a reason field."""
    _staff(request)
    form = await _checked_form(request, "dead-letters")
    if isinstance(form, Response):
        return form
    ids = form_ids(form)
    open_ones = await run_in_threadpool(hub_of(request).store.dead_letters, limit=5000)
    chosen = [d for d in open_ones if d.id in ids]
    return render(request, "action_confirm.html", action="close", items=chosen, ids=[d.id for d in chosen],
                   target="/console/dead-letters/close/confirm", reason=first(form, "reason"), error=None)  # fmt: skip


@router.post("/console/dead-letters/close/confirm")
async def close(request: Request) -> Response:
    """Step 2: close each chosen dead letter with the reason (required), then back to the page."""
    user = _staff(request)
    form = await _checked_form(request, "dead-letters")
    if isinstance(form, Response):
        return form
    ids, reason = form_ids(form), first(form, "reason").strip()[:MAX_REASON]
    if not ids:
        request.session["flash"] = {"kind": "error", "key": "nothing_selected"}
        return RedirectResponse("/#dead-letters", status_code=303)
    hub = hub_of(request)
    if not reason:  # the confirmation again, saying what is missing
        open_ones = await run_in_threadpool(hub.store.dead_letters, limit=5000)
        chosen = [d for d in open_ones if d.id in ids]
        return render(request, "action_confirm.html", status_code=400, action="close", items=chosen,
                       ids=[d.id for d in chosen], target="/console/dead-letters/close/confirm", reason="",
                       error="reason_required")  # fmt: skip
    actor, closed, errors = _actor(request, user), 0, []
    for dead_id in ids:
        try:
            await run_in_threadpool(actions.close_dead_letter, hub.runtime, dead_id, reason=reason, actor=actor)
            closed += 1
        except LienthongError as exc:
            errors.append(_error(dead_id, exc))
    request.session["flash"] = {"kind": "error" if errors else "ok", "key": "closed_ok", "n": closed,
                                "error_key": "action_error", "errors": errors[:20]}  # fmt: skip
    return RedirectResponse("/#dead-letters", status_code=303)


# ------------------------------------------------------------------------------------------------ destinations


def _destination_action(code: str, action: str) -> bool:
    return action in DESTINATION_ACTIONS and 0 < len(code) <= 64


@router.get("/console/destinations/{code}/{action}", response_class=HTMLResponse)
def destination_confirm(request: Request, code: str, action: str) -> Response:
    """Step 1: what pausing, resuming or retrying now would do to the destination, and the confirmation."""
    _staff(request)
    if not _destination_action(code, action):
        return Response("not found", status_code=404, media_type="text/plain")
    store = hub_of(request).store
    queue = next((q for q in store.queue_overview() if q.destination == code), None)
    return render(request, "action_confirm.html", action=action, destination=code, queue=queue,
                   pause=store.paused_destinations().get(code), target=f"/console/destinations/{code}/{action}",
                   items=[], ids=[], reason="", error=None)  # fmt: skip


@router.post("/console/destinations/{code}/{action}")
async def destination_act(request: Request, code: str, action: str) -> Response:
    """Step 2: pause (with a reason), resume, or retry now; then back to the queue panel."""
    user = _staff(request)
    if not _destination_action(code, action):
        return Response("not found", status_code=404, media_type="text/plain")
    form = await _checked_form(request, "queues")
    if isinstance(form, Response):
        return form
    hub, actor = hub_of(request), _actor(request, user)
    try:
        if action == "pause":
            reason = first(form, "reason").strip()[:MAX_REASON]
            if not reason:
                return render(request, "action_confirm.html", status_code=400, action=action, destination=code,
                               queue=None, pause=None, target=f"/console/destinations/{code}/{action}", items=[],
                               ids=[], reason="", error="reason_required")  # fmt: skip
            await run_in_threadpool(actions.pause, hub.runtime, code, reason=reason, actor=actor)
            return _done(request, "queues", "paused_ok", n=code)
        if action == "resume":
            await run_in_threadpool(actions.resume, hub.runtime, code, actor=actor)
            return _done(request, "queues", "resumed_ok", n=code)
        due = await run_in_threadpool(lambda: actions.retry_now(hub.runtime, destination=code, actor=actor))
        return _done(request, "queues", "retried_ok", n=len(due))
    except LienthongError as exc:
        return _failed(request, "queues", exc)


# ------------------------------------------------------------------------------------------------ one message


@router.post("/console/messages/retry-now")
async def message_retry_now(request: Request) -> Response:
    """Retry now one message's waiting deliveries (the button of its trace: the trace itself is the confirmation
    step, showing each delivery waiting for its retry and when)."""
    user = _staff(request)
    form = await _checked_form(request, "search")
    if isinstance(form, Response):
        return form
    message_id, sender = first(form, "message_id")[:200], first(form, "sender")[:64] or None
    hub = hub_of(request)
    try:
        due = await run_in_threadpool(
            lambda: actions.retry_now(hub.runtime, message_id=message_id, sender=sender, actor=_actor(request, user))
        )
    except LienthongError as exc:
        return _failed(request, "search", exc)
    request.session["flash"] = {"kind": "ok", "key": "retried_ok", "n": len(due)}
    return RedirectResponse(f"/?q={quote(message_id, safe='')}#search", status_code=303)

"""The operator page's correction of a dossier's status, in two steps like the other actions (``hub.console.actions``):
the timeline of a dossier found by the search offers "correct the status" (a new status chosen) to operators and
administrators; that GET shows the confirmation — the status now and after, who acts, a reason field — and only
its POST, with the session's CSRF token, corrects (``hub.services.corrections``: timeline, audit, and the hub's
``dossier.status`` to the province and the portal). The outcome comes back to the search as a flash message.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import auth, roles
from hub.console.pages import check_session, first, hub_of, read_form, render
from hub.dossier.status_machine import DossierStatus
from hub.errors import CorrectionRefusedError, LienthongError
from hub.services.actions import Actor
from hub.services.corrections import MAX_REASON, correct_status

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])

STATUSES = tuple(int(s) for s in DossierStatus)
NAMES = {int(s): s.name for s in DossierStatus}  # "4 PROCESSING": the page's translator names it


def _search(code: str) -> str:
    return f"/?q={quote(code, safe='')}#search"


def _status(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value in STATUSES else None


def _confirm(request: Request, code: str, status: int | None, reason: str, error: str | None,
             status_code: int = 200) -> Response:  # fmt: skip
    record = hub_of(request).store.dossier(code)
    if record is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return render(request, "action_confirm.html", status_code=status_code, action="correct", destination=code,
                  dossier=record, statuses=STATUSES, status_names=NAMES, chosen=status,
                  target=f"/console/dossiers/{code}/correct", items=[], ids=[], reason=reason, error=error)  # fmt: skip


@router.get("/console/dossiers/{code}/correct", response_class=HTMLResponse)
def correct_confirm(request: Request, code: str, status: str | None = None) -> Response:
    """Step 1: the dossier's status now, the one chosen, and the reason field."""
    roles.require_role(request, *roles.ACTORS)
    if not 0 < len(code) <= 64:
        return Response("not found", status_code=404, media_type="text/plain")
    return _confirm(request, code, _status(status), "", None)


@router.post("/console/dossiers/{code}/correct")
async def correct(request: Request, code: str) -> Response:
    """Step 2: correct the status with the reason (required), then back to the dossier's timeline."""
    user = roles.require_role(request, *roles.ACTORS)
    if not 0 < len(code) <= 64:
        return Response("not found", status_code=404, media_type="text/plain")
    form = await read_form(request)
    if not auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD)):
        request.session["flash"] = {"kind": "error", "key": "bad_csrf"}
        return RedirectResponse(_search(code), status_code=303)
    status, reason = _status(first(form, "status")), first(form, "reason").strip()[:MAX_REASON]
    if status is None or not reason:
        return await run_in_threadpool(_confirm, request, code, status, reason,
                                       "reason_required" if status is not None else "status_required", 400)  # fmt: skip
    hub = hub_of(request)
    actor = Actor(user["name"], user.get("role"), request.client.host if request.client else None)
    try:
        done = await run_in_threadpool(
            lambda: correct_status(hub.runtime, code, status=status, reason=reason, actor=actor)
        )
    except LienthongError as exc:  # the page says why by the refusal's rule (err_<rule>), else by the error's class
        label = f"err_{exc.rule}" if isinstance(exc, CorrectionRefusedError) else f"err_{type(exc).__name__}"
        request.session["flash"] = {"kind": "error", "key": "action_failed", "error_key": "action_error",
                                    "errors": [[code, str(exc), label]]}  # fmt: skip
        return RedirectResponse(_search(code), status_code=303)
    request.session["flash"] = {"kind": "ok", "key": "corrected_ok",
                                "n": f"{done.dossier_code}: {done.status_before} → {done.status}"}  # fmt: skip
    return RedirectResponse(_search(code), status_code=303)

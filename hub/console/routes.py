"""The operator page: ``/`` (panels), ``/login``, ``/logout``, ``/console/panels`` (the live part, refreshed by
``static/console.js``), ``/console/replay`` (select → confirm → replay) and ``/console/static``.

Server-rendered with Jinja2; every POST carries the session's CSRF token. Every action is audited: a replay
is recorded on the message's history (event ``replayed``, actor = the operator) and on the dead letter
(``replayed_by``); opening a message's trace records an event ``viewed`` with the operator as actor and an audit
row ``payload.view`` (access to the message log is an audited action, DOMAIN.md §5); sign-ins (``signin.ok``,
``signin.refused``, ``signin.throttled``), sign-outs and sessions ended by a changed credential (``signout``) go to
the store's audit log (``hub.store.audit``, the audit view) and to the ``hub.audit`` logger with the operator's
name. Who may do what: ``hub.console.roles`` (a viewer reads, an operator acts, an admin manages accounts and
reads the audit log). The message log page and payload downloads are ``hub.console.message_log``'s.

Sessions: the signed cookie carries a random session token (and the CSRF token); the store keeps its hash, the
account and the account's credential fingerprint (``hub.store.sessions``). Each request looks the session up, so
sign-out, expiry and a changed password (or key, or role) end it at once, in every worker process. Failed
sign-ins back off per account and per address (``hub.console.throttle``); cookies are ``Secure`` unless the page
is plain HTTP on loopback (``hub.console.secure_cookies``). What every page shares (the session check, rendering)
is ``hub.console.pages``; ``hub.console.install`` wires this module's router with the other pages'.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import UTC, datetime, timedelta
from functools import partial

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import auth, roles, throttle, views
from hub.console.pages import (
    check_session,
    client_address,
    current_user,
    first,
    form_ids,
    hub_of,
    read_form,
    render,
    settings_of,
    to_login,
)
from hub.console.secure_cookies import plain_http_loopback
from hub.metrics import SIGNIN_FAILURES, SIGNIN_THROTTLED
from hub.store import audit as audit_log
from hub.store import sessions

SESSION_COOKIE = "lienthong_console"
audit = logging.getLogger("hub.audit")
log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _snapshot(request: Request, *, previews: bool = True) -> views.Snapshot:
    return views.hub_snapshot(hub_of(request), previews=previews)


# ------------------------------------------------------------------------------------------------ sign in / out


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if current_user(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None, insecure=_needs_https(request))


def _needs_https(request: Request) -> bool:
    """Whether the browser will drop the (``Secure``) session cookie: plain HTTP, not on loopback."""
    return (
        not settings_of(request).session_https_only
        and request.url.scheme == "http"
        and not plain_http_loopback(request.scope)
    )


async def _throttled(request: Request, target: str, name: str, client: str, blocked: tuple[str, datetime]) -> Response:
    """429 with ``Retry-After``: the account or the address is backing off (the password is not checked)."""
    subject, until = blocked
    retry_after = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    scope = subject.partition(":")[0]
    SIGNIN_THROTTLED.labels(scope=scope).inc()
    # One audit row per subject and backoff window, not one per request: a script looping on /login must not grow
    # the audit log without limit (the log line and the counter still see every attempt).
    since = until - timedelta(seconds=settings_of(request).signin_backoff_max_s)
    await run_in_threadpool(
        partial(audit_log.record_once, hub_of(request).store.engine, since=since, actor=name[:64] or "?",
                action="signin.throttled", subject=subject, outcome="refused", client=client,
                detail={"backing_off": scope, "retry_after_s": retry_after})
    )  # fmt: skip
    audit.warning(
        "console sign-in throttled (%s backing off) from %s for %d s", scope, client, retry_after,
        extra={"actor": name[:64] or "?"},
    )  # fmt: skip
    response = render(request, "login.html", status_code=429, next=target, error="throttled", username=name)
    response.headers["Retry-After"] = str(retry_after)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await read_form(request)
    target = _safe_next(first(form, "next") or "/")
    if not auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD)):
        return render(request, "login.html", status_code=400, next=target, error="bad_csrf")
    name = first(form, "username").strip()
    settings, engine = settings_of(request), hub_of(request).store.engine
    client = client_address(request)
    keys = throttle.keys(name, client)
    backoff = partial(throttle.backoff_s, settings)
    blocked = await run_in_threadpool(  # the check and the counting in one transaction: no burst gets past it
        partial(sessions.begin_attempt, engine, keys, window_s=settings.signin_failure_window_s, backoff=backoff)
    )
    if blocked is not None:
        return await _throttled(request, target, name, client, blocked)
    account = await run_in_threadpool(auth.authenticate, settings, name, first(form, "password"), engine)
    if account is None:
        SIGNIN_FAILURES.inc()
        counts = await run_in_threadpool(sessions.failure_counts, engine, keys)
        failures = counts.get(keys[0], (0, None))[0]
        why = await run_in_threadpool(auth.refusal_reason, settings, engine, name)
        await run_in_threadpool(
            partial(audit_log.record_now, engine, actor=name[:64] or "?", action="signin.refused", outcome="refused",
                    client=client, detail={"reason": why, "recent_failures": failures})
        )  # fmt: skip
        audit.warning(
            "console sign-in refused from %s (%d recent failures for this name)", client, failures,
            extra={"actor": name[:64] or "?"},
        )  # fmt: skip
        waits = [f"{key} until {until.isoformat(timespec='seconds')}" for key, (_, until) in counts.items() if until]
        if waits:
            audit.warning("console sign-in backing off: %s", ", ".join(waits), extra={"actor": name[:64] or "?"})
        return render(request, "login.html", next=target, error="bad_login", username=name)  # 200: the form again
    old = request.session.get("sid")
    token = secrets.token_urlsafe(32)
    await run_in_threadpool(
        partial(sessions.open_session, engine, token, name=account.name, role=account.role,
                credential=auth.credential_fingerprint(account), client=client, lifetime_s=settings.session_max_age_s)
    )  # fmt: skip
    await run_in_threadpool(sessions.clear_failures, engine, keys[:1])  # the account's count
    # the address keeps its other failures, not this attempt's
    await run_in_threadpool(partial(sessions.forgive, engine, keys[1:], backoff=backoff))
    if isinstance(old, str) and old:
        await run_in_threadpool(sessions.end_session, engine, old)
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in
    request.session["sid"] = token
    auth.csrf_token(request.session)
    await run_in_threadpool(
        partial(audit_log.record_now, engine, actor=account.name, role=account.role, action="signin.ok", client=client,
                detail={"account": account.source})
    )  # fmt: skip
    audit.info("console sign-in from %s", client, extra={"actor": account.name})
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    user = current_user(request)
    if user and auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD)):
        engine = hub_of(request).store.engine
        await run_in_threadpool(sessions.end_session, engine, request.session["sid"])
        await run_in_threadpool(
            partial(audit_log.record_now, engine, actor=user["name"], role=user["role"], action="signout",
                    client=client_address(request), detail={"reason": "signed-out"})
        )  # fmt: skip
        audit.info("console sign-out", extra={"actor": user["name"]})
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ------------------------------------------------------------------------------------------------ the page


@router.get("/", response_class=HTMLResponse)
def page(request: Request, q: str = "") -> Response:
    user = current_user(request)
    if user is None:
        return to_login(request)
    hub = hub_of(request)
    result = None
    if q.strip():
        result = views.search(hub.store, q[:200])
        if result.trace is not None:  # reading the message log is an audited action
            hub.store.record_event(result.trace.message_pk, "viewed", actor=user["name"], detail="operator console")
            hub.store.audit(actor=user["name"], role=user["role"], action="payload.view",
                            subject=result.trace.message_id, client=request.client.host if request.client else None,
                            detail={"raw": False, "sender": result.trace.sender})  # fmt: skip
            result.trace = hub.store.trace(result.trace.message_id, result.trace.sender)
    flash = request.session.pop("flash", None)
    return render(request, "page.html", snap=_snapshot(request), result=result, q=q, flash=flash)


@router.get("/console/panels", response_class=HTMLResponse)
def panels(request: Request) -> Response:
    if current_user(request) is None:
        return Response("sign in again", status_code=401, media_type="text/plain")
    return render(request, "panels.html", snap=_snapshot(request))


# ------------------------------------------------------------------------------------------------ replay


async def _replay_selection(request: Request) -> tuple[dict, list[int]] | Response:
    """What both replay steps check first: the operator (a role that may act) and the chosen dead-letter ids, or
    where to send them instead (sign-in, a 403 for a viewer, or back to the page with why: a stale form or nothing
    selected)."""
    user = roles.require_role(request, *roles.ACTORS)
    form = await read_form(request)
    ids = form_ids(form)
    csrf_ok = auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD))
    if not csrf_ok or not ids:
        request.session["flash"] = {"kind": "error", "key": "nothing_selected" if csrf_ok else "bad_csrf"}
        return RedirectResponse("/#dead-letters", status_code=303)
    return user, ids


@router.post("/console/replay", response_class=HTMLResponse)
async def replay_confirm(request: Request) -> Response:
    """Step 1: show what is about to be replayed and ask for confirmation."""
    selection = await _replay_selection(request)
    if isinstance(selection, Response):
        return selection
    _, ids = selection
    chosen = [d for d in _snapshot(request, previews=False).dead_letters if d.id in ids]
    return render(request, "confirm.html", items=chosen, ids=[d.id for d in chosen])


@router.post("/console/replay/confirm")
async def replay(request: Request) -> Response:
    """Step 2: replay, recorded with the operator's name, then back to the page with the outcome."""
    from hub.runtime import replay_dead_letters

    selection = await _replay_selection(request)
    if isinstance(selection, Response):
        return selection
    user, ids = selection
    hub = hub_of(request)
    try:
        done, errors = await run_in_threadpool(replay_dead_letters, hub.runtime, ids, actor=user["name"])
    except Exception as exc:  # the broker is down: the replays are recorded, the relay publishes them later
        log.exception("console replay: publishing failed")
        done, errors = [], [(", ".join(map(str, ids)), exc)]
    for dead_id, message_id, destination in done:
        audit.info(
            "console replay of dead letter %s",
            dead_id,
            extra={"actor": user["name"], "message_id": message_id, "connector": destination},
        )
    request.session["flash"] = {
        "kind": "error" if errors else "ok",
        "key": "replayed_ok",
        "n": len(done),
        "errors": [[dead_id, str(exc)] for dead_id, exc in errors][:20],
    }
    return RedirectResponse("/#dead-letters", status_code=303)

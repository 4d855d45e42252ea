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
is plain HTTP on loopback (``hub.console.secure_cookies``).
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from hub.config import Settings
from hub.console import auth, roles, throttle, views
from hub.console.i18n import LANG_COOKIE, LANGS, Translator, pick_lang
from hub.console.secure_cookies import SecureCookies, plain_http_loopback
from hub.logs import mask_ids
from hub.metrics import SIGNIN_FAILURES, SIGNIN_THROTTLED
from hub.services import HubService
from hub.store import audit as audit_log
from hub.store import sessions

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "lienthong_console"
MAX_REPLAY = 500
audit = logging.getLogger("hub.audit")
log = logging.getLogger(__name__)

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["local"] = views.local
templates.env.filters["masked"] = mask_ids
templates.env.globals["can"] = roles.can
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def hub_of(request: Request) -> HubService:
    """The process's ``HubService``, set on the app by ``hub.api.create_app`` (the console does not import the
    API: the API mounts the console)."""
    hub: HubService = request.app.state.hub
    return hub


def _settings(request: Request) -> Settings:
    return hub_of(request).settings


def _lang(request: Request) -> str:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _check_session(request: Request) -> None:
    """Every console request: the operator of the cookie's session token, if the store still has that session
    and the account still signs in with the same credential (else the session ends here)."""
    request.state.user = None
    token = request.session.get("sid")
    if not isinstance(token, str) or not token:
        return
    engine = hub_of(request).store.engine
    found = sessions.find_session(engine, token)
    account = auth.lookup(_settings(request), engine, found.name) if found is not None else None
    if found is not None and account is not None and auth.credential_fingerprint(account) == found.credential:
        request.state.user = {"name": account.name, "role": account.role}
        return
    if found is not None:  # the password, key or role changed, or the account is disabled or gone
        if sessions.end_session(engine, token):
            audit_log.record_now(engine, actor=found.name, role=found.role, action="signout", client=_client(request),
                                 detail={"reason": "credential-changed"})  # fmt: skip
        audit.info("console session ended: the account's credential changed", extra={"actor": found.name})
    request.session.pop("sid", None)


router = APIRouter(include_in_schema=False, dependencies=[Depends(_check_session)])


def _user(request: Request) -> dict | None:
    """The signed-in operator (``{"name", "role"}``), as ``_check_session`` found it."""
    return roles.current_user(request)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    context.update(
        t=Translator(lang),
        lang=lang,
        langs=LANGS,
        user=_user(request),
        csrf=auth.csrf_token(request.session),
        csrf_field=auth.CSRF_FIELD,
        refresh_s=_settings(request).console_refresh_s,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    _headers(response, request)
    return response


def _headers(response: Response, request: Request) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    chosen = request.query_params.get("lang")
    if chosen in LANGS:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, httponly=True, samesite="lax")


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (the only kind the page posts), without python-multipart."""
    body = (await request.body())[: 256 * 1024].decode("utf-8", "replace")
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


def _first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0]


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _snapshot(request: Request, *, previews: bool = True) -> views.Snapshot:
    return views.hub_snapshot(hub_of(request), previews=previews)


# ------------------------------------------------------------------------------------------------ sign in / out


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if _user(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _render(request, "login.html", next=_safe_next(next), error=None, insecure=_needs_https(request))


def _needs_https(request: Request) -> bool:
    """Whether the browser will drop the (``Secure``) session cookie: plain HTTP, not on loopback."""
    return (
        not _settings(request).session_https_only
        and request.url.scheme == "http"
        and not plain_http_loopback(request.scope)
    )


async def _throttled(request: Request, target: str, name: str, client: str, blocked: tuple[str, datetime]) -> Response:
    """429 with ``Retry-After``: the account or the address is backing off (the password is not checked)."""
    subject, until = blocked
    retry_after = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    scope = subject.partition(":")[0]
    SIGNIN_THROTTLED.labels(scope=scope).inc()
    await run_in_threadpool(
        partial(audit_log.record_now, hub_of(request).store.engine, actor=name[:64] or "?", action="signin.throttled",
                outcome="refused", client=client, detail={"backing_off": scope, "retry_after_s": retry_after})
    )  # fmt: skip
    audit.warning(
        "console sign-in throttled (%s backing off) from %s for %d s", scope, client, retry_after,
        extra={"actor": name[:64] or "?"},
    )  # fmt: skip
    response = _render(request, "login.html", status_code=429, next=target, error="throttled", username=name)
    response.headers["Retry-After"] = str(retry_after)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _safe_next(_first(form, "next") or "/")
    if not auth.csrf_ok(request.session, _first(form, auth.CSRF_FIELD)):
        return _render(request, "login.html", status_code=400, next=target, error="bad_csrf")
    name = _first(form, "username").strip()
    settings, engine = _settings(request), hub_of(request).store.engine
    client = _client(request)
    keys = throttle.keys(name, client)
    backoff = partial(throttle.backoff_s, settings)
    blocked = await run_in_threadpool(  # the check and the counting in one transaction: no burst gets past it
        partial(sessions.begin_attempt, engine, keys, window_s=settings.signin_failure_window_s, backoff=backoff)
    )
    if blocked is not None:
        return await _throttled(request, target, name, client, blocked)
    account = await run_in_threadpool(auth.authenticate, settings, name, _first(form, "password"), engine)
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
        return _render(request, "login.html", next=target, error="bad_login", username=name)  # 200: the form again
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
    form = await _form(request)
    user = _user(request)
    if user and auth.csrf_ok(request.session, _first(form, auth.CSRF_FIELD)):
        engine = hub_of(request).store.engine
        await run_in_threadpool(sessions.end_session, engine, request.session["sid"])
        await run_in_threadpool(
            partial(audit_log.record_now, engine, actor=user["name"], role=user["role"], action="signout",
                    client=_client(request), detail={"reason": "signed-out"})
        )  # fmt: skip
        audit.info("console sign-out", extra={"actor": user["name"]})
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ------------------------------------------------------------------------------------------------ the page


@router.get("/", response_class=HTMLResponse)
def page(request: Request, q: str = "") -> Response:
    user = _user(request)
    if user is None:
        return _to_login(request)
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
    return _render(request, "page.html", snap=_snapshot(request), result=result, q=q, flash=flash)


@router.get("/console/panels", response_class=HTMLResponse)
def panels(request: Request) -> Response:
    if _user(request) is None:
        return Response("sign in again", status_code=401, media_type="text/plain")
    return _render(request, "panels.html", snap=_snapshot(request))


# ------------------------------------------------------------------------------------------------ replay


def _ids(form: dict[str, list[str]]) -> list[int]:
    raw = form.get("only") or form.get("id") or []
    out: list[int] = []
    for value in raw[:MAX_REPLAY]:
        if value.isdigit() and int(value) not in out:
            out.append(int(value))
    return out


async def _replay_selection(request: Request) -> tuple[dict, list[int]] | Response:
    """What both replay steps check first: the operator (a role that may act) and the chosen dead-letter ids, or
    where to send them instead (sign-in, a 403 for a viewer, or back to the page with why: a stale form or nothing
    selected)."""
    user = roles.require_role(request, *roles.ACTORS)
    form = await _form(request)
    ids = _ids(form)
    csrf_ok = auth.csrf_ok(request.session, _first(form, auth.CSRF_FIELD))
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
    return _render(request, "confirm.html", items=chosen, ids=[d.id for d in chosen])


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


# ------------------------------------------------------------------------------------------------ wiring


def install_console(app: FastAPI, settings: Settings) -> None:
    """Add the operator page to the API app: sessions (a signed cookie holding a token the store knows),
    ``Secure`` cookies, static files, the routes above."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=auth.session_secret(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
    )
    served_over_https = (settings.public_url or "").lower().startswith("https:")
    app.add_middleware(  # outside the session middleware
        SecureCookies, always=settings.session_https_only or served_over_https
    )
    auth.prepare(settings)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    app.include_router(router)
    from hub.console import trust_page  # it builds on this module's helpers

    app.include_router(trust_page.router)
    from hub.console import history  # its routes use this module's session check and rendering

    app.include_router(history.router)
    from hub.console import message_log  # its routes use this module's session check and rendering

    app.include_router(message_log.router)
    from hub.console import accounts, audit_view  # their routes use this module's helpers

    app.include_router(accounts.router)
    app.include_router(audit_view.router)
    from hub.console import actions  # its routes use this module's session check and helpers

    app.include_router(actions.router)
    roles.install(app, to_login=_to_login, refused=_refused)


def _refused(request: Request, exc: roles.RoleRefused) -> Response:
    """403: the account's role may not do this (the page says which role would)."""
    return _render(request, "refused.html", status_code=403, needed=exc.roles)

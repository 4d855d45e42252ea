"""What every page of the operator console shares: the session check, rendering with the security headers, the
signed-in account, forms, and the way to the sign-in page.

Each page module (``routes`` for the panels, sign-in and replay; ``message_log``, ``history``, ``trust_page``,
``actions``, ``accounts``, ``audit_view``) builds on these and on nothing of another page; ``install`` wires them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hub.config import Settings
from hub.console import auth, roles, views
from hub.console.i18n import LANG_COOKIE, LANGS, Translator, pick_lang
from hub.logs import mask_ids
from hub.services import HubService
from hub.store import audit as audit_log
from hub.store import sessions

HERE = Path(__file__).resolve().parent
audit = logging.getLogger("hub.audit")
MAX_SELECTED = 500  # ids one form may carry (replay, close)
MAX_FORM_BYTES = 256 * 1024

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["local"] = views.local
templates.env.filters["masked"] = mask_ids
templates.env.globals["can"] = roles.can
templates.env.globals["due_moved"] = views.due_moved
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def hub_of(request: Request) -> HubService:
    """The process's ``HubService``, set on the app by ``hub.api.create_app`` (the console does not import the
    API: the API mounts the console)."""
    hub: HubService = request.app.state.hub
    return hub


def settings_of(request: Request) -> Settings:
    return hub_of(request).settings


def lang_of(request: Request) -> str:
    """The page's language: ``?lang=``, else the cookie, else Vietnamese."""
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def check_session(request: Request) -> None:
    """Every console request: the operator of the cookie's session token, if the store still has that session
    and the account still signs in with the same credential (else the session ends here)."""
    request.state.user = None
    token = request.session.get("sid")
    if not isinstance(token, str) or not token:
        return
    engine = hub_of(request).store.engine
    found = sessions.find_session(engine, token)
    account = auth.lookup(settings_of(request), engine, found.name) if found is not None else None
    if found is not None and account is not None and auth.credential_fingerprint(account) == found.credential:
        request.state.user = {"name": account.name, "role": account.role}
        return
    if found is not None:  # the password, key or role changed, or the account is disabled or gone
        if sessions.end_session(engine, token):
            audit_log.record_now(engine, actor=found.name, role=found.role, action="signout",
                                 client=client_address(request), detail={"reason": "credential-changed"})  # fmt: skip
        audit.info("console session ended: the account's credential changed", extra={"actor": found.name})
    request.session.pop("sid", None)


def current_user(request: Request) -> dict | None:
    """The signed-in operator (``{"name", "role"}``), as ``check_session`` found it."""
    return roles.current_user(request)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template with what every page needs (translator, account, CSRF token, refresh period) and the headers."""
    lang = lang_of(request)
    context.update(
        t=Translator(lang),
        lang=lang,
        langs=LANGS,
        user=current_user(request),
        csrf=auth.csrf_token(request.session),
        csrf_field=auth.CSRF_FIELD,
        refresh_s=settings_of(request).console_refresh_s,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    security_headers(response, request)
    return response


def security_headers(response: Response, request: Request) -> None:
    """CSP without inline scripts, no sniffing, no caching of pages holding personal data; the chosen language
    kept in a cookie."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    chosen = request.query_params.get("lang")
    if chosen in LANGS:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, httponly=True, samesite="lax")


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (the only kind the page posts), without python-multipart."""
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.replace("\x00", ""), keep_blank_values=True):  # no NUL reaches the store
        form.setdefault(key, []).append(value)
    return form


def first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0]


def form_ids(form: dict[str, list[str]]) -> list[int]:
    """The dead-letter ids a form chose (``only`` for one row's button, else the ticked ``id`` boxes)."""
    raw = form.get("only") or form.get("id") or []
    out: list[int] = []
    for value in raw[:MAX_SELECTED]:
        if value.isdigit() and int(value) not in out:
            out.append(int(value))
    return out


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def refused(request: Request, exc: roles.RoleRefused) -> Response:
    """403: the account's role may not do this (the page says which role would)."""
    return render(request, "refused.html", status_code=403, needed=exc.roles)

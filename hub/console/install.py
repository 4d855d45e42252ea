"""``install_console``: the operator page added to the API app — sessions, ``Secure`` cookies, static files, every
page's routes, and the answers to a missing sign-in or a refused role."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from hub.config import Settings
from hub.console import (
    accounts,
    actions,
    audit_view,
    auth,
    corrections,
    history,
    message_log,
    roles,
    routes,
    trust_page,
)
from hub.console.pages import HERE, refused, to_login
from hub.console.secure_cookies import SecureCookies

PAGES = (routes, message_log, history, trust_page, actions, corrections, accounts, audit_view)


def install_console(app: FastAPI, settings: Settings) -> None:
    """Add the operator page to ``app``: sessions (a signed cookie holding a token the store knows), ``Secure``
    cookies, static files and the routes of every page module in ``PAGES``."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=auth.session_secret(settings),
        session_cookie=routes.SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
    )
    served_over_https = (settings.public_url or "").lower().startswith("https:")
    app.add_middleware(  # outside the session middleware
        SecureCookies, always=settings.session_https_only or served_over_https
    )
    auth.prepare(settings)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    for page in PAGES:
        app.include_router(page.router)
    roles.install(app, to_login=to_login, refused=refused)

"""Who may do what on the operator page: one check for every console route, one test for every template.

- ``viewer``: reads — the panels, the message log (masked), traces and dossiers. Never an action: every console
  POST that changes something calls ``require_role(request, *ACTORS)`` first.
- ``operator``: the actions too (replay, close, retry now, pause / resume).
- ``admin``: everything, plus the accounts page, the audit view and raw payloads.

The audit view is the admin's alone: it is the oversight record of the operators themselves (who signed in from
where, who opened which citizen's payload: DOMAIN.md §5 makes access to the message log an audited action), so
it is read by those who answer for that access, not by those it records — and a record its subjects can browse
tells each of them what the others looked at, personal data by another route.

``require_role`` raises ``SignInRequired`` or ``RoleRefused``; ``install`` (called by ``install_console``) answers
them: back to the sign-in page, or a 403 page naming the role needed. Templates hide what a role may not use with
``can(user, "operator", "admin")``, and the route refuses it all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from hub.store.accounts import ADMIN, OPERATOR, ROLES, VIEWER

ACTORS = (OPERATOR, ADMIN)  # roles that may act (replay, close, retry, pause)
__all__ = ["ACTORS", "ADMIN", "OPERATOR", "ROLES", "VIEWER", "RoleRefused", "SignInRequired", "can", "require_role"]


class SignInRequired(Exception):
    """The request has no live session."""


class RoleRefused(Exception):
    """The signed-in account's role may not do this."""

    def __init__(self, user: dict[str, Any], roles: tuple[str, ...]) -> None:
        super().__init__(f"{user.get('name')} ({user.get('role')}) needs {' or '.join(roles)}")
        self.user = user
        self.roles = roles


def current_user(request: Request) -> dict[str, Any] | None:
    """The signed-in account (``{"name", "role"}``) the console's session check found, or ``None``."""
    user = getattr(request.state, "user", None)
    return user if isinstance(user, dict) else None


def can(user: dict[str, Any] | None, *roles: str) -> bool:
    """Whether ``user`` has one of ``roles`` (templates: what to show)."""
    return user is not None and user.get("role") in roles


def require_role(request: Request, *roles: str) -> dict[str, Any]:
    """The signed-in account if its role is one of ``roles``; else ``SignInRequired`` / ``RoleRefused``."""
    user = current_user(request)
    if user is None:
        raise SignInRequired
    if not can(user, *roles):
        raise RoleRefused(user, roles)
    return user


def install(app: FastAPI, *, to_login: Callable[[Request], Response],
            refused: Callable[[Request, RoleRefused], Response]) -> None:  # fmt: skip
    """Answer the two refusals for the whole app (the console's pages render them; the API never raises them)."""

    async def _sign_in(request: Request, exc: Exception) -> Response:
        return to_login(request)

    async def _refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RoleRefused)
        return refused(request, exc)

    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(RoleRefused, _refused)

"""The trust view's page, ``/console/trust`` (signed-in operators; read-only): see ``hub.console.trust``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from hub.console import trust
from hub.console.routes import _check_session, _render, _to_login, _user, hub_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(_check_session)])


@router.get("/console/trust", response_class=HTMLResponse)
def trust_page(request: Request) -> Response:
    if _user(request) is None:
        return _to_login(request)
    return _render(request, "trust.html", view=trust.hub_trust_view(hub_of(request)))

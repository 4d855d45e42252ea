"""The trust view's page, ``/console/trust`` (signed-in operators; read-only): see ``hub.console.trust``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from hub.console import trust
from hub.console.pages import check_session, current_user, hub_of, render, to_login

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])


@router.get("/console/trust", response_class=HTMLResponse)
def trust_page(request: Request) -> Response:
    if current_user(request) is None:
        return to_login(request)
    return render(request, "trust.html", view=trust.hub_trust_view(hub_of(request)))

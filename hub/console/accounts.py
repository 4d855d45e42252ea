"""The admin's accounts page: ``/console/accounts`` lists the accounts (the store's and the configured ones) and
adds, disables, enables and resets the password of those kept in the store.

Each change is two steps: the list's button opens a confirmation page naming the account and what will happen
(a new password is typed there, on the last step, so it is never echoed into a page or a cookie), and its form
makes the change. Every POST carries the CSRF token and needs the admin role (``hub.console.roles``); the store
writes the change, its audit row (``account.*``) and the end of the account's sessions in one transaction
(``hub.store.accounts``). Configured accounts (``LIENTHONG_OPERATORS``, the API keys) are shown, not changed here.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import auth, roles
from hub.console.pages import check_session, client_address, first, hub_of, read_form, render, settings_of
from hub.errors import AccountRefusedError
from hub.store import accounts as store_accounts

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])
PAGE = "/console/accounts"
STEPS = ("add", "disable", "enable", "reset")  # the changes, as the forms name them


def _back(request: Request, kind: str, key: str, **values: Any) -> RedirectResponse:
    request.session["flash"] = {"kind": kind, "key": key, **values}
    return RedirectResponse(PAGE, status_code=303)


def _refusal(request: Request, exc: AccountRefusedError, name: str) -> RedirectResponse:
    return _back(request, "error", f"acc_err_{exc.rule.replace('-', '_')}", name=name[:64])


@router.get(PAGE, response_class=HTMLResponse)
def accounts_page(request: Request) -> Response:
    roles.require_role(request, roles.ADMIN)
    engine = hub_of(request).store.engine
    kept = store_accounts.list_accounts(engine)
    names = {a.name for a in kept}
    configured = [a for name, a in sorted(auth.configured(settings_of(request)).items()) if name not in names]
    shadowed = sorted(names & set(auth.configured(settings_of(request))))
    return render(request, "accounts.html", kept=kept, configured=configured, shadowed=shadowed,
                   roles_list=store_accounts.ROLES, flash=request.session.pop("flash", None))  # fmt: skip


async def _step(request: Request) -> tuple[dict, dict[str, list[str]], str, str] | Response:
    """What every step checks: an admin, the CSRF token, a known change; the form, the change and the name."""
    user = roles.require_role(request, roles.ADMIN)
    form = await read_form(request)
    if not auth.csrf_ok(request.session, first(form, auth.CSRF_FIELD)):
        return _back(request, "error", "bad_csrf")
    step, name = first(form, "step"), first(form, "name").strip()
    if step not in STEPS:
        return _back(request, "error", "bad_csrf")
    return user, form, step, name


@router.post(f"{PAGE}/confirm", response_class=HTMLResponse)
async def confirm(request: Request) -> Response:
    """Step 1: the confirmation page (with the password fields for an add or a reset)."""
    checked = await _step(request)
    if isinstance(checked, Response):
        return checked
    user, form, step, name = checked
    role = first(form, "role")
    try:
        if step == "add":
            store_accounts.check_name(name)
            store_accounts.check_role(role)
        elif await run_in_threadpool(store_accounts.get, hub_of(request).store.engine, name) is None:
            return _back(request, "error", "acc_err_account_unknown", name=name)
    except AccountRefusedError as exc:
        return _refusal(request, exc, name)
    if step == "disable" and name == user["name"]:
        return _back(request, "error", "acc_err_self")
    return render(request, "account_confirm.html", step=step, account=name, role=role)


@router.post(f"{PAGE}/apply")
async def apply(request: Request) -> Response:
    """Step 2: make the change (audited, sessions ended where a credential goes), then back to the list."""
    checked = await _step(request)
    if isinstance(checked, Response):
        return checked
    user, form, step, name = checked
    engine = hub_of(request).store.engine
    by = store_accounts.Who(user["name"], user["role"], client_address(request))
    try:
        if step in ("add", "reset"):
            password = first(form, "password")
            if password != first(form, "password2"):
                return _back(request, "error", "acc_err_mismatch")
            hashed = await run_in_threadpool(auth.new_password_hash, password)
            if step == "add":
                await run_in_threadpool(partial(store_accounts.add, engine, name, first(form, "role"), hashed, by=by))
                return _back(request, "ok", "acc_added", name=name)
            ended = await run_in_threadpool(partial(store_accounts.reset_password, engine, name, hashed, by=by))
            return _back(request, "ok", "acc_reset", name=name, n=ended)
        if step == "disable":
            if name == user["name"]:
                return _back(request, "error", "acc_err_self")
            ended = await run_in_threadpool(partial(store_accounts.disable, engine, name, by=by))
            return _back(request, "ok", "acc_disabled", name=name, n=ended)
        await run_in_threadpool(partial(store_accounts.enable, engine, name, by=by))
        return _back(request, "ok", "acc_enabled", name=name)
    except AccountRefusedError as exc:
        return _refusal(request, exc, name)

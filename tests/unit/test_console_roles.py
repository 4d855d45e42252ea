"""Accounts kept in the store and roles on the operator page (in process, a SQLite store): the store's account wins
over a configured one of the same name, a viewer reads but never acts, the admin's accounts page makes audited
changes that end sessions at once, sign-ins (refused ones too) land in the audit log, and the audit view and
``GET /api/v1/audit`` filter and page it."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from hub.api import create_app
from hub.config import Settings
from hub.console import auth, passwords, roles
from hub.store import accounts as store_accounts
from hub.store.audit import AuditFilter
from hub.store.schema import operator_accounts

ADMIN_KEY, OPERATOR_KEY = "admin-key", "operator-key"
PASSWORD = "mat-khau-dai-du"
BY = store_accounts.Who("test")


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def _sign_in(client: TestClient, name: str, password: str):
    token = _csrf(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "username": name, "password": password, "next": "/"},
                       follow_redirects=False)  # fmt: skip


@pytest.fixture
def app(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var", admin_api_key=ADMIN_KEY,
        operator_api_key=OPERATOR_KEY, operators=f"lan:{auth.hash_password(PASSWORD)}", log_format="console",
        signin_backoff_base_s=60,
    )  # fmt: skip
    return create_app(settings)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _store(client: TestClient):
    return client.app.state.hub.store


def _add(client: TestClient, name: str, role: str, password: str = PASSWORD) -> None:
    store_accounts.add(_store(client).engine, name, role, auth.new_password_hash(password), by=BY)


def _actions(client: TestClient, group: str | None = None) -> list[tuple[str, str, str]]:
    page = _store(client).audit_entries(AuditFilter(action=group), limit=500)
    return [(e.action, e.actor, e.outcome) for e in reversed(page.items)]


# ---------------------------------------------------------------------------------------------- precedence


def test_the_store_wins_over_configuration_and_the_admin_key_is_the_first_admin(client) -> None:
    settings, engine = client.app.state.hub.settings, _store(client).engine
    assert auth.authenticate(settings, "admin", ADMIN_KEY, engine).role == "admin"  # no store account yet
    assert auth.authenticate(settings, "lan", PASSWORD, engine).source == "config"

    _add(client, "lan", "viewer", "mat-khau-moi-cua-lan")  # the store takes the configured name over
    assert auth.authenticate(settings, "lan", PASSWORD, engine) is None
    taken = auth.authenticate(settings, "lan", "mat-khau-moi-cua-lan", engine)
    assert (taken.role, taken.source) == ("viewer", "store")
    store_accounts.disable(engine, "lan", by=BY)  # disabled in the store: the configured entry does not come back
    assert auth.authenticate(settings, "lan", PASSWORD, engine) is None
    assert auth.authenticate(settings, "lan", "mat-khau-moi-cua-lan", engine) is None
    assert "lan" not in auth.accounts(settings, engine) and "lan" in auth.accounts(settings)
    assert auth.refusal_reason(settings, engine, "lan") == "account-disabled"
    assert auth.refusal_reason(settings, engine, "admin") == "wrong-password"
    assert auth.refusal_reason(settings, engine, "nobody") == "unknown-account"


@pytest.mark.parametrize(("name", "password"), [("mai", PASSWORD), ("mai", "wrong"), ("tat", PASSWORD),
                                                ("nobody", PASSWORD)])  # fmt: skip
def test_store_accounts_cost_one_hash_check_like_every_other_name(client, monkeypatch, name, password) -> None:
    _add(client, "mai", "operator")
    _add(client, "tat", "operator")
    store_accounts.disable(_store(client).engine, "tat", by=BY)
    checked: list[str] = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda pw, stored: checked.append(stored) or real(pw, stored))
    found = auth.authenticate(client.app.state.hub.settings, name, password, _store(client).engine)
    assert (found is not None) is (name == "mai" and password == PASSWORD)
    assert len(checked) == 1 and checked[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_new_passwords_are_argon2id_of_a_bounded_length() -> None:
    assert auth.new_password_hash("x" * 8).startswith("$argon2id$")
    for bad in ("short", "x" * 1025):
        with pytest.raises(Exception, match="characters") as refused:
            auth.new_password_hash(bad)
        assert refused.value.rule == "account-password"


# ---------------------------------------------------------------------------------------------- roles


def test_can_and_require_role() -> None:
    request = SimpleNamespace(state=SimpleNamespace(user={"name": "v", "role": "viewer"}))
    assert roles.can(request.state.user, "viewer") and not roles.can(request.state.user, *roles.ACTORS)
    assert not roles.can(None, "viewer")
    assert roles.require_role(request, "viewer", "admin")["name"] == "v"  # type: ignore[arg-type]
    with pytest.raises(roles.RoleRefused):
        roles.require_role(request, *roles.ACTORS)  # type: ignore[arg-type]
    request.state.user = None
    with pytest.raises(roles.SignInRequired):
        roles.require_role(request, "viewer")  # type: ignore[arg-type]


def test_a_viewer_reads_but_cannot_act_nor_reach_the_admin_pages(client) -> None:
    _add(client, "xem", "viewer")
    assert _sign_in(client, "xem", PASSWORD).status_code == 303
    page = client.get("/")
    assert page.status_code == 200 and "Xem" in page.text  # the role is shown beside the name
    assert 'action="/console/replay"' not in page.text and "/console/accounts" not in page.text
    csrf = _csrf(page.text)
    for path in ("/console/replay", "/console/replay/confirm"):
        refused = client.post(path, data={"csrf_token": csrf, "id": "1"}, follow_redirects=False)
        assert refused.status_code == 403 and "Không đủ quyền" in refused.text and "Vận hành" in refused.text
    for path in ("/console/accounts", "/console/audit"):
        assert client.get(path).status_code == 403
    assert client.post("/console/accounts/apply", data={"csrf_token": csrf, "step": "add", "name": "x",
                       "role": "admin", "password": PASSWORD, "password2": PASSWORD}).status_code == 403  # fmt: skip
    assert store_accounts.get(_store(client).engine, "x") is None


def test_an_operator_acts_but_has_no_admin_pages(client) -> None:
    assert _sign_in(client, "lan", PASSWORD).status_code == 303
    csrf = _csrf(client.get("/").text)
    answer = client.post("/console/replay", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/#dead-letters"  # nothing selected: past
    assert client.get("/console/accounts").status_code == 403  # the role check


def test_signed_out_console_posts_go_to_the_sign_in_page(client) -> None:
    answer = client.post("/console/accounts/apply", data={"step": "add"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


# ---------------------------------------------------------------------------------------------- accounts page


def _step(client: TestClient, step: str, name: str, **form: str):
    csrf = _csrf(client.get("/console/accounts").text)
    data = {"csrf_token": csrf, "step": step, "name": name, **form}
    shown = client.post("/console/accounts/confirm", data=data)
    assert shown.status_code == 200 and 'id="account-confirm"' in shown.text, shown.text
    return client.post("/console/accounts/apply", data=data, follow_redirects=True)


def test_the_admin_adds_resets_and_disables_accounts_each_audited(client, app) -> None:
    _add(client, "quan.tri", "admin")
    assert _sign_in(client, "quan.tri", PASSWORD).status_code == 303
    listing = client.get("/console/accounts?lang=en")
    assert listing.status_code == 200 and "Configuration (API key)" in listing.text and "lan" in listing.text

    done = _step(client, "add", "tran.thi.b", role="viewer", password=PASSWORD, password2=PASSWORD)
    assert "Account tran.thi.b added." in done.text
    with TestClient(app, base_url="http://127.0.0.1") as viewer:  # the new account signs in, in its own browser
        assert _sign_in(viewer, "tran.thi.b", PASSWORD).status_code == 303
        assert viewer.get("/", follow_redirects=False).status_code == 200

        mismatch = _step(client, "reset", "tran.thi.b", password="mot-mat-khau", password2="mat-khau-khac")
        assert "The two passwords differ" in mismatch.text
        assert viewer.get("/", follow_redirects=False).status_code == 200  # nothing changed: still signed in

        done = _step(client, "reset", "tran.thi.b", password="mat-khau-moi-1", password2="mat-khau-moi-1")
        assert "1 session(s) ended" in done.text
        assert viewer.get("/", follow_redirects=False).headers["location"].startswith("/login")  # ended at once
        assert _sign_in(viewer, "tran.thi.b", "mat-khau-moi-1").status_code == 303

        done = _step(client, "disable", "tran.thi.b")
        assert "tran.thi.b disabled; 1 session(s) ended." in done.text
        assert viewer.get("/", follow_redirects=False).headers["location"].startswith("/login")
        assert _sign_in(viewer, "tran.thi.b", "mat-khau-moi-1").status_code == 200  # the form again: refused

    assert "Disabled since" in client.get("/console/accounts").text
    assert "tran.thi.b can sign in again." in _step(client, "enable", "tran.thi.b").text
    assert store_accounts.get(_store(client).engine, "tran.thi.b").active
    csrf = _csrf(client.get("/console/accounts").text)
    own = client.post("/console/accounts/confirm", data={"csrf_token": csrf, "step": "disable", "name": "quan.tri"})
    assert "You cannot disable your own account." in own.text
    taken = _step(client, "add", "tran.thi.b", role="admin", password=PASSWORD, password2=PASSWORD)
    assert "exists already" in taken.text
    short = _step(client, "add", "le.c", role="operator", password="ngan", password2="ngan")
    assert "at least 8 characters" in short.text and store_accounts.get(_store(client).engine, "le.c") is None

    assert _actions(client, "account") == [
        ("account.add", "test", "ok"),  # quan.tri, added by the test
        ("account.add", "quan.tri", "ok"),
        ("account.reset_password", "quan.tri", "ok"),
        ("account.disable", "quan.tri", "ok"),
        ("account.enable", "quan.tri", "ok"),
    ]


def test_account_forms_need_the_csrf_token(client) -> None:
    _sign_in(client, "admin", ADMIN_KEY)
    data = {"csrf_token": "forged", "step": "add", "name": "x", "role": "admin", "password": PASSWORD,
            "password2": PASSWORD}  # fmt: skip
    client.post("/console/accounts/apply", data=data)
    assert store_accounts.get(_store(client).engine, "x") is None


# ---------------------------------------------------------------------------------------------- the audit log


def test_sign_ins_ok_refused_and_sign_outs_are_in_the_audit_log(client) -> None:
    assert _sign_in(client, "lan", "doan-bua-123").status_code == 200
    assert _sign_in(client, "ai-do-" + "x" * 200, "doan-bua-123").status_code == 200
    assert _sign_in(client, "lan", PASSWORD).status_code == 303
    client.post("/logout", data={"csrf_token": _csrf(client.get("/").text)})
    entries = list(reversed(_store(client).audit_entries(AuditFilter(action=("signin", "signout"))).items))
    assert [(e.action, e.actor[:6], e.outcome) for e in entries] == [
        ("signin.refused", "lan", "refused"),
        ("signin.refused", "ai-do-", "refused"),
        ("signin.ok", "lan", "ok"),
        ("signout", "lan", "ok"),
    ]
    assert entries[0].detail == {"reason": "wrong-password", "recent_failures": 1}
    assert entries[1].detail["reason"] == "unknown-account" and len(entries[1].actor) == 64  # truncated
    assert entries[2].role == "operator" and entries[2].client == "testclient"
    assert all("doan-bua" not in repr(e) for e in entries)  # never the password tried


def test_a_throttled_sign_in_is_audited_as_refused_once_per_backoff(client) -> None:
    answers = [_sign_in(client, "lan", "doan-bua-123").status_code for _ in range(9)]
    assert answers == [200] * 5 + [429] * 4  # five free failures, then the account backs off
    throttled = _store(client).audit_entries(AuditFilter(action="signin.throttled")).items
    # one row for the block, not one per request: a looping client cannot grow the audit log without limit
    assert [(e.actor, e.subject, e.outcome, e.detail["backing_off"]) for e in throttled] == [
        ("lan", "account:lan", "refused", "account")
    ]
    assert _store(client).audit_entries(AuditFilter(action="signin.refused")).total == 5


def test_a_session_ended_by_a_changed_credential_is_audited(client) -> None:
    _add(client, "mai", "operator")
    _sign_in(client, "mai", PASSWORD)
    with _store(client).transaction() as conn:  # changed behind the session's back (say, a restored backup)
        conn.execute(operator_accounts.update().values(password_hash=auth.hash_password("khac-han-roi")))
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    (ended,) = _store(client).audit_entries(AuditFilter(action="signout")).items
    assert (ended.actor, ended.detail) == ("mai", {"reason": "credential-changed"})


def test_the_audit_view_filters_and_pages(client) -> None:
    for _ in range(3):
        _sign_in(client, "lan", "wrong")
    _sign_in(client, "admin", ADMIN_KEY)
    view = client.get("/console/audit?lang=en")
    assert view.status_code == 200 and "4 of 4 matching entries" in view.text and "signin.refused" in view.text
    refused = client.get("/console/audit", params={"outcome": "refused", "actor": "lan", "group": "signin"})
    assert refused.text.count('data-action="signin.refused"') == 3 and "signin.ok" not in refused.text
    none = client.get("/console/audit", params={"group": "registry", "lang": "en"})
    assert "No entry matches the filters." in none.text
    future = client.get("/console/audit", params={"since": "2999-01-01T00:00"})
    assert 'data-action="' not in future.text
    for _ in range(50):  # a second page
        _store(client).audit(actor="x", action="payload.view", subject="m")
    first = client.get("/console/audit")
    assert first.text.count('data-action="') == 50
    next_url = re.search(r'href="(/console/audit\?cursor=[^"]+)" class="button" id="audit-next"', first.text)[1]
    second = client.get(next_url.replace("&amp;", "&"))
    assert second.text.count('data-action="') == 4 and 'id="audit-next"' not in second.text
    assert "not valid" in client.get("/console/audit?cursor=bogus&lang=en").text


def test_the_audit_api_is_the_admins_with_filters_pages_and_problems(client) -> None:
    for _ in range(3):
        _sign_in(client, "lan", "wrong")
    _sign_in(client, "admin", ADMIN_KEY)
    headers = {"X-Api-Key": ADMIN_KEY}
    answer = client.get("/api/v1/audit", headers=headers, params={"group": "signin", "limit": 2})
    assert answer.status_code == 200
    body = answer.json()
    assert body["total"] == 4 and len(body["items"]) == 2 and body["next_cursor"]
    assert [i["action"] for i in body["items"]] == ["signin.ok", "signin.refused"]
    rest = client.get("/api/v1/audit", headers=headers, params={"group": "signin", "limit": 2,
                                                                  "cursor": body["next_cursor"]}).json()  # fmt: skip
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None and rest["total"] == 4
    only = client.get("/api/v1/audit", headers=headers, params={"outcome": "refused", "actor": "lan"}).json()
    assert only["total"] == 3 and {i["detail"]["reason"] for i in only["items"]} == {"wrong-password"}
    assert client.get("/api/v1/audit", headers=headers, params={"action": "signin.ok"}).json()["total"] == 1
    assert client.get("/api/v1/audit", headers=headers, params={"since": "2999-01-01T00:00:00+07:00"}).json() == {
        "items": [], "total": 0, "next_cursor": None}  # fmt: skip

    for params, status, rule in (({"cursor": "bogus"}, 400, "cursor"),
                                 ({"group": "nope"}, 422, "request:literal_error"),
                                 ({"group": "registry", "action": "signin.ok"}, 422, "audit-filter"),
                                 ({"since": "0001-01-01T00:00:00+07:00"}, 400, "datetime"),
                                 ({"actor": "lan\x00"}, 400, "nul-character")):  # fmt: skip
        problem = client.get("/api/v1/audit", headers=headers, params=params)
        assert problem.status_code == status and problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["errors"][0]["rule"] == rule
    assert client.get("/api/v1/audit", headers={"X-Api-Key": OPERATOR_KEY}).status_code == 403
    assert client.get("/api/v1/audit").status_code == 401

"""``hub operator add|disable|enable|reset-password|list`` and ``hub audit list`` on a SQLite store: passwords come
from standard input or a hidden prompt, never the command line; every change is audited under ``--actor``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.console import auth
from hub.store import Store, sessions
from hub.store import accounts as store_accounts

runner = CliRunner()


@pytest.fixture
def hub(tmp_path: Path):
    """``hub ARGS`` (with ``input`` on standard input) on a store of its own, and that store."""
    from hub.config import get_settings

    url = f"sqlite:///{tmp_path}/hub.db"
    env = {"LIENTHONG_DATABASE_URL": url, "LIENTHONG_DATA_DIR": str(tmp_path), "LIENTHONG_ADMIN_API_KEY": "k",
           "COLUMNS": "80"}  # fmt: skip

    def run(*args: str, input: str | None = None):
        get_settings.cache_clear()
        try:
            return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    store = Store(url)
    run.store = store  # type: ignore[attr-defined]
    yield run
    store.close()


def test_add_reset_disable_enable_and_list(hub) -> None:
    added = hub("operator", "add", "tran.thi.b", "--role", "viewer", "--password-stdin", "--actor", "quan.tri",
                input="mat-khau-ban-dau\n")  # fmt: skip
    assert added.exit_code == 0 and "added account tran.thi.b (viewer)" in added.stdout
    hub.store.migrate()
    engine = hub.store.engine
    stored = store_accounts.get(engine, "tran.thi.b")
    assert stored.password_hash.startswith("$argon2id$") and "mat-khau-ban-dau" not in stored.password_hash
    assert auth.verify_password("mat-khau-ban-dau", stored.password_hash)

    sessions.open_session(engine, "tok", name="tran.thi.b", role="viewer", credential="c", client=None, lifetime_s=60)
    reset = hub("operator", "reset-password", "tran.thi.b", "--password-stdin", "--actor", "quan.tri",
                input="mat-khau-moi-123\n")  # fmt: skip
    assert reset.exit_code == 0 and "1 session(s) ended" in reset.stdout
    assert auth.verify_password("mat-khau-moi-123", store_accounts.get(engine, "tran.thi.b").password_hash)
    assert sessions.find_session(engine, "tok") is None

    assert hub("operator", "disable", "tran.thi.b", "--actor", "quan.tri").exit_code == 0
    again = hub("operator", "disable", "tran.thi.b")
    assert again.exit_code == 1 and "disabled already [account-disabled]" in again.stderr
    listed = json.loads(hub("operator", "list", "--json").stdout)
    assert [(a["name"], a["role"], a["source"], a["disabled_at"] is not None) for a in listed] == [
        ("tran.thi.b", "viewer", "store", True),
        ("admin", "admin", "api-key", False),  # the first admin, from LIENTHONG_ADMIN_API_KEY
    ]
    assert listed[0]["created_by"] == "quan.tri" and listed[0]["disabled_at"].endswith("+07:00")
    assert hub("operator", "enable", "tran.thi.b", "--actor", "quan.tri").exit_code == 0
    table = hub("operator", "list").stdout
    assert "tran.thi.b" in table and "UTC+7" in table and all(len(line) <= 80 for line in table.splitlines())

    audit = json.loads(hub("audit", "list", "--group", "account", "--json").stdout)
    assert [(e["action"], e["actor"]) for e in reversed(audit["items"])] == [
        ("account.add", "quan.tri"), ("account.reset_password", "quan.tri"), ("account.disable", "quan.tri"),
        ("account.enable", "quan.tri"),
    ]  # fmt: skip
    assert audit["total"] == 4 and audit["next_cursor"] is None
    text = hub("audit", "list", "--utc").stdout
    assert "account.enable" in text and "UTC" in text and all(len(line) <= 80 for line in text.splitlines())


def test_the_prompt_asks_twice_and_refusals_exit_1(hub) -> None:
    prompted = hub("operator", "add", "le.c", "--role", "operator", input="mat-khau-le-c\nmat-khau-le-c\n")
    assert prompted.exit_code == 0, prompted.output
    assert "mat-khau-le-c" not in prompted.stdout  # hidden input: not echoed
    hub.store.migrate()
    assert auth.verify_password("mat-khau-le-c", store_accounts.get(hub.store.engine, "le.c").password_hash)

    short = hub("operator", "add", "le.d", "--role", "operator", "--password-stdin", input="ngan\n")
    assert short.exit_code == 2 and "at least 8 characters" in short.stderr
    for args, rule in (
        (("operator", "add", "le.c", "--role", "viewer", "--password-stdin"), "account-exists"),
        (("operator", "add", "le,e", "--role", "viewer", "--password-stdin"), "account-name"),
        (("operator", "add", "le.f", "--role", "root", "--password-stdin"), "account-role"),
        (("operator", "disable", "nobody"), "account-unknown"),
    ):
        refused = hub(*args, input="mat-khau-du-dai\n")
        assert refused.exit_code == 1 and f"[{rule}]" in refused.stderr, (args, refused.output)
    unknown = hub("operator", "reset-password", "nobody", "--password-stdin", input="mat-khau-du-dai\n")
    assert unknown.exit_code == 1 and "no account 'nobody'" in unknown.stderr
    assert [a.name for a in store_accounts.list_accounts(hub.store.engine)] == ["le.c"]


def test_audit_list_filters_and_pages(hub) -> None:
    hub("operator", "list")  # migrates the store
    for i in range(3):
        hub.store.audit(actor="lan", action="signin.refused", outcome="refused", detail={"n": i})
    hub.store.audit(actor="lan", action="signin.ok")
    page = json.loads(hub("audit", "list", "--outcome", "refused", "--limit", "2", "--json").stdout)
    assert page["total"] == 3 and len(page["items"]) == 2 and page["next_cursor"]
    rest = json.loads(hub("audit", "list", "--outcome", "refused", "--limit", "2", "--cursor", page["next_cursor"],
                          "--json").stdout)  # fmt: skip
    assert [e["detail"]["n"] for e in page["items"] + rest["items"]] == [2, 1, 0] and rest["next_cursor"] is None
    assert json.loads(hub("audit", "list", "--since", "2999-01-01T00:00", "--json").stdout)["total"] == 0
    assert hub("audit", "list", "--group", "nope").exit_code == 2
    assert hub("audit", "list", "--cursor", "bogus").exit_code == 2
    assert "next page: --cursor" in hub("audit", "list", "--limit", "1").stdout


def test_audit_list_prints_a_sign_in_name_as_text_not_markup(hub) -> None:
    """The name typed at a refused sign-in is the row's actor: anyone can choose it, so it is never rich markup."""
    hub("operator", "list")  # migrates the store
    hub.store.audit(actor="[/]", action="signin.refused", outcome="refused")
    hub.store.audit(actor="[bold]admin[/]", action="signin.refused", outcome="refused")
    listed = hub("audit", "list")
    assert listed.exit_code == 0, listed.output
    assert "[/]" in listed.stdout and "[bold]admin[/]" in listed.stdout

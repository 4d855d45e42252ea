"""What lands in the audit log, on SQLite and PostgreSQL: account changes (with the end of the account's sessions,
in the same transaction), registry changes, replays and status corrections, each with the row of its action."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from hub.dossier.status_machine import Correction
from hub.errors import AccountRefusedError, SpecInvalidError
from hub.registry import Registry
from hub.store import Store, sessions
from hub.store import accounts as store_accounts
from hub.store.audit import GROUPS, AuditFilter
from hub.store.schema import audit_log
from tests.integration.test_registry import HUB, spec
from tests.integration.test_store import submit

ADMIN = store_accounts.Who("quan.tri", "admin", "10.0.0.9")


def _actions(store: Store, group: str | None = None) -> list[tuple[str, str | None, str]]:
    page = store.audit_entries(AuditFilter(action=GROUPS[group] if group else None), limit=500)
    return [(e.action, e.subject, e.actor) for e in reversed(page.items)]


def _session(store: Store, token: str, name: str) -> None:
    sessions.open_session(store.engine, token, name=name, role="viewer", credential="x", client=None, lifetime_s=60)


def test_account_changes_are_audited_and_end_the_accounts_sessions(store: Store) -> None:
    engine = store.engine
    added = store_accounts.add(engine, " tran.thi.b ", "viewer", "$argon2id$stand-in", by=ADMIN)
    assert (added.name, added.role, added.active, added.created_by) == ("tran.thi.b", "viewer", True, "quan.tri")
    _session(store, "t1", "tran.thi.b")
    _session(store, "t2", "tran.thi.b")
    _session(store, "other", "someone.else")

    assert store_accounts.reset_password(engine, "tran.thi.b", "$argon2id$new", by=ADMIN) == 2
    assert sessions.find_session(engine, "t1") is None and sessions.find_session(engine, "other") is not None
    assert store_accounts.get(engine, "tran.thi.b").password_hash == "$argon2id$new"
    _session(store, "t3", "tran.thi.b")
    assert store_accounts.disable(engine, "tran.thi.b", by=ADMIN) == 1
    assert sessions.find_session(engine, "t3") is None
    assert not store_accounts.get(engine, "tran.thi.b").active
    store_accounts.enable(engine, "tran.thi.b", by=ADMIN)
    assert store_accounts.get(engine, "tran.thi.b").active

    assert _actions(store, "account") == [
        ("account.add", "tran.thi.b", "quan.tri"),
        ("account.reset_password", "tran.thi.b", "quan.tri"),
        ("account.disable", "tran.thi.b", "quan.tri"),
        ("account.enable", "tran.thi.b", "quan.tri"),
    ]
    (disable,) = store.audit_entries(AuditFilter(action="account.disable")).items
    assert (disable.role, disable.client, disable.detail) == ("admin", "10.0.0.9", {"sessions_ended": 1})


@pytest.mark.parametrize(
    ("change", "rule", "kind"),
    [
        (lambda e: store_accounts.add(e, "tran.thi.b", "viewer", "h", by=ADMIN), "account-exists", "conflict"),
        (lambda e: store_accounts.add(e, "a:b", "viewer", "h", by=ADMIN), "account-name", "invalid"),
        (lambda e: store_accounts.add(e, "le.c", "root", "h", by=ADMIN), "account-role", "invalid"),
        (lambda e: store_accounts.disable(e, "nobody", by=ADMIN), "account-unknown", "not-found"),
        (lambda e: store_accounts.reset_password(e, "nobody", "h", by=ADMIN), "account-unknown", "not-found"),
        (lambda e: store_accounts.enable(e, "tran.thi.b", by=ADMIN), "account-enabled", "conflict"),
    ],
)
def test_refused_account_changes_change_nothing_and_audit_nothing(store: Store, change, rule, kind) -> None:
    store_accounts.add(store.engine, "tran.thi.b", "viewer", "h", by=ADMIN)
    with pytest.raises(AccountRefusedError) as refused:
        change(store.engine)
    assert (refused.value.rule, refused.value.kind) == (rule, kind)
    assert _actions(store) == [("account.add", "tran.thi.b", "quan.tri")]
    assert [a.name for a in store_accounts.list_accounts(store.engine)] == ["tran.thi.b"]


def test_a_disabled_account_cannot_be_disabled_again_nor_its_name_taken(store: Store) -> None:
    store_accounts.add(store.engine, "tran.thi.b", "operator", "h", by=ADMIN)
    store_accounts.disable(store.engine, "tran.thi.b", by=ADMIN)
    for change, rule in (
        (lambda: store_accounts.disable(store.engine, "tran.thi.b", by=ADMIN), "account-disabled"),
        (lambda: store_accounts.add(store.engine, "tran.thi.b", "admin", "h", by=ADMIN), "account-exists"),
    ):
        with pytest.raises(AccountRefusedError) as refused:
            change()
        assert refused.value.rule == rule


def test_registry_changes_write_an_audit_row_in_their_transaction(store: Store) -> None:
    registry = Registry(store, hub_code=HUB)
    registry.add(spec("land-registration.yaml"), actor="alice")
    registry.add(spec("land-registration.yaml", name="Sở TN&MT (đổi tên)"), actor="alice")
    code = spec("land-registration.yaml").code
    registry.rotate_key(code, actor="bob")
    registry.disable(code, actor="bob")
    registry.enable(code, actor="bob")
    assert _actions(store, "registry") == [
        ("registry.create", code, "alice"),
        ("registry.update", code, "alice"),
        ("registry.rotate_key", code, "bob"),
        ("registry.disable", code, "bob"),
        ("registry.enable", code, "bob"),
    ]
    update = store.audit_entries(AuditFilter(action="registry.update")).items[0]
    assert update.detail == {"changed": ["name"]}
    assert len(registry.audit(code)) == 5  # `hub connector audit` keeps its full before/after

    own_code = spec("land-registration.yaml", code=HUB)
    with pytest.raises(SpecInvalidError):  # refused inside the transaction: no audit row claims it happened
        registry.add(own_code, actor="mallory")
    assert [a for a in _actions(store) if a[2] == "mallory"] == []


def test_a_replay_and_a_correction_are_audited_with_their_actor(store: Store) -> None:
    portal, _ = submit(store).delivery_ids
    store.mark_published([portal])
    store.start_attempts([portal])
    dead_id = store.record_dead(portal, reason="rejected", error="HTTP 400")
    store.replay(dead_id, actor="nguyen.van.a")
    (replay,) = store.audit_entries(AuditFilter(action="dead_letter")).items
    assert (replay.action, replay.subject, replay.actor, replay.outcome) == (
        "dead_letter.replay", str(dead_id), "nguyen.van.a", "ok")  # fmt: skip
    assert replay.detail == {"message_id": "m-1", "destination": "portal"}

    code, t0 = "000.00.00.H12-251123-0099", dt.datetime(2025, 11, 23, 8, tzinfo=dt.UTC)
    store.record_status(dossier_code=code, status=1, at=t0, message_id=None, source="000.00.00.H12")
    store.record_status(dossier_code=code, status=3, at=t0 + dt.timedelta(hours=1), message_id=None,
                        source="000.00.00.H12")  # fmt: skip
    fix = Correction(reason="entered by mistake", corrected_by="nguyen.van.a")
    store.record_status(dossier_code=code, status=1, at=t0 + dt.timedelta(hours=2), message_id=None,
                        source="console", correction=fix)  # fmt: skip
    (correction,) = store.audit_entries(AuditFilter(action="dossier")).items
    assert (correction.action, correction.subject, correction.actor, correction.outcome) == (
        "dossier.correct", code, "nguyen.van.a", "ok")  # fmt: skip
    assert correction.detail == {"status": 1, "status_before": 3, "reason": "entered by mistake",
                                 "outcome": "corrected"}  # fmt: skip
    with store.engine.connect() as conn:  # status updates without a correction leave no audit row
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == 2


def test_a_name_tried_with_nul_characters_is_recorded_without_them(store: Store) -> None:
    """PostgreSQL text holds no NUL: a sign-in's name tried may hold anything, and must still be recorded."""
    store.audit(actor="lan\x00x", action="signin.refused", outcome="refused", subject="s\x00", client="c\x00")
    (entry,) = store.audit_entries().items
    assert (entry.actor, entry.subject, entry.client) == ("lanx", "s", "c")

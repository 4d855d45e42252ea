"""Operator page accounts kept in the store: a name, a role (viewer, operator, admin) and an argon2id hash.

Every change commits with its audit row (``account.add``, ``account.disable``, ``account.enable``,
``account.reset_password``) and, when it takes a credential away (disabled, password reset), with the end of the
account's sessions: the next request of a browser signed in with it finds no session, in every worker process.
A disabled account keeps its row, so that its name stays in the audit log meaning one person (it cannot be added
again; ``enable`` brings it back). The store never sees a password: callers hash it (``hub.console.auth``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.errors import AccountRefusedError, Issue
from hub.store import audit
from hub.store.database import now, transaction
from hub.store.schema import console_sessions, operator_accounts

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # no ':' nor ',': LIENTHONG_OPERATORS' separators


@dataclass(frozen=True)
class StoredAccount:
    name: str
    role: str
    password_hash: str
    disabled_at: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    password_changed_at: datetime

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class Who:
    """Who makes a change, as the audit log records it."""

    actor: str
    role: str | None = None
    client: str | None = None


def check_name(name: str) -> str:
    """``name`` stripped, or ``AccountRefusedError`` (``account-name``)."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise AccountRefusedError(
            f"account name {name[:70]!r} is not usable",
            [Issue("/name", "account-name", "1–64 letters, digits, '.', '_', '@' or '-', from a letter or digit")],
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountRefusedError(
            f"role {role[:20]!r} is not one of {', '.join(ROLES)}",
            [Issue("/role", "account-role", f"one of {', '.join(ROLES)}")],
        )
    return role


def _unknown(name: str) -> AccountRefusedError:
    return AccountRefusedError(
        f"no account {name!r} is kept in the store", [Issue("/name", "account-unknown", "see `hub operator list`")]
    )


def _account(row: sa.Row) -> StoredAccount:
    return StoredAccount(row.name, row.role, row.password_hash, row.disabled_at, row.created_at, row.created_by,
                         row.updated_at, row.password_changed_at)  # fmt: skip


def get(engine: Engine, name: str) -> StoredAccount | None:
    """The account ``name`` (disabled or not), or ``None``."""
    with transaction(engine, readonly=True) as conn:
        row = conn.execute(sa.select(operator_accounts).where(operator_accounts.c.name == name.strip())).first()
    return None if row is None else _account(row)


def list_accounts(engine: Engine) -> list[StoredAccount]:
    """Every account kept in the store, by name."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(sa.select(operator_accounts).order_by(operator_accounts.c.name)).all()
    return [_account(r) for r in rows]


def add(engine: Engine, name: str, role: str, password_hash: str, *, by: Who) -> StoredAccount:
    """Add an account; ``AccountRefusedError`` for a bad name or role, or a name already kept (``account-exists``,
    disabled accounts included)."""
    name, role = check_name(name), check_role(role)
    at = now()
    with transaction(engine) as conn:
        if conn.execute(sa.select(operator_accounts.c.id).where(operator_accounts.c.name == name)).first():
            raise AccountRefusedError(
                f"an account {name!r} exists already", [Issue("/name", "account-exists", "choose another name")]
            )
        conn.execute(
            sa.insert(operator_accounts).values(
                name=name, role=role, password_hash=password_hash, disabled_at=None, created_at=at,
                created_by=by.actor[:128], updated_at=at, password_changed_at=at,
            )
        )  # fmt: skip
        _audit(conn, by, "account.add", name, {"role": role}, at)
        return _account(conn.execute(sa.select(operator_accounts).where(operator_accounts.c.name == name)).one())


def disable(engine: Engine, name: str, *, by: Who) -> int:
    """Disable an account and end its sessions; how many sessions ended. Refused for an unknown account or one
    disabled already (``account-disabled``)."""
    at = now()
    with transaction(engine) as conn:
        row = _locked(conn, name)
        if row.disabled_at is not None:
            raise AccountRefusedError(
                f"account {row.name!r} is disabled already", [Issue("/name", "account-disabled", "nothing to do")]
            )
        conn.execute(_update(row.name).values(disabled_at=at, updated_at=at))
        ended = _end_sessions(conn, row.name)
        _audit(conn, by, "account.disable", row.name, {"sessions_ended": ended}, at)
        return ended


def enable(engine: Engine, name: str, *, by: Who) -> None:
    """Let a disabled account sign in again (with its password as it was)."""
    at = now()
    with transaction(engine) as conn:
        row = _locked(conn, name)
        if row.disabled_at is None:
            raise AccountRefusedError(
                f"account {row.name!r} is not disabled", [Issue("/name", "account-enabled", "nothing to do")]
            )
        conn.execute(_update(row.name).values(disabled_at=None, updated_at=at))
        _audit(conn, by, "account.enable", row.name, None, at)


def reset_password(engine: Engine, name: str, password_hash: str, *, by: Who) -> int:
    """Set a new password hash and end the account's sessions; how many sessions ended."""
    at = now()
    with transaction(engine) as conn:
        row = _locked(conn, name)
        conn.execute(_update(row.name).values(password_hash=password_hash, updated_at=at, password_changed_at=at))
        ended = _end_sessions(conn, row.name)
        _audit(conn, by, "account.reset_password", row.name, {"sessions_ended": ended}, at)
        return ended


def _locked(conn: Connection, name: str) -> sa.Row:
    query = sa.select(operator_accounts).where(operator_accounts.c.name == name.strip())
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise _unknown(name.strip())
    return row


def _update(name: str) -> sa.Update:
    return sa.update(operator_accounts).where(operator_accounts.c.name == name)


def _end_sessions(conn: Connection, name: str) -> int:
    return int(conn.execute(sa.delete(console_sessions).where(console_sessions.c.name == name)).rowcount)


def _audit(conn: Connection, by: Who, action: str, name: str, detail: dict | None, at: datetime) -> None:
    audit.record(conn, actor=by.actor, role=by.role, client=by.client, action=action, subject=name, detail=detail,
                 at=at)  # fmt: skip

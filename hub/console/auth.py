"""Operator sign-in for the console: accounts from the store and from configuration, password checks, CSRF.

Accounts:

- Kept in the store (``hub.store.accounts``; ``hub operator add|disable|enable|reset-password``, the admin's
  accounts page): viewer, operator or admin, with an argon2id hash. The usual place for every account.
- From configuration (``hub.config.Settings``), for the first admin and for hubs set up before the store kept
  accounts: ``LIENTHONG_OPERATORS="name:$argon2id$…,name2:scrypt$…"`` (role operator; make a hash with ``hub operator
  hash-password``; the older scrypt form keeps working), and the admin and operator API keys, which sign in as
  ``LIENTHONG_ADMIN_NAME`` (admin) / ``LIENTHONG_OPERATOR_NAME`` (operator) unless ``LIENTHONG_OPERATORS`` names
  that account itself. So a new hub has its first admin (the admin key), who adds the others in the store.

Precedence: an account kept in the store wins over a configured one with the same name, disabled or not. The store
is where accounts are managed, audited and disabled at once; were the configuration to win, an admin could neither
disable nor reset such an account from the page, and a stale environment variable would silently keep alive an
account the audit log shows as disabled. Taking a configured name into the store is how it is brought under
management (its configured sign-in stops, and its sessions end, as the credential changed).

Every attempt does the same password-hash work, exactly once, whoever it names: an unknown name, a disabled
account, an empty password and an API-key account are checked against a throw-away hash of the same cost as the
real ones, so the answer's timing does not tell which names exist.

Sessions are kept server-side (``hub.store.sessions``); each records ``credential_fingerprint`` of its account,
so a changed password, key or role ends the sessions opened with the old one; a disabled or removed account
finds no account, which ends them too (and disabling or resetting in the store ends them in the same transaction).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import Settings
from hub.console import passwords
from hub.console.passwords import hash_password as hash_password  # re-exported: the CLI makes hashes here
from hub.console.passwords import scrypt_hash as scrypt_hash
from hub.console.passwords import verify_password as verify_password
from hub.errors import AccountRefusedError, ConfigError, Issue
from hub.store import accounts as stored_accounts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CSRF_FIELD = "csrf_token"
_ENTRY_START = re.compile(r",(?=\s*[^,:$\s]+:)")  # a comma that starts "name:" (argon2 hashes hold commas)


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # viewer | operator | admin
    password_hash: str | None = None
    api_key: str | None = None
    source: str = "config"  # "store" or "config" (LIENTHONG_OPERATORS, an API key)


def credential_fingerprint(account: Account) -> str:
    """SHA-256 of what the account signs in with (and its role): stored with each session, compared on every
    request, so that changing the password, the key or the role ends the sessions opened before."""
    secret = account.password_hash or account.api_key or ""
    return hashlib.sha256(f"lienthong-console\0{account.name}\0{account.role}\0{secret}".encode()).hexdigest()


def parse_operators(text: str) -> list[Account]:
    """``name:hash,name:hash`` → accounts (role ``operator``). Raises ``ConfigError`` on a malformed entry."""
    out = []
    for item in (part.strip() for part in _ENTRY_START.split(text)):
        if not item:
            continue
        name, sep, stored = item.partition(":")
        stored = stored.strip()
        if not sep or not name.strip() or not passwords.is_password_hash(stored):
            raise ConfigError(
                f"LIENTHONG_OPERATORS: expected name:$argon2id$… or name:scrypt$…, got {name.strip() or '?'}:…"
            )
        out.append(Account(name.strip(), "operator", password_hash=stored))
    return out


def configured(settings: Settings) -> dict[str, Account]:
    """The accounts from configuration alone (see the module docstring)."""
    found: dict[str, Account] = {}
    for role, key, name in (
        ("admin", settings.admin_api_key, settings.admin_name),
        ("operator", settings.operator_api_key, settings.operator_name),
    ):
        secret = key.get_secret_value() if key is not None else ""
        if secret:
            found[name] = Account(name, role, api_key=secret)
    for account in parse_operators(settings.operators):
        found[account.name] = account
    return found


def _from_store(stored: stored_accounts.StoredAccount) -> Account:
    return Account(stored.name, stored.role, password_hash=stored.password_hash, source="store")


def accounts(settings: Settings, engine: Engine | None = None) -> dict[str, Account]:
    """Every account that can sign in now: the configured ones, overridden by the store's (a disabled store account
    removes a configured one of the same name; see the module docstring)."""
    found = configured(settings)
    if engine is not None:
        for stored in stored_accounts.list_accounts(engine):
            if stored.active:
                found[stored.name] = _from_store(stored)
            else:
                found.pop(stored.name, None)
    return found


def lookup(settings: Settings, engine: Engine | None, name: str) -> Account | None:
    """The account ``name`` signs in as now (one indexed read of the store), or ``None``."""
    name = name.strip()
    usable = bool(name) and "\x00" not in name  # no account name holds a NUL
    stored = stored_accounts.get(engine, name) if engine is not None and usable else None
    if stored is not None:
        return _from_store(stored) if stored.active else None
    return configured(settings).get(name)


def refusal_reason(settings: Settings, engine: Engine | None, name: str) -> str:
    """Why a refused sign-in was refused, for the audit log (read after the answer's hash work, so it costs the
    same whatever it says): ``unknown-account``, ``account-disabled`` or ``wrong-password``."""
    name = name.strip()
    stored = stored_accounts.get(engine, name) if engine is not None and name and "\x00" not in name else None
    if stored is not None:
        return "wrong-password" if stored.active else "account-disabled"
    return "wrong-password" if name in configured(settings) else "unknown-account"


MIN_PASSWORD, MAX_PASSWORD = 8, 1024


def new_password_hash(password: str) -> str:
    """The argon2id hash of a new password, or ``AccountRefusedError`` (``account-password``) for one too short or
    too long (the bound keeps one hash from costing more than the sign-in budget)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountRefusedError(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            [Issue("/password", "account-password", f"at least {MIN_PASSWORD} characters")],
        )
    return passwords.hash_password(password)


def _dummy_hash(known: dict[str, Account]) -> str:
    """The throw-away hash checked when no account's own hash is: as costly as the first configured one (the
    store's hashes are all made by ``new_password_hash``, at the default cost that ``None`` gives)."""
    reference = next((a.password_hash for a in known.values() if a.password_hash is not None), None)
    return passwords.dummy_like(reference)


def prepare(settings: Settings) -> None:
    """Make the throw-away hash now (at start-up), so that not even the first unknown name costs extra."""
    _dummy_hash(configured(settings))


def authenticate(settings: Settings, name: str, password: str, engine: Engine | None = None) -> Account | None:
    """The account if ``password`` is right, else ``None``. Exactly one password-hash check per call, of the
    same cost for every kind of name (see the module docstring); ``engine``: the store's accounts too."""
    account = lookup(settings, engine, name)
    if account is not None and account.password_hash is not None and password:
        return account if passwords.verify_password(password, account.password_hash) else None
    passwords.verify_password(password or "x", _dummy_hash(configured(settings)))  # the same work, result unused
    if account is not None and account.api_key is not None and password:
        return account if hmac.compare_digest(account.api_key.encode(), password.encode()) else None
    return None


def session_secret(settings: Settings) -> str:
    """``LIENTHONG_SESSION_SECRET``, else a random key kept in ``data_dir`` (shared by every worker process)."""
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    path = Path(settings.data_dir) / "console-session.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data folder: private (see SECURITY.md)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    for _ in range(50):  # another worker process may be writing it right now
        text = path.read_text().strip()
        if text:
            return text
        import time

        time.sleep(0.02)
    raise ConfigError(f"{path} is empty: delete it, or set LIENTHONG_SESSION_SECRET")


def csrf_token(session: dict) -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, sent: str | None) -> bool:
    token = session.get("csrf")
    return bool(token and sent) and hmac.compare_digest(str(token).encode(), str(sent).encode())

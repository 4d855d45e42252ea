"""Operator sign-in for the console: accounts from configuration, password checks, CSRF tokens.

Accounts (``hub.config.Settings``):

- ``LIENTHONG_OPERATORS="name:$argon2id$…,name2:scrypt$…"`` — operators with their own password, hashed with
  argon2id (make one with ``hub operator hash-password``; the hub never stores a password); entries in the
  older scrypt form keep working (``hub.console.passwords``).
- The admin and operator API keys (``LIENTHONG_ADMIN_API_KEY`` / ``LIENTHONG_OPERATOR_API_KEY``) also sign in,
  as ``LIENTHONG_ADMIN_NAME`` / ``LIENTHONG_OPERATOR_NAME``, unless ``LIENTHONG_OPERATORS`` names that account
  itself. So a hub set up for the API already has a console sign-in, and named accounts are one setting away.

Every attempt does the same password-hash work, exactly once, whoever it names: an unknown name, an empty
password and an API-key account are checked against a throw-away hash of the same cost as the configured ones,
so the answer's timing does not tell which names exist.

Sessions are kept server-side (``hub.store.sessions``); each records ``credential_fingerprint`` of its account,
so a changed password, key or role ends the sessions opened with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.config import Settings
from hub.console import passwords
from hub.console.passwords import hash_password as hash_password  # re-exported: the CLI makes hashes here
from hub.console.passwords import scrypt_hash as scrypt_hash
from hub.console.passwords import verify_password as verify_password
from hub.errors import ConfigError

CSRF_FIELD = "csrf_token"
_ENTRY_START = re.compile(r",(?=\s*[^,:$\s]+:)")  # a comma that starts "name:" (argon2 hashes hold commas)


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # operator | admin
    password_hash: str | None = None
    api_key: str | None = None


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


def accounts(settings: Settings) -> dict[str, Account]:
    """Every account that can sign in (see the module docstring)."""
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


def _dummy_hash(known: dict[str, Account]) -> str:
    """The throw-away hash checked when no account's own hash is: as costly as the first configured one."""
    reference = next((a.password_hash for a in known.values() if a.password_hash is not None), None)
    return passwords.dummy_like(reference)


def prepare(settings: Settings) -> None:
    """Make the throw-away hash now (at start-up), so that not even the first unknown name costs extra."""
    _dummy_hash(accounts(settings))


def authenticate(settings: Settings, name: str, password: str) -> Account | None:
    """The account if ``password`` is right, else ``None``. Exactly one password-hash check per call, of the
    same cost for every kind of name (see the module docstring)."""
    known = accounts(settings)
    account = known.get(name.strip())
    if account is not None and account.password_hash is not None and password:
        return account if passwords.verify_password(password, account.password_hash) else None
    passwords.verify_password(password or "x", _dummy_hash(known))  # the same work, result unused
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

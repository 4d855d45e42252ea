"""Operator sign-in for the console: accounts from configuration, scrypt password hashes, CSRF tokens.

Accounts (``hub.config.Settings``):

- ``LIENTHONG_OPERATORS="name:scrypt$…,name2:scrypt$…"`` — operators with their own password, hashed with
  ``hashlib.scrypt`` (make one with ``hub operator hash-password``; the hub never stores a password).
- The admin and operator API keys (``LIENTHONG_ADMIN_API_KEY`` / ``LIENTHONG_OPERATOR_API_KEY``) also sign in,
  as ``LIENTHONG_ADMIN_NAME`` / ``LIENTHONG_OPERATOR_NAME``, unless ``LIENTHONG_OPERATORS`` names that account
  itself. So a hub set up for the API already has a console sign-in, and named accounts are one setting away.

Sessions are starlette's signed cookies (itsdangerous; HttpOnly, SameSite=Lax, ``max_age`` from settings); the
session holds the operator's name and role and a CSRF token that every POST form must send back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.config import Settings
from hub.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
CSRF_FIELD = "csrf_token"
_DUMMY = None  # a hash checked when the user is unknown, so both cases cost the same


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$<salt>$<key>`` (base64url): the form ``LIENTHONG_OPERATORS`` takes."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` value (``False`` for a malformed one)."""
    try:
        algorithm, n, r, p, salt, key = stored.split("$")
        if algorithm != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=2**27
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # operator | admin
    password_hash: str | None = None
    api_key: str | None = None

    def check(self, password: str) -> bool:
        if self.password_hash is not None:
            return verify_password(password, self.password_hash)
        if self.api_key is not None:
            return hmac.compare_digest(self.api_key.encode(), password.encode())
        return False


def parse_operators(text: str) -> list[Account]:
    """``name:hash,name:hash`` → accounts (role ``operator``). Raises ``ConfigError`` on a malformed entry."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, stored = item.partition(":")
        if not sep or not name.strip() or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ConfigError(f"LIENTHONG_OPERATORS: expected name:scrypt$…, got {name.strip() or '?'}:…")
        out.append(Account(name.strip(), "operator", password_hash=stored.strip()))
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


def authenticate(settings: Settings, name: str, password: str) -> Account | None:
    """The account if ``password`` is right, else ``None`` (unknown names cost one scrypt too)."""
    global _DUMMY
    account = accounts(settings).get(name.strip())
    if account is None or not password:
        if _DUMMY is None:
            _DUMMY = hash_password(secrets.token_urlsafe(8))
        verify_password(password or "x", _DUMMY)
        return None
    return account if account.check(password) else None


def session_secret(settings: Settings) -> str:
    """``LIENTHONG_SESSION_SECRET``, else a random key kept in ``data_dir`` (shared by every worker process)."""
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    path = Path(settings.data_dir) / "console-session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
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

"""Operator password hashes: argon2id for new ones (argon2-cffi), the older scrypt form still accepted.

- New: ``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`` (PHC string; OWASP's argon2id minimum, about 20 MiB and
  a few tens of ms per check — memory-hard, and bounded so that parallel sign-ins cannot exhaust the host).
- Accepted: ``scrypt$N$r$p$<salt>$<key>`` (base64url), what ``hub operator hash-password`` printed before; such
  entries keep working, and a new ``hub operator hash-password`` replaces them at leisure.

``verify_password`` is the one place hash work happens; ``dummy_like`` gives a throw-away hash with the same scheme
and cost as a real one, so that a sign-in for an unknown name costs what a real one does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import Argon2Error, InvalidHashError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
ARGON2_PREFIX = "$argon2id$"
SCRYPT_PREFIX = "scrypt$"
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, hasher: PasswordHasher = _HASHER) -> str:
    """An argon2id PHC string: the form ``LIENTHONG_OPERATORS`` takes for new accounts."""
    return hasher.hash(password)


def scrypt_hash(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$<salt>$<key>``: the older form, still accepted (kept to make and test such entries)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def is_password_hash(stored: str) -> bool:
    """Whether ``stored`` has the shape of a hash this module checks (not whether it is valid)."""
    return stored.startswith(ARGON2_PREFIX) or (stored.startswith(SCRYPT_PREFIX) and stored.count("$") == 5)


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against either form (``False`` for a malformed hash)."""
    if stored.startswith(ARGON2_PREFIX):
        try:
            return _HASHER.verify(stored, password)
        except (Argon2Error, InvalidHashError, ValueError):
            return False
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


def dummy_like(stored: str | None) -> str:
    """A hash of a random password with the scheme and cost of ``stored`` (argon2id defaults for ``None`` or a
    malformed one): checking a password against it costs what checking against ``stored`` costs."""
    return _dummy(_cost_of(stored))


def _cost_of(stored: str | None) -> str:
    if stored and stored.startswith(ARGON2_PREFIX):
        return stored.rsplit("$", 2)[0]  # "$argon2id$v=19$m=…,t=…,p=…"
    if stored and stored.startswith(SCRYPT_PREFIX) and stored.count("$") == 5:
        return stored.rsplit("$", 2)[0]  # "scrypt$N$r$p"
    return ""


@lru_cache(maxsize=16)
def _dummy(cost: str) -> str:
    throwaway = secrets.token_urlsafe(16)
    try:
        if cost.startswith(SCRYPT_PREFIX):
            _, n, r, p = cost.split("$")
            return scrypt_hash(throwaway, n=int(n), r=int(r), p=int(p))
        if cost:
            params = extract_parameters(f"{cost}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            return PasswordHasher.from_parameters(params).hash(throwaway)
    except (ValueError, TypeError, Argon2Error, InvalidHashError):
        pass
    return hash_password(throwaway)

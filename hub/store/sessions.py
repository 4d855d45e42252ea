"""The operator page's sign-in state: server-side sessions and failed sign-ins (the backoff's counters).

Sessions are rows keyed by the SHA-256 of a random token; the token travels only in the operator's cookie, so a
copy of the database opens no session. A session ends when its row goes: sign-out, expiry, or the console finding
that its account's credential changed. Failures are counted per key (``account:<name>``, ``address:<ip>``) and
forgotten ``window_s`` after the last one; the caller's ``backoff`` turns a count into a wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub.store.database import now, transaction
from hub.store.schema import console_sessions, signin_failures


@dataclass(frozen=True)
class ConsoleSession:
    name: str
    role: str
    credential: str  # the account's credential fingerprint when the session was opened
    expires_at: datetime


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    engine: Engine, token: str, *, name: str, role: str, credential: str, client: str | None, lifetime_s: float
) -> None:
    """Record a new session (and drop the expired ones, so the table holds only live sessions)."""
    at = now()
    with transaction(engine) as conn:
        conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_at < at))
        row = {"token_hash": token_hash(token), "name": name[:128], "role": role, "credential": credential,
               "client": (client or "")[:64] or None, "created_at": at,
               "expires_at": at + timedelta(seconds=lifetime_s)}  # fmt: skip
        conn.execute(sa.insert(console_sessions).values(row))


def find_session(engine: Engine, token: str) -> ConsoleSession | None:
    """The live session of ``token``, or ``None`` (unknown, ended or expired)."""
    with transaction(engine, readonly=True) as conn:
        row = conn.execute(
            sa.select(console_sessions).where(
                console_sessions.c.token_hash == token_hash(token), console_sessions.c.expires_at > now()
            )
        ).first()
    return None if row is None else ConsoleSession(row.name, row.role, row.credential, row.expires_at)


def end_session(engine: Engine, token: str) -> bool:
    """End one session; ``False`` when it had already ended."""
    with transaction(engine) as conn:
        done = conn.execute(sa.delete(console_sessions).where(console_sessions.c.token_hash == token_hash(token)))
    return bool(done.rowcount)


def end_sessions_of(engine: Engine, name: str) -> int:
    """End every session of the account ``name``; how many there were."""
    with transaction(engine) as conn:
        done = conn.execute(sa.delete(console_sessions).where(console_sessions.c.name == name))
    return int(done.rowcount)


# ------------------------------------------------------------------------------------------------ failures


def blocked_until(engine: Engine, keys: Sequence[str]) -> tuple[str, datetime] | None:
    """The key blocked the longest among ``keys`` and until when, or ``None`` when none is blocked now."""
    with transaction(engine, readonly=True) as conn:
        return _blocked(conn, keys, now())


def _blocked(conn: Connection, keys: Sequence[str], at: datetime) -> tuple[str, datetime] | None:
    row = conn.execute(
        sa.select(signin_failures.c.subject, signin_failures.c.blocked_until)
        .where(signin_failures.c.subject.in_(list(keys)), signin_failures.c.blocked_until > at)
        .order_by(signin_failures.c.blocked_until.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.subject, row.blocked_until)


def begin_attempt(
    engine: Engine, keys: Sequence[str], *, window_s: float, backoff: Callable[[int], float]
) -> tuple[str, datetime] | None:
    """Admit one sign-in attempt, or say which key blocks it and until when.

    An admitted attempt is counted as a failure at once, in the same transaction as the check (``forgive`` takes
    it back when the password is right): concurrent attempts cannot all pass the check before any is counted."""
    with transaction(engine) as conn:  # SQLite: a write transaction locks the database from its start
        at = now()
        if conn.dialect.name == "postgresql":  # lock the keys' rows (made when missing) so attempts queue on them
            conn.execute(
                postgresql.insert(signin_failures).on_conflict_do_nothing(),
                [{"subject": key, "failures": 0, "last_failure_at": at} for key in dict.fromkeys(keys)],
            )
            conn.execute(
                sa.select(signin_failures.c.subject)
                .where(signin_failures.c.subject.in_(list(keys)))
                .order_by(signin_failures.c.subject)
                .with_for_update()
            )
        blocked = _blocked(conn, keys, at)
        if blocked is None:
            _count_failures(conn, keys, at, window_s, backoff)
        return blocked


def record_failure(
    engine: Engine, keys: Sequence[str], *, window_s: float, backoff: Callable[[int], float]
) -> dict[str, tuple[int, datetime | None]]:
    """Count one failure for each key (restarting from 1 after ``window_s`` without any) and block each key for
    ``backoff(failures)`` seconds (0 = not blocked). Returns ``{key: (failures, blocked until or None)}``."""
    with transaction(engine) as conn:
        return _count_failures(conn, keys, now(), window_s, backoff)


def _count_failures(
    conn: Connection, keys: Sequence[str], at: datetime, window_s: float, backoff: Callable[[int], float]
) -> dict[str, tuple[int, datetime | None]]:
    cutoff = at - timedelta(seconds=window_s)
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(signin_failures)
    upsert = insert.on_conflict_do_update(
        index_elements=["subject"],
        set_={
            "failures": sa.case((signin_failures.c.last_failure_at < cutoff, 1), else_=signin_failures.c.failures + 1),
            "last_failure_at": insert.excluded.last_failure_at,
        },
    ).returning(signin_failures.c.failures)
    out: dict[str, tuple[int, datetime | None]] = {}
    for key in dict.fromkeys(keys):
        failures = int(conn.execute(upsert, {"subject": key, "failures": 1, "last_failure_at": at}).scalar_one())
        wait_s = backoff(failures)
        until = at + timedelta(seconds=wait_s) if wait_s > 0 else None
        conn.execute(sa.update(signin_failures).where(signin_failures.c.subject == key).values(blocked_until=until))
        out[key] = (failures, until)
    conn.execute(  # forget what is both old and no longer blocking
        sa.delete(signin_failures).where(
            signin_failures.c.last_failure_at < cutoff,
            sa.or_(signin_failures.c.blocked_until.is_(None), signin_failures.c.blocked_until < at),
        )
    )
    return out


def failure_counts(engine: Engine, keys: Sequence[str]) -> dict[str, tuple[int, datetime | None]]:
    """``{key: (recent failures, blocked until or None)}`` for the keys that have any."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(signin_failures.c.subject, signin_failures.c.failures, signin_failures.c.blocked_until).where(
                signin_failures.c.subject.in_(list(keys))
            )
        )
        return {row.subject: (int(row.failures), row.blocked_until) for row in rows}


def forgive(engine: Engine, keys: Sequence[str], *, backoff: Callable[[int], float]) -> None:
    """Take back the failure ``begin_attempt`` counted for an attempt that turned out right."""
    with transaction(engine) as conn:
        at = now()
        for key, (failures, _) in {
            row.subject: (int(row.failures), row.blocked_until)
            for row in conn.execute(
                sa.select(signin_failures.c.subject, signin_failures.c.failures, signin_failures.c.blocked_until).where(
                    signin_failures.c.subject.in_(list(keys))
                )
            )
        }.items():
            left = max(0, failures - 1)
            wait_s = backoff(left) if left else 0.0
            conn.execute(
                sa.update(signin_failures)
                .where(signin_failures.c.subject == key)
                .values(failures=left, blocked_until=at + timedelta(seconds=wait_s) if wait_s > 0 else None)
            )


def clear_failures(engine: Engine, keys: Sequence[str]) -> None:
    """Forget the failures of ``keys`` (an account after its right password)."""
    with transaction(engine) as conn:
        conn.execute(sa.delete(signin_failures).where(signin_failures.c.subject.in_(list(keys))))

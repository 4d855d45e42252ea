"""The audit log: one append-only row per thing a person (or a connector) did that someone may later ask about.

Actions are dotted names, grouped by their first part so that the audit view can filter by group:

- ``signin.ok`` / ``signin.refused`` / ``signin.throttled`` / ``signout`` — the operator page and the API;
- ``registry.*`` — connector created, changed, key rotated, certificate added or removed, enabled, disabled;
- ``dead_letter.replay`` / ``dead_letter.close``; ``delivery.retry_now``; ``destination.pause`` / ``.resume``;
- ``payload.view`` / ``payload.download`` — access to the message log is itself audited (DOMAIN.md §5);
- ``account.*`` — operator accounts added, disabled, passwords reset; ``dossier.correct`` — status corrections;
- ``message_log.archive`` — old final messages moved to an archive file and deleted (``hub log archive``), one row
  per deleting transaction (no group of the audit view's filter: find it by its action name).

``record`` takes an open connection so that an action and its audit row commit together (an action that rolls
back leaves no audit row claiming it happened); ``record_now`` opens its own transaction for things that have no
other write (a sign-in refused, a payload viewed). ``detail`` holds context, never a secret or a password.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.store.database import now, transaction
from hub.store.pages import Page, clamp_limit, decode_cursor, encode_cursor
from hub.store.schema import audit_log

OUTCOMES = ("ok", "refused")
#: The audit view's action groups (its filter): a group matches every action named ``<prefix>.*`` of its prefixes.
GROUPS: dict[str, tuple[str, ...]] = {
    "signin": ("signin", "signout"),
    "registry": ("registry",),
    "dead_letter": ("dead_letter",),
    "delivery": ("delivery",),
    "destination": ("destination",),
    "payload": ("payload",),
    "account": ("account",),
    "dossier": ("dossier",),
}


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    subject: str | None
    outcome: str
    client: str | None
    detail: Mapping[str, Any] | None


@dataclass(frozen=True)
class AuditFilter:
    """What the audit view asks for; every field optional. ``action`` matches a whole name or a group
    (``"signin"`` matches ``signin.ok`` and ``signin.refused``), or any of several (a tuple)."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | tuple[str, ...] | None = None
    subject: str | None = None
    outcome: str | None = None


def _row(actor: str, action: str, subject: str | None, outcome: str, role: str | None, client: str | None,
         detail: Mapping[str, Any] | None, at: datetime | None) -> dict[str, Any]:  # fmt: skip
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r}: one of {OUTCOMES}")
    return {"at": at or now(), "actor": _text(actor or "?")[:128], "role": role, "action": action[:48],
            "subject": None if subject is None else _text(str(subject))[:200], "outcome": outcome,
            "client": _text(client or "")[:64] or None, "detail": dict(detail) if detail else None}  # fmt: skip


def _text(value: str) -> str:
    """Text as PostgreSQL stores it: without NUL characters (a name tried at sign-in may hold anything)."""
    return value.replace("\x00", "")


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    outcome: str = "ok",
    role: str | None = None,
    client: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one audit row inside the caller's transaction."""
    conn.execute(sa.insert(audit_log).values(_row(actor, action, subject, outcome, role, client, detail, at)))


def record_now(engine: Engine, **kwargs: Any) -> None:
    """``record`` in a transaction of its own."""
    with transaction(engine) as conn:
        record(conn, **kwargs)


def record_once(engine: Engine, *, since: datetime, **kwargs: Any) -> bool:
    """``record_now`` unless a row with the same action and subject was written at or after ``since``: for what a
    client can repeat at will (a throttled sign-in), one row per subject and window, not one per request."""
    action, subject = kwargs["action"], kwargs.get("subject")
    with transaction(engine) as conn:
        seen = conn.execute(
            sa.select(audit_log.c.id)
            .where(audit_log.c.action == action, audit_log.c.subject == subject, audit_log.c.at >= since)
            .limit(1)
        ).first()
        if seen is None:
            record(conn, **kwargs)
    return seen is None


def _where(flt: AuditFilter) -> list[sa.ColumnElement[bool]]:
    c = audit_log.c
    out: list[sa.ColumnElement[bool]] = []
    if flt.since is not None:
        out.append(c.at >= flt.since)
    if flt.until is not None:
        out.append(c.at < flt.until)
    if flt.actor:
        out.append(c.actor == flt.actor)
    names = (flt.action,) if isinstance(flt.action, str) else flt.action or ()
    if any(names):
        out.append(sa.or_(*(sa.or_(c.action == name, c.action.startswith(name.rstrip(".") + ".", autoescape=True))
                            for name in names if name)))  # fmt: skip
    if flt.subject:
        out.append(c.subject == flt.subject)
    if flt.outcome:
        out.append(c.outcome == flt.outcome)
    return out


def entries(engine: Engine, flt: AuditFilter = AuditFilter(), *, cursor: str | None = None,
            limit: int | None = None) -> Page[AuditEntry]:  # fmt: skip
    """A page of the audit log, newest first, with the total matching ``flt``."""
    size = clamp_limit(limit)
    before = decode_cursor(cursor)
    where = _where(flt)
    query = sa.select(audit_log).where(*where)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    query = query.order_by(audit_log.c.id.desc()).limit(size + 1)
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(query).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(*where)).scalar_one()
    items = [AuditEntry(r.id, r.at, r.actor, r.role, r.action, r.subject, r.outcome, r.client, r.detail)
             for r in rows[:size]]  # fmt: skip
    more = len(rows) > size
    return Page(items, int(total), encode_cursor(items[-1].id) if more and items else None)


def actions(engine: Engine) -> Sequence[str]:
    """Every action name recorded so far (the audit view's filter choices)."""
    with transaction(engine, readonly=True) as conn:
        return [r[0] for r in conn.execute(sa.select(audit_log.c.action).distinct().order_by(audit_log.c.action))]

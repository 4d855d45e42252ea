"""A message's history: the append-only ``events`` rows every store part writes beside its own changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hub.store.schema import events

INSERT_EVENT = events.insert()  # built once: the hot path inserts events in every transaction


def event_row(
    message_pk: int,
    state: str,
    at: datetime,
    *,
    destination: str | None = None,
    attempt: int | None = None,
    detail: str = "",
    actor: str | None = None,
) -> dict[str, Any]:
    """One ``events`` row, ready for ``INSERT_EVENT`` (alone or in a batch)."""
    return {
        "message_pk": message_pk,
        "destination": destination,
        "state": str(state),
        "attempt": attempt,
        "detail": detail,
        "actor": actor,
        "at": at,
    }


def delivery_event(row: Any, state: str, at: datetime, detail: str = "", actor: str | None = None) -> dict[str, Any]:
    """The event of a delivery step, from a delivery row carrying ``message_pk``, ``destination``, ``attempts``."""
    return event_row(
        row.message_pk, state, at, destination=row.destination, attempt=row.attempts, detail=detail, actor=actor
    )


def add_events(conn: Connection, *rows: dict[str, Any]) -> None:
    """Append ``rows`` (from ``event_row``/``delivery_event``) in one statement."""
    if rows:
        conn.execute(INSERT_EVENT, list(rows))

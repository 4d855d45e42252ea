"""A dossier's current due date (NgayHenTra) and the dossiers past it.

The due date is the one the dossier's ``dossier.sync`` carries, moved lawfully by a supplement received with a new
one (a ``dossier.status`` with ``newDueAt``: VBDLIS NgayHenTraMoi; Quảng Nam Điều 13). It is kept on the
``dossiers`` row in the transaction that records the report (``note_due_changes``, called as timeline rows are
written), with the time of that report: a report older than the one that set it does not move it back. The
timeline row of a report that moves it keeps the date it replaced (``detail.previous_due_at``), which is how the
portal learns a supplement's NgayHenTraTruoc.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.dossier.supplements import utc_time
from hub.store.database import Database, chunks
from hub.store.schema import UTCDateTime, dossier_timeline, dossiers

#: The timeline outcomes that change a dossier (the rest are recorded only).
COUNTED = ("applied", "corrected", "synced")
#: Where a timeline row's detail carries the due date it sets: a status update's ``new_due_at``, a sync's ``due_at``.
DUE_KEYS = ("new_due_at", "due_at")

_SET_DUE = (
    dossiers.update()
    .where(dossiers.c.code == sa.bindparam("b_code"))
    .values(due_at=sa.bindparam("b_due", type_=UTCDateTime), due_set_at=sa.bindparam("b_due_set", type_=UTCDateTime))
)


@dataclass(frozen=True, slots=True)
class PastDue:
    """A dossier whose current due date has passed: its latest reported status (applied, corrected or synced) and
    who reported it."""

    dossier_code: str
    due_at: datetime
    status: int | None
    source: str | None


def iso(value: datetime) -> str:
    """A time as the timeline's JSON detail writes it (UTC, ``Z``), as pydantic dumps a packet's times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def due_of(detail: Any) -> datetime | None:
    """The due date a timeline row's detail sets, if any."""
    if not isinstance(detail, dict):
        return None
    for key in DUE_KEYS:
        found = utc_time(detail.get(key))
        if found is not None:
            return found
    return None


def previous_due_of(detail: Any) -> datetime | None:
    """The due date a timeline row replaced (``None`` when it set the first one, or none)."""
    return utc_time(detail.get("previous_due_at")) if isinstance(detail, dict) else None


def due_change(detail: Any) -> tuple[datetime, datetime] | None:
    """(replaced, new) due date of a timeline entry that moved the dossier's, else ``None`` (the page and the CLI
    show it)."""
    new, old = due_of(detail), previous_due_of(detail)
    return None if new is None or old is None else (old, new)


def note_due_changes(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Move the due dates the timeline ``rows`` about to be written set (counted outcomes only), in their time
    order, unless a later report set the current one; a row that moves one gets ``detail.previous_due_at``. The
    dossiers' rows exist (and are locked, for status updates) in the caller's transaction."""
    moves = [(row, due) for row in rows if row["outcome"] in COUNTED and (due := due_of(row.get("detail")))]
    if not moves:
        return
    codes = sorted({row["dossier_code"] for row, _ in moves})
    current: dict[str, tuple[datetime | None, datetime | None]] = {}
    for chunk in chunks(codes):
        query = sa.select(dossiers.c.code, dossiers.c.due_at, dossiers.c.due_set_at).where(dossiers.c.code.in_(chunk))
        current.update({r.code: (r.due_at, r.due_set_at) for r in conn.execute(query)})
    changed: set[str] = set()
    for row, due in sorted(moves, key=lambda move: move[0]["at"]):
        code = row["dossier_code"]
        old, set_at = current.get(code, (None, None))
        if set_at is not None and row["at"] < set_at:
            continue  # an older report (stale, or delivered late) does not move a newer due date back
        if old is not None and old != due:
            row["detail"] = {**row["detail"], "previous_due_at": iso(old)}
        current[code] = (due, row["at"])
        changed.add(code)
    if changed:
        params = [{"b_code": c, "b_due": current[c][0], "b_due_set": current[c][1]} for c in sorted(changed)]
        conn.execute(_SET_DUE, params)


def due_date(db: Database, dossier_code: str) -> tuple[datetime | None, datetime | None]:
    """The dossier's current due date and the time of the report that set it (``(None, None)``: none known)."""
    query = sa.select(dossiers.c.due_at, dossiers.c.due_set_at).where(dossiers.c.code == dossier_code)
    with db.transaction(readonly=True) as conn:
        row = conn.execute(query).first()
    return (None, None) if row is None else (row.due_at, row.due_set_at)


def past_due(db: Database, now: datetime, exclude_statuses: Collection[int] = ()) -> list[PastDue]:
    """Dossiers whose due date is at or before ``now`` and whose latest reported status is not one of
    ``exclude_statuses``, earliest due first. The latest report decides (applied, corrected or synced, by its
    time), else the dossier's applied status."""
    excluded = sorted({int(s) for s in exclude_statuses})
    d = dossiers.c
    query = sa.select(d.code, d.due_at, d.status).where(d.due_at <= now)
    if excluded:
        query = query.where(sa.or_(d.status.is_(None), d.status.not_in(excluded)))
    with db.transaction(readonly=True) as conn:
        rows = conn.execute(query).all()
        latest = _latest_reports(conn, [r.code for r in rows])
    found = []
    for r in rows:
        status, source = latest.get(r.code, (r.status, None))
        if status is not None and status in excluded:
            continue
        found.append(PastDue(r.code, r.due_at, status, source))
    found.sort(key=lambda p: (p.due_at, p.dossier_code))
    return found


def _latest_reports(conn: Connection, codes: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each dossier's latest counted timeline entry (by its time, then as recorded): (status, source)."""
    tl = dossier_timeline.c
    latest: dict[str, tuple[int, str]] = {}
    for chunk in chunks(sorted(set(codes))):
        ranked = (
            sa.select(
                tl.dossier_code, tl.status, tl.source,
                sa.func.row_number().over(partition_by=tl.dossier_code, order_by=(tl.at.desc(), tl.id.desc()))
                .label("rn"),
            )
            .where(tl.outcome.in_(COUNTED), tl.dossier_code.in_(chunk))
            .subquery()
        )  # fmt: skip
        query = sa.select(ranked.c.dossier_code, ranked.c.status, ranked.c.source).where(ranked.c.rn == 1)
        latest.update({r.dossier_code: (r.status, r.source) for r in conn.execute(query)})
    return latest

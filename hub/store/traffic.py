"""Delivery history (``delivery_minutes``): per destination and UTC minute, how many deliveries were delivered,
failed with a retry planned, or given up on (dead), kept ``RETENTION`` (7 days) for the operator page's charts and
``GET /api/v1/history``.

Counted inside the transaction that changes the deliveries' state, so a count never disagrees with a rolled-back
change, with one upsert per transaction (``INSERT … ON CONFLICT (destination, minute) DO UPDATE SET delivered =
delivered + excluded.delivered``, SQLite and PostgreSQL alike): the hot path pays one statement per batch, not a
read or a write per delivery. The events table could answer the same question, but scanning a week of events for
every chart would grow with the traffic; this table holds at most one row per destination and minute.

Old rows are pruned by the writers themselves, at most once a minute per process, before the upsert (so on
PostgreSQL every transaction locks the old rows before the current ones: one lock order, no deadlock).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub.store.database import Database, now
from hub.store.schema import delivery_minutes

RETENTION = timedelta(days=7)
COUNTERS = ("delivered", "failed", "dead")
#: window name → (its length, the bucket it is read in), in seconds: minutes for an hour, quarter hours for a day,
#: hours for a week (60, 96 and 168 buckets).
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 3600)}
DEFAULT_WINDOW = "1h"

_UPSERTS: dict[str, sa.Insert] = {}
_PRUNED: weakref.WeakKeyDictionary[Engine, datetime] = weakref.WeakKeyDictionary()  # engine → last minute pruned


@dataclass(frozen=True)
class Bucket:
    """One bucket of a destination's history: from ``start`` (UTC) for the window's bucket length."""

    start: datetime
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.dead


@dataclass(frozen=True)
class DestinationHistory:
    """Every bucket of one destination over the window, oldest first (empty buckets included, as zeros)."""

    destination: str
    buckets: tuple[Bucket, ...]

    @property
    def delivered(self) -> int:
        return sum(b.delivered for b in self.buckets)

    @property
    def failed(self) -> int:
        return sum(b.failed for b in self.buckets)

    @property
    def dead(self) -> int:
        return sum(b.dead for b in self.buckets)

    @property
    def empty(self) -> bool:
        return not any(b.total for b in self.buckets)


@dataclass(frozen=True)
class TrafficHistory:
    """The history of a window read at ``at``: ``bucket_s``-long buckets from ``start`` to ``end`` (the current
    bucket, partly elapsed, is the last one)."""

    window: str
    bucket_s: int
    start: datetime
    end: datetime
    at: datetime
    destinations: tuple[DestinationHistory, ...]

    def of(self, destination: str) -> DestinationHistory:
        """The destination's history, all zeros when it had no traffic in the window."""
        for found in self.destinations:
            if found.destination == destination:
                return found
        return DestinationHistory(destination, tuple(Bucket(s) for s in self.starts()))

    def starts(self) -> list[datetime]:
        count = int((self.end - self.start).total_seconds()) // self.bucket_s
        return [self.start + timedelta(seconds=i * self.bucket_s) for i in range(count)]


def minute_of(at: datetime) -> datetime:
    """The UTC minute ``at`` falls in."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _upsert(dialect: str) -> sa.Insert:
    """``INSERT … ON CONFLICT (destination, minute) DO UPDATE`` adding the new counts, built once per dialect."""
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(delivery_minutes)
        stmt = _UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=["destination", "minute"],
            set_={name: delivery_minutes.c[name] + insert.excluded[name] for name in COUNTERS},
        )
    return stmt


def count(conn: Connection, at: datetime, column: str, per_destination: Mapping[str, int]) -> None:
    """Add ``per_destination`` counts to ``column`` (delivered, failed or dead) in ``at``'s minute, inside the
    caller's transaction: one statement, destinations in one order (two PostgreSQL writers never wait on each
    other's rows crosswise). Prunes first, at most once a minute per process."""
    minute = minute_of(at)
    rows = [
        {"destination": d, "minute": minute, **{name: n if name == column else 0 for name in COUNTERS}}
        for d, n in sorted(per_destination.items())
        if n
    ]
    if not rows:
        return
    _prune_now_and_then(conn, minute)
    conn.execute(_upsert(conn.dialect.name), rows)


def _prune_now_and_then(conn: Connection, minute: datetime) -> None:
    engine = conn.engine
    if _PRUNED.get(engine) == minute:
        return
    _PRUNED[engine] = minute
    prune_in(conn, minute)


def prune_in(conn: Connection, at: datetime) -> int:
    """Delete the minutes older than ``RETENTION`` before ``at``; how many rows went."""
    result = conn.execute(sa.delete(delivery_minutes).where(delivery_minutes.c.minute < at - RETENTION))
    return int(result.rowcount or 0)


def prune(db: Database, at: datetime | None = None) -> int:
    """``prune_in`` in its own transaction (``at``: now)."""
    with db.transaction() as conn:
        return prune_in(conn, at or now())


def _bucket_epoch(dialect: str, bucket_s: int) -> sa.ColumnElement[Any]:
    """The start of the bucket a minute falls in, as Unix seconds, computed by the database."""
    if dialect == "postgresql":
        epoch: sa.ColumnElement[Any] = sa.extract("epoch", delivery_minutes.c.minute)
        return sa.cast(sa.func.floor(epoch / bucket_s) * bucket_s, sa.BigInteger)
    seconds = sa.cast(sa.func.strftime("%s", delivery_minutes.c.minute), sa.Integer)
    return (seconds // bucket_s) * bucket_s


def window_bounds(window: str, at: datetime) -> tuple[datetime, datetime, int]:
    """``(start, end, bucket_s)`` of ``window`` read at ``at``: whole buckets, the current one last."""
    length_s, bucket_s = WINDOWS[window]
    epoch = int(at.timestamp())
    end = datetime.fromtimestamp((epoch // bucket_s + 1) * bucket_s, UTC)
    return end - timedelta(seconds=length_s), end, bucket_s


def history(
    db: Database, window: str = DEFAULT_WINDOW, *, destination: str | None = None, at: datetime | None = None
) -> TrafficHistory:
    """Delivered / failed / dead per destination in the window's buckets (summed by the database), every bucket
    listed; destinations without traffic in the window are left out unless asked for by ``destination``."""
    if window not in WINDOWS:
        raise ValueError(f"unknown history window {window!r}: one of {', '.join(WINDOWS)}")
    at = at or now()
    start, end, bucket_s = window_bounds(window, at)
    bucket = _bucket_epoch(db.dialect, bucket_s).label("bucket")
    query = (
        sa.select(
            delivery_minutes.c.destination, bucket, *(sa.func.sum(delivery_minutes.c[n]).label(n) for n in COUNTERS)
        )
        .where(delivery_minutes.c.minute >= start, delivery_minutes.c.minute < end)
        .group_by(delivery_minutes.c.destination, bucket)
    )
    if destination is not None:
        query = query.where(delivery_minutes.c.destination == destination)
    found: dict[str, dict[int, Bucket]] = {}
    with db.transaction(readonly=True) as conn:
        for r in conn.execute(query):
            epoch = int(r.bucket)
            found.setdefault(r.destination, {})[epoch] = Bucket(
                datetime.fromtimestamp(epoch, UTC), int(r.delivered), int(r.failed), int(r.dead)
            )
    if destination is not None:
        found.setdefault(destination, {})
    shell = TrafficHistory(window, bucket_s, start, end, at, ())
    starts = shell.starts()
    series = tuple(
        DestinationHistory(name, tuple(buckets.get(int(s.timestamp()), Bucket(s)) for s in starts))
        for name, buckets in sorted(found.items())
    )
    return TrafficHistory(window, bucket_s, start, end, at, series)

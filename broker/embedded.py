"""The zero-server broker: a durable work queue in one SQLite file (WAL mode), shared by several processes.

Design
------
One table ``messages`` holds every queued, in-flight, delayed and dead message::

    state      0 = queued (ready, in flight or waiting for a retry), 1 = dead
    visible_at a queued row can be claimed when ``visible_at <= now``
    lease_owner set by a claim; NULL after a retry (so "leased and not yet visible" = in flight,
               "not leased and not yet visible" = waiting for a retry)
    claims     incremented by every claim; ``(id, claims)`` is the delivery's token, so a settlement from a
               worker whose lease already expired (and the row was claimed again) is ignored

- **publish()** inserts the whole batch in one transaction (``synchronous=FULL``: committed = on disk).
- **consume()** claims rows atomically with one ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`` per
  destination (SQLite ≥ 3.35), setting ``visible_at = now + visibility_timeout_s``. Several processes can claim
  concurrently: SQLite serialises writers, and a row is claimed by exactly one of them.
- **Visibility timeout.** A claimed row that is not settled within ``visibility_timeout_s`` becomes visible again
  (``redelivered=True``): a killed worker loses nothing (at-least-once). ``close()`` gives back the deliveries
  this instance still holds at once, like an AMQP channel close does.
- **Settlements are buffered.** ``ack``/``retry``/``dead_letter``/``requeue`` are recorded in memory and written in
  one transaction (``executemany``) at the next ``consume()``/``publish()``/``stats()``/``take_dead()``/
  ``flush()``/``close()``, or as soon as ``settle_batch`` settlements are buffered or the oldest one is
  ``settle_interval_s`` old. A process that crashes before the flush loses only the settlements, so those
  deliveries are redelivered later (at-least-once, never lost). Retry delays count from the ``retry()`` call.
- **Fairness.** ``consume()`` over several destinations gives each an equal share of ``prefetch`` first, then
  fills the rest from whichever has more, so one destination with a backlog cannot starve the others.

Not thread-safe: one instance is used by one thread at a time (see :mod:`broker.base`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from broker.base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    Delivery,
    OutboundMessage,
    QueueStats,
    RetryPolicy,
)

log = logging.getLogger(__name__)

if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - Debian 12 ships 3.40
    raise ImportError(f"the embedded broker needs SQLite >= 3.35 (RETURNING); this is {sqlite3.sqlite_version}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    name        TEXT PRIMARY KEY,
    policy      TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    destination TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    headers     TEXT,
    delivery_id INTEGER,
    attempt     INTEGER NOT NULL DEFAULT 1,
    state       INTEGER NOT NULL DEFAULT 0,
    visible_at  REAL    NOT NULL,
    enqueued_at REAL    NOT NULL,
    claims      INTEGER NOT NULL DEFAULT 0,
    redelivered INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    reason      TEXT,
    dead_at     REAL
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (state, destination, visible_at);
"""

_CLAIM = """
UPDATE messages
   SET visible_at = :lease_until, lease_owner = :owner, claims = claims + 1,
       redelivered = (lease_owner IS NOT NULL)
 WHERE id IN (SELECT id FROM messages
               WHERE state = 0 AND destination = :destination AND visible_at <= :now
               ORDER BY visible_at LIMIT :limit)
RETURNING id, message_id, body, headers, delivery_id, attempt, claims, redelivered
"""
# RETURNING gives no order guarantee: _claim_one sorts the claimed rows by id (publish order).

_ACK = "DELETE FROM messages WHERE id = ? AND claims = ? AND state = 0"
_RETRY = (
    "UPDATE messages SET visible_at = ?, attempt = attempt + 1, lease_owner = NULL, redelivered = 0, reason = ? "
    "WHERE id = ? AND claims = ? AND state = 0"
)
_DEAD = (
    "UPDATE messages SET state = 1, reason = ?, dead_at = ?, lease_owner = NULL "
    "WHERE id = ? AND claims = ? AND state = 0"
)
# A requeued row keeps its lease_owner, so its next claim reports redelivered=True.
_REQUEUE = "UPDATE messages SET visible_at = ? WHERE id = ? AND claims = ? AND state = 0"


def _create_private_file(path: Path) -> None:
    """Create the queue file empty, 0600, in a folder created 0700, unless it exists: SQLite would create it with
    the umask (0644) and the queued envelopes hold personal data. (The broker imports nothing of the hub, so this
    repeats ``hub.store.database.create_private_file``.)"""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class EmbeddedBroker(Broker):
    """A :class:`~broker.base.Broker` on a SQLite file. See the module docstring for the semantics."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        visibility_timeout_s: float = 120.0,
        poll_interval_s: float = 0.05,
        settle_batch: int = 500,
        settle_interval_s: float = 0.5,
        busy_timeout_s: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        self.path = Path(path)
        self.visibility_timeout_s = float(visibility_timeout_s)
        self.poll_interval_s = float(poll_interval_s)
        self.settle_batch = int(settle_batch)
        self.settle_interval_s = float(settle_interval_s)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._known: set[str] = set()
        self._pending: dict[str, list[tuple]] = {"ack": [], "retry": [], "dead": [], "requeue": []}
        self._pending_count = 0
        self._pending_since: float | None = None
        self._held: dict[int, int] = {}  # id -> claims, deliveries handed out by this instance and not settled
        self._rotation = 0
        if str(self.path) != ":memory:":
            _create_private_file(self.path)
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
                raise BrokerError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._create_schema()
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"cannot open the embedded queue {self.path}: {exc}") from exc

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _tx(self) -> EmbeddedBroker._Tx:
        return EmbeddedBroker._Tx(self._db)

    def _check_open(self) -> None:
        if self._db is None:
            raise BrokerError("the broker is closed")

    # -- topology ---------------------------------------------------------------------------------------------

    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        self._check_open()
        policy_json = json.dumps(asdict(policy)) if policy is not None else None
        try:
            with self._tx() as db:
                for name in destinations:
                    _check_name(name)
                    db.execute("INSERT OR IGNORE INTO destinations (name, policy) VALUES (?, ?)", (name, policy_json))
                    if policy_json is not None:
                        db.execute("UPDATE destinations SET policy = ? WHERE name = ?", (policy_json, name))
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"declare failed: {exc}") from exc
        self._known.update(destinations)

    def _require_declared(self, names: set[str]) -> None:
        missing = names - self._known
        if not missing:
            return
        marks = ",".join("?" * len(missing))
        rows = self._db.execute(f"SELECT name FROM destinations WHERE name IN ({marks})", sorted(missing))  # noqa: S608
        found = {r[0] for r in rows}
        self._known.update(found)
        if missing - found:
            raise BrokerError(f"destination(s) not declared: {', '.join(sorted(missing - found))}")

    # -- publishing -------------------------------------------------------------------------------------------

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self._check_open()
        if not messages:
            return
        self._flush_if_due(force=self._pending_count > 0)
        self._require_declared({m.destination for m in messages})
        now = time.time()
        rows = [
            (
                m.destination,
                m.message_id,
                m.body,
                json.dumps(dict(m.headers), ensure_ascii=False) if m.headers else None,
                m.delivery_id,
                now,
                now,
            )
            for m in messages
        ]
        try:
            with self._tx() as db:
                db.executemany(
                    "INSERT INTO messages (destination, message_id, body, headers, delivery_id, visible_at, "
                    "enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"publish failed, nothing stored: {exc}") from exc

    # -- consuming --------------------------------------------------------------------------------------------

    def consume(self, destinations: Sequence[str], *, prefetch: int = 100, timeout_s: float = 1.0) -> list[Delivery]:
        self._check_open()
        self._flush_if_due(force=True)
        if not destinations or prefetch <= 0:
            return []
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            deliveries = self._claim(list(destinations), prefetch)
            if deliveries:
                return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(self.poll_interval_s, remaining))

    def _claim(self, destinations: list[str], prefetch: int) -> list[Delivery]:
        # Rotate the starting destination so the remainder of the share goes round-robin between calls.
        start = self._rotation % len(destinations)
        self._rotation += 1
        order = destinations[start:] + destinations[:start]
        share = math.ceil(prefetch / len(order))
        now = time.time()
        params = {"lease_until": now + self.visibility_timeout_s, "owner": self.owner, "now": now}
        out: list[Delivery] = []
        try:
            with self._tx() as db:
                hungry: list[str] = []
                for destination in order:
                    want = min(share, prefetch - len(out))
                    if want <= 0:
                        break
                    got = self._claim_one(db, destination, want, params)
                    out.extend(got)
                    if len(got) == want:
                        hungry.append(destination)
                for destination in hungry:
                    want = prefetch - len(out)
                    if want <= 0:
                        break
                    out.extend(self._claim_one(db, destination, want, params))
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"consume failed: {exc}") from exc
        for d in out:
            self._held[d._token[0]] = d._token[1]
        return out

    @staticmethod
    def _claim_one(db: sqlite3.Connection, destination: str, limit: int, params: dict) -> list[Delivery]:
        rows = db.execute(_CLAIM, {**params, "destination": destination, "limit": limit}).fetchall()
        rows.sort(key=lambda r: r[0])
        return [
            Delivery(
                destination=destination,
                message_id=message_id,
                body=bytes(body),
                headers=json.loads(headers) if headers else {},
                attempt=attempt,
                delivery_id=delivery_id,
                redelivered=bool(redelivered),
                _token=(row_id, claims),
            )
            for row_id, message_id, body, headers, delivery_id, attempt, claims, redelivered in rows
        ]

    # -- settling ---------------------------------------------------------------------------------------------

    def _settle(self, kind: str, delivery: Delivery, params: tuple) -> None:
        self._check_open()
        token = delivery._token
        if not (isinstance(token, tuple) and len(token) == 2):
            raise BrokerError("this delivery was not consumed from an EmbeddedBroker")
        row_id, claims = token
        if self._held.pop(row_id, None) != claims:
            return  # already settled by this instance (or not ours): settling twice is a no-op
        self._pending[kind].append((*params, row_id, claims))
        self._pending_count += 1
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._flush_if_due()

    def ack(self, delivery: Delivery) -> None:
        self._settle("ack", delivery, ())

    def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        self._settle("retry", delivery, (time.time() + max(0.0, delay_s), reason))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._settle("dead", delivery, (reason, time.time()))

    def requeue(self, delivery: Delivery) -> None:
        self._settle("requeue", delivery, (0.0,))

    def _flush_if_due(self, force: bool = False) -> None:
        if not self._pending_count:
            return
        if (
            force
            or self._pending_count >= self.settle_batch
            or time.monotonic() - (self._pending_since or 0.0) >= self.settle_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered settlements in one transaction."""
        if self._db is None or not self._pending_count:
            return
        try:
            with self._tx() as db:
                if self._pending["ack"]:
                    db.executemany(_ACK, self._pending["ack"])
                if self._pending["retry"]:
                    db.executemany(_RETRY, self._pending["retry"])
                if self._pending["dead"]:
                    db.executemany(_DEAD, self._pending["dead"])
                if self._pending["requeue"]:
                    db.executemany(_REQUEUE, self._pending["requeue"])
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"settling failed (the deliveries will be redelivered): {exc}") from exc
        for batch in self._pending.values():
            batch.clear()
        self._pending_count = 0
        self._pending_since = None

    # -- operations -------------------------------------------------------------------------------------------

    def stats(self, destinations: Sequence[str]) -> list[QueueStats]:
        self._check_open()
        self._flush_if_due(force=True)
        now = time.time()
        out = []
        for destination in destinations:
            ready, in_flight, retrying, dead, oldest = self._db.execute(
                """
                SELECT COALESCE(SUM(state = 0 AND visible_at <= :now), 0),
                       COALESCE(SUM(state = 0 AND visible_at > :now AND lease_owner IS NOT NULL), 0),
                       COALESCE(SUM(state = 0 AND visible_at > :now AND lease_owner IS NULL), 0),
                       COALESCE(SUM(state = 1), 0),
                       MIN(CASE WHEN state = 0 THEN enqueued_at END)
                  FROM messages WHERE destination = :destination
                """,
                {"now": now, "destination": destination},
            ).fetchone()
            age = None if oldest is None else max(0.0, now - oldest)
            out.append(QueueStats(destination, ready, in_flight, retrying, dead, age))
        return out

    def dead_letters(self, destination: str, limit: int = 100) -> list[tuple[str, str | None, float]]:
        """``(message_id, reason, dead_at)`` of the oldest dead letters of a destination (for operators)."""
        self._check_open()
        rows = self._db.execute(
            "SELECT message_id, reason, dead_at FROM messages WHERE state = 1 AND destination = ? "
            "ORDER BY dead_at LIMIT ?",
            (destination, limit),
        )
        return [tuple(r) for r in rows]

    def take_dead(self, destination: str, message_ids: set[str] | None) -> int:
        self._check_open()
        self._flush_if_due(force=True)
        removed = 0
        try:
            with self._tx() as db:
                if message_ids is None:
                    removed = db.execute(
                        "DELETE FROM messages WHERE state = 1 AND destination = ?", (destination,)
                    ).rowcount
                else:
                    ids = sorted(message_ids)
                    for i in range(0, len(ids), 500):
                        chunk = ids[i : i + 500]
                        marks = ",".join("?" * len(chunk))
                        removed += db.execute(
                            f"DELETE FROM messages WHERE state = 1 AND destination = ? AND message_id IN ({marks})",  # noqa: S608
                            (destination, *chunk),
                        ).rowcount
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"take_dead failed: {exc}") from exc
        return removed

    def purge(self, destinations: Sequence[str]) -> None:
        """Delete the destinations and every message they hold (tests and operators only)."""
        self._check_open()
        self.flush()
        with self._tx() as db:
            for destination in destinations:
                db.execute("DELETE FROM messages WHERE destination = ?", (destination,))
                db.execute("DELETE FROM destinations WHERE name = ?", (destination,))
        self._known.difference_update(destinations)

    def retire(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> list[str]:
        """Forget each destination without messages (its ``destinations`` row); one that still holds queued,
        in-flight, retrying or dead messages is kept (logged)."""
        self._check_open()
        self._flush_if_due(force=True)
        kept: list[str] = []
        try:
            with self._tx() as db:
                for destination in destinations:
                    (count,) = db.execute(
                        "SELECT COUNT(*) FROM messages WHERE destination = ?", (destination,)
                    ).fetchone()
                    if count:
                        kept.append(destination)
                        log.warning("destination %s is gone from the routing; kept in the queue, it still holds "
                                    "%d message(s)", destination, count)  # fmt: skip
                    else:
                        db.execute("DELETE FROM destinations WHERE name = ?", (destination,))
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"retire failed: {exc}") from exc
        self._known.difference_update(set(destinations) - set(kept))
        return kept

    def close(self) -> None:
        if self._db is None:
            return
        try:
            # Give back what this instance still holds, as closing an AMQP channel does.
            now = time.time()
            for row_id, claims in self._held.items():
                self._pending["requeue"].append((now, row_id, claims))
                self._pending_count += 1
            self._held.clear()
            self.flush()
        finally:
            self._db.close()
            self._db = None  # type: ignore[assignment]


def _check_name(name: str) -> None:
    if not name or not isinstance(name, str):
        raise BrokerError(f"invalid destination name {name!r}")

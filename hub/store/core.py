"""The exchange core's durable store: message log, outbox, events, dead letters, dossier timeline.

SQLAlchemy Core on SQLite (default, one file, WAL) or PostgreSQL (``postgresql+psycopg://``). Every public
method is one transaction on a pooled connection, so a ``Store`` can be shared by threads.

On SQLite, write transactions start with ``BEGIN IMMEDIATE``: writers queue on the database lock (for up to
``busy_timeout_ms``) instead of failing when a read turns into a write. On PostgreSQL, races are settled by
``INSERT … ON CONFLICT DO NOTHING``, conditional ``UPDATE … RETURNING`` and ``SELECT … FOR UPDATE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from hub.errors import (
    AlreadyReplayedError,
    DeliveryClosedError,
    StoreError,
    UnknownDeadLetterError,
    UnknownDeliveryError,
)
from hub.store.schema import (
    PENDING_STATES,
    DeliveryState,
    EventState,
    UTCDateTime,
    dead_letters,
    deliveries,
    dossier_timeline,
    dossiers,
    events,
    messages,
)
from hub.store.types import (
    AcceptResult,
    DeadLetter,
    DeliveryStatus,
    DeliveryView,
    DestinationStats,
    DossierRecord,
    IntakeDossier,
    MessageTrace,
    PartnerActivity,
    PendingDelivery,
    RuleEvent,
    Submission,
    TimelineEntry,
    TraceEvent,
    message_status,
)

if TYPE_CHECKING:
    from hub.dossier.status_machine import Decision


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///var/lienthong.db"
_CHUNK = 500  # keys per IN (...) list: far below SQLite's bound-parameter limit
_MIGRATION_LOCK = 0x4C69656E  # pg_advisory_xact_lock key: concurrent migrate() calls take turns
_WRITE = "lienthong_write"

Q, DV, RT, DD, DL = (
    DeliveryState.QUEUED,
    DeliveryState.DELIVERING,
    DeliveryState.RETRYING,
    DeliveryState.DELIVERED,
    DeliveryState.DEAD,
)


# Hot-path statements, built once (SQLAlchemy then only looks up their compiled form).
_B_ID = sa.bindparam("b_id")
_B_NOW = sa.bindparam("b_now", type_=UTCDateTime)
_RETURN = (deliveries.c.attempts, deliveries.c.message_pk, deliveries.c.destination)
_INSERT_EVENT = events.insert()
_INSERT_TIMELINE = dossier_timeline.insert()
_SET_DOSSIER_STATE = (
    dossiers.update()
    .where(dossiers.c.code == sa.bindparam("b_code"))
    .values(
        status=sa.bindparam("b_status", type_=sa.Integer),
        status_at=sa.bindparam("b_status_at", type_=UTCDateTime),
        applied_at=sa.bindparam("b_applied", type_=UTCDateTime),
    )
)
_DELIVERED_MANY = (
    deliveries.update()
    .where(deliveries.c.id == _B_ID)
    .values(
        state=DD,
        outbound=sa.bindparam("b_outbound", type_=sa.LargeBinary),
        outbound_digest=sa.bindparam("b_digest", type_=sa.String),
        delivered_at=_B_NOW,
        next_attempt_at=None,
        updated_at=_B_NOW,
    )
)


@dataclass
class _StatusWrites:
    """Status-machine results of one transaction, written together: timeline entries, and each dossier's last
    new state (later decisions in the same transaction already saw the earlier ones in memory)."""

    timeline: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def flush(self, conn: Connection) -> None:
        if self.states:
            conn.execute(_SET_DOSSIER_STATE, list(self.states.values()))
        if self.timeline:
            conn.execute(_INSERT_TIMELINE, self.timeline)


def _event_row(row: Any, state: str, at: datetime, detail: str = "") -> dict[str, Any]:
    """An events row for a delivery row carrying message_pk, destination and attempts."""
    return {
        "message_pk": row.message_pk,
        "destination": row.destination,
        "state": str(state),
        "attempt": row.attempts,
        "detail": detail,
        "actor": None,
        "at": at,
    }


_STATE = sa.select(deliveries.c.state).where(deliveries.c.id == _B_ID)
# Batch statements take their id lists as expanding parameters, so one prepared construct serves every batch.
_B_IDS = sa.bindparam("b_ids", expanding=True)
_B_KEYS = sa.bindparam("b_keys", expanding=True)  # (sender, message_id) pairs
_START_ATTEMPTS = (
    deliveries.update()
    .where(deliveries.c.id.in_(_B_IDS), deliveries.c.state != DD)
    .values(attempts=deliveries.c.attempts + 1, state=DV, next_attempt_at=None, updated_at=_B_NOW)
    .returning(deliveries.c.id, *_RETURN)
)
_OPEN_DELIVERIES = sa.select(deliveries.c.id, *_RETURN).where(deliveries.c.id.in_(_B_IDS), deliveries.c.state != DD)
_MARK_PUBLISHED = (
    deliveries.update()
    .where(deliveries.c.id.in_(_B_IDS), deliveries.c.published_at.is_(None))
    .values(published_at=_B_NOW)
)
_INSERT_DELIVERIES = deliveries.insert().returning(deliveries.c.id, deliveries.c.message_pk, deliveries.c.destination)
_STORED_MESSAGES = sa.select(
    messages.c.id, messages.c.sender, messages.c.message_id, messages.c.digest, messages.c.received_at
).where(sa.tuple_(messages.c.sender, messages.c.message_id).in_(_B_KEYS))
_DELIVERIES_OF = (
    sa.select(deliveries.c.id, deliveries.c.message_pk, deliveries.c.state)
    .where(deliveries.c.message_pk.in_(_B_IDS))
    .order_by(deliveries.c.id)
)
_LOCK_DOSSIERS = (
    sa.select(dossiers.c.code, dossiers.c.status, dossiers.c.status_at)
    .where(dossiers.c.code.in_(sa.bindparam("b_codes", expanding=True)))
    .order_by(dossiers.c.code)
    .with_for_update()
)
_START_ATTEMPT = (
    deliveries.update()
    .where(deliveries.c.id == _B_ID, deliveries.c.state != DD)
    .values(attempts=deliveries.c.attempts + 1, state=DV, next_attempt_at=None, updated_at=_B_NOW)
    .returning(*_RETURN)
)
_DELIVERED = (
    deliveries.update()
    .where(deliveries.c.id == _B_ID, deliveries.c.state != DD)
    .values(
        state=DD,
        outbound=sa.bindparam("b_outbound", type_=sa.LargeBinary),
        outbound_digest=sa.bindparam("b_digest", type_=sa.String),
        delivered_at=_B_NOW,
        next_attempt_at=None,
        updated_at=_B_NOW,
    )
    .returning(*_RETURN)
)


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def normalise_url(url: str | URL) -> URL:
    """The SQLAlchemy URL the store opens: ``postgresql://`` means psycopg 3 (the driver the hub ships)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Store:
    """The durable store of the exchange core. Thread-safe; each public method is one transaction."""

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        echo: bool = False,
        busy_timeout_ms: int = 30_000,
        pool_size: int = 10,
    ) -> None:
        """Open (lazily) the database at ``url``; ``None`` reads ``LIENTHONG_DATABASE_URL`` (default SQLite file).

        A SQLite file's parent folder is created. Call ``migrate()`` before first use of a new database.
        """
        if url is None:
            from hub.config import get_settings

            url = get_settings().database_url
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        self._ignoring: dict[tuple[str, tuple[str, ...]], sa.Insert] = {}  # see _insert_ignoring
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.dialect!r}: use a sqlite:/// or postgresql:// URL")
        self._insert_message = self._insert_ignoring(messages, ("sender", "message_id")).returning(
            messages.c.id, messages.c.sender, messages.c.message_id
        )
        options: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            options["pool_size"] = pool_size
            options["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = sa.create_engine(self.url, **options)
        if self.dialect == "sqlite":
            _tune_sqlite(self.engine, busy_timeout_ms)

    # ---------------------------------------------------------------- lifecycle

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``); a no-op when it already is."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` before ``migrate()``)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _insert_ignoring(self, table: sa.Table, keys: Sequence[str]) -> sa.Insert:
        """``INSERT … ON CONFLICT (keys) DO NOTHING``: a row a concurrent writer stored first is skipped, the
        transaction goes on (on PostgreSQL it waits for that writer to finish, so a re-read then sees the row).
        Built once per table (SQLAlchemy then reuses its compiled form)."""
        key = (table.name, tuple(keys))
        stmt = self._ignoring.get(key)
        if stmt is None:
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            stmt = self._ignoring[key] = dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        return stmt


    # ---------------------------------------------------------------- intake

    def accept(
        self,
        *,
        sender: str,
        message_id: str,
        correlation_id: str | None,
        message_type: str,
        receiver: str,
        dossier_code: str | None,
        envelope: bytes,
        destinations: Sequence[str],
        actor: str | None = None,
    ) -> AcceptResult:
        """Log one inbound envelope and queue one delivery per destination, idempotently.

        New (sender, message_id): stores the message, its events (received, validated, queued per destination)
        and its deliveries (not yet published) → ``accepted``. Seen before with the same bytes → ``duplicate``
        with the original's status and delivery ids; with other bytes → ``conflict``. Nothing is inserted in
        either case, and nothing is raised.
        """
        submission = Submission(
            sender=sender,
            message_id=message_id,
            correlation_id=correlation_id,
            message_type=message_type,
            receiver=receiver,
            dossier_code=dossier_code,
            envelope=envelope,
            destinations=tuple(destinations),
            actor=actor,
        )
        return self.accept_many([submission])[0]

    def accept_many(
        self, items: Iterable[Submission | Mapping[str, Any]], *, published: Sequence[int] = ()
    ) -> list[AcceptResult]:
        """``accept`` for a batch, in one transaction; results are in the order of ``items``.

        Items are ``Submission``s or mappings with ``accept``'s keyword names. A (sender, message_id) repeated
        within the batch is a duplicate (or conflict) of its first occurrence. ``published``: deliveries of
        earlier batches the broker has confirmed since, marked in the same transaction (``mark_published``).
        """
        subs = [Submission.coerce(item) for item in items]
        if not subs:
            self.mark_published(published)
            return []
        digests = [_digest(s.envelope) for s in subs]
        with self._write() as conn:
            self._mark_published(conn, published)
            return self._accept_batch(conn, subs, digests)

    def _accept_batch(self, conn: Connection, subs: list[Submission], digests: list[str]) -> list[AcceptResult]:
        now = _now()
        first: dict[tuple[str, str], int] = {}
        for index, sub in enumerate(subs):
            first.setdefault((sub.sender, sub.message_id), index)

        # 0. Status updates of new messages through the status machine: a rejected one is not stored, a stale
        #    one is stored without deliveries.
        decisions = self._decide_statuses(conn, subs, first, now)
        rejected: dict[tuple[str, str], Decision] = {}
        for index, decision in decisions.items():
            if decision.outcome == "rejected":
                rejected[(subs[index].sender, subs[index].message_id)] = decision
            elif decision.outcome == "stale":
                subs[index] = replace(subs[index], destinations=())

        # 1. Insert every first occurrence; keys stored before (or concurrently) are skipped, not raised.
        rows = [
            {
                "sender": subs[i].sender,
                "message_id": subs[i].message_id,
                "correlation_id": subs[i].correlation_id,
                "message_type": subs[i].message_type,
                "receiver": subs[i].receiver,
                "dossier_code": subs[i].dossier_code,
                "digest": digests[i],
                "envelope": subs[i].envelope,
                "received_at": now,
            }
            for key, i in first.items()
            if key not in rejected
        ]
        insert = self._insert_message
        inserted: dict[tuple[str, str], int] = (
            {(r.sender, r.message_id): r.id for r in conn.execute(insert, rows)} if rows else {}
        )

        # 2. Deliveries and events of the new messages, set-based.
        delivery_ids: dict[int, tuple[int, ...]] = {}
        if inserted:
            delivery_rows = []
            event_rows = []
            for key, pk in inserted.items():
                sub = subs[first[key]]
                base = {"message_pk": pk, "attempt": None, "actor": sub.actor, "at": now}
                event_rows.append({**base, "destination": None, "state": EventState.RECEIVED, "detail": ""})
                event_rows.append({**base, "destination": None, "state": EventState.VALIDATED, "detail": ""})
                for destination in sub.destinations:
                    delivery_rows.append(
                        {
                            "message_pk": pk,
                            "destination": destination,
                            "state": Q,
                            "attempts": 0,
                            "queued_at": now,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    event_rows.append({**base, "destination": destination, "state": EventState.QUEUED, "detail": ""})
                decision = decisions.get(first[key])
                if decision is not None:
                    update = sub.status
                    assert update is not None
                    event_rows.append(
                        {
                            **base,
                            "destination": None,
                            "state": f"status_{decision.outcome}",
                            "detail": f"{update.dossier_code} -> {int(update.status)}: {decision.reason}",
                            "actor": update.source,
                        }
                    )
            by_key: dict[tuple[int, str], int] = {}
            if delivery_rows:
                # Rows come back in any order; they are matched on (message, destination).
                by_key = {(r.message_pk, r.destination): r.id for r in conn.execute(_INSERT_DELIVERIES, delivery_rows)}
            conn.execute(_INSERT_EVENT, event_rows)
            for key, pk in inserted.items():
                delivery_ids[pk] = tuple(by_key[(pk, d)] for d in subs[first[key]].destinations)
            self._record_syncs(conn, [(pk, subs[first[key]]) for key, pk in inserted.items()], now)

        # 3. What was there before: its digest, time and deliveries.
        stored: dict[tuple[str, str], tuple[int, str, datetime]] = {}
        for key, pk in inserted.items():
            stored[key] = (pk, digests[first[key]], now)
        missing = [key for key in first if key not in inserted and key not in rejected]
        states: dict[int, list[str]] = {pk: [Q] * len(ids) for pk, ids in delivery_ids.items()}
        if missing:
            for chunk in _chunks(missing):
                for r in conn.execute(_STORED_MESSAGES, {"b_keys": list(chunk)}):
                    stored[(r.sender, r.message_id)] = (r.id, r.digest, r.received_at)
            old_pks = [stored[key][0] for key in missing]
            found: dict[int, list[tuple[int, str]]] = {pk: [] for pk in old_pks}
            for chunk in _chunks(old_pks):
                for r in conn.execute(_DELIVERIES_OF, {"b_ids": list(chunk)}):
                    found[r.message_pk].append((r.id, r.state))
            for pk, pairs in found.items():
                delivery_ids[pk] = tuple(i for i, _ in pairs)
                states[pk] = [s for _, s in pairs]

        # 4. One result per submission, in order.
        results = []
        for index, sub in enumerate(subs):
            key = (sub.sender, sub.message_id)
            if key in rejected:
                results.append(
                    AcceptResult(
                        outcome="rejected",
                        sender=sub.sender,
                        message_id=sub.message_id,
                        digest=digests[index],
                        stored_digest="",
                        status="rejected",
                        message_pk=None,
                        delivery_ids=(),
                        received_at=now,
                        decision=rejected[key],
                    )
                )
                continue
            pk, stored_digest, received_at = stored[key]
            if key in inserted and first[key] == index:
                outcome = "accepted"
            elif stored_digest == digests[index]:
                outcome = "duplicate"
            else:
                outcome = "conflict"
            results.append(
                AcceptResult(
                    outcome=outcome,
                    sender=sub.sender,
                    message_id=sub.message_id,
                    digest=digests[index],
                    stored_digest=stored_digest,
                    status=message_status(states.get(pk, [])),
                    message_pk=pk,
                    delivery_ids=delivery_ids.get(pk, ()),
                    received_at=received_at,
                    decision=decisions.get(index) if outcome == "accepted" else None,
                )
            )
        return results

    def _record_syncs(self, conn: Connection, new: list[tuple[int, Submission]], now: datetime) -> None:
        """Record the statuses reported by newly stored ``dossier.sync`` messages on their dossiers' timelines
        (outcome ``synced``) and keep each dossier's submission time (the first one reported) and channel."""
        syncs = [(pk, sub.message_id, sub.sync) for pk, sub in new if sub.sync is not None]
        if not syncs:
            return
        codes = sorted({sync.dossier_code for _, _, sync in syncs})
        conn.execute(self._insert_ignoring(dossiers, ("code",)), [{"code": code} for code in codes])
        intake: dict[str, tuple[datetime | None, int | None]] = {}
        for _, _, sync in syncs:
            submitted, channel = intake.get(sync.dossier_code, (None, None))
            intake[sync.dossier_code] = (submitted or sync.submitted_at, sync.channel or channel)
        conn.execute(
            dossiers.update()
            .where(dossiers.c.code == sa.bindparam("b_code"))
            .values(
                submitted_at=sa.func.coalesce(dossiers.c.submitted_at, sa.bindparam("b_submitted", type_=UTCDateTime)),
                channel=sa.func.coalesce(sa.bindparam("b_channel", type_=sa.Integer), dossiers.c.channel),
            ),
            [{"b_code": code, "b_submitted": intake[code][0], "b_channel": intake[code][1]} for code in codes],
        )
        reason = "reported by the provincial system's dossier.sync (recorded, not run through the status machine)"
        conn.execute(
            dossier_timeline.insert(),
            [
                {"dossier_code": sync.dossier_code, "message_id": message_id, "status": int(sync.status),
                 "at": sync.at, "outcome": "synced", "reason": reason, "source": sync.source, "recorded_at": now}
                for _, message_id, sync in syncs
            ],
        )  # fmt: skip
        conn.execute(
            events.insert(),
            [
                {"message_pk": pk, "destination": None, "state": "status_synced", "attempt": None,
                 "detail": f"{sync.dossier_code} -> {int(sync.status)}: synced", "actor": sync.source, "at": now}
                for pk, _, sync in syncs
            ],
        )  # fmt: skip

    def _decide_statuses(
        self, conn: Connection, subs: list[Submission], first: dict[tuple[str, str], int], now: datetime
    ) -> dict[int, Decision]:
        """Run the status updates of the batch's new messages through the status machine (index → decision).

        The dossiers' rows are locked first (in code order), then the messages already stored are skipped: a
        resend, or a twin a concurrent transaction stored while this one waited for the lock, is decided once."""
        from hub.dossier.status_machine import DossierState, DossierStatus

        wanted = [i for i in first.values() if subs[i].status is not None]
        if not wanted:
            return {}
        codes = sorted({subs[i].status.dossier_code for i in wanted})  # type: ignore[union-attr]
        conn.execute(self._insert_ignoring(dossiers, ("code",)), [{"code": code} for code in codes])
        state: dict[str, DossierState | None] = {}
        for chunk in _chunks(codes):
            for r in conn.execute(_LOCK_DOSSIERS, {"b_codes": list(chunk)}):
                state[r.code] = None if r.status is None else DossierState(DossierStatus(r.status), r.status_at)
        keys = [(subs[i].sender, subs[i].message_id) for i in wanted]
        known: set[tuple[str, str]] = set()
        for chunk in _chunks(keys):
            known.update((r.sender, r.message_id) for r in conn.execute(_STORED_MESSAGES, {"b_keys": list(chunk)}))
        decisions: dict[int, Decision] = {}
        pending = _StatusWrites()
        for i in wanted:
            sub = subs[i]
            update = sub.status
            if update is None or (sub.sender, sub.message_id) in known:
                continue
            decision = self._decide_status(
                update.dossier_code, state[update.dossier_code], update.status, update.at,
                message_id=sub.message_id, source=update.source, correction=None, now=now, pending=pending,
            )  # fmt: skip
            if decision.new_state is not None:
                state[update.dossier_code] = decision.new_state
            decisions[i] = decision
        pending.flush(conn)
        return decisions

    @staticmethod
    def _decide_status(
        dossier_code: str,
        current: Any,
        status: int,
        at: datetime,
        *,
        message_id: str | None,
        source: str,
        correction: Any,
        now: datetime,
        pending: _StatusWrites,
    ) -> Decision:
        """Decide one update against the locked dossier's ``current`` state; queue its timeline entry and, when
        applied, the dossier's new state on ``pending`` (written by ``_StatusWrites.flush``)."""
        from hub.dossier.status_machine import decide

        decision = decide(current, status, at, correction)
        outcome = str(getattr(decision.outcome, "value", decision.outcome)).lower()
        if decision.new_state is not None:
            pending.states[dossier_code] = {
                "b_code": dossier_code,
                "b_status": int(decision.new_state.status),
                "b_status_at": decision.new_state.at,
                "b_applied": now,
            }
        pending.timeline.append(
            {
                "dossier_code": dossier_code,
                "message_id": message_id,
                "status": int(status),
                "at": at,
                "outcome": outcome,
                "reason": decision.reason or "",
                "source": source,
                "recorded_at": now,
            }
        )
        return decision

    def record_event(
        self,
        message_pk: int,
        state: str,
        *,
        destination: str | None = None,
        attempt: int | None = None,
        detail: str = "",
        actor: str | None = None,
    ) -> None:
        """Append one event to a stored message's history (for steps the store does not record itself)."""
        with self._write() as conn:
            self._event(conn, message_pk, state, _now(), destination=destination, attempt=attempt, detail=detail,
                        actor=actor)  # fmt: skip

    @staticmethod
    def _event(
        conn: Connection,
        message_pk: int,
        state: str,
        at: datetime,
        *,
        destination: str | None = None,
        attempt: int | None = None,
        detail: str = "",
        actor: str | None = None,
    ) -> None:
        conn.execute(
            _INSERT_EVENT,
            {
                "message_pk": message_pk,
                "destination": destination,
                "state": str(state),
                "attempt": attempt,
                "detail": detail,
                "actor": actor,
                "at": at,
            },
        )

    # ---------------------------------------------------------------- outbox

    def mark_published(self, delivery_ids: Sequence[int]) -> None:
        """Record that the broker confirmed these deliveries (the relay will not publish them again)."""
        if not delivery_ids:
            return
        with self._write() as conn:
            self._mark_published(conn, delivery_ids)

    @staticmethod
    def _mark_published(conn: Connection, delivery_ids: Sequence[int]) -> None:
        if not delivery_ids:
            return
        now = _now()
        for chunk in _chunks(sorted(set(delivery_ids))):
            conn.execute(_MARK_PUBLISHED, {"b_ids": list(chunk), "b_now": now})

    def unpublished(self, older_than_s: float = 0, limit: int = 1000) -> list[PendingDelivery]:
        """Deliveries committed but never confirmed by the broker, oldest first, for the outbox relay.

        Only ``queued``/``retrying`` rows untouched for ``older_than_s`` seconds whose retry time (if any) has
        come. ``mark_published`` them once the broker has confirmed.
        """
        now = _now()
        cutoff = now - timedelta(seconds=max(older_than_s, 0))
        query = (
            self._delivery_query(full=False)
            .where(
                deliveries.c.published_at.is_(None),
                deliveries.c.state.in_([Q, RT]),
                deliveries.c.updated_at <= cutoff,
                sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_pending(r) for r in conn.execute(query)]

    def delivery(self, delivery_id: int) -> DeliveryView | None:
        """Everything about one delivery, including the inbound and (once delivered) outbound bytes."""
        with self._read() as conn:
            row = conn.execute(self._delivery_query(full=True).where(deliveries.c.id == delivery_id)).first()
        return None if row is None else _view(row)

    def is_delivered(self, delivery_id: int) -> bool:
        """Whether the delivery was delivered (``False`` for an unknown id). Check it before calling a partner."""
        with self._read() as conn:
            state = conn.execute(_STATE, {"b_id": delivery_id}).scalar()
        return state == DD

    def start_attempt(self, delivery_id: int) -> int:
        """Count a new delivery attempt (state ``delivering``, event ``attempt_started``); returns its number.

        Raises ``UnknownDeliveryError``, or ``DeliveryClosedError`` if it was already delivered.
        """
        now = _now()
        with self._write() as conn:
            row = conn.execute(_START_ATTEMPT, {"b_id": delivery_id, "b_now": now}).first()
            if row is None:
                self._refuse(conn, delivery_id, "start an attempt")
            self._event(conn, row.message_pk, EventState.ATTEMPT_STARTED, now, destination=row.destination,
                        attempt=row.attempts)  # fmt: skip
            return int(row.attempts)

    def record_delivered(self, delivery_id: int, *, outbound: bytes, detail: str = "") -> bool:
        """Record the delivery with the envelope exactly as sent; ``False`` if it was already delivered."""
        now = _now()
        with self._write() as conn:
            params = {"b_id": delivery_id, "b_now": now, "b_outbound": outbound, "b_digest": _digest(outbound)}
            row = conn.execute(_DELIVERED, params).first()
            if row is None:
                if self._state(conn, delivery_id) is None:
                    raise UnknownDeliveryError(delivery_id)
                return False
            self._event(conn, row.message_pk, EventState.DELIVERED, now, destination=row.destination,
                        attempt=row.attempts, detail=detail)  # fmt: skip
            return True

    def start_attempts(self, delivery_ids: Sequence[int]) -> dict[int, int]:
        """``start_attempt`` for a batch, in one transaction and two statements: {delivery id: attempt number}.

        Deliveries already delivered (a redelivered queue message) or unknown are left out of the answer, so
        the caller acknowledges them without calling the partner again.
        """
        if not delivery_ids:
            return {}
        now = _now()
        with self._write() as conn:
            rows = conn.execute(_START_ATTEMPTS, {"b_ids": list(delivery_ids), "b_now": now}).all()
            if rows:
                conn.execute(_INSERT_EVENT, [_event_row(r, EventState.ATTEMPT_STARTED, now) for r in rows])
        return {int(r.id): int(r.attempts) for r in rows}

    def record_delivered_many(self, items: Sequence[tuple[int, bytes, str]]) -> list[bool]:
        """``record_delivered`` for a batch of (delivery id, outbound envelope, detail) in one transaction.

        Returns, per item, whether it was recorded now (``False``: it had already been delivered).
        """
        if not items:
            return []
        now = _now()
        ids = [delivery_id for delivery_id, _, _ in items]
        with self._write() as conn:
            open_rows = {int(r.id): r for r in conn.execute(_OPEN_DELIVERIES, {"b_ids": ids})}
            todo = [item for item in items if item[0] in open_rows]
            if todo:
                conn.execute(
                    _DELIVERED_MANY,
                    [
                        {"b_id": delivery_id, "b_now": now, "b_outbound": outbound, "b_digest": _digest(outbound)}
                        for delivery_id, outbound, _ in todo
                    ],
                )
                conn.execute(
                    _INSERT_EVENT,
                    [
                        _event_row(open_rows[delivery_id], EventState.DELIVERED, now, detail)
                        for delivery_id, _, detail in todo
                    ],
                )
        return [delivery_id in open_rows for delivery_id in ids]

    def record_retry(self, delivery_id: int, *, error: str, delay_s: float, republish: bool = False) -> None:
        """Record a failed attempt and the retry planned in ``delay_s`` (events ``failed``, ``retry_scheduled``).

        By default the broker holds the delayed retry, so the delivery stays published. With ``republish=True``
        it is marked unpublished and ``unpublished()`` hands it to the relay once the retry time has come.
        """
        now = _now()
        due = now + timedelta(seconds=max(delay_s, 0))
        values: dict[str, Any] = {"state": RT, "last_error": error, "next_attempt_at": due, "updated_at": now}
        if republish:
            values["published_at"] = None
        with self._write() as conn:
            row = conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id, deliveries.c.state.notin_([DD, DL]))
                .values(**values)
                .returning(deliveries.c.attempts, deliveries.c.message_pk, deliveries.c.destination)
            ).first()
            if row is None:
                self._refuse(conn, delivery_id, "schedule a retry")
            common = {"destination": row.destination, "attempt": row.attempts}
            self._event(conn, row.message_pk, EventState.FAILED, now, detail=error, **common)
            detail = f"retry in {delay_s:.1f} s at {due.isoformat(timespec='seconds')}"
            self._event(conn, row.message_pk, EventState.RETRY_SCHEDULED, now, detail=detail, **common)

    def record_dead(self, delivery_id: int, *, reason: str, error: str) -> int:
        """Give up on a delivery (state ``dead``) and file a dead letter; returns the dead letter's id.

        ``reason`` is e.g. ``permanent``, ``rejected``, ``exhausted``, ``mapping``. Recording an already dead
        delivery again returns its open dead letter. ``DeliveryClosedError`` if it was delivered.
        """
        now = _now()
        with self._write() as conn:
            row = conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id, deliveries.c.state.notin_([DD, DL]))
                .values(state=DL, last_error=error, next_attempt_at=None, updated_at=now)
                .returning(deliveries.c.attempts, deliveries.c.message_pk, deliveries.c.destination)
            ).first()
            if row is None:
                state = self._state(conn, delivery_id)
                if state != DL:
                    self._refuse(conn, delivery_id, "dead-letter it")
                open_id = conn.execute(
                    sa.select(sa.func.max(dead_letters.c.id)).where(
                        dead_letters.c.delivery_id == delivery_id, dead_letters.c.replayed_at.is_(None)
                    )
                ).scalar()
                if open_id is not None:
                    return int(open_id)
                row = conn.execute(
                    sa.select(deliveries.c.attempts, deliveries.c.message_pk, deliveries.c.destination).where(
                        deliveries.c.id == delivery_id
                    )
                ).one()
            dead_letter_id = conn.execute(
                dead_letters.insert()
                .values(delivery_id=delivery_id, reason=reason, last_error=error, attempts=row.attempts,
                        created_at=now)
                .returning(dead_letters.c.id)
            ).scalar_one()  # fmt: skip
            common = {"destination": row.destination, "attempt": row.attempts}
            self._event(conn, row.message_pk, EventState.FAILED, now, detail=error, **common)
            self._event(conn, row.message_pk, EventState.DEAD_LETTERED, now, detail=f"{reason}: {error}", **common)
            return int(dead_letter_id)

    def _state(self, conn: Connection, delivery_id: int) -> str | None:
        return conn.execute(_STATE, {"b_id": delivery_id}).scalar()

    def _refuse(self, conn: Connection, delivery_id: int, action: str) -> Any:
        state = self._state(conn, delivery_id)
        if state is None:
            raise UnknownDeliveryError(delivery_id)
        raise DeliveryClosedError(delivery_id, state, action)

    @staticmethod
    def _delivery_query(*, full: bool) -> sa.Select:
        columns: list[Any] = [
            deliveries.c.id.label("delivery_id"),
            deliveries.c.message_pk,
            messages.c.message_id,
            messages.c.sender,
            messages.c.receiver,
            messages.c.message_type,
            messages.c.correlation_id,
            messages.c.dossier_code,
            deliveries.c.destination,
            messages.c.envelope,
            deliveries.c.attempts,
            deliveries.c.state,
        ]
        if full:
            columns += [
                deliveries.c.last_error,
                deliveries.c.next_attempt_at,
                deliveries.c.published_at,
                deliveries.c.queued_at,
                deliveries.c.delivered_at,
                deliveries.c.outbound,
                deliveries.c.outbound_digest,
                deliveries.c.updated_at,
            ]
        return sa.select(*columns).select_from(deliveries.join(messages, deliveries.c.message_pk == messages.c.id))

    # ---------------------------------------------------------------- dead letters

    def dead_letters(
        self, *, destination: str | None = None, include_replayed: bool = False, limit: int = 500
    ) -> list[DeadLetter]:
        """Dead letters, oldest first: open ones only unless ``include_replayed``."""
        query = (
            sa.select(
                dead_letters.c.id,
                dead_letters.c.delivery_id,
                deliveries.c.message_pk,
                messages.c.message_id,
                messages.c.sender,
                deliveries.c.destination,
                messages.c.dossier_code,
                messages.c.message_type,
                dead_letters.c.reason,
                dead_letters.c.last_error,
                dead_letters.c.attempts,
                dead_letters.c.created_at,
                dead_letters.c.replayed_at,
                dead_letters.c.replayed_by,
            )
            .select_from(
                dead_letters.join(deliveries, dead_letters.c.delivery_id == deliveries.c.id).join(
                    messages, deliveries.c.message_pk == messages.c.id
                )
            )
            .order_by(dead_letters.c.id)
            .limit(limit)
        )
        if destination is not None:
            query = query.where(deliveries.c.destination == destination)
        if not include_replayed:
            query = query.where(dead_letters.c.replayed_at.is_(None))
        with self._read() as conn:
            return [DeadLetter(**r._mapping) for r in conn.execute(query)]

    def replay(self, dead_letter_id: int, *, actor: str) -> PendingDelivery:
        """Send a dead letter again: record who and when, requeue its delivery (unpublished, attempts reset).

        The delivery is ``queued`` with no attempts counted, so the retry budget starts afresh; the history
        keeps every earlier attempt. Raises ``UnknownDeadLetterError``, ``AlreadyReplayedError``, or
        ``DeliveryClosedError`` if the delivery is no longer dead (e.g. a late attempt delivered it).
        Publish the returned delivery (or let the relay do it) and then ``mark_published`` it.
        """
        now = _now()
        with self._write() as conn:
            delivery_id = conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id == dead_letter_id, dead_letters.c.replayed_at.is_(None))
                .values(replayed_at=now, replayed_by=actor)
                .returning(dead_letters.c.delivery_id)
            ).scalar()
            if delivery_id is None:
                row = conn.execute(
                    sa.select(dead_letters.c.replayed_at, dead_letters.c.replayed_by).where(
                        dead_letters.c.id == dead_letter_id
                    )
                ).first()
                if row is None:
                    raise UnknownDeadLetterError(dead_letter_id)
                raise AlreadyReplayedError(dead_letter_id, row.replayed_by, row.replayed_at)
            row = conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id, deliveries.c.state == DL)
                .values(state=Q, attempts=0, published_at=None, next_attempt_at=None, queued_at=now, updated_at=now)
                .returning(deliveries.c.message_pk, deliveries.c.destination)
            ).first()
            if row is None:
                self._refuse(conn, delivery_id, "replay it")
            self._event(conn, row.message_pk, EventState.REPLAYED, now, destination=row.destination, actor=actor,
                        detail=f"dead letter {dead_letter_id}")  # fmt: skip
            return _pending(conn.execute(self._delivery_query(full=False).where(deliveries.c.id == delivery_id)).one())

    # ---------------------------------------------------------------- trace

    def trace(self, message_id: str, sender: str | None = None) -> MessageTrace | None:
        """A message's log entry, its events in order and its deliveries; ``None`` if unknown.

        Without ``sender``, the most recently received message with that id is traced.
        """
        query = sa.select(
            messages.c.id,
            messages.c.sender,
            messages.c.message_id,
            messages.c.correlation_id,
            messages.c.message_type,
            messages.c.receiver,
            messages.c.dossier_code,
            messages.c.digest,
            messages.c.received_at,
        ).where(messages.c.message_id == message_id)
        if sender is not None:
            query = query.where(messages.c.sender == sender)
        with self._read() as conn:
            msg = conn.execute(query.order_by(messages.c.id.desc()).limit(1)).first()
            if msg is None:
                return None
            trail = conn.execute(
                sa.select(events.c.state, events.c.destination, events.c.attempt, events.c.detail, events.c.actor,
                          events.c.at).where(events.c.message_pk == msg.id).order_by(events.c.id)
            ).all()  # fmt: skip
            dels = conn.execute(
                sa.select(
                    deliveries.c.id.label("delivery_id"),
                    deliveries.c.destination,
                    deliveries.c.state,
                    deliveries.c.attempts,
                    deliveries.c.last_error,
                    deliveries.c.next_attempt_at,
                    deliveries.c.published_at,
                    deliveries.c.delivered_at,
                    deliveries.c.outbound_digest,
                )
                .where(deliveries.c.message_pk == msg.id)
                .order_by(deliveries.c.id)
            ).all()
        statuses = tuple(DeliveryStatus(**{**d._mapping, "state": DeliveryState(d.state)}) for d in dels)
        fields = dict(msg._mapping)
        return MessageTrace(
            message_pk=fields.pop("id"),
            **fields,
            status=message_status([d.state for d in statuses]),
            events=tuple(TraceEvent(**e._mapping) for e in trail),
            deliveries=statuses,
        )

    # ---------------------------------------------------------------- dossiers

    def record_status(
        self,
        *,
        dossier_code: str,
        status: int,
        at: datetime,
        message_id: str | None,
        source: str,
        correction: Any = None,
        sender: str | None = None,
    ) -> Decision:
        """Run a status update through the status machine under the dossier's row lock and record it.

        The timeline gets an entry whatever the outcome (applied, stale, rejected, corrected); the dossier's
        current state changes only when the decision carries a new state. When ``message_id`` names a logged
        message (of ``sender``, if given), its history gets a ``status_<outcome>`` event too.
        """
        from hub.dossier.status_machine import DossierState, DossierStatus

        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("record_status: 'at' must be timezone-aware")
        now = _now()
        with self._write() as conn:
            # Make sure there is a row to lock, then lock it (FOR UPDATE; SQLite's IMMEDIATE lock is wider).
            conn.execute(self._insert_ignoring(dossiers, ("code",)).values(code=dossier_code))
            row = conn.execute(
                sa.select(dossiers.c.status, dossiers.c.status_at)
                .where(dossiers.c.code == dossier_code)
                .with_for_update()
            ).one()
            current = None if row.status is None else DossierState(DossierStatus(row.status), row.status_at)
            pending = _StatusWrites()
            decision = self._decide_status(
                dossier_code, current, status, at,
                message_id=message_id, source=source, correction=correction, now=now, pending=pending,
            )  # fmt: skip
            pending.flush(conn)
            outcome = str(getattr(decision.outcome, "value", decision.outcome)).lower()
            if message_id is not None:
                query = sa.select(messages.c.id).where(messages.c.message_id == message_id)
                if sender is not None:
                    query = query.where(messages.c.sender == sender)
                pk = conn.execute(query.order_by(messages.c.id.desc()).limit(1)).scalar()
                if pk is not None:
                    actor = getattr(correction, "corrected_by", None) or source
                    detail = f"{dossier_code} -> {int(status)}: {decision.reason or outcome}"
                    self._event(conn, pk, f"status_{outcome}", now, detail=detail, actor=actor)
            return decision

    def timeline(self, dossier_code: str) -> list[TimelineEntry]:
        """Every status update recorded for a dossier, in the order they were recorded."""
        query = sa.select(dossier_timeline).where(dossier_timeline.c.dossier_code == dossier_code)
        with self._read() as conn:
            return [TimelineEntry(**r._mapping) for r in conn.execute(query.order_by(dossier_timeline.c.id))]

    def dossier_messages(self, dossier_code: str, limit: int = 500) -> list[MessageTrace]:
        """The messages logged for a dossier (any sender), oldest first, with their deliveries but no events."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(messages.c.id, messages.c.sender, messages.c.message_id, messages.c.correlation_id,
                          messages.c.message_type, messages.c.receiver, messages.c.dossier_code, messages.c.digest,
                          messages.c.received_at)
                .where(messages.c.dossier_code == dossier_code).order_by(messages.c.id).limit(limit)
            ).all()  # fmt: skip
            if not rows:
                return []
            dels = conn.execute(
                sa.select(
                    deliveries.c.message_pk,
                    deliveries.c.id.label("delivery_id"),
                    deliveries.c.destination,
                    deliveries.c.state,
                    deliveries.c.attempts,
                    deliveries.c.last_error,
                    deliveries.c.next_attempt_at,
                    deliveries.c.published_at,
                    deliveries.c.delivered_at,
                    deliveries.c.outbound_digest,
                )
                .where(deliveries.c.message_pk.in_([r.id for r in rows]))
                .order_by(deliveries.c.id)
            ).all()
        by_message: dict[int, list[DeliveryStatus]] = {}
        for d in dels:
            fields = dict(d._mapping)
            pk = fields.pop("message_pk")
            by_message.setdefault(pk, []).append(DeliveryStatus(**{**fields, "state": DeliveryState(d.state)}))
        out = []
        for r in rows:
            fields = dict(r._mapping)
            pk = fields.pop("id")
            statuses = tuple(by_message.get(pk, ()))
            out.append(MessageTrace(message_pk=pk, **fields, status=message_status([d.state for d in statuses]),
                                    deliveries=statuses))  # fmt: skip
        return out

    def event_counts(self, states: Sequence[str]) -> list[tuple[str, str, int]]:
        """``(destination, state, count)`` of delivery events in ``states`` (for metrics: retries, dead letters…)."""
        query = (
            sa.select(events.c.destination, events.c.state, sa.func.count())
            .where(events.c.state.in_(list(states)), events.c.destination.is_not(None))
            .group_by(events.c.destination, events.c.state)
        )
        with self._read() as conn:
            return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]

    def ping(self) -> None:
        """Run the cheapest query there is (readiness probe); raises if the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dossier(self, dossier_code: str) -> DossierRecord | None:
        """The dossier's current state, ``None`` until an update has been applied."""
        with self._read() as conn:
            row = conn.execute(sa.select(dossiers).where(dossiers.c.code == dossier_code)).first()
        if row is None or row.status is None:
            return None
        return DossierRecord(**row._mapping)

    def dossiers_at_intake(self, *, exclude_channels: Sequence[int] = (1,)) -> list[IntakeDossier]:
        """Dossiers whose latest reported status (applied, corrected or synced; latest by ``at``) is 1 (new), with
        their submission time: the one their ``dossier.sync`` carried, else the first entry of their timeline.
        Dossiers submitted through ``exclude_channels`` (default: 1, in person) are left out."""
        tl = dossier_timeline
        counted = tl.c.outcome.in_(("applied", "corrected", "synced"))
        candidates = sa.select(tl.c.dossier_code).where(tl.c.status == 1).distinct().scalar_subquery()
        ranked = (
            sa.select(
                tl.c.dossier_code,
                tl.c.status,
                tl.c.source,
                sa.func.row_number()
                .over(partition_by=tl.c.dossier_code, order_by=(tl.c.at.desc(), tl.c.id.desc()))
                .label("rn"),
            )
            .where(counted, tl.c.dossier_code.in_(candidates))
            .subquery()
        )
        first = (
            sa.select(tl.c.dossier_code, sa.func.min(tl.c.at).label("first_at"))
            .where(tl.c.dossier_code.in_(candidates))
            .group_by(tl.c.dossier_code)
            .subquery()
        )
        query = (
            sa.select(
                ranked.c.dossier_code,
                ranked.c.source,
                dossiers.c.submitted_at,
                dossiers.c.channel,
                sa.type_coerce(first.c.first_at, UTCDateTime).label("first_at"),
            )
            .join(first, first.c.dossier_code == ranked.c.dossier_code)
            .outerjoin(dossiers, dossiers.c.code == ranked.c.dossier_code)
            .where(ranked.c.rn == 1, ranked.c.status == 1)
            .order_by(ranked.c.dossier_code)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            IntakeDossier(r.dossier_code, r.submitted_at or r.first_at, r.channel, r.source)
            for r in rows
            if r.channel is None or r.channel not in exclude_channels
        ]

    # ---------------------------------------------------------------- operations

    def queue_overview(self) -> list[DestinationStats]:
        """Per destination: deliveries by state, age of the oldest pending one, deliveries in the last 60 s."""
        now = _now()
        since = now - timedelta(seconds=60)

        def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

        state = deliveries.c.state
        query = (
            sa.select(
                deliveries.c.destination,
                count(state == Q).label("queued"),
                count(state == DV).label("delivering"),
                count(state == RT).label("retrying"),
                count(state == DD).label("delivered"),
                count(state == DL).label("dead"),
                sa.func.min(sa.case((state.in_(PENDING_STATES), deliveries.c.queued_at)), type_=UTCDateTime).label(
                    "oldest"
                ),
                count(sa.and_(state == DD, deliveries.c.delivered_at >= since)).label("recent"),
            )
            .group_by(deliveries.c.destination)
            .order_by(deliveries.c.destination)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            DestinationStats(
                destination=r.destination,
                queued=int(r.queued),
                delivering=int(r.delivering),
                retrying=int(r.retrying),
                delivered=int(r.delivered),
                dead=int(r.dead),
                oldest_pending_age_s=None if r.oldest is None else max((now - r.oldest).total_seconds(), 0.0),
                delivered_last_60s=int(r.recent),
            )
            for r in rows
        ]

    def partner_activity(self, window_s: float = 900.0) -> list[PartnerActivity]:
        """Per destination: delivered and failed attempts (and 4xx rejections among them) in the last
        ``window_s`` seconds, and the time of the last success and last failure ever, with that failure's error."""
        now = _now()
        since = now - timedelta(seconds=max(window_s, 0))
        recent = events.c.at >= since
        state = events.c.state

        def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

        query = (
            sa.select(
                events.c.destination,
                count(sa.and_(recent, state == EventState.DELIVERED)).label("delivered"),
                count(sa.and_(recent, state == EventState.FAILED)).label("failed"),
                count(sa.and_(recent, state == EventState.DEAD_LETTERED, events.c.detail.like("rejected:%"))).label(
                    "rejected"
                ),
                sa.func.max(sa.case((state == EventState.DELIVERED, events.c.at)), type_=UTCDateTime).label("ok_at"),
                sa.func.max(sa.case((state == EventState.FAILED, events.c.id))).label("failed_id"),
            )
            .where(events.c.destination.is_not(None))
            .group_by(events.c.destination)
            .order_by(events.c.destination)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
            ids = [r.failed_id for r in rows if r.failed_id is not None]
            failures = {
                int(f.id): f
                for f in conn.execute(sa.select(events.c.id, events.c.at, events.c.detail).where(events.c.id.in_(ids)))
            } if ids else {}  # fmt: skip
        out = []
        for r in rows:
            failure = failures.get(r.failed_id) if r.failed_id is not None else None
            out.append(
                PartnerActivity(
                    destination=r.destination,
                    delivered=int(r.delivered),
                    failed=int(r.failed),
                    rejected=int(r.rejected),
                    last_success_at=r.ok_at,
                    last_failure_at=None if failure is None else failure.at,
                    last_error=None if failure is None else failure.detail,
                )
            )
        return out

    def oldest_undelivered(self, destinations: Sequence[str], message_type: str) -> tuple[int, datetime | None]:
        """How many messages of ``message_type`` to ``destinations`` are not delivered yet (pending or dead),
        and when the oldest of them was received (the national portal's sync lag)."""
        if not destinations:
            return 0, None
        query = (
            sa.select(sa.func.count(), sa.func.min(messages.c.received_at, type_=UTCDateTime))
            .select_from(deliveries.join(messages, deliveries.c.message_pk == messages.c.id))
            .where(
                deliveries.c.destination.in_(list(destinations)),
                messages.c.message_type == message_type,
                deliveries.c.state != DD,
            )
        )
        with self._read() as conn:
            count, oldest = conn.execute(query).one()
        return int(count), oldest

    def rule_events(self, rule_prefix: str, limit: int = 50) -> list[RuleEvent]:
        """The latest events whose detail names a rule starting with ``rule_prefix`` (e.g. ``payment-``)."""
        query = (
            sa.select(
                messages.c.message_id,
                messages.c.sender,
                messages.c.message_type,
                messages.c.dossier_code,
                events.c.state,
                events.c.destination,
                events.c.detail,
                events.c.actor,
                events.c.at,
            )
            .select_from(events.join(messages, events.c.message_pk == messages.c.id))
            .where(events.c.detail.like(f"%{rule_prefix}%"))
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [RuleEvent(**r._mapping) for r in conn.execute(query)]


def _pending(row: sa.Row) -> PendingDelivery:
    return PendingDelivery(**{**row._mapping, "state": DeliveryState(row.state)})


def _view(row: sa.Row) -> DeliveryView:
    return DeliveryView(**{**row._mapping, "state": DeliveryState(row.state)})


def _tune_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, synchronous=NORMAL, a busy timeout, foreign keys; and explicit BEGIN / BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store emits BEGIN itself (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

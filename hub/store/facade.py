"""``Store``: the one object the hub holds for its durable store, a thin facade over the parts by concern.

Parts: ``database`` (engine, migrations, transactions), ``intake`` (message log and deliveries of accepted
envelopes), ``dossiers`` (status machine, timelines), ``deliveries`` (outbox and delivery lifecycle),
``dead_letters``, ``history`` (events), ``queries`` (traces and overviews), ``message_log`` (the filtered log),
``catalogue`` (the national portal's procedure catalogue)
and ``audit``. Every method is one transaction
on a pooled connection, so a ``Store`` can be shared by threads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Connection, Engine

from hub.store import audit as _audit
from hub.store import catalogue as _catalogue
from hub.store import dead_letters as _dead_letters
from hub.store import deliveries as _deliveries
from hub.store import dossiers as _dossiers
from hub.store import due_dates as _due_dates
from hub.store import message_log as _message_log
from hub.store import pauses as _pauses
from hub.store import queries as _queries
from hub.store import sync_records as _sync_records
from hub.store import traffic as _traffic
from hub.store.database import Database, now
from hub.store.history import add_events, event_row
from hub.store.intake import Intake
from hub.store.pages import Page
from hub.store.types import (
    AcceptResult,
    DeadLetter,
    DeliveryView,
    DestinationStats,
    DossierParty,
    DossierRecord,
    IntakeDossier,
    MessageTrace,
    PartnerActivity,
    PendingDelivery,
    Submission,
    TimelineEntry,
)

if TYPE_CHECKING:
    from hub.dossier.status_machine import Decision
    from hub.packets.dossier import DossierSync


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
        self.db = Database(url, echo=echo, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
        self.url: URL = self.db.url
        self.dialect: str = self.db.dialect
        self.engine: Engine = self.db.engine
        self._intake = Intake(self.db)

    # ---------------------------------------------------------------- lifecycle

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``); a no-op when it already is."""
        self.db.migrate()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` before ``migrate()``)."""
        return self.db.current_revision()

    def ping(self) -> None:
        """Run the cheapest query there is (readiness probe); raises if the database is unreachable."""
        self.db.ping()

    def close(self) -> None:
        """Close every pooled connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Connection]:
        """One transaction on the store's database, for parts of the hub with tables of their own (registry,
        flows): a write one locks SQLite up front (``hub.store.database.transaction``)."""
        return self.db.transaction(readonly=readonly)

    @staticmethod
    def now() -> datetime:
        """The store's clock (timezone-aware UTC), for rows written in ``transaction()``."""
        return now()

    # ---------------------------------------------------------------- audit

    def audit(self, **kwargs: Any) -> None:
        """Append one audit row in a transaction of its own (``hub.store.audit.record`` for inside one)."""
        _audit.record_now(self.engine, **kwargs)

    def audit_entries(
        self, flt: _audit.AuditFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[_audit.AuditEntry]:
        """A page of the audit log, newest first (``hub.store.audit.entries``)."""
        return _audit.entries(self.engine, flt or _audit.AuditFilter(), cursor=cursor, limit=limit)

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
        """Log one inbound envelope and queue one delivery per destination, idempotently (``accept_many``).

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
        return self._intake.accept_many(items, published=published)

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
        row = event_row(message_pk, state, now(), destination=destination, attempt=attempt, detail=detail, actor=actor)
        with self.db.transaction() as conn:
            add_events(conn, row)

    # ---------------------------------------------------------------- outbox and deliveries

    def mark_published(self, delivery_ids: Sequence[int]) -> None:
        """Record that the broker confirmed these deliveries (the relay will not publish them again)."""
        _deliveries.mark_published(self.db, delivery_ids)

    def unpublished(self, older_than_s: float = 0, limit: int = 1000) -> list[PendingDelivery]:
        """Deliveries committed but never confirmed by the broker, oldest first, for the outbox relay.

        Only ``queued``/``retrying`` rows untouched for ``older_than_s`` seconds whose retry time (if any) has
        come. ``mark_published`` them once the broker has confirmed.
        """
        return _deliveries.unpublished(self.db, older_than_s, limit)

    def claim_unpublished(
        self, *, older_than_s: float = 0, limit: int = 500, lease_s: float = 60.0
    ) -> list[PendingDelivery]:
        """``unpublished`` deliveries claimed for one outbox relay for ``lease_s`` seconds: those no other relay
        holds (never claimed, or its lease ran out), at most ``limit``, oldest first. Publish them, then
        ``mark_published`` them (which ends the claim), or ``release_claims`` when the broker refused them."""
        return _deliveries.claim_unpublished(self.db, older_than_s=older_than_s, limit=limit, lease_s=lease_s)

    def release_claims(self, delivery_ids: Sequence[int]) -> None:
        """End the relay's claim on deliveries it could not publish (any relay may take them again at once)."""
        _deliveries.release_claims(self.db, delivery_ids)

    def delivery(self, delivery_id: int) -> DeliveryView | None:
        """Everything about one delivery, including the inbound and (once delivered) outbound and sent bytes."""
        return _deliveries.delivery(self.db, delivery_id)

    def start_attempts(
        self, delivery_ids: Sequence[int], generations: Mapping[int, int] | None = None
    ) -> dict[int, int]:
        """Count a new attempt of each delivery (state ``delivering``, event ``attempt_started``), in one
        transaction: {delivery id: attempt number}.

        Deliveries already delivered (a redelivered queue message), dead (until replayed) or unknown are left out
        of the answer, so the caller acknowledges them without calling the partner again; so are those whose queue
        message is of an older generation (``generations``: id → the queue message's; see ``retry_now``).
        """
        return _deliveries.start_attempts(self.db, delivery_ids, generations)

    def start_attempts_at(
        self, delivery_ids: Sequence[int], generations: Mapping[int, int] | None = None
    ) -> dict[int, tuple[int, datetime]]:
        """``start_attempts`` with each delivery's acceptance time: {delivery id: (attempt number, accepted at)}."""
        return _deliveries.start_attempts_at(self.db, delivery_ids, generations)

    def retry_now(
        self,
        *,
        actor: str,
        message_id: str | None = None,
        sender: str | None = None,
        destination: str | None = None,
        role: str | None = None,
        client: str | None = None,
    ) -> list[PendingDelivery]:
        """Skip the backoff: every delivery of the message (or of the destination) waiting for a retry becomes due
        now, unpublished, of a new generation (events ``retry_now``; audited ``delivery.retry_now``). A message id is
        unique per sender: give ``sender`` to name one sender's message (without it, every sender's of that id).

        Publish the returned deliveries (or let the relay do it, after its grace period) and ``mark_published``
        them; the older copies still waiting in the broker are then acknowledged without a partner call.
        ``NotRetryingError`` for a message none of whose deliveries waits for a retry; a destination with none
        returns ``[]``."""
        return _deliveries.retry_now(
            self.db, actor=actor, message_id=message_id, sender=sender, destination=destination, role=role,
            client=client,
        )

    def record_delivered_many(self, items: Sequence[Sequence[Any]]) -> list[bool]:
        """Record deliveries, each item read as ``Delivered(*item)``: (delivery id, outbound envelope, detail[,
        sent bytes, sent media type]), in one transaction.

        Returns, per item, whether it was recorded now (``False``: it had already been delivered, or is unknown).
        """
        return _deliveries.record_delivered_many(self.db, items)

    def record_retry(self, delivery_id: int, *, error: str, delay_s: float, republish: bool = False) -> None:
        """Record a failed attempt and the retry planned in ``delay_s`` (events ``failed``, ``retry_scheduled``).

        By default the broker holds the delayed retry, so the delivery stays published. With ``republish=True``
        it is marked unpublished and ``unpublished()`` hands it to the relay once the retry time has come.
        """
        _deliveries.record_retry(self.db, delivery_id, error=error, delay_s=delay_s, republish=republish)

    # ---------------------------------------------------------------- dead letters

    def record_dead(self, delivery_id: int, *, reason: str, error: str) -> int:
        """Give up on a delivery (state ``dead``) and file a dead letter; returns the dead letter's id.

        ``reason`` is e.g. ``permanent``, ``rejected``, ``exhausted``, ``mapping``. Recording an already dead
        delivery again returns its open dead letter. ``DeliveryClosedError`` if it was delivered.
        """
        return _dead_letters.record_dead(self.db, delivery_id, reason=reason, error=error)

    def dead_letters(
        self,
        *,
        destination: str | None = None,
        include_replayed: bool = False,
        limit: int = 500,
        state: _dead_letters.DeadLetterState | None = None,
        after: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first: ``state`` open (the default: neither replayed nor closed), closed,
        replayed or all; ``include_replayed`` means all; ``after`` an id: the page after it."""
        return _dead_letters.list_dead_letters(
            self.db, destination=destination, include_replayed=include_replayed, limit=limit, state=state, after=after
        )

    def dead_letter_count(
        self, *, destination: str | None = None, state: _dead_letters.DeadLetterState = "open"
    ) -> int:
        """How many dead letters a listing with these filters holds in all (its total)."""
        return _dead_letters.count_dead_letters(self.db, destination=destination, state=state)

    def close_dead_letter(
        self, dead_letter_id: int, *, actor: str, reason: str, role: str | None = None, client: str | None = None
    ) -> DeadLetter:
        """Close an open dead letter without resending it: who, when and why (``reason`` not blank, else
        ``ValueError``), an event ``closed`` on the message's history and an audit row ``dead_letter.close``, in
        one transaction. Raises ``UnknownDeadLetterError``, ``DeadLetterClosedError`` (closed already) or
        ``AlreadyReplayedError``."""
        return _dead_letters.close(self.db, dead_letter_id, actor=actor, reason=reason, role=role, client=client)

    def dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        """One dead letter, replayed or not; ``None`` if there is none with this id."""
        return _dead_letters.get_dead_letter(self.db, dead_letter_id)

    def replay(self, dead_letter_id: int, *, actor: str) -> PendingDelivery:
        """Send a dead letter again: record who and when, requeue its delivery (unpublished, attempts reset).

        The delivery is ``queued`` with no attempts counted, so the retry budget starts afresh; the history
        keeps every earlier attempt. Raises ``UnknownDeadLetterError``, ``AlreadyReplayedError``,
        ``DeadLetterClosedError``, or
        ``DeliveryClosedError`` if the delivery is no longer dead (e.g. a late attempt delivered it).
        Publish the returned delivery (or let the relay do it) and then ``mark_published`` it.
        """
        return _dead_letters.replay(self.db, dead_letter_id, actor=actor)

    # ---------------------------------------------------------------- paused destinations

    def pause_destination(
        self, destination: str, *, actor: str, reason: str, role: str | None = None, client: str | None = None
    ) -> _pauses.Pause:
        """Stop calling ``destination`` until resumed; its queued work waits (``hub.store.pauses``). Audited
        ``destination.pause``; ``DestinationPausedError`` if it is paused already, ``ValueError`` for a blank
        reason."""
        return _pauses.pause(self.db, destination, actor=actor, reason=reason, role=role, client=client)

    def resume_destination(
        self, destination: str, *, actor: str, role: str | None = None, client: str | None = None
    ) -> _pauses.Pause:
        """Call ``destination`` again; returns the pause it ended. Audited ``destination.resume``;
        ``DestinationNotPausedError`` if it was not paused."""
        return _pauses.resume(self.db, destination, actor=actor, role=role, client=client)

    def paused_destinations(self) -> dict[str, _pauses.Pause]:
        """Every paused destination and its pause."""
        return _pauses.paused(self.db)

    # ---------------------------------------------------------------- procedure catalogue

    def claim_catalogue_sync(
        self, connector: str, *, actor: str, lease_s: float = 600.0
    ) -> _catalogue.CatalogueSync | None:
        """Start a catalogue sync holding the store-wide lease for ``lease_s`` seconds; ``None`` when another sync
        (any process, any host) holds it (``hub.store.catalogue``)."""
        return _catalogue.claim(self.db, connector, actor=actor, lease_s=lease_s)

    def renew_catalogue_sync(self, sync_id: int, lease_s: float = 600.0) -> bool:
        """Extend a running sync's lease; ``False`` when it lost it."""
        return _catalogue.renew(self.db, sync_id, lease_s)

    def finish_catalogue_sync(
        self, sync_id: int, data: _catalogue.CatalogueData | None = None, *, error: str | None = None
    ) -> _catalogue.CatalogueSync:
        """End a sync: replace the catalogue with ``data`` in one transaction, or keep it and record ``error``."""
        return _catalogue.finish(self.db, sync_id, data, error=error)

    def catalogue_status(self) -> _catalogue.CatalogueStatus:
        """The catalogue's counts, its last successful sync and its latest attempt."""
        return _catalogue.status(self.db)

    def catalogue_procedure(self, code: str) -> _catalogue.Procedure | None:
        """One procedure of the catalogue (``None``: not listed)."""
        return _catalogue.procedure(self.db, code)

    def catalogue_unit(self, code: str) -> _catalogue.Unit | None:
        """One unit of the catalogue by MADONVI (``None``: not listed)."""
        return _catalogue.unit(self.db, code)

    def catalogue_field(self, code: str) -> _catalogue.Field | None:
        """One field of the catalogue by MALINHVUC (``None``: not listed)."""
        return _catalogue.field_of(self.db, code)

    def catalogue_names(self) -> tuple[dict[str, _catalogue.Procedure], dict[str, _catalogue.Unit]]:
        """Every procedure (without its detail) and unit by code, for ``hub.store.catalogue.CachedCatalogue``."""
        return _catalogue.names(self.db)

    def catalogue_procedure_codes(self) -> frozenset[str]:
        """Every procedure code the catalogue lists (empty when it was never synced)."""
        return _catalogue.procedure_codes(self.db)

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
        """Run a status update (or an operator's ``correction``) through the status machine under the dossier's
        row lock and record it.

        The timeline gets an entry whatever the outcome (applied, stale, rejected, corrected); the dossier's
        current state changes only when the decision carries a new state. When ``message_id`` names a logged
        message (of ``sender``, if given), its history gets a ``status_<outcome>`` event too.
        """
        return _dossiers.record_status(
            self.db, dossier_code=dossier_code, status=status, at=at, message_id=message_id, source=source,
            correction=correction, sender=sender,
        )  # fmt: skip

    def timeline(self, dossier_code: str) -> list[TimelineEntry]:
        """Every status update recorded for a dossier, in time order (the update's time, then as recorded)."""
        return _dossiers.timeline(self.db, dossier_code)

    def dossier_party(self, dossier_code: str, party: str) -> DossierParty:
        """Whether ``party`` sent or was routed a message about the dossier (and whether any is logged)."""
        return _dossiers.dossier_party(self.db, dossier_code, party)

    def dossier(self, dossier_code: str) -> DossierRecord | None:
        """The dossier's current state, ``None`` until an update has been applied."""
        return _dossiers.dossier(self.db, dossier_code)

    def dossiers_at_intake(self, *, exclude_channels: Sequence[int] = (1,)) -> list[IntakeDossier]:
        """Dossiers whose latest reported status is 1 (new), with their submission time, leaving out those
        submitted through ``exclude_channels`` (default: 1, in person): the 8-working-hour intake rule's input."""
        return _dossiers.dossiers_at_intake(self.db, exclude_channels=exclude_channels)

    def due_date(self, dossier_code: str) -> tuple[datetime | None, datetime | None]:
        """The dossier's current due date and the time of the report that set it (``hub.store.due_dates``)."""
        return _due_dates.due_date(self.db, dossier_code)

    def past_due(self, now: datetime, exclude_statuses: Collection[int] = ()) -> list[_due_dates.PastDue]:
        """Dossiers past their current due date whose latest status is not one of ``exclude_statuses``."""
        return _due_dates.past_due(self.db, now, exclude_statuses)

    def latest_sync(self, dossier_code: str) -> DossierSync | None:
        """The dossier's latest ``dossier.sync`` (its system of record's), decoded; ``None`` when none is held
        (``hub.store.sync_records``: what notifications and the portal's refreshed record both read)."""
        return _sync_records.latest_sync(self.db, dossier_code)

    # ---------------------------------------------------------------- reads

    def trace(self, message_id: str, sender: str | None = None) -> MessageTrace | None:
        """A message's log entry, its events in time order and its deliveries; ``None`` if unknown.

        Without ``sender``, the most recently received message with that id is traced.
        """
        return _queries.trace(self.db, message_id, sender)

    def message_log(
        self, flt: _message_log.MessageFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> _message_log.MessageLogPage:
        """A page of the message log matching ``flt``, newest first, with the total (``hub.store.message_log``)."""
        return _message_log.page(self.db, flt or _message_log.MessageFilter(), cursor=cursor, limit=limit)

    def message_envelope(self, message_id: str, sender: str | None = None) -> _message_log.StoredEnvelope | None:
        """A logged message's envelope exactly as received (of ``sender``, else the latest with that id)."""
        return _message_log.envelope(self.db, message_id, sender)

    def dossier_messages(self, dossier_code: str, limit: int = 500, *, sender: str | None = None) -> list[MessageTrace]:
        """The messages logged for a dossier (of any sender, or of ``sender`` only), oldest first, with their
        deliveries but no events."""
        return _queries.dossier_messages(self.db, dossier_code, limit, sender=sender)

    def event_counts(self, states: Sequence[str]) -> list[tuple[str, str, int]]:
        """``(destination, state, count)`` of delivery events in ``states`` (for metrics: retries, dead letters…)."""
        return _queries.event_counts(self.db, states)

    def queue_overview(self) -> list[DestinationStats]:
        """Per destination: deliveries by state, age of the oldest pending one, deliveries in the last 60 s."""
        return _queries.queue_overview(self.db)

    def partner_activity(self, window_s: float = 900.0) -> list[PartnerActivity]:
        """Per destination: delivered, failed and rejected attempts (deliveries and synchronous lookups) in the last
        ``window_s`` seconds, the last success and failure ever (with that failure's error), and when attempts
        succeeded again after the latest failure."""
        return _queries.partner_activity(self.db, window_s)

    def oldest_undelivered(self, destinations: Sequence[str], message_type: str) -> tuple[int, datetime | None]:
        """How many messages of ``message_type`` to ``destinations`` are not delivered yet (pending or dead),
        and when the oldest of them was received (the national portal's sync lag)."""
        return _queries.oldest_undelivered(self.db, destinations, message_type)

    def history(
        self, window: str = _traffic.DEFAULT_WINDOW, *, destination: str | None = None, at: datetime | None = None
    ) -> _traffic.TrafficHistory:
        """Delivered / failed / dead per destination over ``window`` (``1h``, ``24h``, ``7d``) in minute, quarter-hour
        or hour buckets, read at ``at`` (now); see ``hub.store.traffic``."""
        return _traffic.history(self.db, window, destination=destination, at=at)

    def prune_history(self, at: datetime | None = None) -> int:
        """Drop the delivery history older than 7 days before ``at`` (the writers also do it once a minute)."""
        return _traffic.prune(self.db, at)

"""Tables of the store (SQLAlchemy Core). The migrations in ``migrations/versions`` create exactly these.

Times are ``UTCDateTime``: timezone-aware UTC on the way in and out, ``timestamptz`` on PostgreSQL and
naive-UTC text on SQLite (where lexical order is time order, so comparisons in SQL stay correct).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # what SQLAlchemy's SQLite DATETIME stores and parses back


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; naive datetimes are refused (their zone would be a guess)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, format straight to SQLAlchemy's own DATETIME text (the hot path binds thousands a batch)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        last: list[tuple[datetime, str]] = []  # one-entry memo: a batch binds the same instant many times

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            memo = last[0] if last else None
            if memo is not None and memo[0] is value:
                return memo[1]
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
            text = value.astimezone(UTC).strftime(_SQLITE_FORMAT)
            last[:] = [(value, text)]
            return text

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class DeliveryState(StrEnum):
    """Where one (message, destination) delivery stands."""

    QUEUED = "queued"
    DELIVERING = "delivering"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    DEAD = "dead"


PENDING_STATES = (DeliveryState.QUEUED, DeliveryState.DELIVERING, DeliveryState.RETRYING)


class EventState(StrEnum):
    """States recorded in the event history (X-Road style). Other strings may be recorded too."""

    RECEIVED = "received"
    VALIDATED = "validated"
    WARNING = "warning"  # accepted with advice (a procedure the procedure catalogue does not list)
    QUEUED = "queued"
    ATTEMPT_STARTED = "attempt_started"
    DELIVERED = "delivered"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"
    CLOSED = "closed"  # an operator closed the dead letter without resending
    RETRY_NOW = "retry_now"  # an operator made a waiting retry due now
    REJECTED = "rejected"
    STATUS_APPLIED = "status_applied"
    STATUS_STALE = "status_stale"
    STATUS_REJECTED = "status_rejected"
    STATUS_CORRECTED = "status_corrected"


# A big integer key that is still SQLite's auto-incrementing rowid alias.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("sender", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=True),
    sa.Column("message_type", sa.String(64), nullable=False),
    sa.Column("receiver", sa.String(64), nullable=False),
    sa.Column("dossier_code", sa.String(64), nullable=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("sender", "message_id"),
    sa.Index(None, "message_id"),
    sa.Index(None, "dossier_code"),
    # The message log's filters (``hub.store.message_log``, migration 0012).
    sa.Index(None, "received_at"),
    sa.Index(None, "sender", "id"),
    sa.Index(None, "message_type", "id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("message_pk", Id, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("published_at", UTCDateTime, nullable=True),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Column("outbound", sa.LargeBinary, nullable=True),
    sa.Column("outbound_digest", sa.String(64), nullable=True),
    # The bytes a partner actually received when they are not the hub-signed ``outbound`` envelope (e.g. a JSON
    # body), their media type and SHA-256 (migration 0006); NULL: the envelope itself was sent.
    sa.Column("sent", sa.LargeBinary, nullable=True),
    sa.Column("sent_type", sa.String(100), nullable=True),
    sa.Column("sent_digest", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Until when an outbox relay holds this unpublished delivery while it publishes it (migration 0009); NULL: no
    # claim. Cleared when the delivery is marked published.
    sa.Column("relay_claimed_until", UTCDateTime, nullable=True),
    # Which publication of this delivery a queue message must carry to be attempted (migration 0014): "retry now"
    # raises it and publishes anew, so the copy still waiting out its backoff in the broker is acknowledged
    # without a second partner call. Queue messages without the header carry 0.
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("message_pk", "destination"),
    sa.CheckConstraint(
        "state IN ('queued', 'delivering', 'retrying', 'delivered', 'dead')",
        name="state",
    ),
    sa.Index(None, "destination", "state"),
    # The message log's filters (migration 0012): by destination, and by state for the few not delivered.
    sa.Index(None, "destination", "message_pk"),
    sa.Index(
        "ix_deliveries_open_state",
        "state",
        "message_pk",
        sqlite_where=sa.text("state <> 'delivered'"),
        postgresql_where=sa.text("state <> 'delivered'"),
    ),
    # The outbox relay's scan: only rows not yet confirmed by the broker are in this index.
    sa.Index(
        "ix_deliveries_unpublished",
        "id",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("message_pk", Id, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("destination", sa.String(64), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.String(128), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index(None, "message_pk", "id"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", Id, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("replayed_at", UTCDateTime, nullable=True),
    sa.Column("replayed_by", sa.String(128), nullable=True),
    # Closed by an operator without resending (migration 0014): who, when and why; a closed one is not replayed.
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("closed_by", sa.String(128), nullable=True),
    sa.Column("close_reason", sa.Text, nullable=True),
    sa.Index(None, "delivery_id"),
    sa.Index(None, "replayed_at"),
)

dossiers = sa.Table(
    "dossiers",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    # NULL until a first update is applied (the row exists earlier so it can be locked).
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("status_at", UTCDateTime, nullable=True),
    sa.Column("applied_at", UTCDateTime, nullable=True),
    # From the dossier's dossier.sync (migration 0003): when and how it was submitted (the intake deadline).
    sa.Column("submitted_at", UTCDateTime, nullable=True),
    sa.Column("channel", sa.Integer, nullable=True),
    # The current due date and the time of the report that set it (migration 0018, ``hub.store.due_dates``).
    sa.Column("due_at", UTCDateTime, nullable=True),
    sa.Column("due_set_at", UTCDateTime, nullable=True),
    sa.Index(None, "due_at"),
)

dossier_timeline = sa.Table(
    "dossier_timeline",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("dossier_code", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    # What the step said beyond its status (officers, due dates, pause, files): ``hub.store.types.StatusUpdate.detail``.
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index(None, "dossier_code", "id"),
    sa.Index(None, "status", "dossier_code"),
)

# ---------------------------------------------------------------- connector registry (migration 0002)

connectors = sa.Table(
    "connectors",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    # ``sha256$<salt hex>$<digest hex>`` of the whole key; never the key itself.
    sa.Column("api_key_hash", sa.String(160), nullable=True),
    # The key's non-secret id part (``lt_xxxxxxxx``): what a lookup uses before the constant-time compare.
    sa.Column("api_key_prefix", sa.String(16), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "api_key_prefix", unique=True),
)

connector_certificates = sa.Table(
    "connector_certificates",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(64), sa.ForeignKey("connectors.code", ondelete="CASCADE"), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("pem", sa.Text, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("not_after", UTCDateTime, nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("removed_at", UTCDateTime, nullable=True),
    sa.Index(None, "code", "fingerprint"),
)

registry_audit = sa.Table(
    "registry_audit",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index(None, "code", "id"),
)

# The operator page's sign-in state (``hub.store.sessions``): sessions, kept server-side so that they can end,
# and failed sign-ins per account and per client address (the backoff).
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    # SHA-256 hex of the session token; the token itself is only in the operator's (signed) cookie.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # ``hub.console.auth.credential_fingerprint`` at sign-in: another one now (password changed) ends the session.
    sa.Column("credential", sa.String(64), nullable=False),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index(None, "name"),
    sa.Index(None, "expires_at"),
)

signin_failures = sa.Table(
    "signin_failures",
    metadata,
    sa.Column("subject", sa.String(200), primary_key=True),  # "account:<name>" or "address:<ip or IPv6 /64>"
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", UTCDateTime, nullable=False),
    sa.Column("blocked_until", UTCDateTime, nullable=True),
    sa.Index(None, "last_failure_at"),
)

# Operator page accounts kept in the store (``hub.store.accounts``): viewer, operator or admin, an argon2id hash,
# never a password. A disabled account keeps its row (and its name: it cannot be taken again) for the audit log.
operator_accounts = sa.Table(
    "operator_accounts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),  # viewer | operator | admin
    sa.Column("password_hash", sa.String(255), nullable=False),  # $argon2id$…
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("password_changed_at", UTCDateTime, nullable=False),
)

# Who did what, for the audit view (``hub.store.audit``): sign-ins (refused ones too), registry changes, replays,
# closed dead letters, retries, pauses, payload views, corrections. Append-only; ``detail`` never holds a secret.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),  # account name, connector code, or "hub"
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(48), nullable=False),  # dotted: "signin.refused", "dead_letter.close", …
    sa.Column("subject", sa.String(200), nullable=True),  # what it was done to: message id, connector code, …
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | refused
    sa.Column("client", sa.String(64), nullable=True),  # the client address, when it came over HTTP
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index(None, "at"),
    sa.Index(None, "action", "id"),
    sa.Index(None, "actor", "id"),
)

# Delivery history for the charts (``hub.store.traffic``, migration 0011): per destination and UTC minute, deliveries
# delivered, failed with a retry planned, and given up on (dead); counted in the transaction that records them, kept
# 7 days.
delivery_minutes = sa.Table(
    "delivery_minutes",
    metadata,
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("minute", UTCDateTime, primary_key=True),
    sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dead", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "minute"),  # the prune and the all-destination windows
)

# Destinations an operator paused (migration 0014): while a row exists the workers do not consume for it, so its
# queued work waits in the broker; resuming deletes the row (the audit log keeps both actions).
paused_destinations = sa.Table(
    "paused_destinations",
    metadata,
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("paused_at", UTCDateTime, nullable=False),
    sa.Column("paused_by", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# The national portal's procedure catalogue (``hub.store.catalogue``, migration 0015), read by ``hub catalogue sync``
# from LayDanhSachTTHC + LayThuTuc, LayDanhMucCoQuan and LayDanhMucLinhVuc (PARTNER-FORMATS §1, OC-DV:1252-1259,
# 534-558, 712-741, 171-186): replaced whole by each successful sync.
catalogue_procedures = sa.Table(
    "catalogue_procedures",
    metadata,
    sa.Column("code", sa.String(100), primary_key=True),  # MATTHC
    sa.Column("name", sa.Text, nullable=False),  # TENTTHC
    sa.Column("field_code", sa.String(100), nullable=True),  # LayThuTuc LINHVUCTHUCHIEN[0].MALINHVUC
    sa.Column("field_name", sa.Text, nullable=True),  # … TENLINHVUC
    sa.Column("detail", sa.JSON, nullable=True),  # LayThuTuc's result[0] as read; NULL when it could not be read
    sa.Column("fetched_at", UTCDateTime, nullable=False),
)
catalogue_units = sa.Table(
    "catalogue_units",
    metadata,
    sa.Column("code", sa.String(100), primary_key=True),  # MADONVI
    sa.Column("name", sa.Text, nullable=False),  # TENDONVI
    sa.Column("level", sa.String(32), nullable=True),  # CAPDONVI
    sa.Column("fetched_at", UTCDateTime, nullable=False),
)
catalogue_fields = sa.Table(
    "catalogue_fields",
    metadata,
    sa.Column("code", sa.String(100), primary_key=True),  # MALINHVUC
    sa.Column("name", sa.Text, nullable=False),  # TENLINHVUC
    sa.Column("sector", sa.String(100), nullable=True),  # MANGANH
    sa.Column("fetched_at", UTCDateTime, nullable=False),
)
# One row per sync: who and when, what it read, why it failed. ``running`` is 1 while a sync holds the lease (NULL
# after): its unique index lets one sync at a time claim it, across processes and hosts; ``lease_until`` lets a
# crashed sync's lease run out.
catalogue_syncs = sa.Table(
    "catalogue_syncs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=False),
    sa.Column("running", sa.Integer, nullable=True, unique=True),
    sa.Column("procedures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("units", sa.Integer, nullable=False, server_default="0"),
    sa.Column("fields", sa.Integer, nullable=False, server_default="0"),
    sa.Column("details_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "finished_at"),
)

# The partner flows' tables (F2–F4) live in their own module, on this metadata.
from hub.store import delivery_steps as _delivery_steps  # noqa: E402,F401
from hub.store import flow_records as _flow_records  # noqa: E402,F401
from hub.store import postal_orders as _postal_orders  # noqa: E402,F401

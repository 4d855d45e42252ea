"""Initial schema: message log, deliveries (outbox), events, dead letters, dossiers and their timeline.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("message_type", sa.String(64), nullable=False),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("dossier_code", sa.String(64), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("sender", "message_id", name="uq_messages_sender_message_id"),
    )
    op.create_index("ix_messages_message_id", "messages", ["message_id"])
    op.create_index("ix_messages_dossier_code", "messages", ["dossier_code"])

    op.create_table(
        "deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("message_pk", Id, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", Time(), nullable=True),
        sa.Column("published_at", Time(), nullable=True),
        sa.Column("queued_at", Time(), nullable=False),
        sa.Column("delivered_at", Time(), nullable=True),
        sa.Column("outbound", sa.LargeBinary(), nullable=True),
        sa.Column("outbound_digest", sa.String(64), nullable=True),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'delivering', 'retrying', 'delivered', 'dead')", name="ck_deliveries_state"
        ),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["messages.id"], name="fk_deliveries_message_pk_messages", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("message_pk", "destination", name="uq_deliveries_message_pk_destination"),
    )
    op.create_index("ix_deliveries_destination_state", "deliveries", ["destination", "state"])
    op.create_index(
        "ix_deliveries_unpublished",
        "deliveries",
        ["id"],
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )

    op.create_table(
        "events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("message_pk", Id, nullable=False),
        sa.Column("destination", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("at", Time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["messages.id"], name="fk_events_message_pk_messages", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_message_pk_id", "events", ["message_pk", "id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("delivery_id", Id, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("replayed_at", Time(), nullable=True),
        sa.Column("replayed_by", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name="fk_dead_letters_delivery_id_deliveries", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_delivery_id", "dead_letters", ["delivery_id"])
    op.create_index("ix_dead_letters_replayed_at", "dead_letters", ["replayed_at"])

    op.create_table(
        "dossiers",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("status_at", Time(), nullable=True),
        sa.Column("applied_at", Time(), nullable=True),
        sa.PrimaryKeyConstraint("code", name="pk_dossiers"),
    )

    op.create_table(
        "dossier_timeline",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("dossier_code", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("recorded_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dossier_timeline"),
    )
    op.create_index("ix_dossier_timeline_dossier_code_id", "dossier_timeline", ["dossier_code", "id"])


def downgrade() -> None:
    op.drop_table("dossier_timeline")
    op.drop_table("dossiers")
    op.drop_table("dead_letters")
    op.drop_table("events")
    op.drop_table("deliveries")
    op.drop_table("messages")

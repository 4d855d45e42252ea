"""Partner flows F2–F4: citizen lookup audit, payments and refused callbacks, postal tracking cursor and events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "citizen_lookups",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("officer_id", sa.String(100), nullable=True),
        sa.Column("dossier_code", sa.String(64), nullable=True),
        sa.Column("procedure_code", sa.String(100), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("subject", sa.String(32), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("record_digest", sa.String(64), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_citizen_lookups"),
    )
    op.create_index("ix_citizen_lookups_dossier_code_id", "citizen_lookups", ["dossier_code", "id"])
    op.create_index("ix_citizen_lookups_requester_id", "citizen_lookups", ["requester", "id"])

    op.create_table(
        "payments",
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("dossier_code", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payment_url", sa.Text(), nullable=True),
        sa.Column("bank_transaction_id", sa.String(100), nullable=True),
        sa.Column("receipt_message_id", sa.String(128), nullable=True),
        sa.Column("confirm_digest", sa.String(64), nullable=True),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("confirmed_at", Time(), nullable=True),
        sa.PrimaryKeyConstraint("reference", name="pk_payments"),
    )

    op.create_table(
        "partner_refusals",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(100), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload_digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_partner_refusals"),
    )
    op.create_index("ix_partner_refusals_connector_id", "partner_refusals", ["connector", "id"])

    op.create_table(
        "postal_cursors",
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("connector", name="pk_postal_cursors"),
    )
    op.create_table(
        "postal_events",
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("order_number", sa.String(100), nullable=False),
        sa.Column("status_code", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "event_id", name="pk_postal_events"),
    )


def downgrade() -> None:
    op.drop_table("postal_events")
    op.drop_table("postal_cursors")
    op.drop_index("ix_partner_refusals_connector_id", table_name="partner_refusals")
    op.drop_table("partner_refusals")
    op.drop_table("payments")
    op.drop_index("ix_citizen_lookups_requester_id", table_name="citizen_lookups")
    op.drop_index("ix_citizen_lookups_dossier_code_id", table_name="citizen_lookups")
    op.drop_table("citizen_lookups")

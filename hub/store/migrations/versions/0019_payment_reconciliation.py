"""Payments against the real platform (issue 15 points 2 and 4): the times the platform's QUERY and GET_BILL are
sent with, the partner's own reference (PayGov's orderId), the profile spoken, reconciliation's claims and last
answer, and the refunded total kept on the paid row under a check constraint (never above what was paid).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("profile", sa.String(32), nullable=True))
        batch.add_column(sa.Column("init_time", sa.String(14), nullable=True))
        batch.add_column(sa.Column("confirm_time", sa.String(14), nullable=True))
        batch.add_column(sa.Column("partner_reference", sa.String(100), nullable=True))
        batch.add_column(sa.Column("checked_at", Time(), nullable=True))
        batch.add_column(sa.Column("check_until", Time(), nullable=True))
        batch.add_column(sa.Column("platform_state", sa.String(8), nullable=True))
        batch.add_column(sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"))
    # what the confirmed refunds of each paid row add up to (capped: the constraint below holds from now on)
    op.execute(
        "UPDATE payments SET refunded = (SELECT CASE WHEN SUM(r.amount) > payments.amount THEN payments.amount "
        "ELSE COALESCE(SUM(r.amount), 0) END FROM payments r WHERE r.kind = 'refund' "
        "AND r.original_reference = payments.reference AND r.confirmed_at IS NOT NULL) WHERE kind = 'payment'"
    )
    with op.batch_alter_table("payments") as batch:
        batch.create_check_constraint("ck_payments_refunded", "refunded >= 0 AND refunded <= amount")
        batch.create_index("ix_payments_partner_reference", ["partner_reference"])
        batch.create_index("ix_payments_state_created_at", ["state", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_index("ix_payments_state_created_at")
        batch.drop_index("ix_payments_partner_reference")
        batch.drop_constraint("ck_payments_refunded", type_="check")
        for column in ("refunded", "platform_state", "check_until", "checked_at", "partner_reference",
                       "confirm_time", "init_time", "profile"):  # fmt: skip
            batch.drop_column(column)

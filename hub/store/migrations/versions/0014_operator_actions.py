"""Operator actions: dead letters closed without resending (``closed_at``, ``closed_by``, ``close_reason``), the
publication a queue message must carry to be attempted (``deliveries.generation``, raised by "retry now"), and
the destinations an operator paused (``paused_destinations``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dead_letters", sa.Column("closed_by", sa.String(128), nullable=True))
    op.add_column("dead_letters", sa.Column("close_reason", sa.Text, nullable=True))
    op.add_column("deliveries", sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "paused_destinations",
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("destination", name="pk_paused_destinations"),
    )


def downgrade() -> None:
    op.drop_table("paused_destinations")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("close_reason")
        batch.drop_column("closed_by")
        batch.drop_column("closed_at")

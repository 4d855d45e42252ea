"""Delivery history (``delivery_minutes``): per destination and UTC minute, deliveries delivered, failed (retry
planned) and dead, for the charts of the operator page and ``GET /api/v1/history``; kept 7 days.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_minutes",
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dead", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("destination", "minute", name="pk_delivery_minutes"),
    )
    op.create_index("ix_delivery_minutes_minute", "delivery_minutes", ["minute"])


def downgrade() -> None:
    op.drop_table("delivery_minutes")

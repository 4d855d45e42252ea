"""Dossier intake: when a dossier was submitted and through which channel (from its ``dossier.sync``), for the
8-working-hour intake rule; an index to find dossiers by status on their timeline.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("channel", sa.Integer(), nullable=True))
    op.create_index("ix_dossier_timeline_status_dossier_code", "dossier_timeline", ["status", "dossier_code"])


def downgrade() -> None:
    op.drop_index("ix_dossier_timeline_status_dossier_code", table_name="dossier_timeline")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("channel")
        batch.drop_column("submitted_at")

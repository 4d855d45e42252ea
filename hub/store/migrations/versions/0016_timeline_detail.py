"""The dossier timeline keeps what a step said beyond its status (``dossier_timeline.detail``, JSON): the officers,
due dates, pause flag, how processing ended and the files of a ministry step (issue 14 point 4).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dossier_timeline", sa.Column("detail", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier_timeline") as batch:
        batch.drop_column("detail")

"""A dossier's current due date (NgayHenTra): the one its ``dossier.sync`` carried, moved by a supplement received
with a new one (``dossier.status`` ``newDueAt``, VBDLIS NgayHenTraMoi), with the time of the report that set it
(an older report does not move it back); indexed for the overdue-processing query (issue 16 point 2).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("due_set_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dossiers_due_at", "dossiers", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_dossiers_due_at", table_name="dossiers")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("due_set_at")
        batch.drop_column("due_at")

"""The first answer to each citizen lookup, so that a repeat is answered from it (``lookup_answers``).

A lookup sent again (same requester, message id and request digest) gets the same hub-signed ``citizen.record``
bytes without the population DB being asked again, and is audited as a repeat. Only what answering it identically
needs is kept: the signed reply (which the requester already holds), its id, result, fields and digest.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lookup_answers",
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("reply_message_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("record_digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("requester", "message_id", name="pk_lookup_answers"),
    )


def downgrade() -> None:
    op.drop_table("lookup_answers")

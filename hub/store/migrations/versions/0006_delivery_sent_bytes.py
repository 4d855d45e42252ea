"""The message log keeps what a partner actually received when it is not the hub-signed envelope.

``deliveries.sent`` holds those bytes (e.g. a JSON body built from the envelope), ``sent_type`` their media type
and ``sent_digest`` their SHA-256 (what a trace shows); all stay NULL when the hub-signed ``outbound`` envelope
itself was sent.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sent", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("sent_type", sa.String(100), nullable=True))
        batch.add_column(sa.Column("sent_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sent_digest")
        batch.drop_column("sent_type")
        batch.drop_column("sent")

"""The outbox relay's claim on the deliveries it is publishing (``deliveries.relay_claimed_until``).

Every API and worker process runs a relay. A relay claims the unpublished deliveries it is about to publish (the
column holds when its lease ends), publishes them outside that short transaction and then marks them published,
so two relays do not publish the same delivery while its claim holds; a relay that dies leaves a claim another
takes over once the lease has run out. NULL: not claimed (every row written before this revision).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("relay_claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("relay_claimed_until")

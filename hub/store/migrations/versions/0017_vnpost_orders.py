"""VNPost (issue 15 point 5): the postal orders the hub placed, by their caller-assigned ItemCode, and tracking ids
that are VNPost's ``$oid`` strings.

- ``postal_orders``: each waybill code (``ItemCode``) the hub used, with the dossier, direction, COD amount and
  state of its order (``hub.store.postal_orders``); unique per connector and code, and per connector and standing
  order (dossier and direction).
- ``postal_cursors.last_id`` and ``postal_events.event_id`` become strings: VNPost pages its tracking feed by the
  last document's ``_id.$oid`` (PARTNER-FORMATS.md §4, OC-SDK MStatus; OC-VP:340-419). The integer cursors of the
  hub's former, unsourced feed mean nothing to VNPost and are dropped (the next poll reads the feed from its
  start; ``postal_events`` keeps every event emitted once); the event ids recorded are kept as text.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "postal_orders",
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("item_code", sa.String(100), nullable=False),
        sa.Column("order_key", sa.String(240), nullable=False),
        sa.Column("dossier_code", sa.String(100), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("cod_amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "item_code", name="pk_postal_orders"),
        sa.UniqueConstraint("connector", "order_key", name="uq_postal_orders_connector_order_key"),
    )
    op.create_index("ix_postal_orders_connector_dossier_code", "postal_orders", ["connector", "dossier_code"])
    op.execute("DELETE FROM postal_cursors")
    with op.batch_alter_table("postal_cursors") as batch:
        batch.alter_column("last_id", type_=sa.String(64), existing_nullable=False, postgresql_using="last_id::text")
    with op.batch_alter_table("postal_events") as batch:
        batch.alter_column("event_id", type_=sa.String(64), existing_nullable=False, postgresql_using="event_id::text")


def downgrade() -> None:
    op.execute("DELETE FROM postal_cursors")
    op.execute("DELETE FROM postal_events")  # $oid ids cannot become integers
    with op.batch_alter_table("postal_events") as batch:
        batch.alter_column(
            "event_id", type_=sa.BigInteger(), existing_nullable=False, postgresql_using="event_id::bigint"
        )
    with op.batch_alter_table("postal_cursors") as batch:
        batch.alter_column(
            "last_id", type_=sa.BigInteger(), existing_nullable=False, postgresql_using="last_id::bigint"
        )
    op.drop_index("ix_postal_orders_connector_dossier_code", table_name="postal_orders")
    op.drop_table("postal_orders")

"""VNPost orders that take effect once (review of issue 15 point 5): the message an accepted order was posted
for, the status 10 a delivered result delivery calls for until it is applied, and final orders freeing their key.

- ``postal_orders.posted_by``: the message whose delivery VNPost accepted the order for; a redelivery of that
  message is answered from it without posting the order again.
- ``postal_orders.handover``, ``handover_at``, ``handover_note``, ``handover_reason``: the dossier's status 10
  (Đã trả kết quả) after VNPost delivered the result, ``pending`` until the status machine applies it, then
  ``applied``, ``stale`` or ``refused``.
- An order already recorded ``delivered`` frees its (dossier, direction) key, as a cancelled one did: the next
  order of that dossier and direction takes a new ItemCode.

The downgrade drops the columns and leaves the freed keys as they are (a new order may hold the key since).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("postal_orders") as batch:
        batch.add_column(sa.Column("posted_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("handover", sa.String(16), nullable=True))
        batch.add_column(sa.Column("handover_at", Time(), nullable=True))
        batch.add_column(sa.Column("handover_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("handover_reason", sa.Text(), nullable=True))
    op.create_index("ix_postal_orders_connector_posted_by", "postal_orders", ["connector", "posted_by"])
    op.create_index("ix_postal_orders_connector_handover", "postal_orders", ["connector", "handover"])
    op.execute(
        "UPDATE postal_orders SET order_key = order_key || '#' || item_code "
        "WHERE state = 'delivered' AND order_key NOT LIKE '%#%'"
    )


def downgrade() -> None:
    op.drop_index("ix_postal_orders_connector_handover", table_name="postal_orders")
    op.drop_index("ix_postal_orders_connector_posted_by", table_name="postal_orders")
    with op.batch_alter_table("postal_orders") as batch:
        batch.drop_column("handover_reason")
        batch.drop_column("handover_note")
        batch.drop_column("handover_at")
        batch.drop_column("handover")
        batch.drop_column("posted_by")

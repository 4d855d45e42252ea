"""The message log's filters (``hub.store.message_log``): indexes on messages by time, sender and type, on
deliveries by destination, and a partial index of the deliveries not delivered (pending or dead) by state.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "state <> 'delivered'"


def upgrade() -> None:
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_messages_sender_id", "messages", ["sender", "id"])
    op.create_index("ix_messages_message_type_id", "messages", ["message_type", "id"])
    op.create_index("ix_deliveries_destination_message_pk", "deliveries", ["destination", "message_pk"])
    op.create_index(
        "ix_deliveries_open_state",
        "deliveries",
        ["state", "message_pk"],
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_open_state", table_name="deliveries")
    op.drop_index("ix_deliveries_destination_message_pk", table_name="deliveries")
    op.drop_index("ix_messages_message_type_id", table_name="messages")
    op.drop_index("ix_messages_sender_id", table_name="messages")
    op.drop_index("ix_messages_received_at", table_name="messages")

"""Operator page accounts in the store (``operator_accounts``): viewer / operator / admin, argon2id hashes, disabled
accounts kept for the audit log. ``LIENTHONG_OPERATORS`` and the admin API key still sign in (the first admin).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operator_accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled_at", Time(), nullable=True),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.Column("password_changed_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_operator_accounts"),
        sa.UniqueConstraint("name", name="uq_operator_accounts_name"),
    )


def downgrade() -> None:
    op.drop_table("operator_accounts")

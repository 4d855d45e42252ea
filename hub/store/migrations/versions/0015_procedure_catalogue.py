"""The national portal's procedure catalogue: procedures (with LayThuTuc's answer), units, fields, and one row per
sync (``catalogue_syncs``, whose unique ``running`` column is the lease one sync at a time holds).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalogue_procedures",
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("field_code", sa.String(100), nullable=True),
        sa.Column("field_name", sa.Text, nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_catalogue_procedures"),
    )
    op.create_table(
        "catalogue_units",
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("level", sa.String(32), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_catalogue_units"),
    )
    op.create_table(
        "catalogue_fields",
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sector", sa.String(100), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_catalogue_fields"),
    )
    op.create_table(
        "catalogue_syncs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("running", sa.Integer, nullable=True),
        sa.Column("procedures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("units", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fields", sa.Integer, nullable=False, server_default="0"),
        sa.Column("details_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_catalogue_syncs"),
        sa.UniqueConstraint("running", name="uq_catalogue_syncs_running"),
    )
    op.create_index("ix_catalogue_syncs_finished_at", "catalogue_syncs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_catalogue_syncs_finished_at", table_name="catalogue_syncs")
    op.drop_table("catalogue_syncs")
    op.drop_table("catalogue_fields")
    op.drop_table("catalogue_units")
    op.drop_table("catalogue_procedures")

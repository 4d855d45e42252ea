"""Connector registry: connectors (spec, hashed API key), their certificates, and the registry's audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def Time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("api_key_hash", sa.String(160), nullable=True),
        sa.Column("api_key_prefix", sa.String(16), nullable=True),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_connectors"),
    )
    op.create_index("ix_connectors_api_key_prefix", "connectors", ["api_key_prefix"], unique=True)

    op.create_table(
        "connector_certificates",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("not_before", Time(), nullable=False),
        sa.Column("not_after", Time(), nullable=False),
        sa.Column("added_at", Time(), nullable=False),
        sa.Column("removed_at", Time(), nullable=True),
        sa.ForeignKeyConstraint(
            ["code"], ["connectors.code"], name="fk_connector_certificates_code_connectors", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_connector_certificates"),
    )
    op.create_index("ix_connector_certificates_code_fingerprint", "connector_certificates", ["code", "fingerprint"])

    op.create_table(
        "registry_audit",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_audit"),
    )
    op.create_index("ix_registry_audit_code_id", "registry_audit", ["code", "id"])


def downgrade() -> None:
    op.drop_table("registry_audit")
    op.drop_table("connector_certificates")
    op.drop_table("connectors")

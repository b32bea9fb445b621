"""The FHIR resource store: versions, current versions, tenant access, search index, clock.

Revision ID: 0002_fhir_store
Revises: 0001_spine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fhir_store"
down_revision = "0001_spine"
branch_labels = None
depends_on = None


def _key() -> list[sa.Column]:
    return [sa.Column("resource_type", sa.String(64), primary_key=True, nullable=False),
            sa.Column("resource_id", sa.String(64), primary_key=True, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "fhir_resource_version",
        *_key(),
        sa.Column("version_id", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
        sa.Column("last_updated_us", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("manufacturer_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_fhir_version_type_updated", "fhir_resource_version",
                    ["resource_type", "last_updated_us", "resource_id", "version_id"])
    op.create_table(
        "fhir_resource_current",
        *_key(),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated_us", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_fhir_current_type_updated", "fhir_resource_current",
                    ["resource_type", "last_updated_us", "resource_id"])
    op.create_table(
        "fhir_resource_access",
        *_key(),
        sa.Column("tenant_kind", sa.String(16), primary_key=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("last_updated_us", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_fhir_access_tenant_updated", "fhir_resource_access",
                    ["resource_type", "tenant_kind", "tenant_id", "last_updated_us", "resource_id"])
    op.create_table(
        "fhir_search_token",
        *_key(),
        sa.Column("param", sa.String(64), primary_key=True, nullable=False),
        sa.Column("system", sa.String(255), primary_key=True, nullable=False),
        sa.Column("value", sa.String(255), primary_key=True, nullable=False),
    )
    op.create_index("ix_fhir_token_value", "fhir_search_token", ["resource_type", "param", "value", "system"])
    op.create_table(
        "fhir_search_date",
        *_key(),
        sa.Column("param", sa.String(64), primary_key=True, nullable=False),
        sa.Column("start_us", sa.BigInteger(), primary_key=True, nullable=False),
        sa.Column("end_us", sa.BigInteger(), primary_key=True, nullable=False),
    )
    op.create_index("ix_fhir_date_start", "fhir_search_date", ["resource_type", "param", "start_us"])
    clock = op.create_table(
        "fhir_clock",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
        sa.Column("last_us", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(clock, [{"id": 1, "last_us": 0}])


def downgrade() -> None:
    for table in ("fhir_clock", "fhir_search_date", "fhir_search_token", "fhir_resource_access",
                  "fhir_resource_current", "fhir_resource_version"):
        op.drop_table(table)

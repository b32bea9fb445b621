"""The index ``ix_cgt_order_site_order_number`` on ``cgt_order (site_id, site_order_number)``.

A site request that names its order by the site's own number (HL7v2 ORC-3.1 / SCH-27.1 once the site
sent ``NA``) is looked up among that site's orders by ``site_order_number``
(:mod:`gateway.inbound.requests`); without this index that look-up reads every order of the site.
Declared on the model in :mod:`gateway.store.site_request_tables`, beside ``ix_cgt_order_site_order``.

Revision ID: 0012_site_order_number_index
Revises: 0011_alerts
"""

from __future__ import annotations

from alembic import op

revision = "0012_site_order_number_index"
down_revision = "0011_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cgt_order_site_order_number", "cgt_order", ["site_id", "site_order_number"])


def downgrade() -> None:
    op.drop_index("ix_cgt_order_site_order_number", table_name="cgt_order")

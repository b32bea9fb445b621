"""Site requests (issue 13): what treatment sites ask for, by HL7v2 or FHIR, and its decisions.

* ``site_request`` (see :class:`gateway.store.site_request_tables.SiteRequestRow`) and its append-only
  ``site_request_transition``;
* ``order_event.source``: who reported an event, ``manufacturer`` (every event before this revision)
  or ``site`` (a site request applied);
* ``cgt_order.site_order_number``: the site's own order number (ORC-1 ``NA``), NULL until learned;
* the index ``ix_cgt_order_site_order`` (an order is looked up among its site's orders).

Revision ID: 0006_site_requests
Revises: 0005_event_retraction
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_site_requests"
down_revision = "0005_event_retraction"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("order_event", sa.Column("source", sa.String(16), nullable=False,
                                           server_default="manufacturer"))
    op.add_column("cgt_order", sa.Column("site_order_number", sa.String(64), nullable=True))
    op.create_index("ix_cgt_order_site_order", "cgt_order", ["site_id", "order_id"])
    op.create_table(
        "site_request",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("order_pk", sa.Integer(), sa.ForeignKey("cgt_order.id"), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("requested", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("decision_reason", sa.String(1000), nullable=True),
        sa.Column("decided_by", sa.String(16), nullable=True),
        sa.Column("decision", sa.String(8), nullable=True),
        sa.Column("decision_code", sa.String(40), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("sender", sa.String(200), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("dedupe_sha256", sa.String(64), nullable=True),
        sa.Column("control_id", sa.String(64), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("event_pk", sa.Integer(), sa.ForeignKey("order_event.id"), nullable=True),
        sa.UniqueConstraint("request_id", name="uq_site_request_request_id"),
        sa.UniqueConstraint("site_id", "dedupe_sha256", name="uq_site_request_dedupe"),
    )
    op.create_index("ix_site_request_manufacturer_seq", "site_request", ["manufacturer_id", "seq"])
    op.create_index("ix_site_request_site_seq", "site_request", ["site_id", "seq"])
    op.create_index("ix_site_request_order", "site_request", ["order_pk", "seq"])
    op.create_table(
        "site_request_transition",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_seq", sa.Integer(), sa.ForeignKey("site_request.seq"), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
    )
    op.create_index("ix_site_request_transition_request", "site_request_transition", ["request_seq", "id"])


def downgrade() -> None:
    op.drop_index("ix_site_request_transition_request", table_name="site_request_transition")
    op.drop_table("site_request_transition")
    for name in ("ix_site_request_order", "ix_site_request_site_seq", "ix_site_request_manufacturer_seq"):
        op.drop_index(name, table_name="site_request")
    op.drop_table("site_request")
    op.drop_index("ix_cgt_order_site_order", table_name="cgt_order")
    # Plain ALTER TABLE ... DROP COLUMN (see 0005): batch mode would recreate tables that SQLite's
    # foreign keys guard.
    op.execute("ALTER TABLE cgt_order DROP COLUMN site_order_number")
    op.execute("ALTER TABLE order_event DROP COLUMN source")

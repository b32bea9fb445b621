"""Milestone alerts and site certification (issue 16).

* ``milestone_alert`` (see :class:`gateway.alerts.tables.MilestoneAlertRow`): one row per alert
  condition, unique on ``(subject, kind, condition_key)`` (``subject`` is ``order:<order pk>`` or
  ``certification:<site>/<product>``), so a scheduler that runs twice, or restarts, never raises twice;
* ``site_certification`` (see :class:`gateway.alerts.tables.SiteCertificationRow`): a site's
  certification for a product recorded at run time, unique on ``(site_id, product_code)``.

(The lead re-chains it after 0009_console at merge time: do not change revision or down_revision.)

Revision ID: 0011_alerts
Revises: 0010_subscriptions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_alerts"
down_revision = "0010_subscriptions"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "milestone_alert",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("alert_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("condition_key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("order_pk", sa.Integer(), sa.ForeignKey("cgt_order.id"), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("product_code", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("raised_at", _TS, nullable=False),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.UniqueConstraint("subject", "kind", "condition_key", name="uq_milestone_alert_condition"),
        sa.UniqueConstraint("alert_id", name="uq_milestone_alert_alert_id"),
    )
    op.create_index("ix_milestone_alert_manufacturer", "milestone_alert", ["manufacturer_id", "id"])
    op.create_index("ix_milestone_alert_site", "milestone_alert", ["site_id", "id"])
    op.create_index("ix_milestone_alert_subject_state", "milestone_alert", ["subject", "state"])
    op.create_table(
        "site_certification",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("product_code", sa.String(64), nullable=False),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("training_completed_at", _TS, nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("site_id", "product_code", name="uq_site_certification_site_product"),
    )


def downgrade() -> None:
    op.drop_table("site_certification")
    for name in (
        "ix_milestone_alert_subject_state",
        "ix_milestone_alert_site",
        "ix_milestone_alert_manufacturer",
    ):
        op.drop_index(name, table_name="milestone_alert")
    op.drop_table("milestone_alert")

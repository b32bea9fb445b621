"""Console (issue 15): acknowledgements of delivery alerts (``console_alert_ack``) and the indexes
its search reads (CoI, MRN, HL7 control id).

Revision ID: 0009_console
Revises: 0008_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_console"
down_revision = "0008_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_alert_ack",
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("delivery_alert.id"), primary_key=True,
                  autoincrement=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_console_order_coi", "cgt_order", ["coi"])
    op.create_index("ix_console_patient_coi_mrn", "patient_coi", ["mrn"])
    op.create_index("ix_console_outbox_control_id", "outbox_message", ["control_id"])


def downgrade() -> None:
    op.drop_index("ix_console_outbox_control_id", table_name="outbox_message")
    op.drop_index("ix_console_patient_coi_mrn", table_name="patient_coi")
    op.drop_index("ix_console_order_coi", table_name="cgt_order")
    op.drop_table("console_alert_ack")

"""The console's schema (migrations ``0009_console``, ``0013_console_signed_out``): an operator's
acknowledgement of a delivery alert, the sessions signed out, and the indexes its search needs on other
parts' tables.

An alert (``delivery_alert``, written by the delivery worker) is *open* until a row here names it;
the row keeps who acknowledged it, when, and their note.  One acknowledgement per alert (primary key).

Search by CoI, MRN and HL7 control id reads one index each (Mirth's users asked for an indexed MRN
search for years): ``ix_console_order_coi``, ``ix_console_patient_coi_mrn``,
``ix_console_outbox_control_id``, declared here so the tables' owners need not know the console.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.delivery.outbox import OutboxMessage
from gateway.store.tables import OrderRow, PatientCoiRow

__all__ = ["AlertAckRow", "SignedOutRow", "SEARCH_INDEXES"]


class AlertAckRow(SQLModel, table=True):
    __tablename__ = "console_alert_ack"

    alert_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("delivery_alert.id"),
                                              primary_key=True, autoincrement=False))
    acknowledged_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    acknowledged_by: str = Field(sa_type=sa.String(200))  # the signed-in client's name (no token)
    note: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))


class SignedOutRow(SQLModel, table=True):
    """A console session signed out (migration ``0013_console_signed_out``): its cookie's nonce, refused
    by every process and host until the session would have expired (then the row may go)."""

    __tablename__ = "console_signed_out"

    nonce: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False,
                                                     index=True))


SEARCH_INDEXES = (
    sa.Index("ix_console_order_coi", OrderRow.__table__.c.coi),  # type: ignore[attr-defined]
    sa.Index("ix_console_patient_coi_mrn", PatientCoiRow.__table__.c.mrn),  # type: ignore[attr-defined]
    sa.Index("ix_console_outbox_control_id", OutboxMessage.__table__.c.control_id),  # type: ignore[attr-defined]
)

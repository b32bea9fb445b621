"""The console's one table (migration ``0009_console``): an operator's acknowledgement of a delivery alert.

An alert (``delivery_alert``, written by the delivery worker) is *open* until a row here names it;
the row keeps who acknowledged it, when, and their note.  One acknowledgement per alert (primary key).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["AlertAckRow"]


class AlertAckRow(SQLModel, table=True):
    __tablename__ = "console_alert_ack"

    alert_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("delivery_alert.id"),
                                              primary_key=True, autoincrement=False))
    acknowledged_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    acknowledged_by: str = Field(sa_type=sa.String(200))  # the signed-in client's name (no token)
    note: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))

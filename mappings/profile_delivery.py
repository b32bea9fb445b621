"""The ``delivery`` section of a site mapping profile (owned by the delivery work)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["DeliverySettings"]


class DeliverySettings(BaseModel):
    """Placeholder until the delivery work fills it in: no destinations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

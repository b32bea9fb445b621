"""The ``hl7v2`` section of a site mapping profile (owned by the HL7v2 rendering work)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Hl7v2Settings"]


class Hl7v2Settings(BaseModel):
    """Placeholder until the HL7v2 rendering work fills it in: ``enabled: false`` renders nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False

"""The ``hl7v2.inbound`` section of a site profile: how to read what the site sends back.

Every field has a default that matches what the gateway itself sends (its own ``99CGT`` codes), so
a site that echoes our appointment services and sends our infusion code needs no configuration::

    hl7v2:
      inbound:
        max_message_bytes: 1048576        # bigger messages are refused (AR) before parsing
        max_segments: 500                 # more segments are refused (AR)
        change_appointment: by_stage      # ORC-1 XO: which date TQ1-7 / ORC-7.4 moves
        appointment_codes:                # SIU: SCH-7.1 or AIS-3.1 -> which appointment
          apheresis: [apheresis]
          infusion: [infusion]
        infused_obx_code: infused         # 2.3 ORU^R01: OBX-3.1 meaning "infusion done"

``change_appointment``: ``apheresis`` or ``infusion`` when the site's order change always moves that
date; ``by_stage`` (default) leaves the choice to the service, which moves the apheresis date
before collection and the infusion date after it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Hl7v2InboundSettings", "AppointmentCodes", "ChangeAppointment"]

ChangeAppointment = Literal["by_stage", "apheresis", "infusion"]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^|^~\\&\r\n]+$")]


class AppointmentCodes(BaseModel):
    """SCH-7.1 / AIS-3.1 codes naming each appointment (exact, case-sensitive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apheresis: tuple[Code, ...] = ("apheresis",)
    infusion: tuple[Code, ...] = ("infusion",)


class Hl7v2InboundSettings(BaseModel):
    """Limits and code maps for HL7v2 messages the site sends to the gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_message_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    max_segments: Annotated[int, Field(ge=2, le=10_000)] = 500
    change_appointment: ChangeAppointment = "by_stage"
    appointment_codes: AppointmentCodes = AppointmentCodes()
    infused_obx_code: Code = "infused"

"""The optional ``hl7v2.pv1`` section of a site profile: the patient visit segment the site's engine expects.

Many Epic and Oracle Health order interfaces refuse an order without a PV1.  Example::

    hl7v2:
      pv1:
        patient_class: O              # PV1-2, HL7 table 0004 (O = outpatient)
        assigned_location:            # PV1-3, PL: every component optional, at least one given
          point_of_care: CTI          # PL.1
          room: "12"                  # PL.2
          bed: A                      # PL.3
          facility: SITE-A            # PL.4 (HD namespace id)
          location_status: ""         # PL.5
          person_location_type: C     # PL.6, HL7 table 0305 (C = clinic)
          building: MAIN              # PL.7
          floor: "3"                  # PL.8
          description: Cell therapy infusion center   # PL.9

Without the section no PV1 is sent.  With it, PV1 follows PID in every message whose structure has a
patient visit (ORM^O01, OML^O21, ORU^R01, SIU^S12-S15, BPS^O29, BTS^O31).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PatientClass", "PersonLocationType", "AssignedLocation", "Pv1Settings"]

#: HL7 table 0004 (patient class).
PatientClass = Literal["B", "C", "E", "I", "N", "O", "P", "R", "U"]
#: HL7 table 0305 (person location type).
PersonLocationType = Literal["C", "D", "H", "N", "O", "P", "S"]

# A PL component: no HL7 delimiter, no line break (text, not a template).
_COMPONENT = r"^[^|^~\\&\x00-\x1f\x7f]*$"  # no delimiter, no control character
Component = Annotated[str, Field(max_length=80, pattern=_COMPONENT)]


class AssignedLocation(BaseModel):
    """PV1-3 assigned patient location (PL), one named field per component."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    point_of_care: Component = ""
    room: Component = ""
    bed: Component = ""
    facility: Component = ""
    location_status: Component = ""
    person_location_type: PersonLocationType | None = None
    building: Component = ""
    floor: Component = ""
    description: Component = ""

    @model_validator(mode="after")
    def _not_empty(self) -> AssignedLocation:
        if not any(self.components()):
            raise ValueError("assigned_location needs at least one component (e.g. point_of_care)")
        return self

    def components(self) -> tuple[str, ...]:
        """PL.1..PL.9, unescaped (the pattern keeps delimiters out)."""
        return (self.point_of_care, self.room, self.bed, self.facility, self.location_status,
                self.person_location_type or "", self.building, self.floor, self.description)


class Pv1Settings(BaseModel):
    """``hl7v2.pv1``: PV1-2 patient class (required) and PV1-3 assigned location (optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_class: PatientClass
    assigned_location: AssignedLocation | None = None

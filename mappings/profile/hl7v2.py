"""The ``hl7v2`` section of a site mapping profile: what the site's interface engine expects.

Example (``fixtures/profiles/site-a.yaml``)::

    hl7v2:
      enabled: true
      version: "2.5.1"
      order_message: OML^O21
      results: true
      scheduling: true
      sending_application: CGT-GATEWAY
      sending_facility: CGTGW
      receiving_application: EPIC
      receiving_facility: SITE-A
      processing_id: P
      ack_mode: enhanced          # MSH-15/16 = AL/AL unless accept_ack_type/application_ack_type set
      coi_location: ORC-4         # ORC-4 | OBX | ZCG
      pid3_assigning_authority: SITEA
      pid3_identifier_type: MR
      charset: UNICODE UTF-8      # MSH-18; null = ASCII
      charset_fallback: transliterate   # or refuse: text the charset cannot hold
      pv1: {patient_class: O, assigned_location: {point_of_care: CTI, facility: SITE-A}}
      overrides:
        OBR-4: "{{ product.local_code }}^{{ product.display }}^L"
      inbound: {change_appointment: by_stage}   # see mappings.profile.hl7v2_inbound

The site's timezone (for every timestamp) is the profile's top-level ``timezone``.  Override
templates are checked when the profile loads (see :mod:`mappings.profile.templates`), against the
limits and the demographics setting the loader passes in the validation context
(:data:`TEMPLATE_CHECK_CONTEXT`); without a context the default limits apply and the demographics
are checked by ``SiteProfile`` itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from mappings.er7.charsets import CharsetFallback, charset_label, encodable, python_codec
from mappings.profile.hl7v2_inbound import Hl7v2InboundSettings
from mappings.profile.pv1 import Pv1Settings
from mappings.profile.templates import TemplateLimits, check_template

__all__ = [
    "Hl7v2Settings",
    "Hl7Version",
    "AckType",
    "OVERRIDABLE_SEGMENTS",
    "TEMPLATE_CHECK_CONTEXT",
]

#: Keys of the pydantic validation context the loader fills: ``TemplateLimits`` and the profile's
#: ``patient.demographics`` (``full`` | ``mrn_only``).
TEMPLATE_CHECK_CONTEXT = ("template_limits", "demographics")

Hl7Version = Literal["2.3", "2.4", "2.5.1"]
AckType = Literal["AL", "NE", "ER", "SU"]  # HL7 table 0155

#: Segments whose fields an override may replace.  MSH is not overridable: its fields come from
#: the settings above, and MSH-7/9/10/12 are structural.
OVERRIDABLE_SEGMENTS = frozenset(
    {"PID", "PV1", "ORC", "OBR", "OBX", "NTE", "TQ1", "SCH", "AIS", "ZCG", "BPO", "BPX", "BTX"}
)
_PATH = re.compile(r"^([A-Z][A-Z0-9]{2})-([1-9][0-9]?)$")

# HD values (MSH-3..6, PID-3.4) may use components (``APP^1.2.3^ISO``) but no other delimiter, and no
# control character (0x0B and 0x1C would end the MLLP frame early).
_HD = r"^[^|~\\&\x00-\x1f\x7f]*$"
HdValue = Annotated[str, Field(max_length=227, pattern=_HD)]
# PID-3.4 is an HD inside a CX component: no component separator either.
AssigningAuthority = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^|^~\\&\x00-\x1f\x7f]+$")]


def _check_path(path: str) -> str:
    match = _PATH.match(path)
    if match is None:
        raise ValueError(f"'{path}' is not a field path like 'OBR-4'")
    if match.group(1) not in OVERRIDABLE_SEGMENTS:
        allowed = ", ".join(sorted(OVERRIDABLE_SEGMENTS))
        raise ValueError(f"segment {match.group(1)} cannot be overridden; allowed: {allowed}")
    return path


def _check_template(source: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("template_limits")
    check_template(source, limits if isinstance(limits, TemplateLimits) else TemplateLimits(),
                   demographics=str(context.get("demographics", "full")))
    return source


OverridePath = Annotated[str, AfterValidator(_check_path)]
OverrideTemplate = Annotated[str, Field(max_length=2000), AfterValidator(_check_template)]

#: HL7 table 0211 (alternate character sets) values we can honour.  The MLLP sender encodes each message
#: in this character set (ASCII, also when MSH-18 is empty, the HL7 default; ISO 8859-1; else UTF-8);
#: the renderer makes every message fit it (``charset_fallback``, see :mod:`mappings.hl7v2.charset`).
Charset = Literal["ASCII", "8859/1", "UNICODE", "UNICODE UTF-8"]


class Hl7v2Settings(BaseModel):
    """How (and whether) the site receives HL7v2; ``enabled: false`` renders no message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    version: Hl7Version = "2.5.1"
    order_message: Literal["ORM^O01", "OML^O21"] = "OML^O21"
    results: bool = True  # ORU^R01 for measurements and release results
    scheduling: bool = False  # SIU^S12/S13/S15 for apheresis and infusion appointments
    blood_product_status: bool = False  # BPS^O29 / BTS^O31, for blood-bank modules (opt-in)
    sending_application: HdValue = "CGT-GATEWAY"  # MSH-3
    sending_facility: HdValue = ""  # MSH-4
    receiving_application: HdValue = ""  # MSH-5
    receiving_facility: HdValue = ""  # MSH-6
    processing_id: Literal["P", "T", "D"] = "P"  # MSH-11, table 0103
    ack_mode: Literal["original", "enhanced"] = "original"
    accept_ack_type: AckType | None = None  # MSH-15 in enhanced mode (default AL)
    application_ack_type: AckType | None = None  # MSH-16 in enhanced mode (default AL)
    coi_location: Literal["ORC-4", "OBX", "ZCG"] = "ORC-4"
    pid3_assigning_authority: AssigningAuthority | None = None  # PID-3.4
    pid3_identifier_type: Annotated[str, Field(pattern=r"^[A-Z]{1,5}$")] = "MR"  # PID-3.5, table 0203
    charset: Charset | None = "UNICODE UTF-8"  # MSH-18; None (empty) means ASCII
    charset_fallback: CharsetFallback = "transliterate"  # text the charset cannot hold: nearest or refuse
    pv1: Pv1Settings | None = None  # a PV1 after PID (patient class, assigned location); None: no PV1
    overrides: dict[OverridePath, OverrideTemplate] = Field(default_factory=dict)
    inbound: Hl7v2InboundSettings = Hl7v2InboundSettings()  # reading what the site sends back

    @model_validator(mode="after")
    def _check_ack_mode(self) -> Hl7v2Settings:
        if self.ack_mode == "original" and (self.accept_ack_type or self.application_ack_type):
            raise ValueError("accept_ack_type/application_ack_type (MSH-15/16) need ack_mode: enhanced")
        if self.charset == "UNICODE UTF-8" and self.version != "2.5.1":
            raise ValueError(f"charset 'UNICODE UTF-8' is not in HL7 {self.version} table 0211: use UNICODE")
        if self.order_message == "OML^O21" and self.version == "2.3":
            raise ValueError("OML^O21 does not exist in HL7 2.3; use order_message: ORM^O01")
        if self.blood_product_status and self.version != "2.5.1":
            raise ValueError("BPS^O29/BTS^O31 (blood_product_status) need HL7 version 2.5.1")
        self._check_charset_of_own_values()
        return self

    def _check_charset_of_own_values(self) -> None:
        """Identifiers this section puts in messages must fit the declared character set as they are."""
        codec = python_codec(self.charset)
        values = {
            "sending_application": self.sending_application, "sending_facility": self.sending_facility,
            "receiving_application": self.receiving_application,
            "receiving_facility": self.receiving_facility,
            "pid3_assigning_authority": self.pid3_assigning_authority or "",
        }
        location = self.pv1.assigned_location if self.pv1 is not None else None
        if location is not None:
            values.update({f"pv1.assigned_location.{name}": str(value)
                           for name, value in location.model_dump().items() if value})
        for name, value in values.items():
            if not encodable(value, codec):
                raise ValueError(f"{name} has characters outside {charset_label(self.charset)}; "
                                 "identifiers are never transliterated: use the site's own spelling")

    @property
    def msh15(self) -> str:
        """MSH-15 accept acknowledgment type: empty in original mode."""
        if self.ack_mode == "original":
            return ""
        return self.accept_ack_type or "AL"

    @property
    def msh16(self) -> str:
        """MSH-16 application acknowledgment type: empty in original mode."""
        if self.ack_mode == "original":
            return ""
        return self.application_ack_type or "AL"

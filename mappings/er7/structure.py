"""Segment-order check for the message structures we emit (HL7 v2.5.1 chapter 4/7/10 grammars).

hl7apy 1.3.5 models ORM^O01's choice of OBR/RQD/RQ1/RXO/ODS/ODT as a sequence, so a correct
ORM^O01 fails its STRICT validation; for ORM we validate at TOLERANT plus this check.  The grammars
cover the segments we use (optional groups we never send are left out) and allow trailing Z-segments.
Cheap enough to run on every message (the translation benchmark does).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SEGMENT_ORDER", "check_segment_order", "segment_ids"]

_Z = r"(?:Z[A-Z0-9]{2} )*"
_PATIENT = r"(?:PID (?:PD1 )?(?:NTE )*(?:PV1 (?:PV2 )?)?)"

#: Message structure (MSH-9.3) -> regular expression over space-separated segment ids.
SEGMENT_ORDER: Final[dict[str, re.Pattern[str]]] = {
    "ORM_O01": re.compile(
        rf"^MSH (?:NTE )*{_PATIENT}?(?:ORC (?:(?:OBR|RQD|RQ1|RXO|ODS|ODT) (?:NTE )*(?:CTD )?(?:DG1 )*"
        rf"(?:OBX (?:NTE )*)*)?(?:FT1 )*(?:CTI )*(?:BLG )?)+{_Z}$"
    ),
    "OML_O21": re.compile(
        rf"^MSH (?:SFT )*(?:NTE )*{_PATIENT}?(?:ORC (?:TQ1 (?:TQ2 )*)*(?:OBR (?:TCD )?(?:NTE )*(?:CTD )?"
        rf"(?:DG1 )*(?:OBX (?:TCD )?(?:NTE )*)*)?(?:FT1 )*(?:CTI )*(?:BLG )?)+{_Z}$"
    ),
    "ORU_R01": re.compile(
        rf"^MSH (?:SFT )*(?:{_PATIENT}?(?:ORC )?OBR (?:NTE )*(?:TQ1 (?:TQ2 )*)*(?:CTD )?(?:OBX (?:NTE )*)*"
        rf"(?:FT1 )*(?:CTI )*)+(?:DSC )?{_Z}$"
    ),
    "SIU_S12": re.compile(
        rf"^MSH SCH (?:TQ1 )*(?:NTE )*(?:PID (?:PD1 )?(?:PV1 )?(?:PV2 )?(?:OBX )*(?:DG1 )*)*"
        rf"(?:RGS (?:AIS (?:NTE )*)*(?:AIG (?:NTE )*)*(?:AIL (?:NTE )*)*(?:AIP (?:NTE )*)*)+{_Z}$"
    ),
    "BPS_O29": re.compile(
        rf"^MSH (?:SFT )*(?:NTE )*{_PATIENT}?(?:ORC (?:TQ1 (?:TQ2 )*)*BPO (?:NTE )*(?:BPX (?:NTE )*)*)+{_Z}$"
    ),
    "BTS_O31": re.compile(
        rf"^MSH (?:SFT )*(?:NTE )*{_PATIENT}?(?:ORC (?:TQ1 (?:TQ2 )*)*BPO (?:NTE )*(?:BTX (?:NTE )*)*)+{_Z}$"
    ),
}

_STRUCTURE_BY_TYPE = {
    "ORM^O01": "ORM_O01", "OML^O21": "OML_O21", "ORU^R01": "ORU_R01", "SIU^S12": "SIU_S12",
    "SIU^S13": "SIU_S12", "SIU^S14": "SIU_S12", "SIU^S15": "SIU_S12", "BPS^O29": "BPS_O29",
    "BTS^O31": "BTS_O31",
}


def segment_ids(er7: str) -> list[str]:
    return [line[:3] for line in er7.split("\r") if line]


def check_segment_order(er7: str) -> str:
    """Return the message structure if the segments are in a valid order, else raise ``ValueError``."""
    ids = segment_ids(er7)
    if not ids or ids[0] != "MSH":
        raise ValueError("message does not start with MSH")
    msh = er7.split("\r", 1)[0].split("|")
    message_type = "^".join(msh[8].split("^")[:2]) if len(msh) > 8 else ""
    structure = _STRUCTURE_BY_TYPE.get(message_type)
    if structure is None:
        raise ValueError(f"no segment grammar for message type {message_type!r}")
    if SEGMENT_ORDER[structure].match(" ".join(ids) + " ") is None:
        raise ValueError(f"segments out of order for {structure}: {' '.join(ids)}")
    return structure

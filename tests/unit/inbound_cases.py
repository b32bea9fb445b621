"""Shared pieces of the inbound HL7v2 tests: the demo profiles per version, the samples, validation."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segments

from mappings.er7.ack import read_header
from mappings.er7.structure import check_segment_order
from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
INBOUND = FIXTURES / "inbound"


def profile_for(version: str, **hl7v2: Any) -> SiteProfile:
    """site-a for 2.5.1, site-b for 2.3, site-a at 2.4 (charset UNICODE) for 2.4; ``hl7v2`` changed."""
    base = _load("site-b" if version == "2.3" else "site-a")
    changes: dict[str, Any] = {"version": "2.4", "charset": "UNICODE"} if version == "2.4" else {}
    changes.update(hl7v2)
    if not changes:
        return base
    settings = Hl7v2Settings.model_validate({**base.hl7v2.model_dump(), **changes})
    return base.model_copy(update={"hl7v2": settings})


@cache
def _load(site_id: str) -> SiteProfile:
    return load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")


def sample(version: str, name: str) -> str:
    return (INBOUND / version / f"{name}.hl7").read_bytes().decode()


def samples() -> list[tuple[str, str]]:
    return sorted((p.parent.name, p.stem) for p in INBOUND.rglob("*.hl7"))


def validate_strict(er7: str) -> None:
    """hl7apy STRICT for the declared version; ORM^O01: TOLERANT + our segment-order check (the
    documented hl7apy 1.3.5 defect, see test_hl7v2_structure); 2.3 SIU^S13-S15 checked as S12;
    a 2.3 ACK under the structure name ACK."""
    header = read_header(er7)
    message_type = f"{header.message_code}^{header.trigger_event}"
    if message_type == "ORM^O01":
        check_segment_order(er7)
        parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
        return
    if header.message_code == "ACK" and header.version == "2.3":
        # hl7apy derives the structure from MSH-9.3, which does not exist up to 2.3: name it ourselves
        # (as tests/unit/test_ack.py does).
        message = Message("ACK", version="2.3", validation_level=VALIDATION_LEVEL.STRICT)
        message.children = parse_segments(er7, "2.3", None, VALIDATION_LEVEL.STRICT, message.reference, True)
        assert message.validate() is True
        return
    if header.version == "2.3" and message_type in ("SIU^S13", "SIU^S14", "SIU^S15"):
        er7 = er7.replace(f"|{message_type}|", "|SIU^S12|", 1)
    parsed = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.version == header.version
    parsed.validate()

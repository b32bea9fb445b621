"""Segment order for the structures we emit, the known hl7apy ORM^O01 defect, and OBX-8 flags."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message

from mappings.er7.structure import check_segment_order
from mappings.hl7v2.results import abnormal_flag
from tests.unit.hl7v2_cases import journey, profile, render, render_journey, variant


@pytest.mark.parametrize("version", ["2.3", "2.5.1"])
def test_hl7apy_models_the_orm_o01_choice_as_a_sequence(version: str) -> None:
    """Known hl7apy 1.3.5 defect: a correct ORM^O01 (ORC + OBR) fails STRICT, wanting RQD, RQ1, ...

    When this test fails, hl7apy validates ORM^O01 correctly: drop the TOLERANT exception in
    ``tests/unit/hl7v2_cases.validate_hl7apy``.
    """
    site = profile("site-b") if version == "2.3" else variant("site-a", order_message="ORM^O01")
    (message,), _ = render(*journey(site.site_id, "journey-autologous")[0], site)
    assert message.message_type == "ORM^O01" and message.version == version
    assert check_segment_order(message.er7) == "ORM_O01"
    parsed = parse_message(message.er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    with pytest.raises(ValidationError, match=r"Missing required child ORM_O01_\w+\.RQD"):
        parsed.validate()


def test_every_demo_message_is_in_segment_order() -> None:
    for site in ("site-a", "site-b"):
        for case in ("journey-autologous", "journey-cancelled"):
            for _, message in render_journey(profile(site), case):
                check_segment_order(message.er7)


@pytest.mark.parametrize(
    ("er7", "reason"),
    [
        ("MSH|^~\\&|A|B|C|D|x||ORM^O01|1|P|2.3\rOBR|1\rORC|NW\r", "out of order"),
        ("MSH|^~\\&|A|B|C|D|x||ORM^O01|1|P|2.3\rPID|1\r", "out of order"),  # no ORC
        ("MSH|^~\\&|A|B|C|D|x||ORU^R01^ORU_R01|1|P|2.5.1\rPID|1\rOBX|1\r", "out of order"),
        ("MSH|^~\\&|A|B|C|D|x||SIU^S12^SIU_S12|1|P|2.5.1\rPID|1\rSCH|1\rRGS|1\r", "out of order"),
        ("MSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5.1\rPID|1\r", "no segment grammar"),
        ("PID|1\r", "does not start with MSH"),
        ("", "does not start with MSH"),
    ],
)
def test_segment_order_check_refuses_wrong_messages(er7: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_segment_order(er7)


@pytest.mark.parametrize(
    ("value", "specification", "flag"),
    [
        (91, ">=80", ""),
        (72, ">=80", "L"),
        (80, ">80", "L"),
        (0.4, "<5", ""),
        (7, "<5", "H"),
        (5, "<=5", ""),
        (6, "<=5", "H"),
        (38, "15-60", ""),
        (12, "15-60", "L"),
        (61.5, "15-60", "H"),
        ("42", "15-60", ""),
        (3, "=3", ""),
        (2, "=3", "L"),
        (4, "=3", "H"),
        (2.1, "1..5", ""),
        ("negative", "negative", ""),
        ("Negative ", "negative", ""),
        ("positive", "negative", "A"),
        (5, None, ""),
        (5, "  ", ""),
        (5, "about five", None),
        ("n/a", ">=80", None),
    ],
)
def test_abnormal_flag_against_the_specification(
    value: float | str, specification: str | None, flag: str | None
) -> None:
    assert abnormal_flag(value, specification) == flag

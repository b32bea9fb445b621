"""The ``hl7v2`` profile section: defaults, consistency rules, and override templates checked at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.templates import TemplateRenderError, check_template, render_template
from tests.unit.hl7v2_cases import profile


def _problem(**settings: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Hl7v2Settings.model_validate(settings)
    errors = caught.value.errors()
    assert len(errors) == 1
    return f"{'.'.join(str(p) for p in errors[0]['loc'])}: {errors[0]['msg']}"


def test_defaults_render_nothing_and_use_original_acks() -> None:
    settings = Hl7v2Settings()
    assert settings.enabled is False
    assert (settings.version, settings.order_message) == ("2.5.1", "OML^O21")
    assert (settings.msh15, settings.msh16) == ("", "")


def test_enhanced_mode_defaults_to_always_and_takes_table_0155_values() -> None:
    enhanced = Hl7v2Settings(ack_mode="enhanced")
    assert (enhanced.msh15, enhanced.msh16) == ("AL", "AL")
    settings = Hl7v2Settings(ack_mode="enhanced", accept_ack_type="ER", application_ack_type="NE")
    assert (settings.msh15, settings.msh16) == ("ER", "NE")
    assert "accept_ack_type" in _problem(ack_mode="enhanced", accept_ack_type="XX")


def test_demo_profiles_use_the_section_differently() -> None:
    a, b = profile("site-a").hl7v2, profile("site-b").hl7v2
    assert (a.version, a.order_message, a.scheduling, a.coi_location) == ("2.5.1", "OML^O21", True, "ORC-4")
    assert (b.version, b.order_message, b.scheduling, b.coi_location) == ("2.3", "ORM^O01", False, "ZCG")
    assert b.overrides == {"OBR-4": "{{ product.local_code }}^{{ product.display }}^L"}


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"ack_mode": "original", "accept_ack_type": "AL"}, "need ack_mode: enhanced"),
        ({"version": "2.3", "order_message": "OML^O21", "charset": None}, "OML^O21 does not exist in HL7"),
        ({"version": "2.4", "charset": "UNICODE UTF-8"}, "not in HL7 2.4 table 0211"),
        ({"version": "2.4", "charset": None, "blood_product_status": True}, "need HL7 version 2.5.1"),
        ({"version": "2.6"}, "version"),
        ({"coi_location": "PID-3"}, "coi_location"),
        ({"processing_id": "X"}, "processing_id"),
        ({"sending_facility": "A|B"}, "sending_facility"),
        ({"pid3_assigning_authority": "A^B"}, "pid3_assigning_authority"),
        ({"pid3_identifier_type": "mr"}, "pid3_identifier_type"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_inconsistent_settings_are_refused_with_a_reason(settings: dict[str, object], reason: str) -> None:
    assert reason in _problem(**settings)


@pytest.mark.parametrize(
    ("path", "template", "reason"),
    [
        ("OBR-4", "{{ product.local_cod }}", "unknown variable 'local_cod' in 'product'"),
        ("OBR-4", "{{ patient.mrn }}", "unknown variable 'patient'; available: codes, event, manufacturer"),
        ("PID-5", "{{ order.patient.given.first }}", "'order.patient.given' is a list and has no attribute"),
        ("PID-5", "{{ order.patient.family.nope }}", "'order.patient.family' is a value"),
        ("OBR-4", "{{ product.local_code ", "template syntax error at line 1"),
        ("OBR-4", "{% if %}x{% endif %}", "template syntax error"),
        ("OBR-4", "{{ order.note.__class__ }}", "attribute '__class__' is not allowed"),
        ("OBR-4", "{{ event.data._x }}", "attribute '_x' is not allowed"),
        ("OBR-4", "a|b", "must not contain '|', a line break"),
        ("OBR-4", "a\nb", "must not contain '|', a line break"),
        # MLLP block bytes would end the frame early: every message of the site would be dead-lettered
        ("OBR-4", "a\x1cb", "must not contain '|', a line break or a control character"),
        ("OBR-4", "\x0b{{ order.coi }}", "must not contain '|', a line break or a control character"),
        ("OBR-4", "a\x00b", "must not contain '|', a line break or a control character"),
        ("OBR-4", "a\x7fb", "must not contain '|', a line break or a control character"),
        ("MSH-4", "x", "segment MSH cannot be overridden"),
        ("OBR4", "x", "is not a field path like 'OBR-4'"),
        ("OBR-0", "x", "is not a field path"),
    ],
)
def test_bad_overrides_are_profile_errors_with_a_precise_reason(path: str, template: str,
                                                                reason: str) -> None:
    problem = _problem(overrides={path: template})
    assert problem.startswith(f"overrides.{path}")
    assert reason in problem


def test_good_overrides_load() -> None:
    templates = {
        "OBR-4": "{{ product.local_code }}^{{ product.display }}^L",
        "PID-5": "{{ order.patient.family | upper }}^{% for g in order.patient.given %}{{ g }} {% endfor %}",
        "ORC-4": "{{ order.coi }}^{{ manufacturer.id }}",
        "NTE-3": "{{ event.data.reason | default('none') }} {{ codes.business_status.display }}",
        "OBX-4": "{{ order.patient.given[0] }}",
    }
    assert Hl7v2Settings(overrides=templates).overrides == templates


def test_template_values_are_escaped_and_literal_text_is_structure() -> None:
    context = {"product": {"local_code": "A|B^C", "display": "x&y\r"}}
    out = render_template("{{ product.local_code }}^{{ product.display }}^L", context)
    assert out == "A\\F\\B\\S\\C^x\\T\\y\\.br\\^L"


def test_sandbox_refuses_internals_and_undefined_values_fail_at_render() -> None:
    check_template("{{ order.note.upper() }}")  # string methods are fine
    with pytest.raises(TemplateRenderError):
        render_template("{{ order.note.__class__.__mro__ }}", {"order": {"note": "x"}})
    with pytest.raises(TemplateRenderError):
        render_template("{{ order.missing }}", {"order": {}})
    with pytest.raises(TemplateRenderError):
        render_template("{{ order.note.append(1) }}", {"order": {"note": []}})  # immutable sandbox


@pytest.mark.parametrize("field", ["sending_application", "sending_facility", "receiving_application",
                                   "receiving_facility", "pid3_assigning_authority"])
@pytest.mark.parametrize("control", ["\x1c", "\x0b", "\x00", "\t", "\x7f"])
def test_profile_identifiers_hold_no_control_characters(field: str, control: str) -> None:
    """MSH-3..6 and PID-3.4 go into every message unescaped: a 0x1C or 0x0B there passed the check and
    the MLLP framer then dead-lettered every message of the site."""
    assert _problem(**{field: f"SITE{control}A"}).startswith(field)


def test_pv1_location_holds_no_control_characters() -> None:
    problem = _problem(pv1={"patient_class": "O", "assigned_location": {"point_of_care": "CT\x1cI"}})
    assert problem.startswith("pv1.assigned_location.point_of_care")

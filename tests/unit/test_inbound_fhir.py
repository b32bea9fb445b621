"""mappings.inbound.fhir: a POSTed request Task / Procedure read into site-request values, or field errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.inbound.fhir import (
    TASK_CODE_SYSTEM,
    TASK_INPUT_SYSTEM,
    FhirSiteRequest,
    FieldError,
    read_procedure,
    read_request_task,
)

BASE = "http://127.0.0.1:8080/fhir"
FOCUS = "6d1f0c8e-3b8e-5a7e-9a55-0f5c1b0e2a11"


def task(code: str = "abort", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": code}]},
        "focus": {"reference": f"Task/{FOCUS}"},
    }
    resource.update(extra)
    return resource


def date_input(code: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": code}]}, "valueDateTime": value}


def procedure(**extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure", "status": "completed",
        "basedOn": [{"reference": "ServiceRequest/sr-1"}], "subject": {"reference": "Patient/p-1"},
        "performedDateTime": "2026-12-20T10:30:00-05:00",
    }
    resource.update(extra)
    return resource


def errors_of(result: FhirSiteRequest | list[FieldError]) -> dict[str, str]:
    assert isinstance(result, list), result
    return {e.expression: e.message for e in result}


@pytest.mark.parametrize(("code", "kind"), [("abort", "cancel"), ("suspend", "hold"),
                                            ("resume", "release_hold")])
def test_task_codes_map_to_kinds(code, kind):
    result = read_request_task(task(code, reasonCode={"text": "Patient declined"},
                                    note=[{"text": "called the coordinator"}]))
    assert result == FhirSiteRequest(kind, "Task", FOCUS, {}, "Patient declined\ncalled the coordinator")


def test_a_change_takes_its_dates_and_appointment_from_inputs():
    result = read_request_task(task("change", input=[
        date_input("requested-start", "2026-12-15T09:00:00-05:00"),
        date_input("requested-end", "2026-12-15T13:00:00-05:00"),
        {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-appointment"}]},
         "valueCode": "apheresis"},
        {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "site-reason"}]},
         "valueString": "Moved at the patient's request"},
    ]))
    assert isinstance(result, FhirSiteRequest)
    assert result.kind == "change"
    assert result.requested == {"start": "2026-12-15T09:00:00-05:00", "end": "2026-12-15T13:00:00-05:00",
                                "appointment": "apheresis"}
    assert result.reason == "Moved at the patient's request"


def test_an_absolute_focus_under_our_base_is_taken():
    result = read_request_task(task(focus={"reference": f"{BASE}/Task/{FOCUS}"}), base=BASE)
    assert isinstance(result, FhirSiteRequest) and result.target_id == FOCUS
    assert "Task.focus.reference" in errors_of(
        read_request_task(task(focus={"reference": f"http://evil.example/fhir/Task/{FOCUS}"}), base=BASE))


@pytest.mark.parametrize(("change", "expression"), [
    ({"status": "draft"}, "Task.status"),
    ({"status": None}, "Task.status"),
    ({"intent": "proposal"}, "Task.intent"),
    ({"code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]}}, "Task.code"),
    ({"code": {"coding": [{"system": "http://example.org", "code": "abort"}]}}, "Task.code"),
    ({"code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "abort"},
                          {"system": TASK_CODE_SYSTEM, "code": "suspend"}]}}, "Task.code"),
    ({"code": None}, "Task.code"),
    ({"focus": {"reference": "ServiceRequest/x"}}, "Task.focus.reference"),
    ({"focus": {"reference": "Task/" + "a" * 65}}, "Task.focus.reference"),
    ({"focus": None}, "Task.focus"),
    ({"executionPeriod": {"start": "2026-12-15"}}, "Task.executionPeriod"),
    ({"reason": {"text": "x"}}, "Task.reason"),
    ({"owner": {"reference": "Organization/x"}}, "Task.owner"),
    ({"input": {"not": "a list"}}, "Task.input"),
    ({"note": [{"text": "bidi \u202e override"}]}, "Task.note[0].text"),
    ({"note": [{"text": "x" * 2001}]}, "Task.note"),
    ({"note": [{"text": "x"}] * 21}, "Task.note"),
])
def test_a_wrong_task_is_refused_naming_the_element(change, expression):
    resource = task()
    for key, value in change.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    assert expression in errors_of(read_request_task(resource))


def test_change_inputs_are_checked():
    assert "Task.input" in errors_of(read_request_task(task("change")))  # no requested-start
    assert "Task.input[0].valueDateTime" in errors_of(
        read_request_task(task("change", input=[date_input("requested-start", "2026-12-15")])))
    assert "Task.input[0].valueDateTime" in errors_of(
        read_request_task(task("change", input=[date_input("requested-start", "2026-12-15T09:00:00")])))
    assert "Task.input[0].valueDateTime" in errors_of(
        read_request_task(task("change", input=[date_input("requested-start", "2026-02-30T09:00:00Z")])))
    backwards = [date_input("requested-start", "2026-12-15T09:00:00Z"),
                 date_input("requested-end", "2026-12-15T08:00:00Z")]
    assert "Task.input" in errors_of(read_request_task(task("change", input=backwards)))
    twice = [date_input("requested-start", "2026-12-15T09:00:00Z")] * 2
    assert "Task.input[1]" in errors_of(read_request_task(task("change", input=twice)))
    unknown = [{"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "colour"}]}, "valueString": "x"}]
    assert "Task.input[0].type" in errors_of(read_request_task(task("change", input=unknown)))
    dates_on_cancel = [date_input("requested-start", "2026-12-15T09:00:00Z")]
    assert "Task.input[0]" in errors_of(read_request_task(task("abort", input=dates_on_cancel)))
    appointment = [{"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-appointment"}]},
                    "valueCode": "surgery"}, date_input("requested-start", "2026-12-15T09:00:00Z")]
    assert "Task.input[0]" in errors_of(read_request_task(task("change", input=appointment)))


@pytest.mark.parametrize("body", [None, [], "Task", 3, {"resourceType": "Procedure"}, {}])
def test_a_body_that_is_no_task_is_refused(body):
    result = read_request_task(body)
    assert isinstance(result, list) and result and result[0].code == "structure"


def test_every_problem_is_listed_at_once():
    resource = task(status="draft", intent="plan", focus={"reference": "Patient/1"})
    found = set(errors_of(read_request_task(resource)))
    assert {"Task.status", "Task.intent", "Task.focus.reference"} <= found


def test_the_input_is_not_changed():
    resource = task("change", input=[date_input("requested-start", "2026-12-15T09:00:00Z")])
    before = copy.deepcopy(resource)
    read_request_task(resource)
    assert resource == before


def test_a_procedure_is_an_infused_request():
    result = read_procedure(procedure(note=[{"text": "uneventful"}]))
    assert result == FhirSiteRequest("infused", "ServiceRequest", "sr-1",
                                     {"administered_at": "2026-12-20T10:30:00-05:00"}, "uneventful",
                                     subject_id="p-1")
    utc = read_procedure(procedure(performedDateTime="2026-12-20T15:30:00Z"))
    assert isinstance(utc, FhirSiteRequest)
    assert utc.requested == {"administered_at": "2026-12-20T15:30:00+00:00"}


@pytest.mark.parametrize(("change", "expression"), [
    ({"status": "in-progress"}, "Procedure.status"),
    ({"basedOn": []}, "Procedure.basedOn"),
    ({"basedOn": [{"reference": "ServiceRequest/a"}] * 2}, "Procedure.basedOn"),
    ({"basedOn": [{"reference": "Task/a"}]}, "Procedure.basedOn[0].reference"),
    ({"performedDateTime": None}, "Procedure.performedDateTime"),
    ({"performedDateTime": "yesterday"}, "Procedure.performedDateTime"),
    ({"performedPeriod": {"start": "2026-12-20T10:00:00Z"}}, "Procedure.performedPeriod"),
    ({"subject": None}, "Procedure.subject"),
    ({"subject": {"reference": "Group/1"}}, "Procedure.subject.reference"),
    ({"outcome": {"text": "fine"}}, "Procedure.outcome"),
])
def test_a_wrong_procedure_is_refused_naming_the_element(change, expression):
    resource = procedure()
    for key, value in change.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    assert expression in errors_of(read_procedure(resource))


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
ELEMENTS = ["status", "intent", "code", "focus", "input", "reasonCode", "note", "basedOn", "subject",
            "performedDateTime", "id", "meta"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(ELEMENTS), JSON, max_size=6), st.sampled_from(["Task", "Procedure"]))
def test_nothing_a_site_posts_raises(values, name):
    """Any JSON in any element: a request or field errors, never an exception."""
    base = task("abort") if name == "Task" else procedure()
    body = {**base, **values}
    for reader in (read_request_task, read_procedure):
        result = reader(body)
        assert isinstance(result, FhirSiteRequest) or all(isinstance(e, FieldError) for e in result)
    nested = {**base, "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": values.get("code")}]},
              "input": [{"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": values.get("id")}]},
                         "valueDateTime": values.get("status")}]}
    read_request_task(nested)

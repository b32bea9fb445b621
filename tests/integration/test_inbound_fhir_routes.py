"""POST /fhir/Task (a site's request Task) and POST /fhir/Procedure (infusion done) on the demo app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappings.ids import order_system, resource_id
from mappings.inbound.fhir import TASK_CODE_SYSTEM, TASK_INPUT_SYSTEM
from tests.conftest import ACME, ADMIN, NOVA, SITE_A, SITE_B, isbt_coi
from tests.integration.test_inbound_mllp import journey_until, place, status

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def order_task(order_id: str, manufacturer: str = "acme-bio") -> str:
    return resource_id("Task", order_system(manufacturer), order_id)


def request_task(order_id: str, code: str = "abort", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": code}]},
        "focus": {"reference": f"Task/{order_task(order_id)}"},
        "reasonCode": {"text": "Patient declined further treatment"},
    }
    body.update(extra)
    return body


def post(client, path: str, body: Any, headers: dict[str, str] = SITE_A) -> Any:
    return client.post(f"/fhir/{path}", json=body, headers={**headers, **FHIR_JSON})


def valid(body: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def outcome(response: Any, status_code: int) -> list[str]:
    assert response.status_code == status_code, response.text
    body = valid(response.json())
    assert body["resourceType"] == "OperationOutcome"
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def test_a_cancel_task_is_applied_and_answered_with_the_stored_request_task(client):
    place(client, "ORD-F1")
    response = post(client, "Task", request_task("ORD-F1"))
    assert response.status_code == 201, response.text
    task = valid(response.json())
    assert task["status"] == "completed" and task["intent"] == "order"
    assert task["code"]["coding"][0]["code"] == "abort"
    assert task["focus"]["reference"] == f"Task/{order_task('ORD-F1')}"
    assert response.headers["location"] == (
        f"http://testserver/fhir/Task/{task['id']}/_history/{task['meta']['versionId']}")
    assert status(client, "ORD-F1") == "cancelled"
    # readable and searchable by the site, by nobody else's site
    assert client.get(f"/fhir/Task/{task['id']}", headers=SITE_A).json()["id"] == task["id"]
    assert client.get(f"/fhir/Task/{task['id']}", headers=SITE_B).status_code == 404
    polled = client.get("/fhir/Task", params={"status": "completed"}, headers=SITE_A).json()
    assert task["id"] in [e["resource"]["id"] for e in polled.get("entry", [])]
    polled_b = client.get("/fhir/Task", params={"status": "completed"}, headers=SITE_B).json()
    assert task["id"] not in [e["resource"]["id"] for e in polled_b.get("entry", [])]


def test_a_change_task_awaits_the_manufacturer_then_follows_its_decision(client):
    place(client, "ORD-F2")
    change = request_task("ORD-F2", "change", input=[
        {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-start"}]},
         "valueDateTime": "2026-12-15T09:00:00-05:00"},
        {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-appointment"}]},
         "valueCode": "apheresis"}])
    response = post(client, "Task", change)
    assert response.status_code == 201, response.text
    task = valid(response.json())
    assert task["status"] == "received"
    request_id = task["identifier"][0]["value"]
    decided = client.post(f"/v1/site-requests/{request_id}/decision",
                          json={"decision": "decline", "reason": "No apheresis slot that day"}, headers=ACME)
    assert decided.status_code == 200, decided.text
    after = valid(client.get(f"/fhir/Task/{task['id']}", headers=SITE_A).json())
    assert after["status"] == "rejected"
    assert after["statusReason"]["text"] == "No apheresis slot that day"


def test_a_procedure_reports_the_infusion(client, clock):
    """More in ``test_inbound_fhir_procedure.py``: the stored Procedure, 202 and 422 answers."""
    coi = isbt_coi(71)
    journey_until(client, "ORD-F3", coi, "infusion.scheduled")
    service_request_id = resource_id("ServiceRequest", order_system("acme-bio"), "ORD-F3")
    service_request = client.get(f"/fhir/ServiceRequest/{service_request_id}", headers=SITE_A).json()
    given = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    procedure = {"resourceType": "Procedure", "status": "completed",
                 "basedOn": [{"reference": f"ServiceRequest/{service_request['id']}"}],
                 "subject": service_request["subject"], "performedDateTime": given}
    response = post(client, "Procedure", procedure)
    assert response.status_code == 201, response.text
    stored = valid(response.json())
    assert stored["resourceType"] == "Procedure"
    assert stored["performedDateTime"] == given.replace("+00:00", "Z")
    location = response.headers["location"]
    assert location == f"http://testserver/fhir/Procedure/{stored['id']}/_history/1"
    assert status(client, "ORD-F3") == "infused"
    other = {**procedure, "subject": {"reference": "Patient/not-the-patient"}}
    assert outcome(post(client, "Procedure", other), 422) == ["Procedure.subject"]


@pytest.mark.parametrize("headers", [ACME, NOVA, ADMIN])
def test_only_a_site_token_may_post(client, headers):
    place(client, "ORD-F4")
    assert post(client, "Task", request_task("ORD-F4"), headers).status_code == 403
    assert post(client, "Procedure", {"resourceType": "Procedure"}, headers).status_code == 403


def test_another_sites_order_is_refused_naming_the_focus(client):
    place(client, "ORD-F5")
    assert outcome(post(client, "Task", request_task("ORD-F5"), SITE_B), 422) == ["Task.focus"]
    assert status(client, "ORD-F5") == "placed"


def test_bad_request_tasks_name_the_element(client):
    place(client, "ORD-F6")
    wrong_code = request_task("ORD-F6", "fulfill")
    assert outcome(post(client, "Task", wrong_code), 422) == ["Task.code"]
    assert outcome(post(client, "Task", request_task("ORD-F6", owner={"reference": "Organization/x"})),
                   422) == ["Task.owner"]
    unknown_focus = request_task("ORD-F6", focus={"reference": "Task/no-such-task"})
    assert outcome(post(client, "Task", unknown_focus), 422) == ["Task.focus"]
    # a request Task cannot be the focus of another
    first = post(client, "Task", request_task("ORD-F6", "suspend")).json()
    chained = request_task("ORD-F6", "resume", focus={"reference": f"Task/{first['id']}"})
    assert outcome(post(client, "Task", chained), 422) == ["Task.focus"]
    far = request_task("ORD-F6", "change", input=[
        {"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-start"}]},
         "valueDateTime": "2099-12-15T09:00:00-05:00"}])
    assert outcome(post(client, "Task", far), 422) == ["Task.input"]


def test_the_body_is_fhir_json(client):
    response = client.post("/fhir/Task", content=b"{not json", headers={**SITE_A, **FHIR_JSON})
    assert outcome(response, 400) == []
    xml = {**SITE_A, "Content-Type": "application/xml"}
    response = client.post("/fhir/Task", content=b"<Task/>", headers=xml)
    assert outcome(response, 415) == []
    assert outcome(post(client, "Task", [1, 2]), 422) == ["Task"]
    huge = request_task("ORD-F7", note=[{"text": "x" * (2 * 1024 * 1024)}])
    assert post(client, "Task", huge).status_code == 413

"""The events of site requests (issue 13): their ids are reserved, and a retraction shows on the request."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import ACME, ACME_COI, isbt_coi
from tests.integration.test_inbound_fhir_procedure import procedure_of
from tests.integration.test_inbound_fhir_routes import post, request_task
from tests.integration.test_inbound_mllp import journey_until, place, status
from tests.integration.test_spine_events import event_body, problem


@pytest.mark.parametrize("event_id", ["site-request-sr-0123", "Site-Request-x", "site-request-"])
def test_a_manufacturer_event_id_may_not_begin_with_site_request(client, event_id):
    place(client, "ORD-R1")
    body = event_body(event_id, "order.confirmed", "2026-11-20T09:00:00Z", coi=ACME_COI)
    response = client.post("/v1/orders/ORD-R1/events", json=body, headers=ACME)
    errors = problem(response, 422, "validation-failed")["errors"]
    assert [e["pointer"] for e in errors] == ["/event_id"]
    assert "reserved" in errors[0]["reason"]
    assert status(client, "ORD-R1") == "placed"


def test_an_event_id_merely_containing_the_prefix_is_taken(client):
    place(client, "ORD-R2")
    body = event_body("ORD-R2-site-request-1", "order.confirmed", "2026-11-20T09:00:00Z", coi=ACME_COI)
    assert client.post("/v1/orders/ORD-R2/events", json=body, headers=ACME).status_code == 201


def test_a_retracted_site_request_event_shows_retracted_at_on_the_request(client, clock):
    journey_until(client, "ORD-R3", isbt_coi(501), "infusion.scheduled")
    given = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    stored = post(client, "Procedure", procedure_of(client, "ORD-R3", given)).json()
    request_id = stored["identifier"][0]["value"]
    path = f"/v1/site-requests/{request_id}"
    before = client.get(path, headers=ACME).json()
    assert (before["state"], before["retracted_at"]) == ("applied", None)
    clock.advance(minutes=5)
    retracted = client.post(f"/v1/orders/ORD-R3/events/site-request-{request_id}/retract",
                            json={"reason": "the site reported the wrong patient"}, headers=ACME)
    assert retracted.status_code == 200, retracted.text
    assert status(client, "ORD-R3") == "infusion_scheduled"
    after = client.get(path, headers=ACME).json()
    assert after["state"] == "applied"  # what was asked and decided does not change
    assert after["retracted_at"] == retracted.json()["event"]["retracted_at"]
    listed = client.get("/v1/site-requests", params={"order_id": "ORD-R3"}, headers=ACME).json()["items"]
    assert [r["retracted_at"] for r in listed] == [after["retracted_at"]]


def test_a_request_whose_event_stands_or_that_made_none_has_no_retracted_at(client):
    place(client, "ORD-R4")
    task = post(client, "Task", request_task("ORD-R4", "suspend")).json()
    request_id = task["identifier"][0]["value"]
    assert client.get(f"/v1/site-requests/{request_id}", headers=ACME).json()["retracted_at"] is None

"""POST /fhir/Procedure stores the site's Procedure (issue 13): in the site request's transaction, once
the infusion is applied; 202 while the manufacturer decides; 422 when the lifecycle declines it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.bootstrap import create_app
from gateway.config import SiteRequestPolicy
from mappings.fhir.site_procedure import site_procedure_id
from mappings.fhir.site_request import SITE_REQUEST_SYSTEM
from mappings.ids import order_system, resource_id
from tests.conftest import ACME, NOVA, SITE_A, SITE_B, TestClient, isbt_coi
from tests.integration.test_inbound_fhir_routes import outcome, post, valid
from tests.integration.test_inbound_mllp import journey_until, status


def procedure_of(client, order_id: str, performed: str, **extra: Any) -> dict[str, Any]:
    service_request_id = resource_id("ServiceRequest", order_system("acme-bio"), order_id)
    service_request = client.get(f"/fhir/ServiceRequest/{service_request_id}", headers=SITE_A).json()
    return {"resourceType": "Procedure", "id": "the-sites-own-id", "status": "completed",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "EHR-PROC-9"}],
            "basedOn": [{"reference": f"ServiceRequest/{service_request_id}"}],
            "subject": service_request["subject"], "performedDateTime": performed, **extra}


def test_the_procedure_is_stored_readable_and_searchable_by_its_site_only(client, clock, engine):
    journey_until(client, "ORD-P1", isbt_coi(301), "infusion.scheduled")
    eastern = timezone(timedelta(hours=-5))
    given = (clock() - timedelta(hours=2)).astimezone(eastern).isoformat(timespec="seconds")
    response = post(client, "Procedure", procedure_of(client, "ORD-P1", given, note=[{"text": "Uneventful"}]))
    assert response.status_code == 201, response.text
    stored = valid(response.json())
    request_id = stored["identifier"][0]["value"]
    assert stored["identifier"] == [{"system": SITE_REQUEST_SYSTEM, "value": request_id}]
    assert stored["id"] == site_procedure_id("acme-bio", "ORD-P1", request_id) != "the-sites-own-id"
    service_request_id = resource_id("ServiceRequest", order_system("acme-bio"), "ORD-P1")
    assert stored["basedOn"] == [{"reference": f"ServiceRequest/{service_request_id}"}]
    assert stored["subject"]["reference"].startswith("Patient/")
    assert (stored["status"], stored["performedDateTime"]) == ("completed", given)
    assert stored["note"] == [{"text": "Uneventful"}]
    assert response.headers["location"] == f"http://testserver/fhir/Procedure/{stored['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert status(client, "ORD-P1") == "infused"
    # the site request lists it as applied
    listed = client.get("/v1/site-requests", params={"order_id": "ORD-P1"}, headers=ACME).json()["items"]
    assert [(r["request_id"], r["kind"], r["state"]) for r in listed] == [(request_id, "infused", "applied")]
    # readable and searchable by its site and its manufacturer; invisible to another site and manufacturer
    path = f"/fhir/Procedure/{stored['id']}"
    assert client.get(path, headers=SITE_A).json() == stored
    assert client.get(path, headers=ACME).status_code == 200
    assert client.get(path, headers=SITE_B).status_code == 404
    assert client.get(path, headers=NOVA).status_code == 404
    for params in ({"based-on": f"ServiceRequest/{service_request_id}"},
                   {"identifier": f"{SITE_REQUEST_SYSTEM}|{request_id}"}, {"status": "completed"}):
        found = client.get("/fhir/Procedure", params=params, headers=SITE_A).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [stored["id"]], params
        other = client.get("/fhir/Procedure", params=params, headers=SITE_B).json()
        assert other.get("entry", []) == [], params
    # written in the site request's own transaction, with the order's tenants
    with engine.connect() as conn:
        tenants = conn.execute(sa.text(
            "SELECT tenant_kind, tenant_id FROM fhir_resource_access WHERE resource_type = 'Procedure' "
            "ORDER BY tenant_kind")).all()
        versions = conn.execute(sa.text(
            "SELECT site_id, manufacturer_id, order_id FROM fhir_resource_version "
            "WHERE resource_type = 'Procedure'")).all()
    assert [tuple(t) for t in tenants] == [("manufacturer", "acme-bio"), ("site", "site-a")]
    assert [tuple(v) for v in versions] == [("site-a", "acme-bio", "ORD-P1")]


def test_a_second_procedure_is_declined_by_the_lifecycle_and_stores_nothing(client, clock):
    journey_until(client, "ORD-P2", isbt_coi(302), "infusion.scheduled")
    given = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert post(client, "Procedure", procedure_of(client, "ORD-P2", given)).status_code == 201
    again = post(client, "Procedure", procedure_of(client, "ORD-P2", given))
    assert outcome(again, 422) == ["Procedure"]
    issue = again.json()["issue"][0]
    assert issue["code"] == "business-rule"
    request_id = issue["details"]["coding"][0]["code"]
    assert issue["details"]["coding"][0]["system"] == SITE_REQUEST_SYSTEM
    assert request_id in issue["diagnostics"] and issue["details"]["text"] == "terminal-state"
    listed = client.get("/v1/site-requests", params={"order_id": "ORD-P2"}, headers=ACME).json()["items"]
    assert [r["state"] for r in listed] == ["applied", "declined"]
    assert listed[1]["decision_code"] == "terminal-state"
    found = client.get("/fhir/Procedure", params={"identifier": f"{SITE_REQUEST_SYSTEM}|{request_id}"},
                       headers=SITE_A).json()
    assert found.get("entry", []) == []


@pytest.fixture
def deciding(settings, engine, clock):
    """The demo app with ``infused: manufacturer`` for every product (the manufacturer decides)."""
    manufacturers = [m.model_copy(update={"products": [
        p.model_copy(update={"site_requests": SiteRequestPolicy(infused="manufacturer")})
        for p in m.products]})
        for m in settings.manufacturers]
    app = create_app(settings.model_copy(update={"manufacturers": manufacturers}), engine=engine, now=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_awaiting_the_manufacturer_answers_202_then_the_accept_stores_the_procedure(deciding, clock):
    client = deciding
    journey_until(client, "ORD-P3", isbt_coi(303), "infusion.scheduled")
    given = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    response = post(client, "Procedure", procedure_of(client, "ORD-P3", given))
    assert response.status_code == 202, response.text
    body = valid(response.json())
    assert body["resourceType"] == "OperationOutcome"
    request_id = body["issue"][0]["details"]["coding"][0]["code"]
    assert request_id.startswith("sr-") and request_id in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["severity"] == "information"
    procedure_id = site_procedure_id("acme-bio", "ORD-P3", request_id)
    assert client.get(f"/fhir/Procedure/{procedure_id}", headers=SITE_A).status_code == 404
    assert status(client, "ORD-P3") == "infusion_scheduled"
    decided = client.post(f"/v1/site-requests/{request_id}/decision", json={"decision": "accept"},
                          headers=ACME)
    assert decided.status_code == 200, decided.text
    stored = valid(client.get(f"/fhir/Procedure/{procedure_id}", headers=SITE_A).json())
    assert datetime.fromisoformat(stored["performedDateTime"]) == datetime.fromisoformat(given)
    assert stored["identifier"][0]["value"] == request_id
    assert status(client, "ORD-P3") == "infused"


def test_a_declined_request_never_stores_a_procedure(deciding, clock):
    client = deciding
    journey_until(client, "ORD-P4", isbt_coi(304), "infusion.scheduled")
    given = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    response = post(client, "Procedure", procedure_of(client, "ORD-P4", given))
    request_id = response.json()["issue"][0]["details"]["coding"][0]["code"]
    decided = client.post(f"/v1/site-requests/{request_id}/decision",
                          json={"decision": "decline", "reason": "no infusion was reported by the pharmacy"},
                          headers=ACME)
    assert decided.status_code == 200, decided.text
    procedure_id = site_procedure_id("acme-bio", "ORD-P4", request_id)
    assert client.get(f"/fhir/Procedure/{procedure_id}", headers=SITE_A).status_code == 404
    assert client.get(f"/fhir/Procedure/{procedure_id}", headers=ACME).status_code == 404

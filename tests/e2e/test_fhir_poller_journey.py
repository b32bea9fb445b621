"""The whole path: a manufacturer posts the demo autologous journey through /v1, the gateway
translates and stores it, and the site's EHR reads it back with fhirpy from /fhir."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fhirpy.base.exceptions import ResourceNotFound

from tests.conftest import ACME
from tests.e2e.test_fhir_poller import fhir_base, fhir_client, valid

__all__ = ["fhir_base"]

JOURNEY = Path(__file__).parents[2] / "fixtures" / "events" / "journey-autologous.json"


@pytest.fixture
def journey(client, clock) -> dict[str, Any]:
    data = json.loads(JOURNEY.read_text())
    clock.set(datetime.fromisoformat(data["placed_at"]))
    response = client.post("/v1/orders", json=data["order"], headers=ACME)
    assert response.status_code == 201, response.text
    for event in data["events"]:
        clock.set(datetime.fromisoformat(event["occurred_at"]))
        response = client.post(f"/v1/orders/{data['order']['order_id']}/events", json=event, headers=ACME)
        assert response.status_code in (200, 201), (event["event_id"], response.text)
    return data


def test_site_ehr_reads_the_translated_journey(fhir_base, journey):
    site = fhir_client(fhir_base, "site-a")
    everything = site.resources("Task").include("Task", "focus").include("Task", "patient").fetch_raw()
    valid(everything)
    entries = everything["entry"]
    tasks = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
    included = {e["resource"]["resourceType"] for e in entries if e["search"]["mode"] == "include"}
    assert tasks and {"ServiceRequest", "Patient"} <= included
    task = next(t for t in tasks if t.get("groupIdentifier"))
    coi = task["groupIdentifier"]
    assert coi["value"].startswith(journey["order"]["coi"][:15])
    by_coi = site.resources("Task").search(group_identifier=f"{coi.get('system', '')}|{coi['value']}").fetch()
    assert [t["id"] for t in by_coi] == [task["id"]]
    assert int(task["meta"]["versionId"]) > 1  # the Task moved with the journey
    history = site.execute(f"Task/{task['id']}/_history", method="get")
    valid(history)
    assert len(history["entry"]) == int(task["meta"]["versionId"])
    service_request = task["focus"]["reference"]
    observations = site.resources("Observation").search(based_on=service_request).fetch_all()
    assert observations
    for resource in observations:
        valid(resource)
    for rtype in ("Provenance", "BiologicallyDerivedProduct", "Patient", "Organization", "Practitioner",
                  "ServiceRequest"):
        for resource in site.resources(rtype).fetch_all():
            valid(resource)
    for who in ("site-b", "nova-cell"):
        with pytest.raises(ResourceNotFound):
            fhir_client(fhir_base, who).reference("Task", task["id"]).to_resource()
    assert fhir_client(fhir_base, "acme-bio").reference("Task", task["id"]).to_resource()["id"] == task["id"]

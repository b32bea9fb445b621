"""Q3 (outside-user QA): the demo journey read back with fhirpy the way an interface engine does,
on the points the first API missed: the CoI as a barcode scanner gives it, POST _search, and
parties that do not churn."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.test_fhir_poller import fhir_base, fhir_client, valid
from tests.e2e.test_fhir_poller_journey import journey

__all__ = ["fhir_base", "journey"]


def test_engine_finds_the_journey_by_scanned_coi_and_its_parties_have_one_version(fhir_base, journey):
    site = fhir_client(fhir_base, "site-a")
    coi = journey["order"]["coi"]
    scanned = f"&/{coi[:15]}"  # the barcode's data content: no keyboard check character
    [task] = site.resources("Task").search(group_identifier=scanned).fetch()
    task = valid(task)
    assert task["groupIdentifier"]["value"] == coi
    assert int(task["meta"]["versionId"]) > 1
    posted = httpx.post(f"{fhir_base}/Task/_search", data={"group-identifier": scanned},
                        headers={"Authorization": "Bearer demo-site-a-token"})
    assert posted.status_code == 200
    assert [e["resource"]["id"] for e in posted.json()["entry"]] == [task["id"]]
    # the journey's parties were written once: 20 events did not make 20 versions of them
    for ref in (task["for"]["reference"], task["requester"]["reference"], task["owner"]["reference"]):
        rtype, rid = ref.split("/")
        history: dict[str, Any] = site.execute(f"{rtype}/{rid}/_history", method="get")
        assert len(history["entry"]) == 1, ref
    assert fhir_client(fhir_base, "site-b").resources("Task").search(group_identifier=scanned).fetch() == []

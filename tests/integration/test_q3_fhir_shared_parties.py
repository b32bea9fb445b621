"""Q3 (outside-user QA): what one site's EHR sees of the parties its orders share with other sites.

The manufacturer and an ordering practitioner (one NPI) take part in orders at several sites.
Each site's resources are built with that site's mapping profile (``meta.tag`` names its version),
so a site must see them as its own profile built them: no new versions caused by another site's
orders, no other site's profile version in its history.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ACME, NOVA, SITE_A, SITE_B, event_body, isbt_coi, order_body
from tests.integration.test_fhir_api import ok

TAG_SYSTEM = "https://cgt-gateway.example.org/fhir/CodeSystem/site-profile-version"


def _tag(resource: dict[str, Any]) -> str:
    [tag] = [t["code"] for t in resource["meta"]["tag"] if t["system"] == TAG_SYSTEM]
    return str(tag)


def _place(client: Any, order_id: str, site_id: str, n: int) -> None:
    patient = {"mrn": f"MRN-{order_id}", "family": "Zyxwvut", "given": ["Quillon"],
               "birth_date": "1971-03-09", "sex": "female"}
    body = order_body(order_id, site_id=site_id, coi=isbt_coi(n), patient=patient)
    assert client.post("/v1/orders", json=body, headers=ACME).status_code == 201


def _confirm(client: Any, order_id: str, n: int) -> None:
    event = event_body(f"{order_id}-c", "order.confirmed", "2026-11-25T09:00:00Z", coi=isbt_coi(n))
    assert client.post(f"/v1/orders/{order_id}/events", json=event, headers=ACME).status_code == 201


def test_each_site_sees_the_shared_parties_as_its_own_profile_built_them(client):
    _place(client, "Q3-A", "site-a", 1)
    _place(client, "Q3-B", "site-b", 2)
    _confirm(client, "Q3-A", 1)
    _confirm(client, "Q3-B", 2)
    _place(client, "Q3-A2", "site-a", 3)
    for headers in (SITE_A, SITE_B):
        tasks = [e["resource"] for e in ok(client.get("/fhir/Task", headers=headers))["entry"]]
        profile_version = _tag(tasks[0])
        assert {_tag(t) for t in tasks} == {profile_version}
        for rtype, refs in (("Organization", {t["owner"]["reference"] for t in tasks}),
                            ("Practitioner", {t["requester"]["reference"] for t in tasks})):
            [ref] = refs  # one manufacturer, one practitioner for this site's orders
            current = ok(client.get(f"/fhir/{ref}", headers=headers))
            assert _tag(current) == profile_version, (ref, headers)
            assert current["meta"]["versionId"] == "1", (ref, headers)  # nothing changed for this site
            history = ok(client.get(f"/fhir/{ref}/_history", headers=headers))
            assert [_tag(e["resource"]) for e in history["entry"]] == [profile_version]
            type_history = ok(client.get(f"/fhir/{rtype}/_history", headers=headers))
            assert {_tag(e["resource"]) for e in type_history["entry"]} == {profile_version}


def test_a_manufacturer_never_sees_what_another_manufacturers_order_wrote(client):
    """acme-bio and nova-cell both treat MRN-SHARED at site-a, ordered by the same NPI, and send the
    names slightly differently.  Neither manufacturer's token may see a version (or its timing)
    that the other's order produced; the site sees both orders' data."""
    patient = {"mrn": "MRN-SHARED", "family": "Zyxwvut", "given": ["Quillon"], "birth_date": "1971-03-09",
               "sex": "female"}
    acme = order_body("Q3-ACME", coi=isbt_coi(7), patient=patient)
    assert client.post("/v1/orders", json=acme, headers=ACME).status_code == 201
    nova = order_body("Q3-NOVA", coi="NC-000777", product_code="GT-HEM-01", site_id="site-a",
                      patient={**patient, "given": ["Quill"]},
                      ordering_provider={"npi": "1234567893", "family": "Okafor", "given": ["A."]})
    assert client.post("/v1/orders", json=nova, headers=NOVA).status_code == 201
    for headers, given, provider in ((ACME, ["Quillon"], ["Ada"]), (NOVA, ["Quill"], ["A."])):
        [task] = [e["resource"] for e in ok(client.get("/fhir/Task", headers=headers))["entry"]]
        for ref, expected in ((task["for"]["reference"], given), (task["requester"]["reference"], provider)):
            history = ok(client.get(f"/fhir/{ref}/_history", headers=headers))
            assert [e["resource"]["name"][0]["given"] for e in history["entry"]] == [expected], ref
        for rtype in ("Patient", "Practitioner"):
            every = ok(client.get(f"/fhir/{rtype}/_history", headers=headers))
            assert len(every["entry"]) == 1, (rtype, headers)
        # nor when the other manufacturer first ordered at this site (the site's Organization)
        organizations = ok(client.get("/fhir/Organization/_history", headers=headers))["entry"]
        assert sorted(e["resource"]["meta"]["versionId"] for e in organizations) == ["1", "1"], headers
    site = [e["resource"] for e in ok(client.get("/fhir/Task", headers=SITE_A))["entry"]]
    patients = [ok(client.get(f"/fhir/{t['for']['reference']}", headers=SITE_A)) for t in site]
    assert sorted(p["name"][0]["given"][0] for p in patients) == ["Quill", "Quillon"]
    assert {i["value"] for p in patients for i in p["identifier"]} == {"MRN-SHARED"}

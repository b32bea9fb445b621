"""The /fhir API through the app (TestClient): reads, conditional reads, history, errors, access."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class

from gateway.store.db import write_session
from gateway.store.fhir import publish_shared
from terminology import load_terminology
from tests.conftest import ACME, ADMIN, NOVA, SITE_A, SITE_B
from tests.integration.test_fhir_store_support import T0, seed_order

FHIR_JSON = "application/fhir+json"


def valid(body: dict[str, Any]) -> dict[str, Any]:
    """Every resource served must validate with fhir.resources R4B (bundles validate their entries)."""
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    return valid(response.json())


def outcome(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = valid(response.json())
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    return str(body["issue"][0]["diagnostics"])


def by_type(resources: list[dict], rtype: str) -> dict:
    return next(r for r in resources if r["resourceType"] == rtype)


@pytest.fixture
def seeded(engine):
    """o1 (site-a, acme) at T0 then updated; o2 (site-b, nova)."""
    first = seed_order(engine, "o1", now=T0)
    second = seed_order(engine, "o1", now=T0 + timedelta(minutes=5), task_status="in-progress",
                        business_status="manufacturing")
    other = seed_order(engine, "o2", now=T0 + timedelta(minutes=6), site_id="site-b",
                       manufacturer_id="nova-cell")
    return {"o1": first, "o1v2": second, "o2": other}


def test_read_serves_current_version_with_etag_and_last_modified(client, seeded):
    task = by_type(seeded["o1"], "Task")
    response = client.get(f"/fhir/Task/{task['id']}", headers=SITE_A)
    body = ok(response)
    assert body["status"] == "in-progress" and body["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["last-modified"] == format_datetime(T0 + timedelta(minutes=5), usegmt=True)


@pytest.mark.parametrize("tag", ['W/"2"', '"2"', "2", 'W/"1", W/"2"', "*"])
def test_if_none_match_current_version_is_304(client, seeded, tag):
    task = by_type(seeded["o1"], "Task")
    response = client.get(f"/fhir/Task/{task['id']}", headers={**SITE_A, "If-None-Match": tag})
    assert response.status_code == 304 and response.content == b""
    assert response.headers["etag"] == 'W/"2"'


def test_if_none_match_old_version_gets_the_resource(client, seeded):
    task = by_type(seeded["o1"], "Task")
    assert ok(client.get(f"/fhir/Task/{task['id']}", headers={**SITE_A, "If-None-Match": 'W/"1"'}))["id"]


def test_if_modified_since(client, seeded):
    task = by_type(seeded["o1"], "Task")
    url = f"/fhir/Task/{task['id']}"
    at = format_datetime(T0 + timedelta(minutes=5), usegmt=True)
    before = format_datetime(T0 + timedelta(minutes=4), usegmt=True)
    assert client.get(url, headers={**SITE_A, "If-Modified-Since": at}).status_code == 304
    assert client.get(url, headers={**SITE_A, "If-Modified-Since": before}).status_code == 200
    assert client.get(url, headers={**SITE_A, "If-Modified-Since": "garbage"}).status_code == 200


def test_vread_and_instance_history(client, seeded):
    task_id = by_type(seeded["o1"], "Task")["id"]
    v1 = ok(client.get(f"/fhir/Task/{task_id}/_history/1", headers=ACME))
    assert v1["status"] == "requested" and v1["meta"]["versionId"] == "1"
    outcome(client.get(f"/fhir/Task/{task_id}/_history/3", headers=ACME), 404, "not-found")
    outcome(client.get(f"/fhir/Task/{task_id}/_history/x", headers=ACME), 404, "not-found")
    bundle = ok(client.get(f"/fhir/Task/{task_id}/_history", headers=ACME))
    assert bundle["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    assert bundle["entry"][1]["request"] == {"method": "POST", "url": "Task"}
    assert bundle["entry"][0]["request"] == {"method": "PUT", "url": f"Task/{task_id}"}
    assert bundle["entry"][0]["response"]["etag"] == 'W/"2"'
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/fhir/Task/{task_id}"
    assert bundle["link"][0] == {"relation": "self", "url": f"http://testserver/fhir/Task/{task_id}/_history"}


def test_type_history_since_and_paging(client, seeded):
    since = (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    bundle = ok(client.get("/fhir/Task/_history", params={"_since": since}, headers=ADMIN))
    assert sorted(e["resource"]["meta"]["versionId"] for e in bundle["entry"]) == ["1", "2"]  # o1 v2, o2 v1
    seen = []
    url: str | None = "/fhir/Task/_history?_count=1"
    while url:
        page = ok(client.get(url, headers=ADMIN))
        assert len(page.get("entry", [])) <= 1
        seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in page.get("entry", [])]
        url = next((lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"), None)
    assert len(seen) == 3 and len(set(seen)) == 3
    site_b = ok(client.get("/fhir/Task/_history", headers=SITE_B))
    assert [e["resource"]["id"] for e in site_b["entry"]] == [by_type(seeded["o2"], "Task")["id"]]
    outcome(client.get("/fhir/Task/_history", params={"_since": "yesterday"}, headers=ADMIN), 400, "invalid")
    outcome(client.get("/fhir/Task/_history", params={"status": "x"}, headers=ADMIN), 400, "not-supported")


def test_cross_site_and_cross_manufacturer_is_404_everywhere(client, seeded):
    task_id = by_type(seeded["o1"], "Task")["id"]
    acme_org = seeded["o1"][0]["id"]
    for headers in (SITE_B, NOVA):
        for url in (f"/fhir/Task/{task_id}", f"/fhir/Task/{task_id}/_history/1",
                    f"/fhir/Task/{task_id}/_history", f"/fhir/Organization/{acme_org}"):
            diagnostics = outcome(client.get(url, headers=headers), 404, "not-found")
            missing = client.get(url.replace(task_id, "no-such-task").replace(acme_org, "no-such-org"),
                                 headers=headers)
            other = missing.json()["issue"][0]["diagnostics"]
            assert diagnostics.replace(task_id, "X").replace(acme_org, "X") == \
                other.replace("no-such-task", "X").replace("no-such-org", "X")
        ids = [e["resource"]["id"] for e in ok(client.get("/fhir/Task", headers=headers)).get("entry", [])]
        assert task_id not in ids
    for headers in (SITE_A, ACME, ADMIN):
        ok(client.get(f"/fhir/Task/{task_id}", headers=headers))


def test_parties_are_visible_to_their_own_site_and_manufacturer_only(client, seeded):
    """One NPI at two sites for two manufacturers: two Practitioner resources, each its tenants'."""
    practitioner, other = seeded["o1"][2], seeded["o2"][2]
    assert practitioner["id"] != other["id"]
    for headers in (SITE_A, ACME):
        assert ok(client.get(f"/fhir/Practitioner/{practitioner['id']}", headers=headers))["id"]
        outcome(client.get(f"/fhir/Practitioner/{other['id']}", headers=headers), 404, "not-found")
    for headers in (SITE_B, NOVA):
        assert ok(client.get(f"/fhir/Practitioner/{other['id']}", headers=headers))["id"]
        outcome(client.get(f"/fhir/Practitioner/{practitioner['id']}", headers=headers), 404, "not-found")


def test_errors_are_operation_outcomes(client, seeded):
    outcome(client.get("/fhir/Task"), 401, "login")
    outcome(client.get("/fhir/Task", headers={"Authorization": "Bearer nope"}), 401, "login")
    outcome(client.get("/fhir/Medication/x", headers=ADMIN), 404, "not-supported")
    outcome(client.get("/fhir/Medication", headers=ADMIN), 404, "not-supported")
    outcome(client.post("/fhir/Observation", json={}, headers=ADMIN), 405, "not-supported")
    outcome(client.post("/fhir/Task", json={}, headers=ADMIN), 403, "forbidden")  # sites create request Tasks
    outcome(client.delete("/fhir/Task/x", headers=ADMIN), 405, "not-supported")
    outcome(client.get("/fhir/Task/x/_history/1/extra", headers=ADMIN), 404, "not-found")


def test_database_failure_is_an_operation_outcome_without_details(client, engine):
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE fhir_search_token"))
    response = client.get("/fhir/Task", params={"status": "x"}, headers=ADMIN)
    # SQLite reports a missing table as an OperationalError (503, retry later); PostgreSQL as a
    # ProgrammingError (500).  Either way: an OperationOutcome that names no table or column.
    status, code = (503, "transient") if response.status_code == 503 else (500, "exception")
    assert "fhir_search_token" not in outcome(response, status, code)


@pytest.mark.parametrize("kwargs", [
    {"headers": {**ADMIN, "Accept": "application/fhir+xml"}},
    {"headers": {**ADMIN, "Accept": "application/xml"}},
    {"headers": ADMIN, "params": {"_format": "xml"}},
    {"headers": ADMIN, "params": {"_format": "application/fhir+xml"}},
])
def test_xml_is_406(client, seeded, kwargs):
    outcome(client.get("/fhir/Task", **kwargs), 406, "not-supported")
    outcome(client.get("/fhir/metadata", **kwargs), 406, "not-supported")


def test_json_formats_are_accepted(client, seeded):
    assert ok(client.get("/fhir/Task", params={"_format": "json"}, headers=ADMIN))["type"] == "searchset"
    assert ok(client.get("/fhir/Task", headers={**ADMIN, "Accept": "application/fhir+json"}))["entry"]
    assert ok(client.get("/fhir/Task", headers={**ADMIN, "Accept": "application/json, */*;q=0.1"}))["entry"]


def test_business_status_codesystem_is_published_on_first_use_and_served_to_every_client(client, engine):
    codesystem = load_terminology().business_status_codesystem()
    for headers in (SITE_A, SITE_B, ACME, NOVA, ADMIN):
        body = ok(client.get(f"/fhir/CodeSystem/{codesystem['id']}", headers=headers))
        assert body["url"] == codesystem["url"] and body["meta"]["versionId"] == "1"
        assert ok(client.get(f"/fhir/CodeSystem/{codesystem['id']}/_history/1", headers=headers))["id"]
        found = ok(client.get("/fhir/CodeSystem", headers=headers))
        assert [e["resource"]["id"] for e in found["entry"]] == [codesystem["id"]]
    outcome(client.get(f"/fhir/CodeSystem/{codesystem['id']}"), 401, "login")
    with write_session(engine) as session:  # publishing again is a no-op: one version only
        assert publish_shared(session, resources=[codesystem], now=T0) == []
    history = ok(client.get(f"/fhir/CodeSystem/{codesystem['id']}/_history", headers=SITE_A))
    assert len(history["entry"]) == 1

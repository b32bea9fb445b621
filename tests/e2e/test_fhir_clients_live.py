"""What a FHIR client does besides GET, against a live uvicorn server: fhirpy's ``count()`` (which sends
``_count=0&_totalMethod=count``), and HEAD on reads and searches (headers, no body)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.e2e.test_fhir_poller import fhir_base, fhir_client
from tests.integration.test_fhir_store_support import T0, seed_order

__all__ = ["fhir_base"]

SITE_A = {"Authorization": "Bearer demo-site-a-token"}


def _seed(engine) -> None:
    for n in range(5):
        seed_order(engine, f"h3-{n}", now=T0 + timedelta(minutes=n),
                   site_id="site-a" if n < 3 else "site-b",
                   task_status="completed" if n == 0 else "requested")


def test_fhirpy_count_gets_the_total_of_the_callers_resources(fhir_base, engine):
    _seed(engine)
    site_a = fhir_client(fhir_base, "site-a")
    assert site_a.resources("Task").count() == 3
    assert site_a.resources("Task").search(status="completed").count() == 1
    assert fhir_client(fhir_base, "site-b").resources("Task").count() == 2
    assert fhir_client(fhir_base, "admin").resources("Task").count() == 5
    refused = httpx.get(f"{fhir_base}/Task", params={"_totalMethod": "guess"}, headers=SITE_A)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"


def test_head_answers_reads_and_searches_with_the_get_headers_and_no_body(fhir_base, engine):
    _seed(engine)
    bundle = httpx.get(f"{fhir_base}/Task", headers=SITE_A).json()
    task_id = bundle["entry"][0]["resource"]["id"]
    for path in (f"Task/{task_id}", f"Task/{task_id}/_history/1", "Task?_lastUpdated=gt2000-01-01",
                 f"Task/{task_id}/_history", "metadata"):
        got = httpx.get(f"{fhir_base}/{path}", headers=SITE_A)
        head = httpx.head(f"{fhir_base}/{path}", headers=SITE_A)
        assert got.status_code == head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"] == "application/fhir+json"
        assert head.headers.get("etag") == got.headers.get("etag")
    assert httpx.head(f"{fhir_base}/Task", headers={}).status_code == 401
    assert httpx.head(f"{fhir_base}/Task/not-there", headers=SITE_A).status_code == 404
    assert httpx.head(f"{fhir_base}/Task/x/y/z/w", headers=SITE_A).status_code == 404

"""Q3 (outside-user QA): conditional reads as an interface engine's cache uses them.

``Last-Modified`` has whole seconds; the gateway writes several versions of a Task within one
second when events arrive together.  A client that revalidates with ``If-Modified-Since`` must
never be told 304 about a version it has not seen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import ACME, SITE_A, event_body, order_body
from tests.integration.test_fhir_api import ok

T = datetime(2026, 11, 25, 9, 0, 0, 100_000, tzinfo=UTC)


def test_if_modified_since_does_not_hide_a_second_version_within_the_same_second(client, clock):
    clock.set(T)
    assert client.post("/v1/orders", json=order_body("Q3-C"), headers=ACME).status_code == 201
    [entry] = ok(client.get("/fhir/Task", headers=SITE_A))["entry"]
    path = f"/fhir/Task/{entry['resource']['id']}"
    first = client.get(path, headers=SITE_A)
    assert first.status_code == 200 and first.headers["etag"] == 'W/"1"'
    since = first.headers["last-modified"]
    assert since == "Wed, 25 Nov 2026 09:00:00 GMT"
    # unchanged: 304, with the validators
    cached = client.get(path, headers={**SITE_A, "If-Modified-Since": since})
    assert cached.status_code == 304 and cached.headers["etag"] == 'W/"1"'
    # a second version in the same second: the client's copy is stale, so 200 with version 2
    clock.set(T.replace(microsecond=700_000))
    confirmed = event_body("q3-c1", "order.confirmed", "2026-11-25T09:00:00Z")
    assert client.post("/v1/orders/Q3-C/events", json=confirmed, headers=ACME).status_code == 201
    fresh = client.get(path, headers={**SITE_A, "If-Modified-Since": since})
    assert fresh.status_code == 200, fresh.headers
    assert fresh.json()["meta"]["versionId"] == "2" and fresh.headers["last-modified"] == since
    # a later If-Modified-Since (the next second) is answered 304 again
    later = client.get(path, headers={**SITE_A, "If-Modified-Since": "Wed, 25 Nov 2026 09:00:01 GMT"})
    assert later.status_code == 304
    # a version is immutable: vread with If-Modified-Since at its own second is 304
    vread = client.get(f"{path}/_history/1", headers={**SITE_A, "If-Modified-Since": since})
    assert vread.status_code == 304 and vread.headers["etag"] == 'W/"1"'

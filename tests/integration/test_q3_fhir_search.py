"""Q3 (outside-user QA): searches an EHR interface engine sends that the first API did not answer.

Orders go in through ``/v1`` (the real translation), the site reads them back from ``/fhir``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ACME, ACME_COI, SITE_A, SITE_B, event_body, order_body
from tests.integration.test_fhir_api import ok, outcome

COI_SYSTEM = "https://www.isbt128.org/uri/ChainOfIdentity"


@pytest.fixture
def task(client) -> dict[str, Any]:
    """One acme-bio order for site-a, confirmed: its Task as site-a sees it."""
    assert client.post("/v1/orders", json=order_body("Q3-1"), headers=ACME).status_code == 201
    confirmed = event_body("q3-e1", "order.confirmed", "2026-11-25T09:00:00Z")
    assert client.post("/v1/orders/Q3-1/events", json=confirmed, headers=ACME).status_code == 201
    bundle = ok(client.get("/fhir/Task", headers=SITE_A))
    [entry] = bundle["entry"]
    return entry["resource"]  # type: ignore[no-any-return]


def _task_ids(client: Any, params: Any, headers: dict[str, str] = SITE_A) -> list[str]:
    bundle = ok(client.get("/fhir/Task", params=params, headers=headers))
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_group_identifier_finds_the_coi_as_scanned_or_keyed(client, task):
    """The CoI is stored in its normal form (15 data characters + check character).  A barcode
    scanner yields ``&/`` + the 15 data characters (the keyboard check character is printed, not
    encoded); a user may key the 15 characters alone.  Both must find the Task, with or without
    the ISBT 128 system; a wrong check character finds nothing."""
    assert task["groupIdentifier"] == {"system": COI_SYSTEM, "value": ACME_COI}
    data = ACME_COI[:15]
    scanned = (ACME_COI, data, f"&/{data}", f"&/{ACME_COI}", f"{COI_SYSTEM}|&/{data}", f"{COI_SYSTEM}|{data}")
    for value in scanned:
        assert _task_ids(client, {"group-identifier": value}) == [task["id"]], value
    wrong_check = data + ("A" if ACME_COI[15] != "A" else "B")
    assert _task_ids(client, {"group-identifier": wrong_check}) == []
    assert _task_ids(client, {"group-identifier": f"http://other|{data}"}) == []
    assert _task_ids(client, {"group-identifier": f"&/{data}"}, headers=SITE_B) == []


def test_post_search_is_the_same_search_as_get(client, task):
    """FHIR R4 (http.html#search): servers that support search SHALL also support POST
    ``[type]/_search`` with ``application/x-www-form-urlencoded`` parameters."""
    form = {"group-identifier": ACME_COI, "_include": "Task:focus"}
    get = ok(client.get("/fhir/Task", params=form, headers=SITE_A))
    post = ok(client.post("/fhir/Task/_search", data=form, headers=SITE_A))
    assert post["type"] == "searchset"
    assert post["entry"] == get["entry"]
    assert [e["search"]["mode"] for e in post["entry"]] == ["match", "include"]
    # query string and body parameters are combined (ANDed)
    both = client.post("/fhir/Task/_search?status=completed", data={"group-identifier": ACME_COI},
                       headers=SITE_A)
    assert ok(both).get("entry") is None
    # the same rules: unknown parameters are refused, scope applies, no token is 401
    outcome(client.post("/fhir/Task/_search", data={"colour": "red"}, headers=SITE_A), 400, "not-supported")
    assert ok(client.post("/fhir/Task/_search", data=form, headers=SITE_B)).get("entry") is None
    outcome(client.post("/fhir/Task/_search", data=form), 401, "login")
    outcome(client.post("/fhir/Task/_search", json={"status": "completed"}, headers=SITE_A), 415,
            "not-supported")


def test_reference_parameters_take_absolute_urls_on_this_server(client, task):
    """A reference search may name the target by its absolute URL (the ``fullUrl`` the engine got
    in a Bundle); one on another server is refused, not silently matched."""
    focus = task["focus"]["reference"]
    assert _task_ids(client, {"focus": f"http://testserver/fhir/{focus}"}) == [task["id"]]
    assert _task_ids(client, {"based-on": f"http://testserver/fhir/{focus}"}) == [task["id"]]
    outcome(client.get("/fhir/Task", params={"focus": f"http://elsewhere.example/fhir/{focus}"},
                       headers=SITE_A), 400, "invalid")

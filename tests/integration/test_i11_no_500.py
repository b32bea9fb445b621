"""Issue 11: no 500 for any malformed parameter, header or cursor, and bounded error lists.

* A ``/v1/orders`` cursor holding 2^63 answered 500: now ``400 invalid-parameter`` naming
  ``/query/cursor`` (``GET /fhir/Task?_count=²`` is in ``test_i11_fhir_search_bounds``).
* A body with 70,000 unknown keys produced a 4 MB error body: now one error saying how many.
* ``errors[]`` lists at most ``max_error_entries`` entries, and ``errors_truncated`` says how many more.
* Hypothesis throws random query strings and headers at the main GET endpoints: never a 5xx.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, load_settings
from tests.conftest import ACME, ADMIN, SITE_A, TestClient, order_body
from tests.integration.test_fhir_api import by_type
from tests.integration.test_fhir_store_support import T0, seed_order

PROBLEM = "application/problem+json"


def _cursor(updated: object, pk: object) -> str:
    return base64.urlsafe_b64encode(json.dumps([updated, pk]).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    _cursor("2026-11-25T09:00:00+00:00", 2**63),
    _cursor("2026-11-25T09:00:00+00:00", 2**64 + 5),
    _cursor("2026-11-25T09:00:00+00:00", -1),
    _cursor("2026-11-25T09:00:00+00:00", 0),
    _cursor("2026-11-25T09:00:00+00:00", 1.5),
    _cursor("2026-11-25T09:00:00+00:00", True),
    _cursor("2026-11-25T09:00:00+00:00", "7"),
    _cursor("２０２６-11-25T09:00:00+00:00", 1),
    _cursor(12, 1),
    "é" * 10,
    "%%%",
])
def test_a_forged_orders_cursor_is_400_naming_it(client, cursor):
    assert client.post("/v1/orders", json=order_body("I11-C"), headers=ACME).status_code == 201
    response = client.get("/v1/orders", params={"cursor": cursor}, headers=ACME)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "invalid-parameter" and body["errors"][0]["pointer"] == "/query/cursor"


def test_a_genuine_cursor_still_pages(client):
    for n in range(3):
        assert client.post("/v1/orders", json=order_body(f"I11-P{n}"), headers=ACME).status_code == 201
    first = client.get("/v1/orders", params={"limit": 2}, headers=ACME).json()
    rest = client.get("/v1/orders", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ACME).json()
    assert [o["order_id"] for o in first["items"] + rest["items"]] == ["I11-P0", "I11-P1", "I11-P2"]


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=99999999999999999999999", "limit=-1",
                                   "updated_since=not-a-date", "updated_since=2026-13-45T99:00:00Z",
                                   "status=%00", "site_id=%F0%9F%92%A5"])
def test_malformed_order_list_parameters_are_400(client, query):
    response = client.get(f"/v1/orders?{query}", headers=ACME)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid-parameter"
    assert response.json()["errors"][0]["pointer"].startswith("/query/")


def test_70k_unknown_keys_give_a_small_error_body(client):
    body = order_body("I11-K")
    body.update({f"k{n}": 1 for n in range(70_000)})
    response = client.post("/v1/orders", content=json.dumps(body), headers={**ACME,
                           "Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert len(response.content) < 2_000  # was 4 MB
    problem = response.json()
    assert problem["code"] == "validation-failed"
    assert "70000 unknown fields" in problem["errors"][0]["reason"]
    assert client.get("/v1/orders/I11-K", headers=ACME).status_code == 404


def test_error_lists_stop_at_max_error_entries_and_say_how_many_more(engine, clock):
    settings_ = load_settings(DEMO_CONFIG, database_url=engine.url.render_as_string(hide_password=False),
                              max_error_entries=5)
    with TestClient(create_app(settings_, engine=engine, now=clock)) as client:
        body = order_body("I11-T")
        body.update({f"extra{n}": 1 for n in range(20)})
        problem = client.post("/v1/orders", json=body, headers=ACME).json()
        assert len(problem["errors"]) == 5 and problem["errors_truncated"] == 15
        assert problem["detail"] == "The request has 20 invalid fields."
        assert [e["pointer"] for e in problem["errors"]] == [f"/extra{n}" for n in range(5)]
        few = client.post("/v1/orders", json={**order_body("I11-U"), "x": 1}, headers=ACME).json()
        assert len(few["errors"]) == 1 and "errors_truncated" not in few


def test_the_default_error_list_holds_100(client):
    body = order_body("I11-D")
    body.update({f"extra{n}": 1 for n in range(100)})  # 100 unknown keys (named) ...
    body["priority"] = "whenever"  # ... and one more error
    body["site_id"] = 7  # ... and another
    problem = client.post("/v1/orders", json=body, headers=ACME).json()
    assert len(problem["errors"]) == 100 and problem["errors_truncated"] == 2


# --- property: random query strings and headers never make a 5xx ------------------------------

_NAMES = ["_count", "_id", "_lastUpdated", "_sort", "_include", "_summary", "_total", "_totalMethod",
          "_format", "_cursor", "_since", "status", "identifier", "group-identifier", "patient", "focus",
          "modified", "limit", "cursor", "updated_since", "site_id", "manufacturer_id", "before_id",
          "after_id", "destination", "state", "payload"]
_NASTY = st.sampled_from(["²", "١٠", "9" * 5000, "-1", "0", "2**63", str(2**63), str(2**64), "1e309", "NaN",
                     "gt2026-01-01", "ge9999-12-31T23:59:59-23:59", "lt0001-01-01T00:00:00+14:00",
                     "eq2026-02-30", "zz2026", "2026-11-25T25:61:61Z", "Task/", "/", "|", "a|", "|b",
                     "http://evil.example/fhir/Task/x", "Patient/" + "x" * 65, "%00", "\x00", ",,", "é" * 100,
                     _cursor("2026-11-25T09:00:00+00:00", 2**63), "eyJ2IjoxLCJwIjpbXSwiayI6WzEsImEiXX0"])
# nasty values two times in three; any text or integer otherwise
_TEXT = st.one_of(_NASTY, _NASTY, st.text(max_size=30),
                  st.integers(min_value=-(2**70), max_value=2**70).map(str))
_KNOWN = st.sampled_from(_NAMES)
_NAME = st.one_of(_KNOWN, _KNOWN, _KNOWN, st.text(max_size=10))
_QUERY = st.lists(st.tuples(_NAME, _TEXT), max_size=6)
_HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40),
    st.sampled_from(["*", 'W/"1"', 'W/"99999999999999999999"', '"', "W/", ",,,",
                     "Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 -2359", "0", "-1",
                     "Thu, 01 Jan 1970 00:00:00 +9999", "handling=lenient", "handling=strict;;;=",
                     "application/xml", "text/html;q=x", "*/*;q=0"]))
_HEADERS = st.dictionaries(st.sampled_from(["If-None-Match", "If-Modified-Since", "Prefer", "Accept",
                                            "Accept-Encoding", "Content-Type", "Range"]),
                           _HEADER_TEXT, max_size=4)
_TOKENS = st.sampled_from([SITE_A, ACME, ADMIN, {"Authorization": "Bearer \xe9"},
                           {"Authorization": "Basic x"}])


@pytest.fixture
def seeded_paths(client, engine):
    task = by_type(seed_order(engine, "o1", now=T0), "Task")["id"]
    assert client.post("/v1/orders", json=order_body("I11-H"), headers=ACME).status_code == 201
    return ["/v1/orders", "/v1/orders/I11-H", "/v1/admin/safety-log", "/v1/admin/outbox", "/v1/admin/alerts",
            "/fhir/metadata", "/fhir/Task", "/fhir/Observation", "/fhir/Task/_history", f"/fhir/Task/{task}",
            f"/fhir/Task/{task}/_history", f"/fhir/Task/{task}/_history/1", f"/fhir/Task/{task}/_history/²",
            "/fhir/CodeSystem"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_query_strings_and_headers_never_answer_5xx(client, seeded_paths, data):
    path = data.draw(st.sampled_from(seeded_paths))
    items = data.draw(_QUERY)
    headers = {k: v.encode("latin-1") for k, v in {**data.draw(_TOKENS), **data.draw(_HEADERS)}.items()}
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)
    response = client.get(f"{path}?{query}" if query else path, headers=headers)
    assert response.status_code < 500, (path, query, headers, response.text[:500])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_fhir_error_does_not_echo_a_huge_parameter_back(client, method):
    """A 500 000-character unknown parameter name was echoed twice into the OperationOutcome
    (1 MB in, 2 MB out); the diagnostics are clipped and say how much was left out."""
    name = "a" * (15_000 if method == "GET" else 500_000)  # a GET's head stays under 16 KiB
    if method == "GET":
        response = client.get(f"/fhir/Task?{name}=1", headers=SITE_A)
    else:
        response = client.post("/fhir/Task/_search", content=f"{name}=1", headers={
            **SITE_A, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400, response.text[:300]
    [issue] = response.json()["issue"]
    assert issue["code"] == "not-supported"
    assert issue["diagnostics"].startswith("Unknown or unsupported search parameter 'aaaa")
    assert "characters not shown" in issue["diagnostics"]
    assert len(response.content) < 4096

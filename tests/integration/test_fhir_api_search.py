"""Search: every parameter, prefixes, tokens, references, _include, _summary, _total, _sort, paging,
strict vs lenient handling, and the CapabilityStatement held to the implementation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.fhir_api.params import MAX_COUNT
from gateway.store.search_params import format_instant, to_us
from tests.conftest import ACME, ADMIN, SITE_A, SITE_B
from tests.integration.test_fhir_api import ok, outcome
from tests.integration.test_fhir_store_support import BS_SYSTEM, T0, order_resources, seed_order


@pytest.fixture
def orders(engine) -> dict[str, dict[str, dict]]:
    """o1, o3 at site-a/acme (o3 completed, modified two days later), o2 at site-b/nova."""
    specs = {"o1": {"now": T0},
             "o2": {"now": T0 + timedelta(minutes=1), "site_id": "site-b", "manufacturer_id": "nova-cell"},
             "o3": {"now": T0 + timedelta(minutes=2), "task_status": "completed",
                    "business_status": "infused", "modified": T0 + timedelta(days=2)}}
    made = {}
    for order_id, spec in specs.items():
        seed_order(engine, order_id, **spec)
        resources = order_resources(order_id, **{k: v for k, v in spec.items() if k != "now"})
        made[order_id] = {r["resourceType"]: r for r in resources[2:]} | {"Manufacturer": resources[0]}
    return made


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def search(client: Any, path: str, params: Any, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    bundle = ok(client.get(f"/fhir/{path}", params=params, headers=headers))
    assert bundle["type"] == "searchset"
    assert bundle["link"][0]["relation"] == "self"
    for entry in bundle.get("entry", []):
        assert entry["fullUrl"] == f"http://testserver/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}"
    return bundle


def test_task_parameters(client, orders):
    o1, o2, o3 = (orders[k]["Task"] for k in ("o1", "o2", "o3"))
    t = orders["o1"]
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"status": "requested"}, [o1["id"], o2["id"]]),
        ({"status": "completed"}, [o3["id"]]),
        ({"status": "requested,completed"}, [o1["id"], o2["id"], o3["id"]]),
        ({"status": "http://hl7.org/fhir/task-status|completed"}, [o3["id"]]),
        ({"business-status": f"{BS_SYSTEM}|infused"}, [o3["id"]]),
        ({"business-status": "infused"}, [o3["id"]]),
        ({"business-status": "http://other|infused"}, []),
        ({"business-status": f"{BS_SYSTEM}|"}, [o1["id"], o2["id"], o3["id"]]),
        ({"owner": f"Organization/{orders['o1']['Manufacturer']['id']}"}, [o1["id"], o3["id"]]),
        ({"owner": orders["o2"]["Manufacturer"]["id"]}, [o2["id"]]),
        ({"requester": f"Practitioner/{t['Practitioner']['id']}"}, [o1["id"], o3["id"]]),  # o2 has its own
        ({"patient": f"Patient/{t['Patient']['id']}"}, [o1["id"]]),
        ({"subject": t["Patient"]["id"]}, [o1["id"]]),
        ({"based-on": f"ServiceRequest/{t['ServiceRequest']['id']}"}, [o1["id"]]),
        ({"focus": orders["o3"]["ServiceRequest"]["id"]}, [o3["id"]]),
        ({"identifier": "urn:acme-bio:order|o3"}, [o3["id"]]),
        ({"identifier": "o2"}, [o2["id"]]),
        ({"identifier": "|o2"}, []),  # "|code": identifiers without a system only
        ({"group-identifier": "urn:isbt128:coi|COIo1"}, [o1["id"]]),
        ({"modified": "2026-11-01"}, [o1["id"], o2["id"]]),
        ({"modified": "gt2026-11-01"}, [o3["id"]]),
        ({"modified": "ge2026-11-03"}, [o3["id"]]),
        ({"modified": "lt2026-11-03"}, [o1["id"], o2["id"]]),
        ({"modified": "le2026-11-01T09:00:00Z"}, [o1["id"], o2["id"]]),
        ({"modified": "eq2026-11"}, [o1["id"], o2["id"], o3["id"]]),
        ({"_id": f"{o1['id']},{o3['id']}"}, [o1["id"], o3["id"]]),
        ({"status": "requested", "owner": orders["o2"]["Manufacturer"]["id"]}, [o2["id"]]),  # AND
    ]
    for params, expected in cases:
        assert ids(search(client, "Task", params)) == expected, params


def test_last_updated_prefixes(client, orders):
    o1, o2, o3 = (orders[k]["Task"]["id"] for k in ("o1", "o2", "o3"))
    at = format_instant(to_us(T0 + timedelta(minutes=1)))
    for prefix, expected in [("gt", [o3]), ("ge", [o2, o3]), ("lt", [o1]), ("le", [o1, o2]), ("eq", [o2]),
                             ("", [o2])]:
        assert ids(search(client, "Task", {"_lastUpdated": f"{prefix}{at}"})) == expected, prefix
    window = {"_lastUpdated": ["gt2026-11-01T09:00:00Z", "lt2026-11-01T09:02:00Z"]}
    assert ids(search(client, "Task", window)) == [o2]
    minute = {"_lastUpdated": "2026-11-01T09:01"}  # minute precision: the whole minute
    assert ids(search(client, "Task", minute)) == [o2]


def test_other_resource_parameters(client, orders):
    o1 = orders["o1"]
    sr, patient = o1["ServiceRequest"], o1["Patient"]
    by_patient = {"status": "active", "patient": f"Patient/{patient['id']}"}
    assert ids(search(client, "ServiceRequest", by_patient)) == [sr["id"]]
    assert ids(search(client, "ServiceRequest", {"identifier": "urn:site-a:placer|o1"})) == [sr["id"]]
    assert ids(search(client, "ServiceRequest", {"status": "revoked"})) == []
    obs = o1["Observation"]
    assert ids(search(client, "Observation", {"based-on": sr["id"]})) == [obs["id"]]
    assert ids(search(client, "Observation", {"patient": patient["id"]})) == [obs["id"]]
    assert len(ids(search(client, "Observation", {"code": "http://loinc.org|26464-8"}))) == 3
    early = ids(search(client, "Observation", {"date": "lt2026-11-01T08:30:00Z"}))
    assert early == [obs["id"], orders["o2"]["Observation"]["id"]]
    target = f"BiologicallyDerivedProduct/{o1['BiologicallyDerivedProduct']['id']}"
    assert ids(search(client, "Observation", {"focus": target})) == [obs["id"]]
    assert ids(search(client, "Provenance", {"target": target})) == [o1["Provenance"]["id"]]
    assert len(ids(search(client, "Patient", {}))) == 3


def test_include_focus_and_patient_without_leaking(client, orders):
    bundle = search(client, "Task", {"_include": ["Task:focus", "Task:patient"]}, headers=SITE_A)
    assert ids(bundle) == [orders["o1"]["Task"]["id"], orders["o3"]["Task"]["id"]]
    included = ids(bundle, "include")
    expected = {orders[o][rt]["id"] for o in ("o1", "o3") for rt in ("ServiceRequest", "Patient")}
    assert set(included) == expected and len(included) == 4
    assert "total" not in bundle
    only_focus = search(client, "Task", {"_include": "Task:focus", "_id": orders["o1"]["Task"]["id"]},
                        headers=SITE_A)
    assert ids(only_focus, "include") == [orders["o1"]["ServiceRequest"]["id"]]


def test_summary_count_total_and_sort(client, orders):
    counted = search(client, "Task", {"_summary": "count"}, headers=SITE_A)
    assert counted["total"] == 2 and "entry" not in counted
    assert search(client, "Task", {"_count": "0"})["total"] == 3
    with_total = search(client, "Task", {"_total": "accurate", "_count": "1"})
    assert with_total["total"] == 3 and len(with_total["entry"]) == 1
    newest_first = ids(search(client, "Task", {"_sort": "-_lastUpdated"}))
    assert newest_first == [orders[o]["Task"]["id"] for o in ("o3", "o2", "o1")]
    oldest_first = ids(search(client, "Task", {"_sort": "_lastUpdated"}))
    assert oldest_first == newest_first[::-1]


@pytest.mark.parametrize("sort", ["_lastUpdated", "-_lastUpdated"])
def test_paging_follows_next_links_and_keeps_the_query(client, engine, sort):
    for n in range(10):
        seed_order(engine, f"p{n}", now=T0 + timedelta(seconds=n))
    url: str | None = f"/fhir/Task?_count=3&_sort={sort}&status=requested&_total=accurate"
    pages, seen = 0, []
    while url:
        bundle = ok(client.get(url, headers=ACME))
        assert bundle["total"] == 10
        seen += ids(bundle)
        links = {lnk["relation"]: lnk["url"] for lnk in bundle["link"]}
        url = links.get("next")
        if url:
            query = dict(parse_qsl(urlsplit(url).query))
            assert list(query) == ["_cursor"]
        pages += 1
    assert pages == 4 and len(seen) == 10 and len(set(seen)) == 10
    lu = [ok(client.get(f"/fhir/Task/{i}", headers=ACME))["meta"]["lastUpdated"] for i in seen]
    assert lu == sorted(lu, reverse=sort.startswith("-"))


def test_count_is_capped(client, orders):
    assert len(ids(search(client, "Task", {"_count": str(MAX_COUNT + 5000)}))) == 3


@pytest.mark.parametrize("params,code", [
    ({"colour": "red"}, "not-supported"),
    ({"status:not": "requested"}, "not-supported"),
    ({"_lastUpdated": "ne2026-01-01"}, "not-supported"),
    ({"_lastUpdated": "2026-13-01"}, "invalid"),
    ({"modified": "soon"}, "invalid"),
    ({"owner": "Patient/x"}, "invalid"),
    ({"owner": "http://elsewhere/fhir/Organization/x/y"}, "invalid"),
    ({"status": ""}, "invalid"),
    ({"status": "a,"}, "invalid"),
    ({"identifier": "|"}, "invalid"),
    ({"_count": "-1"}, "invalid"),
    ({"_count": ["1", "2"]}, "invalid"),
    ({"_sort": "status"}, "not-supported"),
    ({"_include": "Task:owner"}, "not-supported"),
    ({"_summary": "true"}, "not-supported"),
    ({"_total": "maybe"}, "invalid"),
    ({"_cursor": "not-a-cursor"}, "invalid"),
])
def test_bad_parameters_are_400(client, orders, params, code):
    outcome(client.get("/fhir/Task", params=params, headers=ADMIN), 400, code)


def test_cursor_must_come_alone(client, orders):
    bundle = search(client, "Task", {"_count": "1"})
    next_url = next(lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next")
    outcome(client.get(next_url + "&status=completed", headers=ADMIN), 400, "invalid")
    # a cursor is not a key to other tenants' data: site-b following admin's cursor sees only its own
    assert set(ids(ok(client.get(next_url, headers=SITE_B)))) <= {orders["o2"]["Task"]["id"]}


def test_lenient_handling_ignores_unknown_parameters(client, orders):
    bundle = search(client, "Task", {"colour": "red", "status": "completed"},
                    headers={**ADMIN, "Prefer": "handling=lenient"})
    assert ids(bundle) == [orders["o3"]["Task"]["id"]]
    assert bundle["link"][0]["url"] == "http://testserver/fhir/Task?status=completed"
    strict = {**ADMIN, "Prefer": "handling=strict"}
    outcome(client.get("/fhir/Task", params={"colour": "red"}, headers=strict), 400, "not-supported")


_SAMPLES = {"token": "x", "reference": "Organization/x", "date": "ge2026-01-01"}


def test_capability_statement_matches_the_implementation(client, orders):
    """Every advertised interaction and search parameter works; unadvertised ones are refused."""
    cs = ok(client.get("/fhir/metadata"))
    assert cs["fhirVersion"] == "4.0.1" and set(cs["format"]) == {"json", "application/fhir+json"}
    # issue 16: Subscription and Basic (the topics) have their own interactions (test_subscriptions.py)
    assert [r["type"] for r in cs["rest"][0]["resource"]][-2:] == ["Subscription", "Basic"]
    resources = {r["type"]: r for r in cs["rest"][0]["resource"][:-2]}
    assert set(resources) == {"Task", "ServiceRequest", "Observation", "Provenance", "Patient",
                              "BiologicallyDerivedProduct", "Organization", "Practitioner", "CodeSystem",
                              "Procedure", "Flag"}  # Flag: issue 16 alerts
    creatable = {rtype for rtype, r in resources.items() if "create" in {i["code"] for i in r["interaction"]}}
    assert creatable == {"Task", "Procedure"}
    for rtype, resource in resources.items():
        create = {"create"} if rtype in creatable else set()
        assert {i["code"] for i in resource["interaction"]} == {"read", "vread", "history-instance",
                                                               "history-type", "search-type"} | create
        # create is served exactly where advertised: a site's empty body is examined (422), not refused (405)
        posted = client.post(f"/fhir/{rtype}", json={"resourceType": rtype},
                             headers={**SITE_A, "Content-Type": "application/fhir+json"})
        if create:
            outcome(posted, 422, "required")
        else:
            refused = outcome(posted, 405, "not-supported")
            assert "read-only" not in refused and "POST /fhir/Procedure" in refused
        assert ok(client.get(f"/fhir/{rtype}/_history", headers=ADMIN))["type"] == "history"
        found = search(client, rtype, {})
        for entry in found.get("entry", [])[:1]:
            rid = entry["resource"]["id"]
            assert ok(client.get(f"/fhir/{rtype}/{rid}", headers=ADMIN))["id"] == rid
            assert ok(client.get(f"/fhir/{rtype}/{rid}/_history/1", headers=ADMIN))["id"] == rid
            assert ok(client.get(f"/fhir/{rtype}/{rid}/_history", headers=ADMIN))["type"] == "history"
        for param in resource["searchParam"]:
            value = _SAMPLES[param["type"]]
            if param["type"] == "reference":
                value = "x"
            search(client, rtype, {param["name"]: value})
        for include in resource.get("searchInclude", []):
            search(client, rtype, {"_include": include})
        advertised = {p["name"] for p in resource["searchParam"]}
        for name in {"status", "patient", "code", "target", "date", "identifier"} - advertised:
            outcome(client.get(f"/fhir/{rtype}", params={name: "x"}, headers=ADMIN), 400, "not-supported")

"""POST/GET /v1/orders: creation, identical replay, conflicts, and every refusal of an order."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from gateway.store.tables import EventRow, OrderRow, PatientCoiRow, SafetyLogRow
from tests.conftest import ACME, ACME_COI, ADMIN, NOVA, NOVA_COI, nova_order_body, order_body

PROBLEM = "application/problem+json"


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"https://cgt-gateway.example.org/problems/{code}"
    assert body["title"] and body["detail"]
    return body


def _pointers(body: dict) -> set[str]:
    return {e["pointer"] for e in body["errors"]}


def _count(engine, model) -> int:
    with Session(engine) as session:
        return len(session.exec(select(model)).all())


def test_create_returns_201_with_the_order(client, engine):
    r = client.post("/v1/orders", json=order_body(), headers=ACME)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/orders/ORD-1"
    order = r.json()
    assert order["order_id"] == "ORD-1"
    assert order["manufacturer_id"] == "acme-bio"
    assert order["status"] == "placed"
    assert order["coi"] == ACME_COI
    assert order["state"]["status"] == "placed"
    assert [e["type"] for e in order["timeline"]] == ["order.placed"]
    assert order["timeline"][0]["sequence"] == 0 and order["timeline"][0]["late"] is False
    assert order["order"]["patient"]["mrn"] == "MRN-0042"
    produced = {ref["resourceType"] for ref in order["fhir_resources"]}
    assert {"Task", "ServiceRequest", "Patient"} <= produced
    assert all(ref["reference"] == f"{ref['resourceType']}/{ref['id']}" for ref in order["fhir_resources"])
    assert _count(engine, OrderRow) == 1 and _count(engine, EventRow) == 1


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("CHA999923A1B2C3M", "CHA999923A1B2C3M"),
        ("CHA999923A1B2C3", "CHA999923A1B2C3M"),  # check character optional
        ("&/CHA999923A1B2C3M", "CHA999923A1B2C3M"),  # data identifier optional
    ],
)
def test_isbt_coi_is_stored_in_one_normal_form(client, raw, stored):
    r = client.post("/v1/orders", json=order_body(coi=raw), headers=ACME)
    assert r.status_code == 201, r.text
    assert r.json()["coi"] == stored


def test_identical_replay_is_200_and_same_order(client, engine):
    first = client.post("/v1/orders", json=order_body(), headers=ACME)
    # same content, different key order and whitespace
    replay = client.post(
        "/v1/orders",
        content=_reordered_json(order_body()),
        headers={**ACME, "content-type": "application/json"},
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    assert _count(engine, OrderRow) == 1 and _count(engine, EventRow) == 1


def _reordered_json(body: dict) -> str:
    import json

    return json.dumps(dict(reversed(list(body.items()))), indent=3)


def test_same_order_id_different_body_is_409(client, engine):
    client.post("/v1/orders", json=order_body(), headers=ACME)
    r = client.post("/v1/orders", json=order_body(priority="urgent"), headers=ACME)
    body = _problem(r, 409, "duplicate-order")
    assert _pointers(body) == {"/order_id"}
    assert client.get("/v1/orders/ORD-1", headers=ACME).json()["order"]["priority"] == "routine"


def test_same_order_id_for_two_manufacturers_is_two_orders(client):
    assert client.post("/v1/orders", json=order_body("SHARED-1"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("SHARED-1"), headers=NOVA).status_code == 201
    assert client.get("/v1/orders/SHARED-1", headers=ACME).json()["manufacturer_id"] == "acme-bio"
    assert client.get("/v1/orders/SHARED-1", headers=NOVA).json()["manufacturer_id"] == "nova-cell"
    ambiguous = client.get("/v1/orders/SHARED-1", headers=ADMIN)
    _problem(ambiguous, 409, "ambiguous-order-id")
    chosen = client.get("/v1/orders/SHARED-1?manufacturer_id=nova-cell", headers=ADMIN)
    assert chosen.status_code == 200 and chosen.json()["manufacturer_id"] == "nova-cell"


def test_unknown_site_and_product_are_422_naming_the_fields(client, engine):
    r = client.post("/v1/orders", json=order_body(site_id="site-z", product_code="NOPE-1"), headers=ACME)
    body = _problem(r, 422, "validation-failed")
    assert _pointers(body) == {"/site_id", "/product_code"}
    assert _count(engine, OrderRow) == 0


def test_another_manufacturers_product_is_refused(client):
    r = client.post("/v1/orders", json=order_body(product_code="GT-HEM-01", coi=NOVA_COI), headers=ACME)
    body = _problem(r, 422, "validation-failed")
    assert body["errors"] == [
        {"pointer": "/product_code", "reason": "product 'GT-HEM-01' is not one of acme-bio's products"}
    ]


@pytest.mark.parametrize(
    "coi",
    [
        "CHA999923A1B2C3X",  # wrong check character
        "CHA99992",  # too short
        "XXA999923A1B2C3",  # not CH
        "CHO999923A1B2C3",  # O is not a valid FIN letter
        "NC-000123",
    ],
)
def test_invalid_isbt_coi_is_422_invalid_coi(client, engine, coi):
    body = _problem(client.post("/v1/orders", json=order_body(coi=coi), headers=ACME), 422, "invalid-coi")
    assert _pointers(body) == {"/coi"}
    assert _count(engine, OrderRow) == 0


def test_manufacturer_coi_format_uses_the_products_pattern(client):
    assert client.post("/v1/orders", json=nova_order_body(), headers=NOVA).status_code == 201
    bad = client.post("/v1/orders", json=nova_order_body("NOVA-2", coi="NC-12"), headers=NOVA)
    body = _problem(bad, 422, "invalid-coi")
    assert "^NC-[0-9]{6}$" in body["errors"][0]["reason"]


def test_coi_of_another_patient_is_refused_and_logged(client, engine):
    assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 201
    other = order_body("ORD-2")
    other["patient"] = {**other["patient"], "mrn": "MRN-9999"}
    body = _problem(client.post("/v1/orders", json=other, headers=ACME), 422, "coi-in-use")
    assert _pointers(body) == {"/coi"}
    assert _count(engine, OrderRow) == 1
    with Session(engine) as session:
        (entry,) = session.exec(select(SafetyLogRow)).all()
    assert (entry.code, entry.order_id, entry.presented_coi) == ("coi-in-use", "ORD-2", ACME_COI)
    assert "MRN" not in entry.detail


def test_same_patient_may_reuse_its_coi_for_a_new_order(client, engine):
    assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=order_body("ORD-2"), headers=ACME).status_code == 201
    assert _count(engine, PatientCoiRow) == 1


def test_unknown_field_is_refused_by_name(client, engine):
    body = order_body()
    body["patient"] = {**body["patient"], "nickname": "Q"}
    r = client.post("/v1/orders", json=body, headers=ACME)
    problem = _problem(r, 422, "validation-failed")
    assert problem["errors"] == [{"pointer": "/patient/nickname", "reason": "extra field not permitted"}]
    assert _count(engine, OrderRow) == 0


@pytest.mark.parametrize(
    "field, value, pointer",
    [
        ("ordering_provider", {"npi": "1234567890", "family": "X", "given": ["Y"]}, "/ordering_provider/npi"),
        ("priority", "stat", "/priority"),
        ("order_id", "bad id!", "/order_id"),
        ("requested", {"apheresis_date": "yesterday"}, "/requested/apheresis_date"),
    ],
)
def test_field_errors_name_the_field(client, field, value, pointer):
    problem = _problem(
        client.post("/v1/orders", json=order_body(**{field: value}), headers=ACME), 422, "validation-failed"
    )
    assert pointer in _pointers(problem)


def test_missing_fields_are_named(client):
    body = order_body()
    del body["patient"]["birth_date"]
    del body["coi"]
    problem = _problem(client.post("/v1/orders", json=body, headers=ACME), 422, "validation-failed")
    assert _pointers(problem) == {"/patient/birth_date", "/coi"}


def test_body_must_be_an_object(client):
    problem = _problem(client.post("/v1/orders", json=[1, 2], headers=ACME), 422, "validation-failed")
    assert problem["errors"][0]["pointer"] == ""


def test_get_unknown_order_is_404(client):
    _problem(client.get("/v1/orders/NOPE", headers=ACME), 404, "not-found")


def test_order_and_its_outputs_commit_together_or_not_at_all(client, engine, monkeypatch):
    from gateway.intake import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("translation blew up")

    monkeypatch.setattr(pipeline, "process_event", broken)
    r = client.post("/v1/orders", json=order_body(), headers=ACME)
    assert r.status_code == 500 and r.json()["code"] == "internal-error"
    assert "blew up" not in r.text
    assert (
        _count(engine, OrderRow) == 0 and _count(engine, EventRow) == 0 and _count(engine, PatientCoiRow) == 0
    )

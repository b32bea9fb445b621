"""Site certification per product (issue 16): a new order needs a certification valid on its day
(uncertified, suspended, withdrawn and expired refused ``422 site-not-certified`` naming the site and
the product); existing orders continue; recording and listing certifications."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.bootstrap import create_app
from gateway.config import Settings
from tests.conftest import (
    ACME,
    ADMIN,
    NOVA,
    SITE_A,
    SITE_B,
    FakeClock,
    TestClient,
    event_body,
    isbt_coi,
    order_body,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def api(settings: Settings, engine: sa.Engine):
    app = create_app(settings, engine=engine, now=FakeClock(NOW))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def certify(
    api: TestClient,
    status: str = "certified",
    valid_until: str = "2027-06-01",
    site: str = "site-a",
    product: str = "CART-CD19",
) -> dict:
    response = api.post(
        "/v1/admin/certifications",
        headers=ADMIN,
        json={
            "site_id": site,
            "product_code": product,
            "status": status,
            "valid_until": valid_until,
            "training_completed_at": "2026-05-01T09:00:00Z",
            "note": "trained",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def refused(response) -> None:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "site-not-certified"
    assert "site-a" in problem["detail"] and "CART-CD19" in problem["detail"]
    assert [e["pointer"] for e in problem["errors"]] == ["/site_id", "/product_code"]


def test_the_demo_certifies_every_site_for_both_products(api: TestClient):
    items = api.get("/v1/certifications", headers=ADMIN).json()["items"]
    assert {(c["site_id"], c["product_code"], c["status"], c["source"]) for c in items} == {
        (s, p, "certified", "configuration") for s in ("site-a", "site-b") for p in ("CART-CD19", "GT-HEM-01")
    }
    assert api.post("/v1/orders", json=order_body("C-1"), headers=ACME).status_code == 201


@pytest.mark.parametrize(
    ("status", "valid_until"),
    [("suspended", "2027-06-01"), ("withdrawn", "2027-06-01"), ("certified", "2026-05-31")],
)
def test_suspended_withdrawn_and_expired_are_refused_and_existing_orders_continue(
    api: TestClient, status: str, valid_until: str
):
    assert api.post("/v1/orders", json=order_body("C-OLD"), headers=ACME).status_code == 201
    certify(api, status, valid_until)
    refused(api.post("/v1/orders", json=order_body("C-NEW", coi=isbt_coi(7)), headers=ACME))
    # the existing order continues: its replay and its events are accepted
    assert api.post("/v1/orders", json=order_body("C-OLD"), headers=ACME).status_code == 200
    confirmed = api.post(
        "/v1/orders/C-OLD/events",
        headers=ACME,
        json=event_body("c-e1", "order.confirmed", "2026-06-01T11:00:00Z"),
    )
    assert confirmed.status_code == 201, confirmed.text
    # valid until today still counts; certified again: accepted
    certify(api, "certified", "2026-06-01")
    assert api.post("/v1/orders", json=order_body("C-NEW", coi=isbt_coi(7)), headers=ACME).status_code == 201


def test_an_uncertified_site_is_refused(settings: Settings, engine: sa.Engine):
    only_b = [c for c in settings.certifications if c.site_id != "site-a"]
    app = create_app(
        settings.model_copy(update={"certifications": only_b}), engine=engine, now=FakeClock(NOW)
    )
    with TestClient(app, raise_server_exceptions=False) as api:
        refused(api.post("/v1/orders", json=order_body("U-1"), headers=ACME))
        assert (
            api.post("/v1/orders", json=order_body("U-2", site_id="site-b"), headers=ACME).status_code == 201
        )


def test_without_require_certification_nothing_is_checked(settings: Settings, engine: sa.Engine):
    relaxed = settings.model_copy(update={"require_certification": False, "certifications": []})
    app = create_app(relaxed, engine=engine, now=FakeClock(NOW))
    with TestClient(app, raise_server_exceptions=False) as api:
        assert api.post("/v1/orders", json=order_body("R-1"), headers=ACME).status_code == 201


def test_recording_validates_and_only_admin_may(api: TestClient):
    good = {
        "site_id": "site-a",
        "product_code": "CART-CD19",
        "status": "certified",
        "valid_until": "2027-01-01",
    }
    assert api.post("/v1/admin/certifications", headers=ACME, json=good).status_code == 403
    assert api.post("/v1/admin/certifications", headers=SITE_A, json=good).status_code == 403
    bad = api.post(
        "/v1/admin/certifications", headers=ADMIN, json={**good, "status": "maybe", "valid_until": "soon"}
    )
    assert bad.status_code == 422
    assert {e["pointer"] for e in bad.json()["errors"]} == {"/status", "/valid_until"}
    unknown = api.post(
        "/v1/admin/certifications", headers=ADMIN, json={**good, "site_id": "site-z", "product_code": "NOPE"}
    )
    assert unknown.status_code == 422
    assert [e["pointer"] for e in unknown.json()["errors"]] == ["/site_id", "/product_code"]
    missing = api.post("/v1/admin/certifications", headers=ADMIN, json={"site_id": "site-a"})
    assert {e["pointer"] for e in missing.json()["errors"]} >= {"/product_code", "/status", "/valid_until"}
    extra = api.post("/v1/admin/certifications", headers=ADMIN, json={**good, "colour": "red"})
    assert extra.status_code == 422 and extra.json()["errors"][0]["pointer"] == "/colour"


def test_who_sees_which_certifications(api: TestClient):
    recorded = certify(api, "suspended", "2027-06-01", site="site-b", product="GT-HEM-01")
    assert recorded["source"] == "admin" and recorded["manufacturer_id"] == "nova-cell"
    assert recorded["updated_by"] == "demo admin"
    nova = api.get("/v1/certifications", headers=NOVA).json()["items"]
    assert {c["product_code"] for c in nova} == {"GT-HEM-01"} and len(nova) == 2
    assert [c["status"] for c in nova if c["site_id"] == "site-b"] == ["suspended"]
    site_b = api.get("/v1/certifications", headers=SITE_B).json()["items"]
    assert {c["site_id"] for c in site_b} == {"site-b"} and len(site_b) == 2
    assert api.get("/v1/certifications").status_code == 401

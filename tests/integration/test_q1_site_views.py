"""What a site token reads through the order API follows its profile: a site whose profile takes only
the MRN (site-b, ``demographics: mrn_only``) is never shown the manufacturer's patient name, birth
date or sex there either; a full-demographics site, the manufacturer and admin see the order as
accepted."""

from __future__ import annotations

from tests.conftest import ACME, ADMIN, NOVA, SITE_A, SITE_B, nova_order_body, order_body

PATIENT = {"mrn": "B-7781", "family": "Roe", "given": ["Sam"], "birth_date": "1992-07-30", "sex": "male"}


def test_mrn_only_site_reads_the_order_without_demographics(client):
    assert client.post("/v1/orders", json=nova_order_body("NOVA-Q1", patient=PATIENT),
                       headers=NOVA).status_code == 201
    seen = client.get("/v1/orders/NOVA-Q1", headers=SITE_B)
    assert seen.status_code == 200, seen.text
    assert seen.json()["order"]["patient"] == {"mrn": "B-7781"}
    for secret in ("Roe", "Sam", "1992-07-30"):
        assert secret not in seen.text
    for owner in (NOVA, ADMIN):
        full = client.get("/v1/orders/NOVA-Q1", headers=owner).json()
        assert full["order"]["patient"] == PATIENT


def test_full_demographics_site_reads_the_order_as_accepted(client):
    patient = {**PATIENT, "mrn": "MRN-0042"}
    assert client.post("/v1/orders", json=order_body("ACME-Q1", patient=patient),
                       headers=ACME).status_code == 201
    seen = client.get("/v1/orders/ACME-Q1", headers=SITE_A)
    assert seen.status_code == 200, seen.text
    assert seen.json()["order"]["patient"] == patient

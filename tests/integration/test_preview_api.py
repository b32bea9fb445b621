"""POST /v1/sites/{site_id}/preview: the site's own token or admin; nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import ACME, ADMIN, SITE_A, SITE_B

JOURNEY = json.loads((Path(__file__).parents[2] / "fixtures/events/journey-autologous.json").read_text())
SITE_A_PROFILE = (Path(__file__).parents[2] / "fixtures/profiles/site-a.yaml").read_text()


def _body(**extra: object) -> dict:
    return {"order": JOURNEY["order"], "events": JOURNEY["events"][:4], **extra}


def _row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("cgt_order", "order_event", "fhir_resource_version", "outbox_message")}


def test_site_token_previews_fhir_and_hl7_per_event_without_storing(client, engine):
    before = _row_counts(engine)
    response = client.post("/v1/sites/site-a/preview", json=_body(), headers=SITE_A)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["site_id"] == "site-a"
    steps = result["steps"]
    assert [s["event_type"] for s in steps][:2] == ["order.placed", JOURNEY["events"][0]["type"]]
    placed = steps[0]
    assert placed["accepted"] is True
    assert placed["bundle"]["resourceType"] == "Bundle" and placed["bundle"]["type"] == "transaction"
    types = {e["resource"]["resourceType"] for e in placed["bundle"]["entry"]}
    assert {"ServiceRequest", "Task", "Patient"} <= types
    assert placed["hl7v2"], "site-a renders OML^O21 for a new order"
    assert _row_counts(engine) == before


def test_admin_may_preview_any_site_and_other_tokens_may_not(client):
    assert client.post("/v1/sites/site-a/preview", json=_body(), headers=ADMIN).status_code == 200
    for headers in (SITE_B, ACME):
        response = client.post("/v1/sites/site-a/preview", json=_body(), headers=headers)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.post("/v1/sites/site-a/preview", json=_body()).status_code == 401


def test_unknown_site_is_404(client):
    response = client.post("/v1/sites/site-z/preview", json=_body(), headers=ADMIN)
    assert response.status_code == 404


def test_draft_profile_is_validated_and_used(client):
    draft = SITE_A_PROFILE.replace("demographics: full", "demographics: mrn_only")
    assert draft != SITE_A_PROFILE
    response = client.post("/v1/sites/site-a/preview", json=_body(profile_yaml=draft), headers=SITE_A)
    assert response.status_code == 200, response.text
    patient = next(e["resource"] for e in response.json()["steps"][0]["bundle"]["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    assert "name" not in patient and "birthDate" not in patient

    broken = SITE_A_PROFILE.replace("timezone:", "timezone: Mars/Olympus_Mons\nx_unknown:", 1)
    response = client.post("/v1/sites/site-a/preview", json=_body(profile_yaml=broken), headers=SITE_A)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid-profile"
    reasons = " ".join(e["reason"] for e in problem["errors"])
    assert "site-a.yaml:" in reasons and "timezone" in reasons


def test_order_for_another_site_is_422_naming_the_field(client):
    body = _body()
    body["order"] = {**body["order"], "site_id": "site-b"}
    response = client.post("/v1/sites/site-a/preview", json=body, headers=SITE_A)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/order/site_id"


def test_unknown_field_in_preview_body_is_refused_by_name(client):
    response = client.post("/v1/sites/site-a/preview", json=_body(extra_field=1), headers=SITE_A)
    assert response.status_code == 422
    assert any(e["pointer"] == "/extra_field" for e in response.json()["errors"])

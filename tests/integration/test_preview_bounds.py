"""Issue 11: ``POST /v1/sites/{site_id}/preview`` with a hostile draft profile answers fast and small,
naming the rule; the live profiles are held to the same bounds (preview and delivery), and a site
that is ``mrn_only`` gets no name or birth date through an override, live or draft."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.bootstrap import create_app
from gateway.config import load_settings
from mappings.profile.delivery import DeliverySettings, MllpEndpoint
from mappings.profile.schema import SiteProfile
from tests.conftest import ACME, SITE_A, SITE_B, TestClient, event_body, order_body

ROOT = Path(__file__).parents[2]
JOURNEY = json.loads((ROOT / "fixtures/events/journey-autologous.json").read_text())
SITE_A_PROFILE = (ROOT / "fixtures/profiles/site-a.yaml").read_text()
OVERRIDE_LINE = SITE_A_PROFILE.count("\n") + 2


def _draft(template: str, demographics: str = "full") -> str:
    text = SITE_A_PROFILE.replace("demographics: full", f"demographics: {demographics}")
    return text + "  overrides:\n    OBR-4: '" + template.replace("'", "''") + "'\n"


def _preview(client: TestClient, profile_yaml: str | None = None, site: str = "site-a",
             headers: dict[str, str] = SITE_A) -> tuple[int, dict, float, int]:
    order = {**JOURNEY["order"], "site_id": site}
    body: dict = {"order": order, "events": JOURNEY["events"][:2]}
    if profile_yaml is not None:
        body["profile_yaml"] = profile_yaml
    started = time.perf_counter()
    response = client.post(f"/v1/sites/{site}/preview", json=body, headers=headers)
    return response.status_code, response.json(), time.perf_counter() - started, len(response.content)


@pytest.mark.parametrize(("template", "rule"), [
    ("{{ 3**20000000 }}", "template-power"),
    ("{{ 'A'*200000000 }}", "template-repeat"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "template-range"),
    ("{{ lipsum() }}", "template-global"),
    ("{{ range(10**10) | length }}", "template-power"),
    ("{{ cycler(1).next() }}", "template-global"),
    ("{{ namespace(a=1).a }}", "template-global"),
    ("{{ dict(a=1) }}", "template-global"),
    ("{{ order | attr('coi') }}", "template-filter"),
])
def test_hostile_draft_template_is_422_naming_the_rule_fast_and_small(client, template, rule):
    status, problem, elapsed, size = _preview(client, _draft(template))
    assert status == 422, problem
    assert elapsed < 10.0
    assert size < 10_000
    assert problem["code"] == "invalid-profile"
    [error] = problem["errors"]
    assert error["pointer"] == "/profile_yaml"
    assert error["reason"].startswith(f"site-a.yaml:{OVERRIDE_LINE}: hl7v2.overrides.OBR-4: ")
    assert f"(rule {rule})" in error["reason"]


def test_mrn_only_draft_cannot_read_demographics(client):
    for field in ("family", "given", "birth_date", "sex"):
        status, problem, _, _ = _preview(client, _draft(f"{{{{ order.patient.{field} }}}}", "mrn_only"))
        assert status == 422
        assert "(rule template-demographics)" in problem["errors"][0]["reason"]
    status, result, _, _ = _preview(client, _draft("{{ order.patient.mrn }}", "mrn_only"))
    assert status == 200, result
    obr = next(s for m in result["steps"][0]["hl7v2"] for s in m["segments"] if s.startswith("OBR|"))
    assert obr.split("|")[4] == JOURNEY["order"]["patient"]["mrn"]


def test_oversized_and_deep_drafts_are_refused_before_or_while_parsing(client):
    big = SITE_A_PROFILE + "#" * (256 * 1024)
    status, problem, elapsed, _ = _preview(client, big)
    assert status == 422 and elapsed < 10.0
    assert problem["errors"][0]["reason"] == (
        "site-a.yaml:1: (file): larger than 262144 bytes (profile_max_bytes)")

    flat = SITE_A_PROFILE + "junk:\n" + "- x\n" * 60_000
    status, problem, elapsed, _ = _preview(client, flat)
    assert status == 422 and elapsed < 10.0
    assert problem["errors"][0]["reason"].endswith("(profile_max_nodes)")

    duplicate = SITE_A_PROFILE.replace("  demographics: full\n",
                                       "  demographics: full\n  demographics: mrn_only\n")
    status, problem, _, _ = _preview(client, duplicate)
    assert status == 422
    assert [e["reason"] for e in problem["errors"]] == [
        "site-a.yaml:16: patient.demographics: duplicate key (also on line 15)"]


def test_the_error_list_of_a_draft_is_bounded(client):
    draft = SITE_A_PROFILE + "".join(f"unknown_{i}: {i}\n" for i in range(5000))
    status, problem, elapsed, size = _preview(client, draft)
    assert status == 422 and elapsed < 5.0
    assert len(problem["errors"]) == 100  # profile_max_problems and max_error_entries, both 100
    assert problem["errors_truncated"] == 5000 - 100
    assert size < 50_000


def _engine_app(settings, engine, **overrides):
    configured = load_settings(settings.config, database_url=settings.database_url, **overrides)
    return TestClient(create_app(configured, engine=engine), raise_server_exceptions=False)


def test_template_settings_reach_the_preview_renderer(settings, engine):
    with _engine_app(settings, engine, template_max_output_bytes=8) as client:
        status, result, _, _ = _preview(client, _draft("{{ product.display }}"))
    assert status == 200, result
    issues = result["steps"][0]["issues"]
    assert any(i["code"] == "hl7v2-override-failed" and "longer than 8" in i["message"]
               for i in issues), issues
    with _engine_app(settings, engine, template_max_range=3) as client:
        status, problem, _, _ = _preview(client, _draft("{{ range(4) | join }}"))
    assert status == 422 and "(rule template-range)" in problem["errors"][0]["reason"]
    with _engine_app(settings, engine, profile_max_bytes=5000) as client:  # the demo profiles are < 4 KB
        status, problem, _, _ = _preview(client, _draft("x") + "#" * 4000)
    assert status == 422 and "profile_max_bytes" in problem["errors"][0]["reason"]


def _unchecked(profile: SiteProfile, template: str) -> SiteProfile:
    """A live profile with an override that never went through the check (defence in depth), and an
    MLLP endpoint so that its messages are queued in the outbox (nothing is delivered in this test)."""
    delivery = DeliverySettings(mllp=MllpEndpoint(host="127.0.0.1", port=9))
    hl7v2 = profile.hl7v2.model_copy(update={"overrides": {"OBR-4": template}})
    return profile.model_copy(update={"hl7v2": hl7v2, "delivery": delivery})


def test_live_mrn_only_profile_sends_no_demographics_through_an_override(settings, engine):
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
        profiles = client.app.state.context.profiles
        profiles["site-b"] = _unchecked(profiles["site-b"],
                                        "{{ order.patient.family }}^{{ order.patient.birth_date }}")
        status, result, _, _ = _preview(client, site="site-b", headers=SITE_B)
        assert status == 200, result
        text = json.dumps(result)
        patient = JOURNEY["order"]["patient"]
        assert patient["family"] not in text and patient["birth_date"].replace("-", "") not in text
        assert any(i["code"] == "hl7v2-override-failed" for i in result["steps"][0]["issues"])

        body = order_body("ORD-MRN", site_id="site-b")
        assert client.post("/v1/orders", json=body, headers=ACME).status_code == 201
        with engine.connect() as conn:
            payloads = conn.execute(sa.text("SELECT payload FROM outbox_message WHERE order_id = 'ORD-MRN' "
                                            "AND channel = 'mllp'")).scalars().all()
        assert payloads
        for payload in payloads:
            assert "Zyxwvut" not in payload and "19710309" not in payload and "Quillon" not in payload


def test_live_profile_with_a_hostile_template_cannot_hang_delivery(settings, engine):
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
        profiles = client.app.state.context.profiles
        profiles["site-a"] = _unchecked(profiles["site-a"], "{{ 3**20000000 }}")
        started = time.perf_counter()
        assert client.post("/v1/orders", json=order_body("ORD-POW"), headers=ACME).status_code == 201
        response = client.post("/v1/orders/ORD-POW/events", headers=ACME,
                               json=event_body("E-1", "order.confirmed", "2026-11-25T09:00:00Z"))
        assert response.status_code in (200, 201), response.text
        assert time.perf_counter() - started < 10.0
        with engine.connect() as conn:
            payloads = conn.execute(sa.text("SELECT payload FROM outbox_message WHERE order_id = 'ORD-POW' "
                                            "AND channel = 'mllp'")).scalars().all()
        assert payloads and all("|CGT-CART19^" in p for p in payloads)  # OBR-4 kept its default value


def test_a_draft_that_replaces_the_mrn_is_shown_refused(client):
    """``PID-3: OTHER-MRN`` would send every patient's order under one MRN: preview shows every
    message refused with an ``hl7v2-identifier-overridden`` error naming the field."""
    draft = SITE_A_PROFILE + "  overrides:\n    PID-3: OTHER-MRN\n"
    status, result, _, _ = _preview(client, draft)
    assert status == 200, result
    for step in result["steps"]:
        assert step["hl7v2"] and all(m["refused"] and "PID-3" in m["refused"] for m in step["hl7v2"])
        issues = [i for i in step["issues"] if i["code"] == "hl7v2-identifier-overridden"]
        assert issues and all(i["severity"] == "error" for i in issues)

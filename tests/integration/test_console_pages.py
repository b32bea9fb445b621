"""What the console's pages show, through the TestClient: the timeline (late and retracted events,
FHIR versions with diffs, messages with attempts, HL7v2 field names, who reads which payload) and the
profile dry run (validator problems, same-as-sent and differs, nothing stored)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import Settings, load_settings
from gateway.delivery.outbox import DeliveryAttempt, OutboxMessage
from gateway.store.fhir_tables import FhirResourceVersion
from gateway.store.tables import EventRow
from tests.conftest import ACME, TestClient
from tests.console_support import post_form, sign_in
from tests.integration.test_delivery_support import write_config

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = json.loads((ROOT / "fixtures" / "events" / "journey-autologous.json").read_text(encoding="utf-8"))
ORDER = JOURNEY["order"]
ORDER_ID = ORDER["order_id"]
_M: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_V: sa.Table = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_E: sa.Table = EventRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
def settings_mllp(engine: Engine, tmp_path: Path) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    config = write_config(tmp_path, url, {"site-a": 9, "site-b": 9}, demo_clients=True)
    return load_settings(config, public_base_url="http://testserver")


@pytest.fixture
def journey(settings_mllp: Settings, engine: Engine) -> Iterator[TestClient]:
    """The journey's order and first four events, then a late event and a retraction."""
    with TestClient(create_app(settings_mllp, engine=engine), raise_server_exceptions=False) as client:
        assert client.post("/v1/orders", json=ORDER, headers=ACME).status_code == 201
        for event in JOURNEY["events"][:4]:
            response = client.post(f"/v1/orders/{ORDER_ID}/events", json=event, headers=ACME)
            assert response.status_code == 201, response.text
        late = {**JOURNEY["events"][1], "event_id": "evt-late", "occurred_at": "2026-03-04T10:00:00Z"}
        response = client.post(f"/v1/orders/{ORDER_ID}/events", json=late, headers=ACME)
        assert response.status_code == 201 and response.json()["late"] is True, response.text
        response = client.post(f"/v1/orders/{ORDER_ID}/events/evt-003/retract",
                               json={"reason": "posted for the wrong patient visit"}, headers=ACME)
        assert response.status_code == 200, response.text
        with engine.begin() as conn:  # one delivery attempt, as the worker records it
            first = conn.execute(sa.select(sa.func.min(_M.c.id))).scalar_one()
            conn.execute(sa.insert(DeliveryAttempt.__table__).values(  # type: ignore[attr-defined]
                message_id=first, attempted_at=sa.func.now(), outcome="delivered", ack_code="AA",
                latency_ms=12.5, worker_id="w1"))
        yield client


def _as(client: TestClient, token: str) -> TestClient:
    client.cookies.clear()
    assert sign_in(client, token).status_code == 303
    return client


def test_the_timeline_shows_events_versions_messages_and_attempts(journey: TestClient,
                                                                  engine: Engine) -> None:
    page = _as(journey, "demo-site-a-token").get(f"/console/orders/{ORDER_ID}").text
    for event in ("order.placed", "order.confirmed", "apheresis.scheduled", "apheresis.rescheduled",
                  "collection.completed"):
        assert f"{event}\n" in page or f"{event} " in page, event
    assert page.count('<span class="badge late">late</span>') == 1
    assert page.count('<span class="badge retracted">retracted</span>') == 1
    assert "posted for the wrong patient visit" in page
    with engine.connect() as conn:
        versions = conn.execute(sa.select(sa.func.count()).select_from(_V)
                                .where(_V.c.order_id == ORDER_ID)).scalar_one()
        messages = conn.execute(sa.select(_M.c.control_id)
                                .where(_M.c.destination == "site-a/mllp")).scalars().all()
    assert page.count("</summary><pre>") >= versions  # every version folded (event data too)
    assert "Diff from version 1" in page and "<ins>+" in page and "<del>-" in page
    assert page.count('<section class="message"') == len(messages) > 5
    for control_id in messages:
        assert control_id in page
    assert "ACK AA" in page and "12.5 ms" in page and "Not attempted yet." in page
    for label in ("ORC-1 Order Control", "MSH-10 Message Control ID", "ORC-4 Placer Group Number"):
        assert label in page
    assert 'id="site-requests"' in page


def test_a_manufacturer_sees_delivery_records_but_not_the_site_messages(journey: TestClient) -> None:
    page = _as(journey, "demo-acme-token").get(f"/console/orders/{ORDER_ID}").text
    assert "ACK AA" in page and "ORC-1 Order Control" not in page
    assert "The message itself is shown to admin and to the site it went to." in page


def test_the_dry_run_compares_a_draft_with_what_was_sent(journey: TestClient, engine: Engine,
                                                        tmp_path: Path) -> None:
    client = _as(journey, "demo-site-a-token")
    draft = (tmp_path / "site-a.yaml").read_text(encoding="utf-8")
    with engine.connect() as conn:
        order_pk = conn.execute(sa.select(_E.c.order_pk).limit(1)).scalar_one()

    def counts() -> tuple[int, ...]:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                         for t in (_M, _V, _E))

    before = counts()
    page = "/console/sites/site-a/dry-run"
    same = post_form(client, page, {"profile_yaml": draft, "order": str(order_pk)}, page=page)
    assert same.status_code == 200, same.text
    flat = " ".join(same.text.split())
    assert "HL7v2 OML^O21 #1: same as sent" in flat
    summaries = [" ".join(t.split()) for t in re.findall(r"<summary>([^<]*)</summary>", same.text)]
    assert summaries and not any("nothing of it was sent then" in t for t in summaries)
    assert all(t.endswith("same as sent") for t in summaries if t.startswith("HL7v2"))
    # the same profile: only what the retraction of evt-003 (the reschedule) changed differs, in the FHIR Task
    changed = {t.split("/")[0] for t in summaries if t.endswith("differs")}
    assert changed == {"Task"} and '"valueDateTime": "2026-03-10T13:00:00Z"' in html.unescape(same.text)
    changed = draft.replace("receiving_application: EPIC", "receiving_application: CERNER", 1)
    assert changed != draft
    differs = post_form(client, page, {"profile_yaml": changed, "order": str(order_pk)}, page=page)
    assert "HL7v2 OML^O21 #1: differs" in " ".join(differs.text.split())
    assert "<del>-MSH|^~\\&amp;|CGT-GATEWAY|CGTGW|EPIC|SITE-A|(message time)|" in differs.text
    assert "<ins>+MSH|^~\\&amp;|CGT-GATEWAY|CGTGW|CERNER|SITE-A|(message time)|" in differs.text
    invalid = post_form(client, page, {"profile_yaml": "site_id: site-a\nbogus: 1\n", "order": str(order_pk)},
                        page=page)
    assert invalid.status_code == 422 and "site-a.yaml:" in invalid.text
    other = post_form(client, page, {"profile_yaml": draft.replace("site_id: site-a", "site_id: site-b"),
                                     "order": str(order_pk)}, page=page)
    assert other.status_code == 422 and "for another site" in other.text
    assert post_form(client, page, {"profile_yaml": draft, "order": "x"}, page=page).status_code == 400
    assert counts() == before  # nothing stored
    _as(client, "demo-site-b-token")
    assert client.get(page).status_code == 404
    _as(client, "demo-acme-token")
    assert client.get(page).status_code == 404


def test_the_timeline_lists_site_requests_and_marks_site_events(journey: TestClient) -> None:
    """A site's hold (applied: the journey is before collection) and its later release show up with their
    state and the event each produced; the raw message the site sent is never on the page."""
    from gateway.inbound.requests import IncomingRequest, receive

    context = journey.app.state.context
    raw = "MSH|^~\\&|EPIC|SITE-A|...|SECRET-RAW-MARKER"
    incoming = IncomingRequest(site_id="site-a", kind="hold", channel="hl7v2", order_ref=ORDER_ID,
                               reason="patient has a fever", control_id="EPIC-77", raw=raw)
    hold = receive(context, incoming)
    assert hold.request is not None and hold.request.state == "applied", hold
    page = _as(journey, "demo-site-a-token").get(f"/console/orders/{ORDER_ID}").text
    assert hold.request.request_id in page and "MSH-10 EPIC-77" in page
    assert "site: patient has a fever" in page and "applied" in page
    assert f"site-request-{hold.request.request_id}" in page  # the order.on_hold event it produced
    assert '<span class="badge site">from the site</span>' in page
    assert "SECRET-RAW-MARKER" not in page
    other = _as(journey, "demo-site-b-token").get(f"/console/orders/{ORDER_ID}")
    assert other.status_code == 404 and hold.request.request_id not in other.text

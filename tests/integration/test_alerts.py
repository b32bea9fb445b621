"""Milestone alerts (issue 16) driven by an injected clock through the demo journey, with restarts (a
new app and a new scheduler on the same database) between raise and resolve: one alert per
condition, never a duplicate; temperature excursions and failed releases raised in the event's own
transaction (no scheduler pass); the alert's FHIR Flag; visibility; acknowledgement; metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class

from gateway.alerts.scheduler import AlertScheduler
from gateway.alerts.tables import ALERTS
from gateway.bootstrap import create_app
from gateway.config import Settings
from gateway.delivery.outbox import OutboxMessage
from mappings.fhir.alert import flag_id
from tests.conftest import ACME, ADMIN, NOVA, SITE_A, SITE_B, FakeClock, TestClient

JOURNEY = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures/events/journey-autologous.json").read_text()
)
ORDER_ID = JOURNEY["order"]["order_id"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Gateway:
    """The app and its scheduler on one database; :meth:`restart` builds both anew (a new process)."""

    def __init__(self, settings: Settings, engine: sa.Engine, clock: FakeClock) -> None:
        self.settings, self.engine, self.clock = settings, engine, clock
        self.client: TestClient | None = None
        self.restart()

    def restart(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
        app = create_app(self.settings, engine=self.engine, now=self.clock)
        self.client = TestClient(app, raise_server_exceptions=False).__enter__()
        self.scheduler = AlertScheduler(app.state.context, now=self.clock)

    def close(self) -> None:
        assert self.client is not None
        self.client.__exit__(None, None, None)

    @property
    def http(self) -> TestClient:
        assert self.client is not None
        return self.client

    def post_event(self, event: dict[str, Any], headers: dict[str, str] = ACME) -> None:
        response = self.http.post(f"/v1/orders/{ORDER_ID}/events", json=event, headers=headers)
        assert response.status_code in (200, 201), response.text

    def alerts(self, headers: dict[str, str] = ACME, **query: str) -> list[dict[str, Any]]:
        response = self.http.get("/v1/alerts", headers=headers, params=query)
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(ALERTS).order_by(ALERTS.c.id)).all())


@pytest.fixture
def gateway(settings: Settings, engine: sa.Engine) -> Any:
    clock = FakeClock(_at(JOURNEY["placed_at"]))
    gw = Gateway(settings, engine, clock)
    response = gw.http.post("/v1/orders", json=JOURNEY["order"], headers=ACME)
    assert response.status_code == 201, response.text
    yield gw
    gw.close()


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    found = next(e for e in JOURNEY["events"] if e["event_id"] == event_id)
    return {**found, **changes}


def play(gw: Gateway, *event_ids: str) -> None:
    """Post the journey's events, the clock a minute after each one happened."""
    for event_id in event_ids:
        body = event(event_id)
        gw.clock.set(max(gw.clock(), _at(body["occurred_at"]) + timedelta(minutes=1)))
        gw.post_event(body)


def by_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [a for a in items if a["kind"] == kind]


def validate_flag(gw: Gateway, alert_id: str, headers: dict[str, str] = SITE_A) -> dict[str, Any]:
    response = gw.http.get(f"/fhir/Flag/{flag_id(alert_id)}", headers=headers)
    assert response.status_code == 200, response.text
    flag = response.json()
    model = get_fhir_model_class("Flag").model_validate(flag)
    get_fhir_model_class("Flag").model_validate(model.model_dump(mode="json"))
    assert flag["identifier"] == [
        {"system": "https://cgt-gateway.example.org/fhir/sid/alert", "value": alert_id}
    ]
    assert flag["subject"]["reference"].startswith("Patient/")
    assert "Rivera" not in json.dumps(flag) and "MRN-448812" not in json.dumps(flag)
    return flag  # type: ignore[no-any-return]


def test_collected_material_overdue_raised_by_the_scheduler_once_and_resolved_by_receipt(gateway: Gateway):
    gw = gateway
    play(gw, "evt-001", "evt-002", "evt-003", "evt-004", "evt-005")  # collected 17:10Z, with the courier
    assert gw.scheduler.tick().changed == []
    gw.clock.set(_at("2026-03-14T17:00:00Z"))  # 47h50 after collection: not yet
    assert gw.scheduler.tick().changed == []
    gw.clock.set(_at("2026-03-14T17:20:00Z"))  # 48h10: overdue
    assert len(gw.scheduler.tick().changed) == 1
    gw.scheduler.tick()  # a second pass raises nothing more
    gw.restart()
    gw.scheduler.tick()  # nor does a new process
    overdue = by_kind(gw.alerts(), "shipment-overdue")
    assert len(overdue) == 1 and overdue[0]["state"] == "open"
    assert overdue[0]["detail"]["leg"] == "collected-material"
    assert overdue[0]["order_id"] == ORDER_ID and overdue[0]["site_id"] == "site-a"
    assert overdue[0]["raised_at"] == "2026-03-14T17:20:00Z"
    validate_flag(gw, overdue[0]["alert_id"])
    # the receipt at manufacturing resolves it in the event's transaction (no scheduler pass)
    gw.clock.set(_at("2026-03-14T18:00:00Z"))
    gw.post_event(
        event(
            "evt-006",
            occurred_at="2026-03-14T17:55:00Z",
            data={**event("evt-006")["data"], "at": "2026-03-14T17:55:00Z"},
        )
    )
    [resolved] = by_kind(gw.alerts(), "shipment-overdue")
    assert resolved["state"] == "resolved" and resolved["resolved_at"] == "2026-03-14T18:00:00Z"
    flag = validate_flag(gw, resolved["alert_id"])
    assert flag["status"] == "inactive" and flag["period"]["end"].startswith("2026-03-14T18:00:00")
    gw.restart()
    gw.clock.advance(days=3)
    gw.scheduler.tick()
    assert len(gw.rows()) == 1 and gw.rows()[0].state == "resolved"  # never raised again


def test_temperature_excursion_is_raised_in_the_events_transaction(gateway: Gateway):
    gw = gateway
    play(gw, "evt-001", "evt-002", "evt-003", "evt-004")
    warm = event("evt-005", data={**event("evt-005")["data"], "temperature_c": 15.5})
    gw.clock.set(_at("2026-03-12T18:01:00Z"))
    gw.post_event(warm)
    assert gw.scheduler.passes == 0
    [alert] = by_kind(gw.alerts(SITE_A), "temperature-excursion")
    assert alert["state"] == "open" and alert["raised_at"] == "2026-03-12T18:01:00Z"
    assert alert["detail"] == {
        "event_id": "evt-005",
        "event_type": "custody.transferred",
        "phase": "collected_material",
        "temperature_c": 15.5,
        "min_c": 1.0,
        "max_c": 10.0,
        "at": "2026-03-12T18:00:00Z",
    }
    gw.post_event(warm)  # an identical replay changes nothing
    gw.restart()
    gw.scheduler.tick()
    assert len(by_kind(gw.alerts(ADMIN), "temperature-excursion")) == 1
    flag = validate_flag(gw, alert["alert_id"])
    assert flag["status"] == "active" and flag["code"]["coding"][0]["code"] == "temperature-excursion"
    # the final product has its own range: -150 after manufacturing is fine, -100 is not
    play(
        gw,
        "evt-006",
        "evt-007",
        "evt-008",
        "evt-009",
        "evt-010",
        "evt-011",
        "evt-012",
        "evt-013",
        "evt-014",
        "evt-015",
    )
    gw.clock.set(_at("2026-04-17T09:06:00Z"))
    gw.post_event(event("evt-016", data={**event("evt-016")["data"], "temperature_c": -100}))
    excursions = by_kind(gw.alerts(), "temperature-excursion")
    assert [a["detail"]["phase"] for a in excursions] == ["collected_material", "final_product"]
    # infused: the order's alerts resolve
    play(gw, "evt-017", "evt-018", "evt-019", "evt-020")
    assert {a["state"] for a in gw.alerts()} == {"resolved"}


def test_release_failed_expiry_and_shipment_overdue_through_the_journey(gateway: Gateway):
    gw = gateway
    play(
        gw, "evt-001", "evt-002", "evt-003", "evt-004", "evt-005", "evt-006", "evt-007", "evt-008", "evt-009"
    )
    [failed] = by_kind(gw.alerts(), "release-failed")  # in the event's transaction
    assert failed["detail"]["disposition"] == "remanufacture" and failed["state"] == "open"
    play(gw, "evt-010", "evt-011", "evt-012")
    assert by_kind(gw.alerts(), "release-failed")[0]["state"] == "resolved"  # a later release passed
    play(gw, "evt-013", "evt-014", "evt-015", "evt-016", "evt-017")
    # the product expires 2026-10-07: warned from 2026-09-23 while no infusion is scheduled
    gw.clock.set(_at("2026-04-20T09:01:00Z"))  # 72h after dispatch (09:00)
    gw.scheduler.tick()
    [overdue] = by_kind(gw.alerts(), "shipment-overdue")
    assert overdue["detail"]["leg"] == "shipment" and overdue["detail"]["event_id"] == "evt-015"
    gw.restart()
    gw.clock.set(_at("2026-04-20T09:31:00Z"))
    gw.post_event(
        event(
            "evt-018",
            occurred_at="2026-04-20T09:30:00Z",
            data={"received_at": "2026-04-20T09:30:00Z", "temperature_c": -182.0},
        )
    )
    assert by_kind(gw.alerts(), "shipment-overdue")[0]["state"] == "resolved"
    gw.clock.set(_at("2026-09-22T23:59:00Z"))
    gw.scheduler.tick()
    assert by_kind(gw.alerts(), "expiry-approaching") == []
    gw.clock.set(_at("2026-09-23T00:00:00Z"))
    gw.scheduler.tick()
    gw.restart()
    gw.scheduler.tick()
    [expiring] = by_kind(gw.alerts(), "expiry-approaching")
    assert expiring["state"] == "open" and expiring["detail"]["expires_at"] == "2026-10-07T00:00:00Z"
    gw.post_event(
        event("evt-019", occurred_at="2026-09-23T00:00:00Z", data={"start": "2026-09-30T09:00:00Z"})
    )
    assert by_kind(gw.alerts(), "expiry-approaching")[0]["state"] == "resolved"
    assert len(gw.rows()) == 3  # release-failed, shipment-overdue, expiry-approaching, no more


def test_visibility_filters_paging_and_acknowledgement(gateway: Gateway):
    gw = gateway
    play(gw, "evt-001", "evt-002", "evt-003", "evt-004")
    gw.clock.set(_at("2026-03-12T18:01:00Z"))
    gw.post_event(event("evt-005", data={**event("evt-005")["data"], "temperature_c": 25}))
    gw.clock.set(_at("2026-03-20T00:00:00Z"))
    gw.scheduler.tick()  # + the collected material overdue
    assert len(gw.alerts()) == 2 and len(gw.alerts(SITE_A)) == 2 and len(gw.alerts(ADMIN)) == 2
    assert gw.alerts(NOVA) == [] and gw.alerts(SITE_B) == []
    assert [a["kind"] for a in gw.alerts(kind="temperature-excursion")] == ["temperature-excursion"]
    assert gw.alerts(order_id="OTHER") == [] and len(gw.alerts(state="open")) == 2
    page = gw.http.get("/v1/alerts", headers=ACME, params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = gw.http.get("/v1/alerts", headers=ACME, params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["items"][0]["alert_id"] != page["items"][0]["alert_id"]
    bad = gw.http.get("/v1/alerts", headers=ACME, params={"kind": "nope"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["pointer"] == "/query/kind"
    assert gw.http.get("/v1/alerts", headers=ACME, params={"cursor": "xyz"}).status_code == 400
    assert gw.http.get("/v1/alerts", headers=ACME, params={"state": "closed"}).status_code in (400, 422)
    alert_id = gw.alerts(kind="temperature-excursion")[0]["alert_id"]
    # another tenant's alert is not found
    assert gw.http.post(f"/v1/alerts/{alert_id}/acknowledge", json={}, headers=SITE_B).status_code == 404
    done = gw.http.post(
        f"/v1/alerts/{alert_id}/acknowledge", json={"note": "shipper replaced"}, headers=SITE_A
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "acknowledged" and done.json()["note"] == "shipper replaced"
    again = gw.http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "other"}, headers=ACME)
    assert again.json()["note"] == "shipper replaced"  # idempotent
    assert (
        gw.http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": ""}, headers=ACME).status_code == 422
    )
    assert validate_flag(gw, alert_id)["status"] == "active"
    play(
        gw,
        "evt-006",
        "evt-007",
        "evt-008",
        "evt-009",
        "evt-010",
        "evt-011",
        "evt-012",
        "evt-013",
        "evt-014",
        "evt-015",
        "evt-016",
        "evt-017",
        "evt-018",
        "evt-019",
        "evt-020",
    )
    assert gw.alerts(kind="temperature-excursion")[0]["state"] == "resolved"
    gone = gw.http.post(f"/v1/alerts/{alert_id}/acknowledge", json={}, headers=ACME)
    assert gone.status_code == 409 and gone.json()["code"] == "alert-resolved"
    metrics = gw.http.get("/metrics").text
    assert 'cgt_alerts{kind="temperature-excursion",state="resolved"} 1.0' in metrics


def test_webhook_alert_raised_and_resolved_through_the_outbox(settings: Settings, engine: sa.Engine):
    acme = settings.manufacturer("acme-bio")
    assert acme is not None
    hooked = acme.model_copy(
        update={"webhook": {"url": "http://127.0.0.1:9/hook", "secret_env": "ACME_SECRET"}}
    )
    webhook_settings = settings.model_copy(update={"manufacturers": [hooked, *settings.manufacturers[1:]]})
    clock = FakeClock(_at(JOURNEY["placed_at"]))
    gw = Gateway(webhook_settings, engine, clock)
    try:
        assert gw.http.post("/v1/orders", json=JOURNEY["order"], headers=ACME).status_code == 201
        play(gw, "evt-001", "evt-002", "evt-003", "evt-004")
        clock.set(_at("2026-03-12T18:01:00Z"))
        gw.post_event(event("evt-005", data={**event("evt-005")["data"], "temperature_c": 0.5}))
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(OutboxMessage.__table__).where(  # type: ignore[attr-defined]
                    OutboxMessage.__table__.c.destination == "acme-bio/webhook"
                )
            ).all()  # type: ignore[attr-defined]
        bodies = [json.loads(r.payload) for r in rows if r.message_type.startswith("alert.")]
        assert [b["type"] for b in bodies] == ["alert.raised"]
        assert bodies[0]["kind"] == "temperature-excursion" and bodies[0]["order_id"] == ORDER_ID
        assert "Rivera" not in rows[0].payload and "MRN" not in rows[0].payload
    finally:
        gw.close()


def test_certification_expiring_raised_30_days_before_and_resolved_by_renewal(gateway: Gateway):
    gw = gateway
    start = _at("2026-03-02T14:00:00Z")
    valid_until = (start + timedelta(days=40)).date().isoformat()
    body = {
        "site_id": "site-b",
        "product_code": "GT-HEM-01",
        "status": "certified",
        "valid_until": valid_until,
        "training_completed_at": "2026-01-15T10:00:00Z",
        "note": "annual",
    }
    assert gw.http.post("/v1/admin/certifications", json=body, headers=ADMIN).status_code == 200
    gw.scheduler.tick()
    assert gw.alerts(ADMIN, kind="certification-expiring") == []
    gw.clock.set(start + timedelta(days=10))  # 30 days before valid_until
    gw.scheduler.tick()
    gw.restart()
    gw.scheduler.tick()
    [alert] = gw.alerts(NOVA, kind="certification-expiring")
    assert alert["site_id"] == "site-b" and alert["order_id"] is None
    assert alert["detail"]["valid_until"] == valid_until
    assert gw.alerts(SITE_B, kind="certification-expiring") == [alert]
    assert gw.alerts(ACME, kind="certification-expiring") == []
    renewed = {**body, "valid_until": (start + timedelta(days=400)).date().isoformat()}
    assert gw.http.post("/v1/admin/certifications", json=renewed, headers=ADMIN).status_code == 200
    gw.scheduler.tick()
    assert gw.alerts(NOVA, kind="certification-expiring")[0]["state"] == "resolved"


def test_the_scheduler_loop_runs_passes_until_stopped(settings: Settings, engine: sa.Engine):
    import asyncio

    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    app = create_app(settings, engine=engine, now=clock)
    scheduler = AlertScheduler(app.state.context, now=clock, interval_s=0.01)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if scheduler.passes >= 3:
                break
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(main())
    assert scheduler.passes >= 3
    stop_thread = AlertScheduler(app.state.context, now=clock, interval_s=0.01).run_in_thread()
    stop_thread()  # stops promptly


def test_one_alert_pass_at_a_time_across_processes(settings: Settings, engine: sa.Engine):
    """PostgreSQL: while another process's pass holds the advisory lock, a scheduler skips its turn (and
    does nothing); once it is free, the pass runs.  SQLite (one process) always runs the pass."""
    from gateway.alerts.scheduler import PASS_LOCK_KEY

    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    app = create_app(settings, engine=engine, now=clock)
    scheduler = AlertScheduler(app.state.context, now=clock)
    if engine.dialect.name != "postgresql":
        assert scheduler.tick_if_free() is not None and scheduler.passes == 1
        return
    with engine.connect() as other:  # another process's pass, running
        assert other.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": PASS_LOCK_KEY}).scalar_one()
        assert _pass_locks_held(engine) == 1
        assert scheduler.tick_if_free() is None
        assert (scheduler.passes, scheduler.skipped) == (0, 1)
        other.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": PASS_LOCK_KEY})
        other.commit()
    assert scheduler.tick_if_free() is not None
    assert (scheduler.passes, scheduler.skipped) == (1, 1)
    assert scheduler.tick_if_free() is not None  # the lock was given back after the pass
    assert _pass_locks_held(engine) == 0  # and nothing holds it now


def _pass_locks_held(engine: sa.Engine) -> int:
    """How many sessions hold the alert pass's advisory lock in this database."""
    from gateway.alerts.scheduler import PASS_LOCK_KEY

    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :high AND objid = :low"
            " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"high": PASS_LOCK_KEY >> 32, "low": PASS_LOCK_KEY & 0xFFFFFFFF}).scalar_one())

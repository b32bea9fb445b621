"""The trigger of each topic (issue 16), checked on the outbox rows and event rows it writes in the
change's own transaction: task-status with filters, site-request, order-alert (a Flag stored by
save_translation, as the alerts part does), tenant isolation, replays notify nothing."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from gateway.delivery.destinations import subscription_destination
from gateway.delivery.outbox import OutboxMessage
from gateway.store.db import write_session
from gateway.store.fhir import save_translation
from gateway.store.subscription_tables import SUBSCRIPTION_EVENTS
from tests.conftest import SITE_A, SITE_B
from tests.integration.site_request_support import advance_to, place
from tests.integration.subscription_support import (
    event_numbers,
    notification_type,
    subscription_body,
    validate_r4b,
)
from tests.integration.test_inbound_fhir_routes import request_task

FHIR = {"Content-Type": "application/fhir+json"}
_O: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]


def _subscribe(client: Any, headers: dict[str, str] = SITE_A, **kw: Any) -> str:
    response = client.post(
        "/fhir/Subscription",
        json=subscription_body("http://127.0.0.1:9/hook", **kw),
        headers={**headers, **FHIR},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _events(client: Any, sid: str) -> list[dict[str, Any]]:
    """The event notifications queued for ``sid`` (bodies), in queue order."""
    engine = client.app.state.context.engine
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_O.c.payload, _O.c.message_type)
            .where(_O.c.destination == subscription_destination(sid))
            .order_by(_O.c.id)
        ).all()
    return [orjson.loads(r.payload) for r in rows if r.message_type == "event-notification"]


def test_task_status_filters_and_tenants(client: Any, clock: Any) -> None:
    place(client, clock)
    every = _subscribe(client)
    shipped_only = _subscribe(client, filters=("Task?business-status=shipped",))
    other_site = _subscribe(client, SITE_B)
    advance_to(client, clock, "collected")
    bundles = _events(client, every)
    numbers = [n for b in bundles for n in event_numbers(b)]
    assert numbers == list(range(1, len(bundles) + 1)) and len(bundles) >= 2
    for bundle in bundles:
        validate_r4b(bundle)
        assert notification_type(bundle) == "event-notification"
        assert "resource" not in bundle["entry"][1]  # id-only: the focus URL, no content
        assert bundle["entry"][1]["fullUrl"].startswith("http://testserver/fhir/Task/")
    assert _events(client, shipped_only) == []  # no shipment yet
    assert _events(client, other_site) == []  # another site's orders never reach it
    with client.app.state.context.engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(SUBSCRIPTION_EVENTS)
            .where(SUBSCRIPTION_EVENTS.c.subscription_id == every)
        ).scalar_one()
    assert stored == len(bundles)


def test_site_request_topic(client: Any, clock: Any) -> None:
    place(client, clock)
    requests_sid = _subscribe(client, topic="site-request", content="full-resource")
    response = client.post("/fhir/Task", json=request_task("ORD-1"), headers={**SITE_A, **FHIR})
    assert response.status_code == 201, response.text
    bundles = _events(client, requests_sid)
    assert len(bundles) == 1 and event_numbers(bundles[0]) == [1]
    focus = bundles[0]["entry"][1]["resource"]
    assert focus["id"] == response.json()["id"] and focus["status"] == "completed"
    validate_r4b(bundles[0])


def _flag(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": "alert-1",
        "status": status,
        "code": {
            "coding": [
                {
                    "system": "https://cgt-gateway.example.org/fhir/CodeSystem/alert-kind",
                    "code": "shipment-overdue",
                }
            ]
        },
        "subject": {"reference": "Patient/p1"},
    }


def test_order_alert_topic_from_flags(client: Any, clock: Any) -> None:
    engine = client.app.state.context.engine
    sid = _subscribe(client, topic="order-alert", filters=("Flag?code=shipment-overdue",))
    b_sid = _subscribe(client, SITE_B, topic="order-alert")

    def store(flag: dict[str, Any]) -> None:
        with write_session(engine) as session:
            save_translation(
                session,
                site_id="site-a",
                manufacturer_id="acme-bio",
                order_id="ORD-1",
                resources=[flag],
                now=clock(),
            )

    store(_flag("active"))
    store(_flag("active"))  # a replay writes no version: nothing
    store({**_flag("active"), "period": {"start": "2026-11-01"}})  # a new version, same status: nothing
    store(_flag("inactive"))
    bundles = _events(client, sid)
    assert [event_numbers(b) for b in bundles] == [[1], [2]]
    assert _events(client, b_sid) == []
    for bundle in bundles:
        validate_r4b(bundle)
